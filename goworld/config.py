"""Read ``goworld.ini`` into frozen dataclasses: :func:`load` is the only entry point.

:func:`load` is pure: no globals, no caching, no I/O besides reading the one file and
checking the files it names (below). It follows GoWorld's ``engine/config`` (PROTOCOL.md §5)
and is stricter where GoWorld is lax.

Format (Python's :mod:`configparser`, no interpolation)
    Comments start with ``;`` or ``#``; an inline comment is `` ;`` (a space, then ``;``).
    Section and key names are lower-cased (and stripped) before matching. A value wrapped
    in ``"..."`` or backticks is unquoted, as go-ini does. A duplicate section or key
    (after lower-casing), a key before the first section, or a multi-line value is an error.

Semantics (as GoWorld)
    ``[deployment]`` is required; ``desired_dispatchers``, ``desired_games`` and
    ``desired_gates`` must all be integers in 1..65535.
    ``[dispatcherN]``, ``[gameN]`` and ``[gateN]`` start from the defaults, then take the
    keys of ``[dispatcher_common]``/``[game_common]``/``[gate_common]``, then their own.
    Every N in 1..desired gets a config, from the common section if its own is missing;
    a section with N beyond desired is ignored with a warning on ``goworld.config``.
    ``rsa_key``, ``rsa_certificate`` and the sqlite ``path`` are relative to the config
    file's directory and are returned absolute. ``log_file`` is kept as written (GoWorld's
    processes open it relative to their working directory, the config file's directory).

Stricter than GoWorld (each of these is a :class:`~goworld.errors.ConfigError`)
    * Unknown keys in ``[deployment]`` (GoWorld ignores them).
    * Any unparseable value. GoWorld silently falls back to a default (``save_interval``
      to 300) and accepts ``http_addr=25001``, on which Go's listen then fails; we need
      ``host:port`` (an empty host, ``:port``, means every interface for listen addresses).
    * Negative intervals, ``save_interval = 0`` and ``position_sync_interval_ms`` below 5
      (GoWorld raises it to 5 at run time); unknown ``log_level``.
    * A key that does not belong to the chosen ``[storage]``/``[kvdb]`` type.
    * Files the processes would fail on at start (``load(path, check_files=False)`` skips
      these checks, for callers that only need the addresses): a gate with
      ``encrypt_connection`` on whose ``rsa_key`` or ``rsa_certificate`` cannot be read, is
      not PEM, is a passphrase-protected key, or whose key does not match the certificate;
      a ``log_file`` or a sqlite ``path`` whose directory does not exist or cannot be
      written. The error names the section the value came from (``[gate_common]`` if it
      was set there) and the resolved path.

Our additions (documented in the shipped ``goworld.ini``)
    * ``[storage]`` is optional and defaults to ``type = sqlite``, ``path = goworld.db``.
      Types: ``sqlite`` (``path``), ``mongodb`` (``url`` required, ``db`` = goworld),
      ``redis`` (``url`` required, ``db`` = integer, default 0).
    * ``[kvdb]`` takes the same types (sqlite ``path`` defaults to ``goworld_kv.db``;
      mongodb also requires ``collection``). A missing section or an empty ``type``
      disables KVDB (``ClusterConfig.kvdb is None``).
    * ``start_nodes_<anything>`` keys are accepted in both sections for compatibility and
      kept in ``start_nodes``, but unused: ``type = redis_cluster`` is not supported.
    * Gate ``legacy_client_protocol`` = ``""`` (HEAD, default) | ``2017`` | ``2018``.
    * Gate bounds on one client or address (``client_max_packets_per_sec`` to
      ``ws_max_message_size``; README's config table, :mod:`gate.limits`), and
      ``heartbeat_check_interval`` defaults to 120 s, where GoWorld never checks.
    * Dispatcher ``frozen_queue_max_bytes`` (default 256 MiB): the most bytes queued for
      one frozen game during a hot reload.
    * Game limits on calls from clients (:mod:`game.call_limits`; 0 turns one off): the
      defaults of ``@rpc(client=True)`` methods ``client_rpc_rate`` (calls/s per client and
      method, 50), ``client_rpc_burst`` (100), ``client_rpc_max_arg_bytes`` (65536); a
      client with more than ``client_rpc_max_strikes`` (20) refused calls within
      ``client_rpc_strike_window`` seconds (10) is closed; ``client_rpc_max_clients``
      (50000) clients tracked at once.
    * Game ``service_failover_timeout`` (default 30 s; 0 = never): a game down that long
      has its service shards claimed and re-created by another game (:mod:`game.services`).
    * Dispatcher ``peer_max_backlog_bytes`` (default 64 MiB): the most bytes queued for one
      game or gate that is behind (then messages for it are dropped and logged), and
      ``pause_backlog_bytes`` (default 1 MiB): a game that far behind has the clients whose
      calls wait for it paused at their gates (:mod:`dispatcher.service`).
    * Every role's ``link_flush_interval_ms`` (default 2; 0 = every loop turn): a cluster
      stream (a dispatcher's to each peer, a game's or gate's to each dispatcher) writes at
      most once per interval, gathering what comes meanwhile (:mod:`goworld.cluster.streams`).
    * Dispatcher ``game_hang_timeout`` (default 3 s; 0 = never): a game that sends nothing
      that long is unhealthy and gets no new entities until it sends again;
      ``boot_wait_timeout`` (default 30 s): how long a new client waits for a healthy boot
      game before its gate closes it (:mod:`dispatcher.service`);
      ``game_reconnect_grace`` (default 5 s; 0 = none): a game whose stream ended without an
      orderly stop keeps its entities and clients that long, its messages queued, for the same
      process to reconnect (a new process ends the wait at once).
    * Dispatcher bounds on its gRPC port (:mod:`dispatcher.__main__`): ``max_cluster_connections``
      (1024) TCP connections at once, more are closed as they come; ``cluster_handshake_timeout``
      (10 s) to send the HTTP/2 preface (and finish TLS); ``cluster_idle_timeout`` (60 s) a
      connection may stay open without a stream.
    * ``[deployment]`` ``cluster_secret`` (at least 16 characters; never shown in an error) or
      ``cluster_secret_file`` (relative to the ini; its first line is the secret): what games
      and gates prove to the dispatchers they know (:mod:`goworld.cluster.auth`; the
      environment variable ``GOWORLD_CLUSTER_SECRET`` wins over both). Unset, ``goworld
      start`` makes one per run in ``.goworld/cluster.secret``; a dispatcher listening beyond
      loopback refuses to start without one of these, or mutual TLS:
    * ``[deployment]`` ``cluster_tls_ca``, ``cluster_tls_cert``, ``cluster_tls_key`` (all
      three or none; PEM, relative to the ini; with ``check_files`` they must load and the key
      match the certificate) and ``cluster_tls_server_name`` (the name in the dispatchers'
      certificates; empty: their ``advertise_addr`` host): mutual TLS on the cluster's gRPC
      streams (:mod:`goworld.cluster.tls`).
    * ``[deployment]`` ``ops_token`` (at least 16 characters; never shown in an error): the
      bearer token every process's ``/metrics`` and ``/status`` require on its ``http_addr``
      (the environment variable ``GOWORLD_OPS_TOKEN``, when not empty, wins). Unset, only
      loopback peers are served (:mod:`goworld.ops_http`).
    * Every role: ``log_repeat_limit`` (default 10; 0 = off) WARNING records per message
      template per ``log_repeat_interval`` seconds (default 10; ERROR 5x, INFO and DEBUG
      100x), then one summary line (``goworld.log.RepeatFilter``); ``log_backups`` (default 5, at most 100) generations of
      the log file and of the captured stderr that ``goworld start`` keeps (0: truncate, as
      GoWorld); ``log_max_bytes`` (default 0 = never) rotates the log file while running.
    * ``[supervisor]`` (optional): ``enabled`` (default true), ``restart_backoff`` (1 s, doubled
      per recent restart), ``restart_backoff_max`` (60 s), ``max_restarts`` (5) within
      ``restart_window`` seconds (300), then the supervisor gives up on that process
      (:mod:`goworld.supervisor`).

The key schema is the one table :data:`_SCHEMA`: adding a key is one row there plus one
field on the matching dataclass (a test checks they agree).
"""

