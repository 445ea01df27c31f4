"""Tests for goworld.config: the shipped goworld.ini, GoWorld's layout, and every error."""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
from pathlib import Path

import pytest

from goworld import config
from goworld.config import Address, ClusterConfig, load
from goworld.errors import ConfigError
from goworld.testing import make_key_pair

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"

DEPLOYMENT = "[deployment]\ndesired_dispatchers = 1\ndesired_games = 1\ndesired_gates = 1\n"


def write(tmp_path: Path, text: str, name: str = "cluster.ini") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_text(tmp_path: Path, text: str) -> ClusterConfig:
    return load(write(tmp_path, text))


# ----------------------------------------------------------------------------- shipped files


def test_shipped_goworld_ini() -> None:
    cfg = load(REPO_ROOT / "goworld.ini")
    assert cfg.path == REPO_ROOT / "goworld.ini"
    assert cfg.config_dir == REPO_ROOT
    assert cfg.deployment == config.DeploymentConfig(1, 1, 1)
    assert cfg.debug is False

    assert list(cfg.dispatchers) == [1]
    disp = cfg.dispatchers[1]
    assert disp.id == 1
    assert disp.listen_addr == Address("127.0.0.1", 13001)
    assert disp.advertise_addr == Address("127.0.0.1", 13001)
    assert disp.http_addr == Address("127.0.0.1", 23001)
    assert disp.log_file == "dispatcher1.log"
    assert disp.frozen_queue_max_bytes == 256 * 1024 * 1024

    assert list(cfg.games) == [1]
    game = cfg.games[1]
    assert game.boot_entity == "Account"
    assert game.save_interval == 600
    assert game.http_addr == Address("127.0.0.1", 25001)
    assert game.position_sync_interval_ms == 100
    assert game.ban_boot_entity is False
    assert game.log_file == "game1.log"

    assert list(cfg.gates) == [1]
    gate = cfg.gates[1]
    assert gate.listen_addr == Address("0.0.0.0", 14001)
    assert gate.http_addr == Address("127.0.0.1", 24001)
    assert gate.compress_connection is False
    assert gate.encrypt_connection is False
    assert gate.rsa_key == REPO_ROOT / "rsa.key"
    assert gate.rsa_certificate == REPO_ROOT / "rsa.crt"
    assert gate.heartbeat_check_interval == 120
    assert gate.legacy_client_protocol is None
    assert gate.log_file == "gate1.log"

    assert cfg.storage == config.StorageConfig(type="sqlite", path=REPO_ROOT / "goworld.db")
    assert cfg.kvdb == config.KVDBConfig(type="sqlite", path=REPO_ROOT / "goworld_kv.db")


def test_goworld_sample_layout() -> None:
    cfg = load(DATA / "goworld_sample.ini")
    assert cfg.deployment == config.DeploymentConfig(2, 2, 2)
    assert cfg.debug is True
    assert cfg.storage == config.StorageConfig(
        type="mongodb", url="mongodb://127.0.0.1:27017/", db="goworld"
    )
    assert cfg.kvdb == config.KVDBConfig(
        type="mongodb", url="mongodb://127.0.0.1:27017/goworld", db="goworld", collection="__kv__"
    )
    assert {n: str(d.listen_addr) for n, d in cfg.dispatchers.items()} == {
        1: "127.0.0.1:13001",
        2: "127.0.0.1:13002",
    }
    assert cfg.dispatchers[2].http_addr == Address("127.0.0.1", 23002)
    assert cfg.dispatchers[2].log_file == "dispatcher.log"
    assert list(cfg.games) == [1, 2]
    assert cfg.games[1].http_addr == Address("127.0.0.1", 25001)
    # [game2] is missing: it is [game_common] as is.
    assert cfg.games[2] == dataclasses.replace(
        cfg.games[1], id=2, http_addr=Address("127.0.0.1", 25000)
    )
    assert cfg.games[2].boot_entity == "Account"
    assert cfg.games[2].save_interval == 600
    assert {n: g.listen_addr.port for n, g in cfg.gates.items()} == {1: 14001, 2: 14002}
    assert cfg.gates[2].http_addr == Address("127.0.0.1", 24002)
    assert cfg.gates[1].rsa_key == DATA / "rsa.key"
    assert cfg.gates[1].log_file == "gate.log"


