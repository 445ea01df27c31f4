"""Cluster authentication: games and gates prove to each dispatcher that they know the secret.

Without it anyone who reaches a dispatcher's port could open a ``Connect`` stream saying
"I am gate 1" and the dispatcher would drop the real gate (and all its clients) for it.

The secret (:func:`resolve_secret`, first found wins)
    1. the environment variable ``GOWORLD_CLUSTER_SECRET`` (:data:`SECRET_ENV`);
    2. ``[deployment] cluster_secret`` in the ini, or ``cluster_secret_file`` (a file whose
       first line is the secret; relative to the ini, keep it readable by the operator only);
    3. ``.goworld/cluster.secret`` next to the ini (:data:`goworld.runctl.CLUSTER_SECRET_FILE`):
       ``goworld start`` writes a fresh random one there (mode 0600) when neither of the above
       is set, so a cluster started by the CLI on one host is protected by default; restarts,
       reloads and the supervisor's processes read the same file and rejoin. Only while every
       dispatcher listens and is advertised on loopback: it is no use across hosts.

    At least :data:`MIN_SECRET_LENGTH` characters. A dispatcher that listens on an address that
    is not loopback refuses to start without a secret from 1 or 2 (every host of a cluster
    needs the same one; :func:`dispatcher_secret`), unless mutual TLS is on
    (:mod:`goworld.cluster.tls`; then a certificate of the cluster's CA is what lets a process
    in, and without a secret it may say it is any game or gate). A dispatcher without any
    secret (run by hand on loopback) accepts every local process, with a warning. The secret
    is never logged and never sent.

The token (call metadata :data:`METADATA_KEY` of ``Dispatcher.Connect``)
    ``v1:<role><id>:<unix seconds>:<nonce>:<mac>``, e.g. ``v1:gate1:1767000000:9f..:3a..``:
    ``mac`` is the hex HMAC-SHA256 under the secret of everything before it plus
    ``:dispatcher<D>``, so a token is good for one dispatcher only. :class:`TokenVerifier`
    refuses (raises :class:`AuthRefused`) a missing or malformed token, a wrong MAC, a time
    more than :data:`MAX_CLOCK_SKEW` seconds away from the dispatcher's clock (hosts need
    NTP), and a nonce it has already accepted (remembered for twice that long, at most
    ``max_nonces``; only tokens with a good MAC are remembered). The dispatcher then checks that
    the stream's hello (SET_GAME_ID / SET_GATE_ID) names the identity the token names.

What it does not do: encrypt the stream. Someone who can read the traffic between hosts can
read the game's messages (and race a real peer with its token inside the window); across an
untrusted network use a VPN or another encrypted tunnel.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from goworld import runctl
from goworld.config import CLUSTER_SECRET_MIN_LENGTH, ClusterConfig
from goworld.errors import ConfigError, GoWorldError

__all__ = [
    "ACCEPTED_METADATA",
    "AuthRefused",
    "ClusterSecret",
    "Identity",
    "MAX_CLOCK_SKEW",
    "METADATA_KEY",
    "MIN_SECRET_LENGTH",
    "SECRET_ENV",
    "TokenSigner",
    "TokenVerifier",
    "dispatcher_secret",
    "is_loopback",
    "make_token",
    "resolve_secret",
    "prepare_run_secret",
    "write_run_secret",
]

#: The environment variable that holds the cluster secret (wins over the ini).
SECRET_ENV = "GOWORLD_CLUSTER_SECRET"
#: The gRPC call metadata key that carries the token.
METADATA_KEY = "goworld-auth"
#: The initial metadata a dispatcher answers a stream it takes with, before it reads anything:
#: a link waits for it before it writes (a refused stream ends without it, with its status).
ACCEPTED_METADATA = ("goworld-accepted", "1")
#: Seconds a token's time may be off the dispatcher's clock, either way.
MAX_CLOCK_SKEW = 120.0
#: The shortest secret accepted (characters).
MIN_SECRET_LENGTH = CLUSTER_SECRET_MIN_LENGTH
#: Accepted nonces a verifier remembers at most (then it refuses until some expire).
MAX_NONCES = 65536

_VERSION = "v1"
_TOKEN_RE = re.compile(
    r"v1:(?P<role>game|gate|lockstep|ops)(?P<id>[1-9][0-9]{0,4}):(?P<ts>[0-9]{1,12}):(?P<nonce>[0-9a-f]{32}):"
    r"(?P<mac>[0-9a-f]{64})"
)
_MAX_TOKEN_LENGTH = 200


class AuthRefused(GoWorldError):
    """A stream's credentials are missing, wrong, stale or replayed (the message says which)."""


@dataclass(frozen=True, slots=True)
class ClusterSecret:
    value: bytes = field(repr=False)
    source: str  # where it came from, for messages (never the value)


