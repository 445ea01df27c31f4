"""goworld.cluster.auth: tokens, the verifier's refusals, where the secret comes from."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from goworld import runctl
from goworld.cluster import auth
from goworld.cluster.auth import AuthRefused, ClusterSecret, Identity, TokenSigner, TokenVerifier
from goworld.config import load
from goworld.errors import ConfigError

SECRET = ClusterSecret(b"s" * 32, "test")
OTHER = ClusterSecret(b"o" * 32, "test")
NOW = 1_767_000_000.0
GATE1 = Identity("gate", 1)
GAME1 = Identity("game", 1)


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def token(identity: Identity = GATE1, *, secret: ClusterSecret = SECRET, dispatcher: int = 1,
          at: float = NOW, nonce: str | None = None) -> str:
    return auth.make_token(secret.value, identity, dispatcher, at, nonce)


def verifier(clock: Clock | None = None, **options: int) -> TokenVerifier:
    return TokenVerifier(SECRET, 1, clock=clock or Clock(), **options)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- tokens


def test_a_good_token_proves_its_identity() -> None:
    v = verifier()
    assert v.verify(token(GATE1)) == GATE1
    assert v.verify(token(GAME1)) == GAME1
    assert v.verify(token(Identity("game", 65535))) == Identity("game", 65535)


def test_the_signer_makes_tokens_the_verifier_takes_and_never_sends_the_secret() -> None:
    clock = Clock()
    signer = TokenSigner(SECRET, GAME1, clock=clock)
    ((key, value),) = signer.metadata(1)
    assert key == auth.METADATA_KEY
    assert value.startswith(f"v1:game1:{int(NOW)}:")
    assert SECRET.value.decode() not in value
    assert verifier(clock).verify(value) == GAME1
    assert signer.metadata(1) != signer.metadata(1)  # a fresh nonce every time
    assert "s" * 32 not in repr(SECRET) and "s" * 32 not in repr(signer)


@pytest.mark.parametrize("bad", [None, "", "v1:gate1", "x" * 1000, "v2:gate1:1:" + "0" * 32 + ":" + "0" * 64,
                                 "v1:boss1:1767000000:" + "0" * 32 + ":" + "0" * 64,
                                 "v1:gate0:1767000000:" + "0" * 32 + ":" + "0" * 64])
def test_missing_or_malformed_tokens_are_refused(bad: str | None) -> None:
    with pytest.raises(AuthRefused, match="no cluster credentials|malformed"):
        verifier().verify(bad)


def test_a_token_made_with_another_secret_is_refused() -> None:
    with pytest.raises(AuthRefused, match="wrong cluster credentials"):
        verifier().verify(token(secret=OTHER))


def test_a_token_for_another_dispatcher_is_refused() -> None:
    with pytest.raises(AuthRefused, match="wrong cluster credentials"):
        verifier().verify(token(dispatcher=2))


def test_a_token_whose_fields_were_changed_is_refused() -> None:
    good = token(GAME1)
    forged = good.replace("v1:game1:", "v1:gate1:", 1)
    with pytest.raises(AuthRefused, match="wrong cluster credentials"):
        verifier().verify(forged)
    later = good.replace(f":{int(NOW)}:", f":{int(NOW) + 1}:", 1)
    with pytest.raises(AuthRefused, match="wrong cluster credentials"):
        verifier().verify(later)


@pytest.mark.parametrize("offset", [-121, 121, -10_000])
def test_a_token_outside_the_clock_window_is_refused(offset: int) -> None:
    with pytest.raises(AuthRefused, match="stale cluster credentials"):
        verifier().verify(token(at=NOW + offset))


@pytest.mark.parametrize("offset", [-120, 0, 120])
def test_a_token_inside_the_clock_window_is_taken(offset: int) -> None:
    assert verifier().verify(token(at=NOW + offset)) == GATE1


def test_a_replayed_token_is_refused_while_it_could_still_be_taken() -> None:
    clock = Clock()
    v = verifier(clock)
    t = token()
    assert v.verify(t) == GATE1
    with pytest.raises(AuthRefused, match="replayed"):
        v.verify(t)
    clock.now = NOW + 120  # still within the window: still refused
    with pytest.raises(AuthRefused, match="replayed"):
        v.verify(t)
    clock.now = NOW + 121  # out of the window now, and forgotten later
    with pytest.raises(AuthRefused, match="stale"):
        v.verify(t)


def test_the_nonce_memory_is_bounded_and_forgets_what_expired() -> None:
    clock = Clock()
    v = verifier(clock, max_nonces=3)
    for _ in range(3):
        v.verify(token(at=clock.now))
    with pytest.raises(AuthRefused, match="too many streams"):
        v.verify(token(at=clock.now))
    clock.now += 241  # the first three cannot be replayed any more: forgotten
    assert v.verify(token(at=clock.now)) == GATE1


def test_refused_tokens_are_not_remembered() -> None:
    v = verifier(max_nonces=1)
    for _ in range(5):
        with pytest.raises(AuthRefused):
            v.verify(token(secret=OTHER))
    assert v.verify(token()) == GATE1


# ----------------------------------------------------------------------------- the secret

INI = """[deployment]
desired_dispatchers = 1
desired_games = 1
desired_gates = 1
{extra}
[dispatcher1]
listen_addr = {listen}:13000
advertise_addr = {listen}:13000
"""


def ini(tmp_path: Path, extra: str = "", listen: str = "127.0.0.1") -> Path:
    path = tmp_path / "goworld.ini"
    path.write_text(INI.format(extra=extra, listen=listen))
    return path


def test_without_any_secret_there_is_none(tmp_path: Path) -> None:
    cfg = load(ini(tmp_path), check_files=False)
    assert auth.resolve_secret(cfg, {}) is None
    assert auth.dispatcher_secret(cfg, 1, {}) is None


def test_the_environment_wins_over_the_ini_which_wins_over_the_run_file(tmp_path: Path) -> None:
    cfg = load(ini(tmp_path, "cluster_secret = from-the-ini-0123456789"), check_files=False)
    rd = runctl.run_dir(tmp_path)
    rd.mkdir()
    (rd / runctl.CLUSTER_SECRET_FILE).write_text("from-the-run-file-0123456789\n")
    env = {auth.SECRET_ENV: "from-the-environment-0123"}
    got = auth.resolve_secret(cfg, env)
    assert got is not None and got.value == b"from-the-environment-0123"
    assert auth.SECRET_ENV in got.source and "from-the" not in got.source
    got = auth.resolve_secret(cfg, {})
    assert got is not None and got.value == b"from-the-ini-0123456789"
    assert "[deployment] cluster_secret" in got.source
    cfg = load(ini(tmp_path), check_files=False)
    got = auth.resolve_secret(cfg, {})
    assert got is not None and got.value == b"from-the-run-file-0123456789"


def test_a_secret_file_named_by_the_ini_is_read_relative_to_it(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("a-secret-in-a-file-0123\nignored\n")
    cfg = load(ini(tmp_path, "cluster_secret_file = secret.txt"), check_files=False)
    assert cfg.deployment.cluster_secret_file == tmp_path / "secret.txt"
    got = auth.resolve_secret(cfg, {})
    assert got is not None and got.value == b"a-secret-in-a-file-0123"
    (tmp_path / "secret.txt").unlink()
    with pytest.raises(ConfigError, match=r"\[deployment\] cluster_secret_file: cannot read"):
        auth.resolve_secret(cfg, {})


def test_short_secrets_are_refused_and_never_shown(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least 16 characters") as info:
        load(ini(tmp_path, "cluster_secret = short-secret"), check_files=False)
    assert "short-secret" not in str(info.value) and "cluster_secret" in str(info.value)
    cfg = load(ini(tmp_path), check_files=False)
    with pytest.raises(ConfigError, match="shorter than 16") as info:
        auth.resolve_secret(cfg, {auth.SECRET_ENV: "tiny-secret"})
    assert "tiny-secret" not in str(info.value)
    with pytest.raises(ConfigError, match="not both"):
        load(ini(tmp_path, "cluster_secret = long-enough-secret-01\ncluster_secret_file = x"),
             check_files=False)


def test_the_secret_is_not_in_the_configs_repr(tmp_path: Path) -> None:
    cfg = load(ini(tmp_path, "cluster_secret = do-not-print-me-0123"), check_files=False)
    assert "do-not-print-me" not in repr(cfg) and "do-not-print-me" not in repr(cfg.deployment)


@pytest.mark.parametrize("host,loopback", [
    ("127.0.0.1", True), ("127.9.9.9", True), ("::1", True), ("localhost", True),
    ("", False), ("0.0.0.0", False), ("10.0.0.1", False), ("::", False), ("example.com", False),
])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert auth.is_loopback(host) is loopback


def test_a_dispatcher_beyond_loopback_needs_a_secret_from_the_ini_or_environment(
    tmp_path: Path,
) -> None:
    cfg = load(ini(tmp_path, listen="0.0.0.0"), check_files=False)
    rd = runctl.run_dir(tmp_path)
    rd.mkdir()
    (rd / runctl.CLUSTER_SECRET_FILE).write_text("from-the-run-file-0123456789\n")  # not enough
    with pytest.raises(ConfigError) as info:
        auth.dispatcher_secret(cfg, 1, {})
    message = str(info.value)
    assert str(cfg.path) in message and "[deployment] cluster_secret" in message
    assert auth.SECRET_ENV in message and "0.0.0.0:13000" in message
    got = auth.dispatcher_secret(cfg, 1, {auth.SECRET_ENV: "x" * 16})
    assert got is not None and got.value == b"x" * 16
    with pytest.raises(ConfigError, match="every host needs the same cluster secret"):
        auth.prepare_run_secret(cfg, fresh=True, environ={})


def test_start_writes_a_private_random_secret_and_reuses_it_while_the_cluster_runs(
    tmp_path: Path,
) -> None:
    cfg = load(ini(tmp_path), check_files=False)
    first = auth.prepare_run_secret(cfg, fresh=True, environ={})
    path = runctl.run_dir(tmp_path) / runctl.CLUSTER_SECRET_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert first.value == path.read_text().strip().encode() and len(first.value) == 64
    assert auth.prepare_run_secret(cfg, fresh=False, environ={}) == first
    second = auth.prepare_run_secret(cfg, fresh=True, environ={})
    assert second.value != first.value
    resolved = auth.resolve_secret(cfg, {})
    assert resolved is not None and resolved.value == second.value
    # a secret set by the operator: the run file goes (nothing would read it)
    env = {auth.SECRET_ENV: "y" * 20}
    assert auth.prepare_run_secret(cfg, fresh=True, environ=env).value == b"y" * 20
    assert not path.exists()


# ----------------------------------------------------------------------------- mutual TLS

TLS = ("cluster_tls_ca = cluster.crt\ncluster_tls_cert = cluster.crt\n"
       "cluster_tls_key = cluster.key\n")


def test_mutual_tls_alone_is_enough_beyond_loopback_and_the_run_file_is_not_used(
    tmp_path: Path,
) -> None:
    from goworld.testing import make_key_pair

    make_key_pair(tmp_path, "cluster")
    cfg = load(ini(tmp_path, TLS, listen="0.0.0.0"))
    rd = runctl.run_dir(tmp_path)
    rd.mkdir()
    (rd / runctl.CLUSTER_SECRET_FILE).write_text("from-the-run-file-0123456789\n")
    assert auth.resolve_secret(cfg, {}) is None  # one host's secret is no use across hosts
    assert auth.dispatcher_secret(cfg, 1, {}) is None
    assert auth.prepare_run_secret(cfg, fresh=True, environ={}) is None
    assert not (rd / runctl.CLUSTER_SECRET_FILE).exists()
    got = auth.dispatcher_secret(cfg, 1, {auth.SECRET_ENV: "z" * 16})  # both: both are checked
    assert got is not None and got.value == b"z" * 16


def test_tls_material_loads_for_grpc(tmp_path: Path) -> None:
    from goworld.cluster.tls import load_tls
    from goworld.testing import make_key_pair

    key, crt = make_key_pair(tmp_path, "cluster")
    cfg = load(ini(tmp_path, TLS + "cluster_tls_server_name = goworld\n"))
    tls = load_tls(cfg)
    assert tls is not None and tls.cert == crt.read_bytes() and tls.ca == crt.read_bytes()
    assert tls.channel_options() == [("grpc.ssl_target_name_override", "goworld")]
    assert key.read_text() not in repr(tls)
    tls.server_credentials()
    tls.channel_credentials()
    assert load_tls(load(ini(tmp_path))) is None


@pytest.mark.parametrize("extra,key,message", [
    ("cluster_tls_cert = cluster.crt\n", "cluster_tls_ca", "needs cluster_tls_ca, cluster_tls_cert"),
    ("cluster_tls_server_name = goworld\n", "cluster_tls_server_name", "mutual TLS is off"),
    ("cluster_tls_ca = nope.crt\ncluster_tls_cert = cluster.crt\ncluster_tls_key = cluster.key\n",
     "cluster_tls_ca", "cannot read"),
    ("cluster_tls_ca = cluster.key\ncluster_tls_cert = cluster.crt\ncluster_tls_key = cluster.key\n",
     "cluster_tls_ca", "is not a PEM certificate"),
    ("cluster_tls_ca = cluster.crt\ncluster_tls_cert = cluster.crt\ncluster_tls_key = other.key\n",
     "cluster_tls_key", "does not match the certificate"),
])
def test_tls_settings_are_checked_when_the_ini_is_loaded(
    tmp_path: Path, extra: str, key: str, message: str
) -> None:
    from goworld.testing import make_key_pair

    make_key_pair(tmp_path, "cluster")
    make_key_pair(tmp_path, "other")
    with pytest.raises(ConfigError, match=message) as info:
        load(ini(tmp_path, extra))
    assert f"[deployment] {key}" in str(info.value)