from __future__ import annotations

import configparser
import logging
import os
import re
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from goworld.errors import ConfigError

__all__ = [
    "Address",
    "ClusterConfig",
    "DeploymentConfig",
    "DispatcherConfig",
    "GameConfig",
    "GateConfig",
    "KVDBConfig",
    "LockstepConfig",
    "StorageConfig",
    "SupervisorConfig",
    "load",
]

logger = logging.getLogger("goworld.config")


# ----------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True, slots=True)
class Address:
    """A ``host:port`` pair. An empty host (``:port``) means every interface."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class DeploymentConfig:
    desired_dispatchers: int
    desired_games: int
    desired_gates: int
    # ours: the cluster secret (goworld.cluster.auth); never in a repr or an error message
    cluster_secret: str = field(default="", kw_only=True, repr=False)  # "" = not set
    cluster_secret_file: Path | None = field(default=None, kw_only=True)  # absolute; first line
    # ours: mutual TLS between games/gates and dispatchers (goworld.cluster.tls); all three or none
    cluster_tls_ca: Path | None = field(default=None, kw_only=True)  # absolute
    cluster_tls_cert: Path | None = field(default=None, kw_only=True)
    cluster_tls_key: Path | None = field(default=None, kw_only=True)
    cluster_tls_server_name: str = field(default="", kw_only=True)  # "" = the advertise_addr host
    # ours: the bearer token of /metrics and /status (goworld.ops_http); "" = loopback only
    ops_token: str = field(default="", kw_only=True, repr=False)


@dataclass(frozen=True, slots=True)
class DispatcherConfig:
    id: int
    listen_addr: Address
    advertise_addr: Address
    http_addr: Address
    log_file: str
    log_stderr: bool
    log_level: str
    frozen_queue_max_bytes: int
    peer_max_backlog_bytes: int
    pause_backlog_bytes: int
    # ours, with defaults (keyword-only, so that they need not come last): the log's bounds
    log_repeat_limit: int = field(default=10, kw_only=True)  # WARNINGs per template per interval; 0 = off
    log_repeat_interval: int = field(default=10, kw_only=True)  # seconds
    log_backups: int = field(default=5, kw_only=True)  # generations kept by goworld start
    log_max_bytes: int = field(default=0, kw_only=True)  # rotate while running once larger; 0 = never
    # ours: a game that sends nothing this long is unhealthy (no new entities); 0 = never
    game_hang_timeout: int = field(default=3, kw_only=True)  # seconds
    # ours: how long a new client waits for a healthy boot game before it is closed
    boot_wait_timeout: int = field(default=30, kw_only=True)  # seconds
    # ours: a game whose stream broke is held this long for the same process to reconnect
    game_reconnect_grace: float = field(default=5.0, kw_only=True)  # seconds; 0 = none
    # ours: a cluster stream writes at most once per this many ms, gathering what comes meanwhile
    link_flush_interval_ms: int = field(default=2, kw_only=True)
    # ours: bounds on the gRPC port (connections at once; seconds to complete the HTTP/2
    # handshake; seconds a connection may stay without a stream)
    max_cluster_connections: int = field(default=1024, kw_only=True)
    cluster_handshake_timeout: float = field(default=10.0, kw_only=True)
    cluster_idle_timeout: float = field(default=60.0, kw_only=True)


@dataclass(frozen=True, slots=True)
class GameConfig:
    id: int
    boot_entity: str
    save_interval: int  # seconds
    log_file: str
    log_stderr: bool
    http_addr: Address
    log_level: str
    gomaxprocs: int  # accepted for compatibility; 0 = default
    position_sync_interval_ms: int
    ban_boot_entity: bool
    # ours, with defaults (keyword-only, so that they need not come last): the log's bounds
    log_repeat_limit: int = field(default=10, kw_only=True)  # WARNINGs per template per interval; 0 = off
    log_repeat_interval: int = field(default=10, kw_only=True)  # seconds
    log_backups: int = field(default=5, kw_only=True)  # generations kept by goworld start
    log_max_bytes: int = field(default=0, kw_only=True)  # rotate while running once larger; 0 = never
    # ours: limits on calls from clients (game.call_limits; 0 turns a limit off)
    client_rpc_rate: int = field(default=50, kw_only=True)  # calls/s per client and method
    client_rpc_burst: int = field(default=100, kw_only=True)  # calls at once
    client_rpc_max_arg_bytes: int = field(default=64 * 1024, kw_only=True)  # encoded arguments
    client_rpc_max_strikes: int = field(default=20, kw_only=True)  # refused calls per window, then kick
    client_rpc_strike_window: int = field(default=10, kw_only=True)  # seconds
    client_rpc_max_clients: int = field(default=50_000, kw_only=True)  # clients tracked at once
    # ours: a game down this long loses its service shards to the others (0 = never)
    service_failover_timeout: float = field(default=30.0, kw_only=True)  # seconds
    # ours: a cluster stream writes at most once per this many ms, gathering what comes meanwhile
    link_flush_interval_ms: int = field(default=2, kw_only=True)


@dataclass(frozen=True, slots=True)
class GateConfig:
    id: int
    listen_addr: Address
    http_addr: Address
    log_file: str
    log_stderr: bool
    log_level: str
    gomaxprocs: int
    compress_connection: bool
    encrypt_connection: bool
    rsa_key: Path
    rsa_certificate: Path
    heartbeat_check_interval: int  # seconds; 0 = never check (GoWorld's default)
    position_sync_interval_ms: int
    legacy_client_protocol: int | None  # None = HEAD, else 2017 or 2018
    # ours, with defaults (keyword-only, so that they need not come last): the log's bounds
    log_repeat_limit: int = field(default=10, kw_only=True)  # WARNINGs per template per interval; 0 = off
    log_repeat_interval: int = field(default=10, kw_only=True)  # seconds
    log_backups: int = field(default=5, kw_only=True)  # generations kept by goworld start
    log_max_bytes: int = field(default=0, kw_only=True)  # rotate while running once larger; 0 = never
    # ours: bounds on one client / one address (gate.limits; 0 turns a bound off)
    client_max_packets_per_sec: int = field(default=500, kw_only=True)
    client_packets_burst: int = field(default=1000, kw_only=True)
    client_max_bytes_per_sec: int = field(default=1024 * 1024, kw_only=True)
    client_bytes_burst: int = field(default=33 * 1024 * 1024, kw_only=True)
    client_over_limit_close_after: int = field(default=5, kw_only=True)  # seconds, then closed
    max_clients: int = field(default=10_000, kw_only=True)
    max_connections_per_ip: int = field(default=4096, kw_only=True)
    handshake_timeout: int = field(default=10, kw_only=True)  # s from accept to a first packet
    frame_timeout: int = field(default=60, kw_only=True)  # s a partial packet may take
    partial_frame_budget: int = field(default=64 * 1024 * 1024, kw_only=True)  # bytes, per gate
    ws_max_message_size: int = field(default=256 * 1024, kw_only=True)  # bytes
    client_call_max_bytes: int = field(default=1024 * 1024, kw_only=True)  # one call; 0 = packet cap
    link_pause_backlog_bytes: int = field(default=4 * 1024 * 1024, kw_only=True)  # hold every client
    # ours: a cluster stream writes at most once per this many ms, gathering what comes meanwhile
    link_flush_interval_ms: int = field(default=2, kw_only=True)


@dataclass(frozen=True, slots=True)
class StorageConfig:
    """Entity storage. Fields that do not apply to ``type`` keep their empty default."""

    type: str  # "sqlite" | "mongodb" | "redis"
    path: Path | None = None  # sqlite: absolute database file
    url: str = ""  # mongodb / redis
    db: str = ""  # mongodb database name, or redis DB index in decimal
    start_nodes: tuple[str, ...] = ()  # GoWorld redis_cluster leftovers, unused

    @property
    def redis_db(self) -> int:
        """The redis DB index (only meaningful when ``type == "redis"``)."""
        return int(self.db or "0")


@dataclass(frozen=True, slots=True)
class KVDBConfig:
    """KVDB. Fields that do not apply to ``type`` keep their empty default."""

    type: str  # "sqlite" | "mongodb" | "redis"
    path: Path | None = None
    url: str = ""
    db: str = ""
    collection: str = ""  # mongodb only
    start_nodes: tuple[str, ...] = ()

    @property
    def redis_db(self) -> int:
        """The redis DB index (only meaningful when ``type == "redis"``)."""
        return int(self.db or "0")


@dataclass(frozen=True, slots=True)
class SupervisorConfig:
    """``[supervisor]`` (ours): how ``goworld start``'s supervisor restarts a process that died
    unexpectedly (:mod:`goworld.supervisor`)."""

    enabled: bool = True  # goworld start launches the supervisor (start --no-supervise: not)
    restart_backoff: float = 1.0  # seconds before the first restart; doubled for each recent one
    restart_backoff_max: float = 60.0  # the longest wait before a restart
    max_restarts: int = 5  # restarts of one process within restart_window, then it gives up
    restart_window: float = 300.0  # seconds
    hang_timeout: float = 30.0  # seconds an up process may show no sign of life; 0 = never


@dataclass(frozen=True, slots=True)
class LockstepConfig:
    """``[lockstep]`` (ours): the lockstep (frame-sync) room service, docs/LOCKSTEP-DESIGN.md.

    The process is ``lockstep1``; it runs whenever the section is present. ``[lockstep2]``...
    add processes (their keys override ``[lockstep]``'s; the dispatchers place each new room
    on the one with the fewest players)."""

    listen_addr: Address  # KCP over UDP, like lockstepserver's -udp
    advertise_addr: Address | None  # the KCP address given to players; None = listen_addr
    http_addr: Address  # room API, WebSocket (ws_path), /metrics; like lockstepserver's -web
    ws_path: str
    web_dir: Path | None  # files served under /static/ on http_addr (absolute), None = none
    tick_hz: int
    max_rooms: int
    max_players: int  # per room, at most 16
    max_sessions: int  # KCP + WebSocket sessions at once
    ready_seconds: float  # a room starts with whoever is there this long after creation
    room_seconds: float  # a room ends this long after creation
    max_frames: int
    stale_seconds: float  # a member silent this long gets no frames until it speaks
    session_timeout: float  # a session silent this long is closed
    max_packets_per_sec: int  # per session, averaged over a second; more closes it (0 = off)
    require_token: bool  # rooms from the HTTP API refuse every Connect (ERR_Token)
    replay_dir: Path | None  # each ended room's input log is written here (absolute)
    log_file: str
    log_stderr: bool
    log_level: str
    log_repeat_limit: int = field(default=10, kw_only=True)
    log_repeat_interval: int = field(default=10, kw_only=True)
    log_backups: int = field(default=5, kw_only=True)
    log_max_bytes: int = field(default=0, kw_only=True)
    link_flush_interval_ms: int = field(default=2, kw_only=True)
    #: each room keeps a write-ahead journal in .goworld/lockstep<id>.rooms/ and comes back
    #: from it when the process is restarted after dying (goworld.lockstep.journal)
    room_journal: bool = field(default=True, kw_only=True)
    # per-host bounds (goworld.address.address_key: an IPv6 /64 counts as one host)
    max_sessions_per_ip: int = field(default=64, kw_only=True)  # 0 = no limit
    connect_timeout: float = field(default=10.0, kw_only=True)  # s from a session's start to its Connect
    http_max_rooms: int = field(default=100, kw_only=True)  # live rooms made by GET /create; 0 = off
    http_rooms_per_ip: int = field(default=4, kw_only=True)  # of those, per host; 0 = no limit
    id: int = field(default=1, kw_only=True)  # the process is lockstep<id>

    @property
    def public_kcp(self) -> Address:
        return self.advertise_addr or self.listen_addr


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    path: Path  # absolute path of the file read
    deployment: DeploymentConfig
    debug: bool
    dispatchers: Mapping[int, DispatcherConfig]  # ids 1..desired_dispatchers
    games: Mapping[int, GameConfig]  # ids 1..desired_games
    gates: Mapping[int, GateConfig]  # ids 1..desired_gates
    storage: StorageConfig
    kvdb: KVDBConfig | None  # None: KVDB disabled
    supervisor: SupervisorConfig = field(default_factory=SupervisorConfig)  # ours
    #: ours: the lockstep processes by id ([lockstep] is lockstep1, [lockstepN] more); none
    #: without such sections
    locksteps: Mapping[int, LockstepConfig] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def config_dir(self) -> Path:
        return self.path.parent

    @property
    def lockstep_procs(self) -> Mapping[int, LockstepConfig]:
        """The lockstep processes by id (``lockstep1``, ...); empty without ``[lockstep]``."""
        return self.locksteps

    @property
    def lockstep(self) -> LockstepConfig | None:
        """The first lockstep process's config (None: no lockstep service)."""
        return self.locksteps[min(self.locksteps)] if self.locksteps else None