# ----------------------------------------------------------------------------- semantics


def test_defaults_without_any_role_section(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, DEPLOYMENT)
    assert cfg.debug is False
    disp, game, gate = cfg.dispatchers[1], cfg.games[1], cfg.gates[1]
    assert (str(disp.listen_addr), str(disp.advertise_addr), str(disp.http_addr)) == (
        "127.0.0.1:13000",
        "127.0.0.1:13000",
        "127.0.0.1:23000",
    )
    assert (disp.log_file, disp.log_stderr, disp.log_level) == ("dispatcher.log", True, "debug")
    assert game == config.GameConfig(
        id=1,
        boot_entity="Boot",
        save_interval=300,
        log_file="game.log",
        log_stderr=True,
        http_addr=Address("127.0.0.1", 25000),
        log_level="debug",
        gomaxprocs=0,
        position_sync_interval_ms=100,
        ban_boot_entity=False,
    )
    assert gate == config.GateConfig(
        id=1,
        listen_addr=Address("0.0.0.0", 14000),
        http_addr=Address("127.0.0.1", 24000),
        log_file="gate.log",
        log_stderr=True,
        log_level="debug",
        gomaxprocs=0,
        compress_connection=False,
        encrypt_connection=False,
        rsa_key=tmp_path / "rsa.key",
        rsa_certificate=tmp_path / "rsa.crt",
        heartbeat_check_interval=120,  # ours; GoWorld never checks (0)
        position_sync_interval_ms=100,
        legacy_client_protocol=None,
    )
    # [storage] absent: sqlite next to the config file; [kvdb] absent: disabled.
    assert cfg.storage == config.StorageConfig(type="sqlite", path=tmp_path / "goworld.db")
    assert cfg.kvdb is None


def test_common_then_own_keys(tmp_path: Path) -> None:
    cfg = load_text(
        tmp_path,
        DEPLOYMENT.replace("desired_games = 1", "desired_games = 3")
        + "[game_common]\nboot_entity = Account\nlog_level = info\nsave_interval = 60\n"
        + "[game2]\nlog_level = warn\nban_boot_entity = yes\n",
    )
    assert sorted(cfg.games) == [1, 2, 3]
    assert [g.id for g in cfg.games.values()] == [1, 2, 3]
    assert {g.boot_entity for g in cfg.games.values()} == {"Account"}
    assert [g.log_level for g in cfg.games.values()] == ["info", "warn", "info"]
    assert [g.ban_boot_entity for g in cfg.games.values()] == [False, True, False]
    assert cfg.games[2].save_interval == 60  # from common, untouched by [game2]


def test_missing_dispatcher_and_gate_sections_are_filled(tmp_path: Path) -> None:
    cfg = load_text(
        tmp_path,
        "[deployment]\ndesired_dispatchers = 3\ndesired_games = 1\ndesired_gates = 2\n"
        "[dispatcher_common]\nlog_level = error\n"
        "[dispatcher2]\nlisten_addr = 127.0.0.1:13002\n"
        "[gate_common]\ncompress_connection = on\n",
    )
    assert list(cfg.dispatchers) == [1, 2, 3]
    assert [str(d.listen_addr) for d in cfg.dispatchers.values()] == [
        "127.0.0.1:13000",
        "127.0.0.1:13002",
        "127.0.0.1:13000",
    ]
    assert {d.log_level for d in cfg.dispatchers.values()} == {"error"}
    assert list(cfg.gates) == [1, 2]
    assert all(g.compress_connection for g in cfg.gates.values())


def test_names_are_lower_cased(tmp_path: Path) -> None:
    cfg = load_text(
        tmp_path,
        "[DEPLOYMENT]\nDESIRED_DISPATCHERS = 1\nDesired_Games = 1\ndesired_gates = 1\n"
        "[Game_Common]\nBOOT_ENTITY = Account\n[GAME1]\nLog_Level = INFO\n[Debug]\nDEBUG = TRUE\n",
    )
    assert cfg.games[1].boot_entity == "Account"  # values keep their case...
    assert cfg.games[1].log_level == "info"  # ...except log levels, normalised
    assert cfg.debug is True


