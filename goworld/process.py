"""Process plumbing shared by the three roles: arguments, logging, the start tag, the loop.

Each role's ``__main__`` is its composition root; this module only removes the boilerplate
they would otherwise repeat. The command-line flags keep GoWorld's spelling (``-gid 1``,
``-dispid 1``, ``-gateid 1``, ``-configfile``, ``-log``, ``-restore``) and also accept the
double-dash forms. The names the CLI relies on (flags, the start tag) come from
``goworld.runctl``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import resource
import signal
import sys
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from goworld import log, runctl
from goworld.cluster import auth
from goworld.config import (
    ClusterConfig,
    DispatcherConfig,
    GameConfig,
    GateConfig,
    LockstepConfig,
    load,
)
from goworld.errors import ConfigError
from goworld.runctl import (
    AFTER_PID_FLAG,
    APP_FLAG,
    CONFIG_FLAG,
    ID_FLAGS,
    RESTORE_FLAG,
    STATIC_FLAG,
    started_tag,
)

__all__ = ["RoleArgs", "parse_role_args", "start_role", "started_tag", "announce_started", "run_loop"]

if TYPE_CHECKING:
    from goworld.cluster.tls import ClusterTLS

logger = logging.getLogger("goworld.process")


class RoleArgs(argparse.Namespace):
    id: int
    configfile: str
    log: str | None
    restore: bool
    after_pid: int
    app: str | None
    static: str | None


def parse_role_args(role: str, id_flag: str, argv: list[str] | None = None) -> RoleArgs:
    parser = argparse.ArgumentParser(prog=f"python -m {role}")
    parser.add_argument(f"-{id_flag}", f"--{id_flag}", dest="id", type=int, required=True)
    parser.add_argument(
        f"-{CONFIG_FLAG}", f"--{CONFIG_FLAG}", dest="configfile", default="goworld.ini"
    )
    parser.add_argument("-log", "--log", default=None, help="override the configured log level")
    if role == "gate":
        parser.add_argument(
            f"-{STATIC_FLAG}", f"--{STATIC_FLAG}", dest="static", default=None,
            help="a directory of web files the gate serves over HTTP on its http_addr",
        )
    if role == "game":
        parser.add_argument(
            f"-{RESTORE_FLAG}", f"--{RESTORE_FLAG}", dest="restore", action="store_true"
        )
        parser.add_argument(
            f"-{AFTER_PID_FLAG}", f"--{AFTER_PID_FLAG}", dest="after_pid", type=int, default=0,
            help="with -restore: start up now, restore once that (freezing) process has exited",
        )
        parser.add_argument(
            f"-{APP_FLAG}", f"--{APP_FLAG}", dest="app", default=None,
            help="the game package directory",
        )
    return parser.parse_args(argv, namespace=RoleArgs())


def start_role(role: str, argv: list[str] | None = None) -> tuple[RoleArgs, ClusterConfig, Any]:
    """Parse the flags, load goworld.ini, pick this process's section, configure logging.

    Exits with status 2 and a one-line reason when the config is invalid or has no such id.
    """
    args = parse_role_args(role, ID_FLAGS[role], argv)
    # Only a gate uses files the config names (its TLS key pair; log files are every role's
    # own): a game restored by `goworld reload` must not fail on a gate's certificate.
    cfg = load_config_or_exit(args.configfile, check_files=role == "gate")
    by_role: dict[str, Mapping[int, DispatcherConfig | GateConfig | GameConfig | LockstepConfig]] = {
        "dispatcher": cfg.dispatchers, "gate": cfg.gates, "game": cfg.games,
        "lockstep": cfg.lockstep_procs,
    }
    sections = by_role[role]
    if args.id not in sections:
        print(f"{role}{args.id} is not in {cfg.path}", file=sys.stderr)
        raise SystemExit(2)
    section = sections[args.id]
    setup_logging(args.log or section.log_level, section.log_file, section.log_stderr, section)
    return args, cfg, section


def load_config_or_exit(path: str, *, check_files: bool = True) -> ClusterConfig:
    try:
        return load(Path(path), check_files=check_files)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


def cluster_signer(cfg: ClusterConfig, role: str, proc_id: int) -> auth.TokenSigner | None:
    """The credentials this game or gate shows every dispatcher (None: no cluster secret is
    set anywhere, see :mod:`goworld.cluster.auth`). Exits with status 2 when the secret is
    misconfigured."""
    try:
        secret = auth.resolve_secret(cfg)
    except ConfigError as exc:
        logger.critical("%s%d: %s", role, proc_id, exc)
        raise SystemExit(2) from exc
    return None if secret is None else auth.TokenSigner(secret, auth.Identity(role, proc_id))


def cluster_verifier(cfg: ClusterConfig, dispatcher_id: int) -> auth.TokenVerifier | None:
    """How dispatcher ``dispatcher_id`` checks its streams (None: it takes everyone, loopback
    only, with a warning). Exits with status 2 when it needs a secret and has none."""
    try:
        secret = auth.dispatcher_secret(cfg, dispatcher_id)
    except ConfigError as exc:
        logger.critical("dispatcher%d: %s", dispatcher_id, exc)
        raise SystemExit(2) from exc
    if secret is None and cfg.deployment.cluster_tls_cert is not None:
        logger.info(
            "dispatcher%d: streams need a certificate of the cluster's CA (mutual TLS); with no "
            "cluster secret, such a process can join as any game or gate", dispatcher_id,
        )
        return None
    if secret is None:
        logger.warning(
            "dispatcher%d: no cluster secret (%s, [deployment] cluster_secret or "
            "cluster_secret_file): any local process can join as any game or gate",
            dispatcher_id, auth.SECRET_ENV,
        )
        return None
    logger.info("dispatcher%d: streams must prove the cluster secret from %s",
                dispatcher_id, secret.source)
    return auth.TokenVerifier(secret, dispatcher_id)


def cluster_tls(cfg: ClusterConfig, name: str) -> ClusterTLS | None:
    """The cluster's mutual TLS material (None: off; :mod:`goworld.cluster.tls`). Exits with
    status 2 when a file cannot be read."""
    from goworld.cluster.tls import load_tls  # grpc: only for the roles

    try:
        return load_tls(cfg)
    except ConfigError as exc:
        logger.critical("%s: %s", name, exc)
        raise SystemExit(2) from exc


def setup_logging(
    level: str,
    log_file: str,
    stderr: bool,
    section: DispatcherConfig | GateConfig | GameConfig | LockstepConfig | None = None,
) -> None:
    """Configure ``goworld.log`` for this process.

    ``stderr`` is the ini's ``log_stderr`` (GoWorld's meaning when a process is run by hand:
    log records go to the log file and to stderr). When the ``goworld`` CLI captures our
    stderr into ``.goworld/<name>.stderr`` (``runctl.stderr_is_captured``), records go to the
    log file only: each line is stored once, and the capture keeps what is not a log record.
    """
    if log_file and runctl.stderr_is_captured():
        stderr = False
    options: dict[str, Any] = {}
    if section is not None:
        options = {
            "repeat_limit": section.log_repeat_limit,
            "repeat_interval": float(section.log_repeat_interval),
            "max_bytes": section.log_max_bytes,
            "backups": section.log_backups,
        }
    log.configure(level=level, log_file=log_file or None, stderr=stderr, **options)


def announce_started(role: str) -> None:
    """Log the start tag at INFO on every handler, whatever the configured level."""
    record = logging.LogRecord(
        f"goworld.{role}", logging.INFO, __file__, 0, started_tag(role), None, None
    )
    for handler in logging.getLogger("goworld").handlers:
        handler.handle(record)
        handler.flush()


def run_loop(
    main: Callable[[asyncio.Event], Coroutine[Any, Any, int]], *, alive: str | None = None
) -> int:
    """Run ``main(stop_event)`` on uvloop (when available); SIGTERM/SIGINT set the event.

    ``alive`` (the process's name, ``gate1``): while the loop runs it touches
    ``.goworld/<name>.alive`` every :data:`ALIVE_INTERVAL` seconds, the supervisor's sign that
    the process is not hung (only when the run directory exists: a process ``goworld start``
    launched, not one a test runs on its own).
    """
    run: Callable[[Coroutine[Any, Any, int]], int] = asyncio.run
    try:
        import uvloop

        run = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        pass

    async def runner() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        jobs = [loop.create_task(_flush_log_summaries())]
        run_dir = runctl.run_dir(Path.cwd())
        if alive is not None and run_dir.is_dir():
            jobs.append(loop.create_task(_touch_alive(runctl.status_path(run_dir, alive, runctl.ProcFile.ALIVE))))
        try:
            return await main(stop)
        finally:
            for job in jobs:
                job.cancel()
            log.flush_repeats(final=True)

    return run(runner())


#: Seconds between two touches of a process's alive file (the supervisor's hang check).
ALIVE_INTERVAL = 1.0


async def _touch_alive(path: Path) -> None:
    """Set ``path``'s modification time now and every :data:`ALIVE_INTERVAL`: it stays fresh
    exactly as long as the event loop runs its tasks."""
    complained = False
    while True:
        try:
            path.touch()
        except OSError as exc:
            if not complained:  # once: a full or read-only disk says so elsewhere too
                logger.error("cannot touch %s (the supervisor's sign of life): %s", path, exc)
                complained = True
        await asyncio.sleep(ALIVE_INTERVAL)


#: How often the loop writes the summaries of suppressed log records whose interval is over.
LOG_FLUSH_INTERVAL = 1.0


async def _flush_log_summaries() -> None:
    """Summaries of repeated warnings are due when an interval ends, even if nothing is logged
    afterwards (``goworld.log.RepeatFilter`` only notices the end on its next record)."""
    while True:
        await asyncio.sleep(LOG_FLUSH_INTERVAL)
        log.flush_repeats()


def raise_open_file_limit(want: int) -> int:
    """Raise the soft RLIMIT_NOFILE toward ``want`` (never above the hard limit, never
    lowered); returns the soft limit now (a very large number for no limit). A refusal is
    logged as a warning."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return sys.maxsize
    if soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            soft = new
        except (ValueError, OSError) as exc:
            logging.getLogger("goworld").warning("cannot raise the open-file limit to %d: %s", new, exc)
    return soft


def pid_info() -> str:
    return f"pid {os.getpid()}"