# ----------------------------------------------------------------------------- value parsers
# A parser takes the raw string and returns the value or raises ValueError(reason).

_Parser = Callable[[str], Any]

_TRUE = frozenset({"1", "t", "true", "y", "yes", "on"})
_FALSE = frozenset({"0", "f", "false", "n", "no", "off"})
_LOG_LEVELS = ("debug", "info", "warn", "error", "panic", "fatal")
_INT_RE = re.compile(r"[+-]?[0-9]+")


def _bool(raw: str) -> bool:
    low = raw.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError("expected a boolean (1/0, true/false, on/off, yes/no, t/f, y/n)")


#: The largest integer any key takes when it names no bound of its own: every integer up to it
#: is exact as a float, and nothing larger is a sensible count, size or interval (a 400-digit
#: save_interval crashed the game, OverflowError, where this error names the key instead).
INT_MAX = 2**53


def _int(lo: int, hi: int | None = None) -> _Parser:
    top = INT_MAX if hi is None else hi

    def parse(raw: str) -> int:
        if not _INT_RE.fullmatch(raw) or len(raw) > 40:
            raise ValueError("expected an integer")
        value = int(raw)
        if value < lo or value > top:
            raise ValueError(f"must be in {lo}..{top}")
        return value

    return parse


def _seconds(lo: float) -> _Parser:
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError("expected a number of seconds") from None
        if not value >= lo or value == float("inf"):
            raise ValueError(f"must be a finite number of seconds, at least {lo:g}")
        return value

    return parse