def test_sections_beyond_desired_are_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="goworld.config")
    cfg = load_text(
        tmp_path,
        DEPLOYMENT + "[dispatcher2]\nlisten_addr = 127.0.0.1:13002\n"
        "[game3]\nsave_interval = not checked\n[gate2]\n",
    )
    assert list(cfg.dispatchers) == [1] and list(cfg.games) == [1] and list(cfg.gates) == [1]
    warned = {r.getMessage() for r in caplog.records if r.name == "goworld.config"}
    assert len(warned) == 3
    for section, key in (("dispatcher2", "dispatchers"), ("game3", "games"), ("gate2", "gates")):
        assert any(f"[{section}]" in m and f"desired_{key} = 1" in m for m in warned), warned


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(s, True) for s in ("1", "true", "TRUE", "on", "On", "yes", "t", "T", "y")]
    + [(s, False) for s in ("0", "false", "False", "off", "OFF", "no", "f", "n", "N")],
)
def test_go_ini_booleans(tmp_path: Path, raw: str, expected: bool) -> None:
    cfg = load_text(tmp_path, DEPLOYMENT + f"[gate1]\ncompress_connection = {raw}\n")
    assert cfg.gates[1].compress_connection is expected


def test_comments_and_quotes(tmp_path: Path) -> None:
    cfg = load_text(
        tmp_path,
        "# hash comment\n; semicolon comment\n" + DEPLOYMENT + "[game1]\n"
        'boot_entity = "Avatar" ; inline comment\n# save_interval = x\nlog_file = `g.log`\n',
    )
    assert cfg.games[1].boot_entity == "Avatar"
    assert cfg.games[1].log_file == "g.log"
    assert cfg.games[1].save_interval == 300


def test_addresses(tmp_path: Path) -> None:
    cfg = load_text(
        tmp_path,
        DEPLOYMENT + "[gate1]\nlisten_addr = :14001\nhttp_addr = [::1]:24001\n"
        "[dispatcher1]\nlisten_addr = 127.0.0.1:0\nadvertise_addr = localhost:13001\n",
    )
    assert cfg.gates[1].listen_addr == Address("", 14001)
    assert cfg.gates[1].http_addr == Address("::1", 24001)
    assert str(cfg.gates[1].http_addr) == "[::1]:24001"
    assert str(cfg.gates[1].listen_addr) == ":14001"
    assert cfg.dispatchers[1].listen_addr.port == 0
    assert cfg.dispatchers[1].advertise_addr == Address("localhost", 13001)


def test_our_gate_and_dispatcher_keys(tmp_path: Path) -> None:
    cfg = load_text(
        tmp_path,
        DEPLOYMENT + "[gate1]\nlegacy_client_protocol = 2018\n"
        "[dispatcher1]\nfrozen_queue_max_bytes = 1024\n",
    )
    assert cfg.gates[1].legacy_client_protocol == 2018
    assert cfg.dispatchers[1].frozen_queue_max_bytes == 1024