@dataclass(frozen=True, slots=True)
class Identity:
    role: str  # "game" | "gate" | "lockstep", or "ops": the CLI's orders (never a stream)
    id: int

    def __str__(self) -> str:
        return f"{self.role}{self.id}"


# ----------------------------------------------------------------------------- the secret


def resolve_secret(
    cfg: ClusterConfig, environ: Mapping[str, str] | None = None
) -> ClusterSecret | None:
    """The cluster secret for processes of ``cfg`` (see the module docstring), or None.

    Raises:
        ConfigError: the environment's secret is too short, or the ini's
            ``cluster_secret_file`` cannot be read or holds too short a secret.
    """
    explicit = _explicit_secret(cfg, environ)
    if explicit is not None or _beyond_loopback(cfg):  # the run file is for one host only
        return explicit
    path = runctl.run_dir(cfg.config_dir) / runctl.CLUSTER_SECRET_FILE
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read the cluster secret {path}: {exc.strerror or exc}") from exc
    return _checked(text, str(path))


def _explicit_secret(
    cfg: ClusterConfig, environ: Mapping[str, str] | None
) -> ClusterSecret | None:
    """The secret the operator set: the environment, else the ini (key or file)."""
    env = (os.environ if environ is None else environ).get(SECRET_ENV, "")
    if env:
        return _checked(env, f"the environment variable {SECRET_ENV}")
    dep = cfg.deployment
    where = {"path": str(cfg.path), "section": "deployment"}
    if dep.cluster_secret:
        return _checked(dep.cluster_secret, f"{cfg.path} [deployment] cluster_secret", where)
    if dep.cluster_secret_file is None:
        return None
    file = dep.cluster_secret_file
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise ConfigError(
            f"cannot read the cluster secret {file}: {reason}", key="cluster_secret_file", **where
        ) from exc
    text = lines[0].strip() if lines else ""
    return _checked(text, f"{file} ([deployment] cluster_secret_file)", where)


def _checked(text: str, source: str, where: Mapping[str, str] | None = None) -> ClusterSecret:
    if len(text) < MIN_SECRET_LENGTH:
        message = f"the cluster secret from {source} is shorter than {MIN_SECRET_LENGTH} characters"
        raise ConfigError(message, **(where or {}))
    return ClusterSecret(text.encode("utf-8"), source)