def _text(raw: str) -> str:
    if not raw:
        raise ValueError("must not be empty")
    return raw


def _path(raw: str) -> Path:
    return Path(_text(raw))  # made absolute against the config dir by _parse_keys


def _optional_path(raw: str) -> Path | None:
    return Path(raw) if raw else None


#: The shortest cluster secret accepted (characters; goworld.cluster.auth).
CLUSTER_SECRET_MIN_LENGTH = 16
#: Keys whose value no error message shows.
_SECRET_KEYS = frozenset({"cluster_secret", "ops_token"})


def _host_name(raw: str) -> str:
    if any(c.isspace() or c in "/:[]" for c in raw):
        raise ValueError("expected a host name (or empty)")
    return raw


def _secret(raw: str) -> str:
    if raw and len(raw) < CLUSTER_SECRET_MIN_LENGTH:
        raise ValueError(f"must be at least {CLUSTER_SECRET_MIN_LENGTH} characters (or empty)")
    return raw


def _ops_token(raw: str) -> str:
    if any(not 33 <= ord(c) <= 126 for c in raw):
        raise ValueError("must be printable ASCII without spaces (it is sent in an HTTP header)")
    return _secret(raw)


def _log_level(raw: str) -> str:
    if raw.lower() not in _LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(_LOG_LEVELS)}")
    return raw.lower()


def _addr(*, dial: bool) -> _Parser:
    def parse(raw: str) -> Address:
        host, sep, port = raw.rpartition(":")
        if not sep:
            raise ValueError("expected host:port")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        elif ":" in host:
            raise ValueError("an IPv6 host must be written [host]:port")
        if any(c.isspace() or c in "[]" for c in host):
            raise ValueError("bad host")
        if dial and not host:
            raise ValueError("a host is required")
        if not port.isdigit() or not (1 if dial else 0) <= int(port) <= 65535:
            raise ValueError(f"port must be an integer in {1 if dial else 0}..65535")
        return Address(host, int(port))

    return parse


def _url(*schemes: str) -> _Parser:
    def parse(raw: str) -> str:
        if not raw.startswith(tuple(s + "://" for s in schemes)):
            raise ValueError(f"expected a {' or '.join(s + '://' for s in schemes)} URL")
        if raw.startswith(("redis://", "rediss://")):  # one host (a MongoDB URL may list several)
            try:
                _ = urlsplit(raw).port  # raises on a port that is not a number
            except ValueError as exc:
                raise ValueError(f"not a usable URL ({exc})") from None
        return raw

    return parse


def _mongo_db(raw: str) -> str:
    """A MongoDB database name (the server's rules: no ``/\\. "$``, at most 63 bytes)."""
    if not raw or any(c in '/\\. "$\0' for c in raw) or len(raw.encode()) > 63:
        raise ValueError('expected a MongoDB database name: 1 to 63 bytes, none of / \\ . " $ or a space')
    return raw


def _mongo_collection(raw: str) -> str:
    """A MongoDB collection name (no ``$``, not ``system.``-prefixed, not empty)."""
    if not raw or "$" in raw or "\0" in raw or raw.startswith("system."):
        raise ValueError("expected a MongoDB collection name: not empty, no $, not system.*")
    return raw


def _optional_addr(raw: str) -> Address | None:
    return _addr(dial=True)(raw) if raw else None


def _ws_path(raw: str) -> str:
    if not raw.startswith("/") or any(c.isspace() or c in "?#" for c in raw):
        raise ValueError("expected a path such as /ws")
    return raw


def _legacy_protocol(raw: str) -> int | None:
    if raw in ("", "2017", "2018"):
        return int(raw) if raw else None
    raise ValueError('expected "" (HEAD), 2017 or 2018')


# ----------------------------------------------------------------------------- the schema
# (section kind, key, parser, default as raw ini text; None = required)