def test_storage_and_kvdb_backends(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    cfg = load_text(
        tmp_path,
        DEPLOYMENT + "[storage]\ntype = sqlite\npath = data/entities.sqlite\n"
        "[kvdb]\ntype = redis\nurl = redis://127.0.0.1:6379\ndb = 3\n",
    )
    assert cfg.storage.path == tmp_path / "data" / "entities.sqlite"
    assert cfg.kvdb == config.KVDBConfig(type="redis", url="redis://127.0.0.1:6379", db="3")
    assert cfg.kvdb.redis_db == 3

    absolute = tmp_path / "abs.db"
    cfg = load_text(
        tmp_path,
        DEPLOYMENT
        + f"[storage]\ntype = REDIS\nurl = redis://h:1\n[kvdb]\ntype = sqlite\npath = {absolute}\n",
    )
    assert cfg.storage == config.StorageConfig(type="redis", url="redis://h:1", db="0")
    assert cfg.storage.redis_db == 0
    assert cfg.kvdb == config.KVDBConfig(type="sqlite", path=absolute)


def test_kvdb_disabled_and_start_nodes(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, DEPLOYMENT + "[kvdb]\ntype =\n")
    assert cfg.kvdb is None
    cfg = load_text(
        tmp_path,
        DEPLOYMENT + "[storage]\ntype = mongodb\nurl = mongodb://m/\nstart_nodes_2 = b:1\n"
        "start_nodes_1 = a:1\n[kvdb]\ntype = mongodb\nurl = mongodb://m/\ncollection = kv\n"
        "start_nodes_x = c:1\n",
    )
    assert cfg.storage.start_nodes == ("a:1", "b:1")
    assert cfg.kvdb is not None and cfg.kvdb.start_nodes == ("c:1",)
    assert cfg.kvdb.db == "goworld"


def test_immutable(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, DEPLOYMENT)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.debug = True  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.games[1].boot_entity = "X"  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg.games[2] = cfg.games[1]  # type: ignore[index]


def test_schema_matches_dataclasses() -> None:
    classes = {
        "deployment": config.DeploymentConfig,
        "dispatcher": config.DispatcherConfig,
        "game": config.GameConfig,
        "gate": config.GateConfig,
    }
    for kind, cls in classes.items():
        keys = {key for k, key, _, _ in config._SCHEMA if k == kind}
        assert keys == {f.name for f in dataclasses.fields(cls)} - {"id"}, kind
    for kind, cls in (("storage", config.StorageConfig), ("kvdb", config.KVDBConfig)):
        keys = {key for k, key, _, _ in config._SCHEMA if k.startswith(kind + ".")}
        assert keys | {"type", "start_nodes"} == {f.name for f in dataclasses.fields(cls)}


# ----------------------------------------------------------------------------- errors


ERRORS = [
    # (id, ini text, section, key, value)
    ("unknown-section", DEPLOYMENT + "[gateway1]\nx = 1\n", "gateway1", None, None),
    ("unknown-role-section", DEPLOYMENT + "[game]\n", "game", None, None),
    (
        "unknown-key",
        DEPLOYMENT + "[game_common]\nboot_entitty = Account\n",
        "game_common",
        "boot_entitty",
        "Account",
    ),
    (
        "unknown-deployment-key",
        DEPLOYMENT + "desired_bots = 5\n",
        "deployment",
        "desired_bots",
        "5",
    ),
    ("bad-int", DEPLOYMENT + "[game1]\nsave_interval = 10m\n", "game1", "save_interval", "10m"),
    (
        "bad-deployment-int",
        DEPLOYMENT.replace("desired_gates = 1", "desired_gates = two"),
        "deployment",
        "desired_gates",
        "two",
    ),
    (
        "zero-deployment",
        DEPLOYMENT.replace("desired_games = 1", "desired_games = 0"),
        "deployment",
        "desired_games",
        "0",
    ),
    (
        "bad-bool",
        DEPLOYMENT + "[gate_common]\nlog_stderr = maybe\n",
        "gate_common",
        "log_stderr",
        "maybe",
    ),
    ("bad-debug-bool", DEPLOYMENT + "[debug]\ndebug = 2\n", "debug", "debug", "2"),
    (
        "address-without-host",
        DEPLOYMENT + "[game1]\nhttp_addr = 25001\n",
        "game1",
        "http_addr",
        "25001",
    ),
    (
        "port-out-of-range",
        DEPLOYMENT + "[gate1]\nlisten_addr = 0.0.0.0:70000\n",
        "gate1",
        "listen_addr",
        "0.0.0.0:70000",
    ),
    (
        "port-not-a-number",
        DEPLOYMENT + "[gate1]\nhttp_addr = 127.0.0.1:http\n",
        "gate1",
        "http_addr",
        "127.0.0.1:http",
    ),
    (
        "advertise-without-host",
        DEPLOYMENT + "[dispatcher1]\nadvertise_addr = :13001\n",
        "dispatcher1",
        "advertise_addr",
        ":13001",
    ),
    (
        "bare-ipv6",
        DEPLOYMENT + "[gate1]\nhttp_addr = ::1:24001\n",
        "gate1",
        "http_addr",
        "::1:24001",
    ),
    (
        "negative-interval",
        DEPLOYMENT + "[gate1]\nheartbeat_check_interval = -1\n",
        "gate1",
        "heartbeat_check_interval",
        "-1",
    ),
    (
        "zero-save-interval",
        DEPLOYMENT + "[game1]\nsave_interval = 0\n",
        "game1",
        "save_interval",
        "0",
    ),
    (
        "sync-below-5",
        DEPLOYMENT + "[game1]\nposition_sync_interval_ms = 4\n",
        "game1",
        "position_sync_interval_ms",
        "4",
    ),
    (
        "bad-log-level",
        DEPLOYMENT + "[dispatcher1]\nlog_level = verbose\n",
        "dispatcher1",
        "log_level",
        "verbose",
    ),
    (
        "empty-boot-entity",
        DEPLOYMENT + "[game_common]\nboot_entity =\n",
        "game_common",
        "boot_entity",
        "",
    ),
    (
        "bad-legacy-protocol",
        DEPLOYMENT + "[gate1]\nlegacy_client_protocol = 2019\n",
        "gate1",
        "legacy_client_protocol",
        "2019",
    ),
    (
        "bad-frozen-queue",
        DEPLOYMENT + "[dispatcher_common]\nfrozen_queue_max_bytes = 0\n",
        "dispatcher_common",
        "frozen_queue_max_bytes",
        "0",
    ),
    (
        "missing-desired",
        "[deployment]\ndesired_dispatchers = 1\ndesired_gates = 1\n",
        "deployment",
        "desired_games",
        None,
    ),
    ("missing-storage-url", DEPLOYMENT + "[storage]\ntype = mongodb\n", "storage", "url", None),
    (
        "missing-kvdb-collection",
        DEPLOYMENT + "[kvdb]\ntype = mongodb\nurl = mongodb://h/\n",
        "kvdb",
        "collection",
        None,
    ),
    (
        "bad-storage-type",
        DEPLOYMENT + "[storage]\ntype = Cassandra\n",
        "storage",
        "type",
        "Cassandra",
    ),
    ("old-sql-type", DEPLOYMENT + "[kvdb]\ntype = sql\n", "kvdb", "type", "sql"),
    (
        "redis-cluster",
        DEPLOYMENT + "[kvdb]\ntype = redis_cluster\nstart_nodes_1 = a:1\n",
        "kvdb",
        "type",
        "redis_cluster",
    ),
    (
        "key-of-other-type",
        DEPLOYMENT + "[storage]\nurl = mongodb://h/\n",
        "storage",
        "url",
        "mongodb://h/",
    ),
    (
        "bad-redis-db",
        DEPLOYMENT + "[kvdb]\ntype = redis\nurl = redis://h\ndb = one\n",
        "kvdb",
        "db",
        "one",
    ),
    (
        "bad-mongodb-url",
        DEPLOYMENT + "[storage]\ntype = mongodb\nurl = http://h/\n",
        "storage",
        "url",
        "http://h/",
    ),
    (
        "key-with-kvdb-disabled",
        DEPLOYMENT + "[kvdb]\nurl = redis://h\n",
        "kvdb",
        "url",
        "redis://h",
    ),
    (
        "duplicate-key",
        DEPLOYMENT + "[game1]\nsave_interval = 1\nSAVE_INTERVAL = 2 ; the second\n",
        "game1",
        "save_interval",
        "2",
    ),
    ("redis-url-port", DEPLOYMENT + "[storage]\ntype = redis\nurl = redis://127.0.0.1:notaport\n",
     "storage", "url", "redis://127.0.0.1:notaport"),
    ("mongodb-db-name", DEPLOYMENT + "[storage]\ntype = mongodb\nurl = mongodb://h/\ndb = a.b/c\n",
     "storage", "db", "a.b/c"),
    ("mongodb-collection-name",
     DEPLOYMENT + "[kvdb]\ntype = mongodb\nurl = mongodb://h/\ncollection = $x\n", "kvdb",
     "collection", "$x"),
    (
        "huge-int",  # it once crashed the game: OverflowError, int too large to convert to float
        DEPLOYMENT + "[game1]\nsave_interval = " + "9" * 400 + "\n",
        "game1",
        "save_interval",
        "9" * 400,
    ),
    ("int-over-2**53", DEPLOYMENT + "[game1]\nsave_interval = 9007199254740993\n", "game1",
     "save_interval", "9007199254740993"),
    ("duplicate-section", DEPLOYMENT + "[gate1]\n[gate1]\n", "gate1", None, None),
    ("duplicate-section-case", DEPLOYMENT + "[gate1]\n[Gate1]\n", "gate1", None, None),
]


@pytest.mark.parametrize(
    ("text", "section", "key", "value"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_errors_name_file_section_key_value(
    tmp_path: Path, text: str, section: str, key: str | None, value: str | None
) -> None:
    path = write(tmp_path, text, name="bad_cluster.ini")
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert "bad_cluster.ini" in message
    assert f"[{section}]" in message
    assert info.value.path == str(path)
    assert info.value.section == section
    if key is not None:
        assert key in message
        assert info.value.key == key
    if value is not None:
        assert repr(value) in message
        assert info.value.value == value


def test_error_in_common_section_names_the_common_section(tmp_path: Path) -> None:
    path = write(
        tmp_path, DEPLOYMENT + "[game_common]\nsave_interval = x\n[game1]\nlog_level = info\n"
    )
    with pytest.raises(ConfigError, match=r"\[game_common\] save_interval = 'x'"):
        load(path)


def test_redis_cluster_is_not_supported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="redis_cluster is not supported"):
        load_text(tmp_path, DEPLOYMENT + "[storage]\ntype = redis_cluster\n")


def test_missing_deployment(tmp_path: Path) -> None:
    path = write(tmp_path, "[game1]\nboot_entity = Account\n", name="nodeploy.ini")
    with pytest.raises(ConfigError, match=r"nodeploy\.ini.*\[deployment\]"):
        load(path)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.ini"
    with pytest.raises(ConfigError, match=r"absent\.ini") as info:
        load(path)
    assert info.value.path == str(path)


@pytest.mark.parametrize(
    "text",
    [
        "desired_games = 1\n" + DEPLOYMENT,
        DEPLOYMENT + "[game1\n",
        DEPLOYMENT + "[game1]\njust a line\n",
    ],
    ids=["key-before-section", "bad-header", "no-equals"],
)
def test_syntax_errors_name_the_file(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match=r"syntax\.ini.*line \d+"):
        load(write(tmp_path, text, name="syntax.ini"))


def test_multi_line_values_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="multi-line"):
        load_text(tmp_path, DEPLOYMENT + "[game1]\nboot_entity = Account\n  Avatar\n")


# ----------------------------------------------------------------------------- files named


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two key pairs (a.key/a.crt, b.key/b.crt), a passphrase key, a junk file, a directory."""
    directory = tmp_path_factory.mktemp("keys")
    for name in ("a", "b"):
        make_key_pair(directory, name)
    subprocess.run(
        ["openssl", "genrsa", "-aes128", "-passout", "pass:secret",
         "-out", str(directory / "secret.key"), "2048"],
        check=True, capture_output=True,
    )  # fmt: skip
    (directory / "junk").write_text("not PEM\n")
    (directory / "adir").mkdir()
    return directory


def test_tls_key_pair_is_checked_when_encrypting(keys: Path) -> None:
    ini = write(
        keys,
        DEPLOYMENT + "[gate1]\nencrypt_connection = 1\nrsa_key = a.key\nrsa_certificate = a.crt\n",
        name="good.ini",
    )
    assert load(ini).gates[1].rsa_key == keys / "a.key"


TLS = "encrypt_connection = 1\n"
TLS_ERRORS = [
    # (id, gate sections, section, key, value, words in the message)
    ("missing-key", f"[gate1]\n{TLS}rsa_key = nokey.pem\nrsa_certificate = a.crt\n",
     "gate1", "rsa_key", "nokey.pem", "No such file or directory"),
    ("missing-cert", f"[gate1]\n{TLS}rsa_key = a.key\nrsa_certificate = sub/no.crt\n",
     "gate1", "rsa_certificate", "sub/no.crt", "No such file or directory"),
    ("unreadable-key", f"[gate1]\n{TLS}rsa_key = adir\nrsa_certificate = a.crt\n",
     "gate1", "rsa_key", "adir", "Is a directory"),
    ("set-in-common", f"[gate_common]\n{TLS}rsa_key = nokey.pem\n[gate1]\nrsa_certificate = a.crt\n",
     "gate_common", "rsa_key", "nokey.pem", "No such file or directory"),
    ("default", f"[gate1]\n{TLS}rsa_certificate = a.crt\n",
     "gate1", "rsa_key", "rsa.key", "rsa_key is not set: this is its default"),
    ("cert-not-pem", f"[gate1]\n{TLS}rsa_key = a.key\nrsa_certificate = junk\n",
     "gate1", "rsa_certificate", "junk", "not a PEM certificate"),
    ("key-is-a-cert", f"[gate1]\n{TLS}rsa_key = a.crt\nrsa_certificate = a.crt\n",
     "gate1", "rsa_key", "a.crt", "not a PEM private key"),
    ("key-not-pem", f"[gate1]\n{TLS}rsa_key = junk\nrsa_certificate = a.crt\n",
     "gate1", "rsa_key", "junk", "not a PEM private key"),
    ("mismatch", f"[gate_common]\n{TLS}rsa_certificate = a.crt\n[gate1]\nrsa_key = b.key\n",
     "gate1", "rsa_key", "b.key", "does not match the certificate"),
    ("passphrase", f"[gate1]\n{TLS}rsa_key = secret.key\nrsa_certificate = a.crt\n",
     "gate1", "rsa_key", "secret.key", "passphrase"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "section", "key", "value", "words"),
    [e[1:] for e in TLS_ERRORS],
    ids=[e[0] for e in TLS_ERRORS],
)
def test_tls_errors_name_file_section_key_value_and_path(
    keys: Path, text: str, section: str, key: str, value: str, words: str
) -> None:
    path = write(keys, DEPLOYMENT + text, "tls.ini")
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert (info.value.path, info.value.section, info.value.key, info.value.value) == (
        str(path),
        section,
        key,
        value,
    )
    assert message.startswith(f"{path} [{section}] {key} = {value!r}: "), message
    assert str(keys / value) in message  # the resolved path
    assert words in message


def test_tls_files_are_not_checked_without_encryption(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, DEPLOYMENT + "[gate1]\nrsa_key = nowhere/k\nencrypt_connection = 0\n")
    assert cfg.gates[1].rsa_key == tmp_path / "nowhere" / "k"


def test_check_files_false_skips_the_file_checks(tmp_path: Path) -> None:
    text = (
        DEPLOYMENT + "[gate1]\nencrypt_connection = 1\n[game1]\nlog_file = nologs/game.log\n"
        "[storage]\npath = nodir/goworld.db\n"
    )
    cfg = load(write(tmp_path, text), check_files=False)
    assert cfg.gates[1].encrypt_connection is True
    assert cfg.games[1].log_file == "nologs/game.log"
    with pytest.raises(ConfigError):
        load(write(tmp_path, text))


FILE_ERRORS = [
    # (id, ini text after [deployment], section, key, value, words in the message)
    ("log-dir-missing", "[game1]\nlog_file = logs/game1.log\n",
     "game1", "log_file", "logs/game1.log", "does not exist"),
    ("log-dir-missing-common", "[dispatcher_common]\nlog_file = logs/d.log\n",
     "dispatcher_common", "log_file", "logs/d.log", "does not exist"),
    ("log-file-is-a-directory", "[gate1]\nlog_file = adir\n",
     "gate1", "log_file", "adir", "is a directory"),
    ("log-dir-is-a-file", "[gate1]\nlog_file = afile/gate.log\n",
     "gate1", "log_file", "afile/gate.log", "is not a directory"),
    ("storage-dir-missing", "[storage]\ntype = sqlite\npath = data/goworld.db\n",
     "storage", "path", "data/goworld.db", "does not exist"),
    ("kvdb-dir-missing", "[kvdb]\ntype = sqlite\npath = data/kv.db\n",
     "kvdb", "path", "data/kv.db", "does not exist"),
    ("kvdb-is-a-directory", "[kvdb]\ntype = sqlite\npath = adir\n",
     "kvdb", "path", "adir", "is a directory"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "section", "key", "value", "words"),
    [e[1:] for e in FILE_ERRORS],
    ids=[e[0] for e in FILE_ERRORS],
)
def test_unusable_paths_name_file_section_key_value_and_path(
    tmp_path: Path, text: str, section: str, key: str, value: str, words: str
) -> None:
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("")
    path = write(tmp_path, DEPLOYMENT + text)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert (info.value.path, info.value.section, info.value.key, info.value.value) == (
        str(path),
        section,
        key,
        value,
    )
    assert str(tmp_path / value) in str(info.value)
    assert words in str(info.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_log_directory(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    logs.chmod(0o500)
    try:
        with pytest.raises(ConfigError, match=r"\[game1\] log_file = 'logs/g\.log'.*permission"):
            load_text(tmp_path, DEPLOYMENT + "[game1]\nlog_file = logs/g.log\n")
    finally:
        logs.chmod(0o700)


# ----------------------------------------------------------------------------- [lockstep]


def test_lockstep_sections_make_processes_whose_keys_override_the_base(tmp_path: Path) -> None:
    assert load_text(tmp_path, DEPLOYMENT).locksteps == {}
    assert load_text(tmp_path, DEPLOYMENT).lockstep is None
    cfg = load_text(
        tmp_path,
        DEPLOYMENT
        + "[lockstep]\nlisten_addr = 127.0.0.1:7001\ntick_hz = 20\nmax_players = 4\n"
        + "[lockstep2]\nlisten_addr = 127.0.0.1:7002\nhttp_addr = 127.0.0.1:7102\n"
        + "log_file = ls2.log\n",
    )
    one, two = cfg.locksteps[1], cfg.locksteps[2]
    assert cfg.lockstep is one and sorted(cfg.lockstep_procs) == [1, 2]
    assert (one.id, str(one.listen_addr), str(one.http_addr), one.tick_hz) == (
        1, "127.0.0.1:7001", "127.0.0.1:10002", 20,
    )
    assert (two.id, str(two.listen_addr), str(two.http_addr), two.tick_hz, two.max_players) == (
        2, "127.0.0.1:7002", "127.0.0.1:7102", 20, 4,
    )
    assert (one.log_file, two.log_file, one.ws_path, one.require_token) == (
        "lockstep.log", "ls2.log", "/ws", False,
    )


def test_lockstep_values_are_checked_where_they_are_written(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[lockstep\] max_players = '17'"):
        load_text(tmp_path, DEPLOYMENT + "[lockstep]\nmax_players = 17\n")
    with pytest.raises(ConfigError, match=r"\[lockstep2\] ws_path = 'ws'"):
        load_text(tmp_path, DEPLOYMENT + "[lockstep]\n[lockstep2]\nws_path = ws\n")
    with pytest.raises(ConfigError, match=r"\[lockstep0\]: unknown section"):
        load_text(tmp_path, DEPLOYMENT + "[lockstep0]\n")
    with pytest.raises(ConfigError, match=r"\[lockstep\] nope"):
        load_text(tmp_path, DEPLOYMENT + "[lockstep]\nnope = 1\n")


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
def test_a_file_that_is_not_utf8_names_the_line(tmp_path: Path, bom: bytes) -> None:
    path = tmp_path / "latin1.ini"
    path.write_bytes(bom + DEPLOYMENT.encode() + b"[game1]\n; caf\xe9\n")
    lines = DEPLOYMENT.count("\n") + 2
    with pytest.raises(ConfigError, match=rf"latin1\.ini.*line {lines}: not UTF-8 \(byte 0xe9\)"):
        load(path)