def is_loopback(host: str) -> bool:
    """``host`` (of a ``host:port``) reaches this machine only. An empty host (every
    interface) and any name but ``localhost`` are not loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _tls_on(cfg: ClusterConfig) -> bool:
    return cfg.deployment.cluster_tls_cert is not None


def _beyond_loopback(cfg: ClusterConfig) -> list[str]:
    return [
        f"[dispatcher{d.id}] {key} = {addr}"
        for d in cfg.dispatchers.values()
        for key, addr in (("listen_addr", d.listen_addr), ("advertise_addr", d.advertise_addr))
        if not is_loopback(addr.host)
    ]


def prepare_run_secret(
    cfg: ClusterConfig, *, fresh: bool, environ: Mapping[str, str] | None = None
) -> ClusterSecret | None:
    """For ``goworld start``: the secret its processes will use. The environment's or the
    ini's if set; else, on one host, a random one in ``.goworld/cluster.secret``, new when
    ``fresh`` (no process of the cluster runs), else the one there; None for a cluster across
    hosts that relies on mutual TLS alone.

    Raises:
        ConfigError: none is set, a dispatcher listens or is advertised beyond loopback (a
            cluster across hosts needs the same secret everywhere) and mutual TLS is off, or
            as :func:`resolve_secret`.
    """
    explicit = _explicit_secret(cfg, environ)
    beyond = _beyond_loopback(cfg)
    if (explicit is not None or beyond) and fresh:  # an earlier run's, which nothing would read
        (runctl.run_dir(cfg.config_dir) / runctl.CLUSTER_SECRET_FILE).unlink(missing_ok=True)
    if explicit is not None or (beyond and _tls_on(cfg)):
        return explicit
    if beyond:
        raise ConfigError(
            f"{', '.join(beyond)} reach beyond loopback, so every host needs the same cluster "
            f"secret: set cluster_secret or cluster_secret_file here, or the environment "
            f"variable {SECRET_ENV}",
            path=str(cfg.path), section="deployment", key="cluster_secret",
        )
    path = write_run_secret(cfg, reuse=not fresh)
    return _checked(path.read_text(encoding="utf-8").strip(), str(path))


def dispatcher_secret(
    cfg: ClusterConfig, dispatcher_id: int, environ: Mapping[str, str] | None = None
) -> ClusterSecret | None:
    """The secret dispatcher ``dispatcher_id`` checks tokens with; None: accept every peer.

    Raises:
        ConfigError: it listens beyond loopback, neither the environment nor the ini sets
            a secret and mutual TLS is off (or as :func:`resolve_secret`).
    """
    listen = cfg.dispatchers[dispatcher_id].listen_addr
    explicit = _explicit_secret(cfg, environ)
    if not is_loopback(listen.host) and explicit is None and not _tls_on(cfg):
        raise ConfigError(
            f"dispatcher{dispatcher_id} listens on {listen}, beyond loopback, so the cluster "
            f"needs a secret shared by every host (or mutual TLS, cluster_tls_*): set "
            f"cluster_secret or cluster_secret_file here, or the environment variable {SECRET_ENV}",
            path=str(cfg.path),
            section="deployment",
            key="cluster_secret",
        )
    return resolve_secret(cfg, environ)


def write_run_secret(cfg: ClusterConfig, *, reuse: bool = False) -> Path:
    """A fresh random secret in ``.goworld/cluster.secret`` (mode 0600, written atomically);
    with ``reuse``, the one already there if it is good (processes of the cluster run and
    use it). Returns its path."""
    rd = runctl.run_dir(cfg.config_dir)
    rd.mkdir(exist_ok=True)
    path = rd / runctl.CLUSTER_SECRET_FILE
    if reuse:
        try:
            if len(path.read_text(encoding="utf-8").strip()) >= MIN_SECRET_LENGTH:
                return path
        except (OSError, UnicodeDecodeError):
            pass
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(secrets.token_hex(32) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------- tokens


def _mac(secret: bytes, signed: str, dispatcher_id: int) -> str:
    message = f"{signed}:dispatcher{dispatcher_id}".encode("ascii")
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def make_token(
    secret: bytes, identity: Identity, dispatcher_id: int, now: float, nonce: str | None = None
) -> str:
    """The token ``identity`` sends to dispatcher ``dispatcher_id`` at time ``now``."""
    nonce = secrets.token_hex(16) if nonce is None else nonce
    signed = f"{_VERSION}:{identity}:{int(now)}:{nonce}"
    return f"{signed}:{_mac(secret, signed, dispatcher_id)}"


class TokenSigner:
    """A game's or gate's credentials: fresh call metadata for each stream it opens."""

    def __init__(
        self, secret: ClusterSecret, identity: Identity, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._secret = secret.value
        self.identity = identity
        self._clock = clock

    def metadata(self, dispatcher_id: int) -> tuple[tuple[str, str], ...]:
        return ((METADATA_KEY, make_token(self._secret, self.identity, dispatcher_id, self._clock())),)


class TokenVerifier:
    """One dispatcher's check of the tokens its streams open with."""

    def __init__(
        self,
        secret: ClusterSecret,
        dispatcher_id: int,
        *,
        clock: Callable[[], float] = time.time,
        max_skew: float = MAX_CLOCK_SKEW,
        max_nonces: int = MAX_NONCES,
    ) -> None:
        self._secret = secret.value
        self.dispatcher_id = dispatcher_id
        self._clock = clock
        self.max_skew = max_skew
        self.max_nonces = max_nonces
        self._nonces: OrderedDict[str, float] = OrderedDict()  # nonce -> when accepted

    def verify(self, token: str | None) -> Identity:
        """The identity ``token`` proves.

        Raises:
            AuthRefused: no token, a malformed one, a wrong MAC (another secret), a time
                outside the window, or a nonce seen before.
        """
        if not token:
            raise AuthRefused("no cluster credentials")
        match = _TOKEN_RE.fullmatch(token) if len(token) <= _MAX_TOKEN_LENGTH else None
        if match is None:
            raise AuthRefused("malformed cluster credentials")
        signed = token[: match.start("mac") - 1]
        if not hmac.compare_digest(
            _mac(self._secret, signed, self.dispatcher_id), match["mac"]
        ):
            raise AuthRefused("wrong cluster credentials (another cluster secret?)")
        now = self._clock()
        offset = int(match["ts"]) - now
        if abs(offset) > self.max_skew:
            raise AuthRefused(
                f"stale cluster credentials: their time is {offset:+.0f} s off this host's "
                f"(more than {self.max_skew:g} s; are the clocks in sync?)"
            )
        self._remember(match["nonce"], now)
        return Identity(match["role"], int(match["id"]))

    def _remember(self, nonce: str, now: float) -> None:
        nonces = self._nonces
        horizon = now - 2 * self.max_skew
        while nonces and next(iter(nonces.values())) < horizon:
            nonces.popitem(last=False)
        if nonce in nonces:
            raise AuthRefused("replayed cluster credentials")
        if len(nonces) >= self.max_nonces:
            raise AuthRefused(
                f"too many streams opened in {2 * self.max_skew:g} s ({self.max_nonces})"
            )
        nonces[nonce] = now