_Row = tuple[str, str, _Parser, str | None]
_LISTEN, _DIAL = _addr(dial=False), _addr(dial=True)
_SECONDS, _SYNC_MS, _COUNT = _int(0), _int(5), _int(1, 65535)
_MONGODB_URL, _REDIS_URL = _url("mongodb", "mongodb+srv"), _url("redis", "rediss", "unix")


def _redis_db(raw: str) -> str:
    return str(_int(0)(raw))


_SCHEMA: tuple[_Row, ...] = (
    ("deployment", "desired_dispatchers", _COUNT, None),
    ("deployment", "desired_games", _COUNT, None),
    ("deployment", "desired_gates", _COUNT, None),
    ("deployment", "cluster_secret", _secret, ""),  # ours
    ("deployment", "cluster_secret_file", _optional_path, ""),  # ours
    ("deployment", "cluster_tls_ca", _optional_path, ""),  # ours, and the next three
    ("deployment", "cluster_tls_cert", _optional_path, ""),
    ("deployment", "cluster_tls_key", _optional_path, ""),
    ("deployment", "cluster_tls_server_name", _host_name, ""),
    ("deployment", "ops_token", _ops_token, ""),  # ours
    ("debug", "debug", _bool, "false"),
    ("dispatcher", "listen_addr", _LISTEN, "127.0.0.1:13000"),
    ("dispatcher", "advertise_addr", _DIAL, "127.0.0.1:13000"),
    ("dispatcher", "http_addr", _LISTEN, "127.0.0.1:23000"),
    ("dispatcher", "log_file", _text, "dispatcher.log"),
    ("dispatcher", "log_stderr", _bool, "true"),
    ("dispatcher", "log_level", _log_level, "debug"),
    ("dispatcher", "log_repeat_limit", _int(0), "10"),  # ours
    ("dispatcher", "log_repeat_interval", _int(1), "10"),  # ours
    ("dispatcher", "log_backups", _int(0, 100), "5"),  # ours
    ("dispatcher", "log_max_bytes", _int(0), "0"),  # ours
    ("dispatcher", "frozen_queue_max_bytes", _int(1), str(256 * 1024 * 1024)),  # ours
    ("dispatcher", "peer_max_backlog_bytes", _int(1024 * 1024), str(64 * 1024 * 1024)),  # ours
    ("dispatcher", "pause_backlog_bytes", _int(4096), str(1024 * 1024)),  # ours
    ("dispatcher", "game_hang_timeout", _int(0), "3"),  # ours; 0 = never
    ("dispatcher", "game_reconnect_grace", _seconds(0.0), "5"),  # ours; 0 = none
    ("dispatcher", "max_cluster_connections", _int(8), "1024"),  # ours
    ("dispatcher", "cluster_handshake_timeout", _seconds(0.1), "10"),  # ours
    ("dispatcher", "cluster_idle_timeout", _seconds(1.0), "60"),  # ours
    ("dispatcher", "boot_wait_timeout", _int(1), "30"),  # ours
    ("dispatcher", "link_flush_interval_ms", _int(0, 1000), "2"),  # ours; 0 = every loop turn
    ("game", "boot_entity", _text, "Boot"),
    ("game", "save_interval", _int(1), "300"),
    ("game", "log_file", _text, "game.log"),
    ("game", "log_stderr", _bool, "true"),
    ("game", "http_addr", _LISTEN, "127.0.0.1:25000"),
    ("game", "log_level", _log_level, "debug"),
    ("game", "log_repeat_limit", _int(0), "10"),  # ours
    ("game", "log_repeat_interval", _int(1), "10"),  # ours
    ("game", "log_backups", _int(0, 100), "5"),  # ours
    ("game", "log_max_bytes", _int(0), "0"),  # ours
    ("game", "gomaxprocs", _int(0), "0"),
    ("game", "position_sync_interval_ms", _SYNC_MS, "100"),
    ("game", "ban_boot_entity", _bool, "false"),
    ("game", "client_rpc_rate", _int(0), "50"),  # ours, and below
    ("game", "client_rpc_burst", _int(1), "100"),
    ("game", "client_rpc_max_arg_bytes", _int(0), str(64 * 1024)),
    ("game", "client_rpc_max_strikes", _int(0), "20"),
    ("game", "client_rpc_strike_window", _int(1), "10"),
    ("game", "client_rpc_max_clients", _int(1), "50000"),
    ("game", "service_failover_timeout", _seconds(0.0), "30"),  # ours; 0 = never
    ("game", "link_flush_interval_ms", _int(0, 1000), "2"),  # ours; 0 = every loop turn
    ("gate", "listen_addr", _LISTEN, "0.0.0.0:14000"),
    ("gate", "http_addr", _LISTEN, "127.0.0.1:24000"),
    ("gate", "log_file", _text, "gate.log"),
    ("gate", "log_stderr", _bool, "true"),
    ("gate", "log_level", _log_level, "debug"),
    ("gate", "log_repeat_limit", _int(0), "10"),  # ours
    ("gate", "log_repeat_interval", _int(1), "10"),  # ours
    ("gate", "log_backups", _int(0, 100), "5"),  # ours
    ("gate", "log_max_bytes", _int(0), "0"),  # ours
    ("gate", "gomaxprocs", _int(0), "0"),
    ("gate", "compress_connection", _bool, "false"),
    ("gate", "encrypt_connection", _bool, "false"),
    ("gate", "rsa_key", _path, "rsa.key"),
    ("gate", "rsa_certificate", _path, "rsa.crt"),
    ("gate", "heartbeat_check_interval", _SECONDS, "120"),  # GoWorld: 0 (never)
    ("gate", "position_sync_interval_ms", _SYNC_MS, "100"),
    ("gate", "legacy_client_protocol", _legacy_protocol, ""),  # ours
    ("gate", "client_max_packets_per_sec", _int(0), "500"),  # ours, and below
    ("gate", "client_packets_burst", _int(1), "1000"),
    ("gate", "client_max_bytes_per_sec", _int(0), str(1024 * 1024)),
    ("gate", "client_bytes_burst", _int(1), str(33 * 1024 * 1024)),
    ("gate", "client_over_limit_close_after", _int(1), "5"),
    ("gate", "max_clients", _int(0), "10000"),
    ("gate", "max_connections_per_ip", _int(0), "4096"),
    ("gate", "handshake_timeout", _SECONDS, "10"),
    ("gate", "frame_timeout", _SECONDS, "60"),
    ("gate", "partial_frame_budget", _int(0), str(64 * 1024 * 1024)),
    ("gate", "ws_max_message_size", _int(0), str(256 * 1024)),
    ("gate", "client_call_max_bytes", _int(0), str(1024 * 1024)),
    ("gate", "link_pause_backlog_bytes", _int(0), str(4 * 1024 * 1024)),  # ours; 0 = off
    ("gate", "link_flush_interval_ms", _int(0, 1000), "2"),  # ours; 0 = every loop turn
    ("supervisor", "enabled", _bool, "true"),  # ours, the whole section
    ("supervisor", "restart_backoff", _seconds(0.0), "1"),
    ("supervisor", "restart_backoff_max", _seconds(0.0), "60"),
    ("supervisor", "max_restarts", _int(0), "5"),
    ("supervisor", "restart_window", _seconds(1.0), "300"),
    ("supervisor", "hang_timeout", _seconds(0.0), "30"),  # 0 = no hang check
    ("lockstep", "listen_addr", _LISTEN, "127.0.0.1:10086"),  # ours, the whole section
    ("lockstep", "advertise_addr", _optional_addr, ""),
    ("lockstep", "http_addr", _LISTEN, "127.0.0.1:10002"),
    ("lockstep", "ws_path", _ws_path, "/ws"),
    ("lockstep", "web_dir", _optional_path, ""),
    ("lockstep", "tick_hz", _int(1, 1000), "30"),
    ("lockstep", "max_rooms", _int(1), "1000"),
    ("lockstep", "max_players", _int(1, 16), "8"),
    ("lockstep", "max_sessions", _int(1), "10000"),
    ("lockstep", "ready_seconds", _seconds(0.0), "20"),
    ("lockstep", "room_seconds", _seconds(1.0), "300"),
    ("lockstep", "max_frames", _int(1), "5500"),
    ("lockstep", "stale_seconds", _seconds(0.1), "2"),
    ("lockstep", "session_timeout", _seconds(0.5), "5"),
    ("lockstep", "max_packets_per_sec", _int(0), "200"),
    ("lockstep", "require_token", _bool, "false"),
    ("lockstep", "replay_dir", _optional_path, ""),
    ("lockstep", "room_journal", _bool, "true"),
    ("lockstep", "max_sessions_per_ip", _int(0), "64"),
    ("lockstep", "connect_timeout", _seconds(0.5), "10"),
    ("lockstep", "http_max_rooms", _int(0), "100"),
    ("lockstep", "http_rooms_per_ip", _int(0), "4"),
    ("lockstep", "log_file", _text, "lockstep.log"),
    ("lockstep", "log_stderr", _bool, "true"),
    ("lockstep", "log_level", _log_level, "info"),
    ("lockstep", "log_repeat_limit", _int(0), "10"),
    ("lockstep", "log_repeat_interval", _int(1), "10"),
    ("lockstep", "log_backups", _int(0, 100), "5"),
    ("lockstep", "log_max_bytes", _int(0), "0"),
    ("lockstep", "link_flush_interval_ms", _int(0, 1000), "2"),
    ("storage.sqlite", "path", _path, "goworld.db"),  # ours
    ("storage.mongodb", "url", _MONGODB_URL, None),
    ("storage.mongodb", "db", _mongo_db, "goworld"),
    ("storage.redis", "url", _REDIS_URL, None),
    ("storage.redis", "db", _redis_db, "0"),
    ("kvdb.sqlite", "path", _path, "goworld_kv.db"),  # ours
    ("kvdb.mongodb", "url", _MONGODB_URL, None),
    ("kvdb.mongodb", "db", _mongo_db, "goworld"),
    ("kvdb.mongodb", "collection", _mongo_collection, None),
    ("kvdb.redis", "url", _REDIS_URL, None),
    ("kvdb.redis", "db", _redis_db, "0"),
)

_ROLES: dict[str, tuple[type[Any], str]] = {
    "dispatcher": (DispatcherConfig, "desired_dispatchers"),
    "game": (GameConfig, "desired_games"),
    "gate": (GateConfig, "desired_gates"),
}
_BACKEND_TYPES = ("sqlite", "mongodb", "redis")
_PLAIN_SECTIONS = frozenset(
    {
        "deployment", "debug", "storage", "kvdb", "supervisor", "lockstep",
        *(f"{role}_common" for role in _ROLES),
    }
)
_ROLE_SECTION_RE = re.compile(r"(dispatcher|game|gate)([1-9][0-9]*)")
_LOCKSTEP_SECTION_RE = re.compile(r"lockstep([1-9][0-9]{0,3})")
_START_NODES = "start_nodes_"
_SYNTAX_ERRORS: dict[type[Exception], str] = {
    configparser.DuplicateSectionError: "duplicate section",
    configparser.DuplicateOptionError: "duplicate key",
    configparser.MissingSectionHeaderError: "a key outside any section",
}

# Raw values with their origin: key -> (section the value came from, raw text).
_Raw = dict[str, tuple[str, str]]
# Where each parsed value came from, as ConfigError keywords (path, section, key, value),
# plus "default": True when no section set the key.
_Origins = dict[str, dict[str, Any]]


# ----------------------------------------------------------------------------- loading


def load(path: str | Path, *, check_files: bool = True) -> ClusterConfig:
    """Read and validate the config file at ``path``.

    With ``check_files`` (the default), the files the config names are checked as well: the
    TLS key pair of every gate with ``encrypt_connection`` on, and the directories of every
    ``log_file`` and sqlite ``path`` (see the module docstring).

    Raises:
        ConfigError: the file cannot be read, or it is invalid; the message names the
            file and, where they apply, the section, key and value.
    """
    path = Path(path).absolute()
    sections = _read_sections(path)
    for name in sections:
        if not (
            _ROLE_SECTION_RE.fullmatch(name)
            or _LOCKSTEP_SECTION_RE.fullmatch(name)
            or name in _PLAIN_SECTIONS
        ):
            raise ConfigError("unknown section", path=str(path), section=name)
    if "deployment" not in sections:
        raise ConfigError("missing required section [deployment]", path=str(path))
    deployment_values, deployment_origins = _parse_keys(path, "deployment", "deployment", sections)
    deployment = DeploymentConfig(**deployment_values)
    files = _FileChecker(path) if check_files else None
    _check_cluster_auth(path, deployment, deployment_origins, files)
    roles = {
        role: MappingProxyType(_role_configs(path, role, sections, deployment, files))
        for role in _ROLES
    }
    return ClusterConfig(
        path=path,
        deployment=deployment,
        debug=_parse_keys(path, "debug", "debug", sections)[0]["debug"],
        dispatchers=roles["dispatcher"],
        games=roles["game"],
        gates=roles["gate"],
        storage=StorageConfig(**_backend(path, "storage", sections, "sqlite", files)),
        kvdb=KVDBConfig(**kvdb) if (kvdb := _backend(path, "kvdb", sections, "", files)) else None,
        supervisor=SupervisorConfig(**_parse_keys(path, "supervisor", "supervisor", sections)[0]),
        locksteps=_locksteps(path, sections, files),
    )


def _locksteps(
    path: Path, sections: Mapping[str, _Raw], files: _FileChecker | None
) -> Mapping[int, LockstepConfig]:
    """The lockstep processes: ``lockstep1`` for ``[lockstep]``, and ``lockstepN`` for every
    ``[lockstepN]``, whose keys override ``[lockstep]``'s (as ``[gateN]`` over
    ``[gate_common]``)."""
    ids = {int(m[1]) for name in sections if (m := _LOCKSTEP_SECTION_RE.fullmatch(name))}
    if "lockstep" in sections:
        ids.add(1)
    _parse_keys(path, "lockstep", "lockstep", sections)  # errors in [lockstep] itself
    base = sections.get("lockstep", {})
    configs = {}
    for n in sorted(ids):
        values, origins = _parse_keys(path, "lockstep", f"lockstep{n}", sections, base)
        if files is not None:
            files.log_file(values["log_file"], origins["log_file"])
        configs[n] = LockstepConfig(**values, id=n)
    return MappingProxyType(configs)


_CLUSTER_TLS_KEYS = ("cluster_tls_ca", "cluster_tls_cert", "cluster_tls_key")


def _check_cluster_auth(
    path: Path, deployment: DeploymentConfig, origins: _Origins, files: _FileChecker | None
) -> None:
    """One secret at most; mutual TLS with all three files or none (and those files load)."""
    where = {"path": str(path), "section": "deployment"}
    if deployment.cluster_secret and deployment.cluster_secret_file is not None:
        raise ConfigError(
            "set cluster_secret or cluster_secret_file, not both", key="cluster_secret_file", **where
        )
    tls = {key: getattr(deployment, key) for key in _CLUSTER_TLS_KEYS}
    missing = [key for key, file in tls.items() if file is None]
    if missing and len(missing) < len(tls):
        raise ConfigError(
            f"mutual TLS needs {', '.join(_CLUSTER_TLS_KEYS)}: {', '.join(missing)} not set",
            key=missing[0], **where,
        )
    if missing and deployment.cluster_tls_server_name:
        raise ConfigError(
            "cluster_tls_server_name without cluster_tls_cert (mutual TLS is off)",
            key="cluster_tls_server_name", **where,
        )
    if not missing and files is not None:
        files.cluster_tls(tls, origins)


def _read_sections(path: Path) -> dict[str, _Raw]:
    """Parse the file into {lower-cased section: {lower-cased key: (section, raw value)}}."""
    parser = configparser.ConfigParser(
        interpolation=None,
        comment_prefixes=(";", "#"),
        inline_comment_prefixes=(";",),
        strict=True,
        empty_lines_in_values=False,
        default_section="\n",  # cannot occur in a file: no implicit DEFAULT inheritance
    )
    where = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror or exc}", path=where) from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        offset = exc.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
        lineno = data[:offset].count(b"\n") + 1
        raise ConfigError(
            f"line {lineno}: not UTF-8 (byte 0x{data[offset]:02x}): save the file as UTF-8", path=where
        ) from exc
    try:
        parser.read_string(text, source=where)
    except configparser.Error as exc:
        section, key = getattr(exc, "section", None), getattr(exc, "option", None)
        lineno = getattr(exc, "lineno", None) or getattr(exc, "errors", [(0, "")])[0][0]
        what = _SYNTAX_ERRORS.get(type(exc), "cannot parse this line")
        value = None
        if isinstance(exc, configparser.DuplicateOptionError) and lineno:
            line = text.splitlines()[lineno - 1] if lineno <= len(text.splitlines()) else ""
            value = _unquote(re.split(r"[=:]", line, maxsplit=1)[-1].split(";", 1)[0].strip())
        raise ConfigError(
            f"line {lineno}: {what}",
            path=where,
            section=section and section.strip().lower(),
            key=key,
            value=value,
        ) from exc

    sections: dict[str, _Raw] = {}
    for header in parser.sections():
        name = header.strip().lower()
        if name in sections:
            raise ConfigError(
                "duplicate section (names are case-insensitive)", path=where, section=name
            )
        raw: _Raw = {}
        for key, value in parser.items(header, raw=True):
            if "\n" in value:
                raise ConfigError(
                    "multi-line values are not supported",
                    path=where,
                    section=name,
                    key=key,
                    value=value,
                )
            raw[key] = (name, _unquote(value.strip()))
        sections[name] = raw
    return sections


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in '"`':
        return value[1:-1]
    return value


def _parse_keys(
    path: Path, kind: str, section: str, sections: Mapping[str, _Raw], base: _Raw | None = None
) -> tuple[dict[str, Any], _Origins]:
    """Parse ``section`` (merged over ``base``) with the schema rows of ``kind``.

    Returns the values and where each came from.
    """
    rows = {key: (parser, default) for k, key, parser, default in _SCHEMA if k == kind}
    raw: _Raw = dict(base or {})
    for key, entry in sections.get(section, {}).items():
        if key not in rows:
            hint = f" for type = {kind.partition('.')[2]}" if "." in kind else ""
            raise ConfigError(
                f"unknown key{hint}", path=str(path), section=entry[0], key=key, value=entry[1]
            )
        raw[key] = entry
    values: dict[str, Any] = {}
    origins: _Origins = {}
    for key, (parser, default) in rows.items():
        origin, text = raw.get(key, (section, default))
        if text is None:
            raise ConfigError("missing required key", path=str(path), section=origin, key=key)
        origins[key] = {
            "path": str(path),
            "section": origin,
            "key": key,
            "value": text,
            "default": key not in raw,
        }
        try:
            value = parser(text)
        except ValueError as exc:
            shown = "(hidden)" if key in _SECRET_KEYS else text
            raise ConfigError(
                str(exc), path=str(path), section=origin, key=key, value=shown
            ) from exc
        if isinstance(value, Path) and not value.is_absolute():
            value = path.parent / value
        values[key] = value
    return values, origins


def _role_configs(
    path: Path,
    role: str,
    sections: Mapping[str, _Raw],
    deployment: DeploymentConfig,
    files: _FileChecker | None,
) -> dict[int, Any]:
    """One config per id 1..desired: defaults < ``[<role>_common]`` < ``[<role>N]``."""
    cls, desired_key = _ROLES[role]
    desired: int = getattr(deployment, desired_key)
    for name in sections:
        match = _ROLE_SECTION_RE.fullmatch(name)
        if match and match[1] == role and int(match[2]) > desired:
            logger.warning(
                "%s: section [%s] is ignored because [deployment] %s = %d",
                path,
                name,
                desired_key,
                desired,
            )
    common = f"{role}_common"
    _parse_keys(path, role, common, sections)  # report errors in the common section itself
    base = sections.get(common, {})
    configs = {}
    for n in range(1, desired + 1):
        values, origins = _parse_keys(path, role, f"{role}{n}", sections, base)
        if files is not None:
            files.log_file(values["log_file"], origins["log_file"])
            if role == "gate" and values["encrypt_connection"]:
                files.tls_pair(values, origins)
        configs[n] = cls(id=n, **values)
    return configs


def _backend(
    path: Path,
    section: str,
    sections: Mapping[str, _Raw],
    default_type: str,
    files: _FileChecker | None,
) -> dict[str, Any]:
    """Keyword arguments for StorageConfig/KVDBConfig; empty if the type is ``""``."""
    raw = dict(sections.get(section, {}))
    origin, written = raw.pop("type", (section, default_type))
    type_ = written.lower()
    start_nodes = tuple(raw.pop(k)[1] for k in sorted(raw) if k.startswith(_START_NODES))
    where = {"path": str(path), "section": origin, "key": "type", "value": written}
    if type_ == "redis_cluster":
        raise ConfigError("type redis_cluster is not supported", **where)
    if type_ == "" and default_type == "":
        if raw:
            key, (_, value) = next(iter(raw.items()))
            raise ConfigError(
                "unknown key for a disabled kvdb (type is empty)",
                path=str(path),
                section=section,
                key=key,
                value=value,
            )
        return {}
    if type_ not in _BACKEND_TYPES:
        raise ConfigError(f"unknown type, expected one of {', '.join(_BACKEND_TYPES)}", **where)
    values, origins = _parse_keys(path, f"{section}.{type_}", section, {section: raw})
    if files is not None and type_ == "sqlite":
        files.sqlite_path(values["path"], origins["path"])
    return {"type": type_, "start_nodes": start_nodes, **values}


# ----------------------------------------------------------------------------- files named


class _KeyIsEncrypted(Exception):
    pass


def _no_passphrase() -> bytes:
    raise _KeyIsEncrypted  # instead of OpenSSL prompting on the terminal


class _FileChecker:
    """Checks the files a config names, each once per :func:`load`."""

    def __init__(self, path: Path) -> None:
        self.config_dir = path.parent
        self.checked: set[tuple[Path, ...]] = set()

    def _error(self, message: str, origin: Mapping[str, Any]) -> ConfigError:
        if origin["default"]:
            message += f" ({origin['key']} is not set: this is its default)"
        return ConfigError(
            message,
            path=origin["path"],
            section=origin["section"],
            key=origin["key"],
            value=origin["value"],
        )

    def _writable(self, file: Path, origin: Mapping[str, Any], what: str) -> None:
        """``file`` can be created or appended to by a process of ours."""
        if (file,) in self.checked:
            return
        directory = file.parent
        if not directory.is_dir():
            reason = "is not a directory" if directory.exists() else "does not exist"
            raise self._error(f"cannot create {what} {file}: {directory} {reason}", origin)
        if file.is_dir():
            raise self._error(f"{what} {file} is a directory", origin)
        target = file if file.exists() else directory
        if not os.access(target, os.W_OK):
            raise self._error(f"cannot write {what} {file}: permission denied", origin)
        self.checked.add((file,))

    def log_file(self, log_file: str, origin: Mapping[str, Any]) -> None:
        # kept relative in the config: the processes run in the config file's directory
        self._writable(self.config_dir / log_file, origin, "the log file")

    def sqlite_path(self, db: Path, origin: Mapping[str, Any]) -> None:
        self._writable(db, origin, "the database")  # SQLite also creates files next to it

    def tls_pair(self, values: Mapping[str, Any], origins: _Origins) -> None:
        """The gate's key and certificate load as its TLS listeners will load them."""
        key, cert = values["rsa_key"], values["rsa_certificate"]
        if (key, cert) in self.checked:
            return
        for name, file in (("rsa_key", key), ("rsa_certificate", cert)):
            try:
                with open(file, "rb"):
                    pass
            except OSError as exc:
                raise self._error(
                    f"encrypt_connection is on, but cannot read {file}: {exc.strerror or exc}",
                    origins[name],
                ) from exc
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            ctx.load_verify_locations(cafile=cert)
        except ssl.SSLError as exc:
            raise self._error(
                f"encrypt_connection is on, but {cert} is not a PEM certificate",
                origins["rsa_certificate"],
            ) from exc
        try:
            ctx.load_cert_chain(cert, key, password=_no_passphrase)
        except _KeyIsEncrypted:
            raise self._error(
                f"encrypt_connection is on, but {key} is protected by a passphrase, "
                "which the gate cannot use",
                origins["rsa_key"],
            ) from None
        except ssl.SSLError as exc:
            if exc.reason == "KEY_VALUES_MISMATCH":
                other = origins["rsa_certificate"]
                message = (
                    f"encrypt_connection is on, but the key {key} does not match the certificate"
                    f" {cert} ([{other['section']}] rsa_certificate = {other['value']!r})"
                )
            else:
                message = f"encrypt_connection is on, but {key} is not a PEM private key"
            raise self._error(message, origins["rsa_key"]) from exc
        self.checked.add((key, cert))

    def cluster_tls(self, files: Mapping[str, Path], origins: _Origins) -> None:
        """The cluster's CA, certificate and key load as the processes will load them."""
        ca, cert, key = files["cluster_tls_ca"], files["cluster_tls_cert"], files["cluster_tls_key"]
        for name, file in files.items():
            try:
                with open(file, "rb"):
                    pass
            except OSError as exc:
                raise self._error(f"cannot read {file}: {exc.strerror or exc}", origins[name]) from exc
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        for name, file in (("cluster_tls_ca", ca), ("cluster_tls_cert", cert)):
            try:
                ctx.load_verify_locations(cafile=file)
            except ssl.SSLError as exc:
                raise self._error(f"{file} is not a PEM certificate", origins[name]) from exc
        try:
            ctx.load_cert_chain(cert, key, password=_no_passphrase)
        except _KeyIsEncrypted:
            raise self._error(
                f"{key} is protected by a passphrase, which the processes cannot use",
                origins["cluster_tls_key"],
            ) from None
        except ssl.SSLError as exc:
            reason = "does not match" if exc.reason == "KEY_VALUES_MISMATCH" else "is not a PEM key for"
            raise self._error(f"{key} {reason} the certificate {cert}", origins["cluster_tls_key"]) from exc
