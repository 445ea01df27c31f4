"""The supervisor: restarts a process of the cluster that died unexpectedly.

``goworld start`` launches it last, once the cluster serves (``python -m goworld.supervisor
-configfile goworld.ini``, detached like the roles; ``--no-supervise`` or ``[supervisor]
enabled = false``: not at all). It polls every process of the ini (:data:`POLL_INTERVAL`):
one whose pid is gone without the CLI having said so is a crash (kill -9, a traceback, an
exit of its own, whatever its status), logged as one WARNING line, and restarted after a
back-off (``restart_backoff`` seconds, doubled for each restart of that process within
``restart_window``, at most ``restart_backoff_max``), logged as one more. After
``max_restarts`` restarts within the window it gives up on that process (one CRITICAL line)
until an operator brings it back (``goworld restart``, which the supervisor then adopts).

A process that is alive but hung counts as down too: every process touches
``.goworld/<name>.alive`` each second from its event loop (``process.run_loop``); when that
file has not changed for ``hang_timeout`` seconds of the supervisor's own clock (default 30; 0
= never) while the process is up, the supervisor logs it, kills it with SIGKILL and restarts it
like a crashed one. A stopped (SIGSTOP), deadlocked or endlessly looping process is found that
way; its clients see their connections closed and can log in again, instead of waiting on a
process that never answers.

Intended exits are never crashes: ``goworld stop`` and ``goworld kill`` stop the supervisor
first; ``goworld restart`` and ``goworld reload`` (both modes) take a hold on each process
they work on (``runctl.take_hold``), under which the supervisor watches nothing; when the hold
is released the supervisor adopts whatever pid the pid file then names, or restarts the
process if the command left it down. A restarted game uses ``-restore`` only when the reload
that froze it never consumed its freeze file (``runctl.restore_pending``); otherwise the
freeze file is stale. Games and gates wait for a dispatcher that is being restarted (back-off
or not yet started), so a cluster that lost several processes comes back in start order.

Before a restart the crashed process's log file and its ``.goworld/<name>.stderr`` are kept
as ``.1``, ``.2``... (``runctl.rotate``, ``log_backups`` generations; a log file shared with
another process, or ``log_backups = 0``, is appended to instead).

The decisions are :class:`Supervisor` (no I/O: an injected clock and a :class:`Processes`
table); :class:`RunDirProcesses` is the table of a real cluster, :func:`main` the loop.
The supervisor's own log is ``.goworld/supervisor.log``; its state, for ``goworld status``,
``.goworld/supervisor.json`` (:meth:`Supervisor.snapshot`). ``goworld start --only`` (one
host's share of the ini) starts it with ``-only NAMES``: it watches those processes only (a
host never starts another host's process) under its own name (``runctl.supervisor_name``:
``.goworld/supervisor-game1+gate1.log`` ...).
"""

from __future__ import annotations

import argparse
import enum
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from goworld import log, runctl
from goworld.config import ClusterConfig, SupervisorConfig, load
from goworld.errors import ConfigError
from goworld.runctl import ProcFile

__all__ = [
    "POLL_INTERVAL",
    "Policy",
    "State",
    "Event",
    "ProcStatus",
    "Processes",
    "Supervisor",
    "RunDirProcesses",
    "main",
]

logger = logging.getLogger("goworld.supervisor")

#: Seconds between two looks at every process.
POLL_INTERVAL = 0.2

ROLES = ("dispatcher", "game", "gate")


@dataclass(frozen=True)
class Policy:
    """When to restart, from ``[supervisor]``."""

    backoff: float = 1.0
    backoff_max: float = 60.0
    max_restarts: int = 5
    window: float = 300.0
    hang_timeout: float = 0.0  # seconds without a sign of life before an up process is killed

    @classmethod
    def from_config(cls, cfg: SupervisorConfig) -> Policy:
        return cls(cfg.restart_backoff, cfg.restart_backoff_max, cfg.max_restarts,
                   cfg.restart_window, cfg.hang_timeout)

    def delay(self, recent: int) -> float:
        """The wait before a restart when the process was restarted ``recent`` times within
        the window."""
        return float(min(self.backoff * 2.0 ** min(recent, 60), self.backoff_max))


class State(enum.StrEnum):
    UP = "up"  # running (started by us and tagged, a game serving; or adopted)
    STARTING = "starting"  # restarted by us, its start tag (a game: serving) not seen yet
    BACKOFF = "backoff"  # down, restart due at ProcStatus.due
    GAVE_UP = "gave-up"  # down, too many restarts: left alone until someone starts it
    HELD = "held"  # a CLI command works on it


@dataclass(frozen=True)
class Event:
    """What the supervisor did or saw, one log line."""

    level: int
    name: str
    kind: str  # crash, restart, started, gave-up, adopted, held, released
    message: str


@dataclass
class ProcStatus:
    name: str
    role: str
    state: State = State.UP
    pid: int | None = None
    restarts: int = 0  # restarts by the supervisor since it started
    last_restart: float | None = None  # wall-clock time of the last one
    last_exit: str = ""  # why it last went down
    due: float = 0.0  # BACKOFF: monotonic time of the restart
    recent: deque[float] = field(default_factory=deque)  # monotonic times of restarts in window
    mark: int | None = None  # the alive file's last modification time seen (ns), if any
    mark_seen: float = 0.0  # monotonic time when ``mark`` last changed (or watching began)

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state.value, "pid": self.pid, "restarts": self.restarts,
            "last_restart": self.last_restart, "last_exit": self.last_exit,
        }


class Processes(Protocol):
    """The supervisor's view of the cluster's processes (by name: ``game1``)."""

    def held(self, name: str) -> str | None:
        """What works on ``name`` (``goworld restart (pid 123)``), or None."""

    def live_pid(self, name: str) -> int | None:
        """The pid in ``name``'s pid file, if that process runs."""

    def is_alive(self, name: str, pid: int) -> bool:
        """Whether ``pid`` (which was ``name``) still runs."""

    def exit_reason(self, name: str, pid: int) -> str:
        """How ``pid`` ended (exit status or signal, when known)."""

    def started(self, name: str) -> bool:
        """Whether the process last spawned by :meth:`spawn` logged its start tag."""

    def wants_restore(self, name: str) -> bool:
        """Whether a restart of ``name`` must restore from a reload's freeze file."""

    def spawn(self, name: str, restore: bool) -> int | None:
        """Start ``name`` again; None (nothing started) when a CLI command took a hold."""

    def alive_mark(self, name: str) -> int | None:
        """The modification time (ns) of ``name``'s alive file, None when there is none."""

    def kill(self, name: str, pid: int) -> None:
        """SIGKILL ``pid`` (which is ``name``, hung) and wait a little for it to go."""


class Supervisor:
    """The decisions; :meth:`tick` looks at every process once and returns what it did."""

    def __init__(
        self,
        procs: Iterable[tuple[str, str]],  # (name, role), in start order
        table: Processes,
        policy: Policy,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.table = table
        self.policy = policy
        self.clock = clock
        self.wall_clock = wall_clock
        self.procs = {name: ProcStatus(name, role) for name, role in procs}
        for status in self.procs.values():
            status.pid = table.live_pid(status.name)

    def tick(self) -> list[Event]:
        events: list[Event] = []
        for status in self.procs.values():
            self._look(status, events)
        return events

    def snapshot(self) -> dict[str, Any]:
        return {name: status.to_json() for name, status in self.procs.items()}

    # ---- one process ---------------------------------------------------------------------

    def _look(self, st: ProcStatus, events: list[Event]) -> None:
        holder = self.table.held(st.name)
        if holder is not None:
            if st.state is not State.HELD:
                st.state = State.HELD
                events.append(Event(logging.INFO, st.name, "held", f"{st.name}: left to {holder}"))
            return
        live = self.table.live_pid(st.name)
        if st.state is State.HELD:
            if live is not None:
                self._adopt(st, live, events, "released")
            else:
                self._down(st, "down when the goworld command working on it finished", events)
            return
        if st.state in (State.BACKOFF, State.GAVE_UP) or st.pid is None:
            if live is not None:  # someone (goworld restart) started it meanwhile
                self._adopt(st, live, events, "adopted")
            elif st.state is State.BACKOFF:
                if self.clock() >= st.due and not self._waits_for_dispatchers(st):
                    self._restart(st, events)
            elif st.state is not State.GAVE_UP:
                self._down(st, "not running", events)
            return
        if live is not None and live != st.pid:
            self._adopt(st, live, events, "adopted")
        elif self.table.is_alive(st.name, st.pid):
            if st.state is State.STARTING and self.table.started(st.name):
                st.state = State.UP
                self._watch_from_now(st)
                events.append(Event(logging.INFO, st.name, "started", f"{st.name} (pid {st.pid}) started"))
            elif st.state is State.UP and self.policy.hang_timeout > 0:
                self._check_hang(st, events)
        else:
            self._down(st, f"pid {st.pid} exited unexpectedly ({self.table.exit_reason(st.name, st.pid)})", events)

    def _watch_from_now(self, st: ProcStatus) -> None:
        """A process just came up: the hang check counts from now, whatever its file says."""
        st.mark, st.mark_seen = self.table.alive_mark(st.name), self.clock()

    def _check_hang(self, st: ProcStatus, events: list[Event]) -> None:
        mark = self.table.alive_mark(st.name)
        now = self.clock()
        if mark != st.mark:  # a sign of life (or the first look at this process's file)
            st.mark, st.mark_seen = mark, now
            return
        if mark is None:  # it has never shown one: a process that does not write the file
            return
        silent = now - st.mark_seen
        if silent < self.policy.hang_timeout or st.pid is None:
            return
        pid = st.pid
        self.table.kill(st.name, pid)
        self._down(st, f"pid {pid} hung: its event loop showed no sign of life for {silent:.0f} s "
                       f"(hang_timeout {self.policy.hang_timeout:g} s); killed with SIGKILL", events)

    def _adopt(self, st: ProcStatus, pid: int, events: list[Event], kind: str) -> None:
        st.state, st.pid = State.UP, pid
        self._watch_from_now(st)
        events.append(Event(logging.INFO, st.name, kind, f"{st.name}: watching pid {pid}"))

    def _down(self, st: ProcStatus, why: str, events: list[Event]) -> None:
        now = self.clock()
        while st.recent and st.recent[0] <= now - self.policy.window:
            st.recent.popleft()
        st.pid, st.last_exit = None, why
        if len(st.recent) >= self.policy.max_restarts:
            st.state = State.GAVE_UP
            events.append(Event(
                logging.CRITICAL, st.name, "gave-up",
                f"{st.name} {why}; giving up after {len(st.recent)} restarts within "
                f"{self.policy.window:g} s (goworld restart brings it back)",
            ))
            return
        delay = self.policy.delay(len(st.recent))
        st.state, st.due = State.BACKOFF, now + delay
        events.append(Event(
            logging.WARNING, st.name, "crash",
            f"{st.name} {why}; restarting in {delay:g} s (restart {len(st.recent) + 1} of at "
            f"most {self.policy.max_restarts} within {self.policy.window:g} s)",
        ))

    def _waits_for_dispatchers(self, st: ProcStatus) -> bool:
        """Games and gates wait while a dispatcher is down or starting (not given up on)."""
        if st.role == "dispatcher":
            return False
        return any(
            other.role == "dispatcher" and other.state in (State.BACKOFF, State.STARTING)
            for other in self.procs.values()
        )

    def _restart(self, st: ProcStatus, events: list[Event]) -> None:
        restore = st.role == "game" and self.table.wants_restore(st.name)
        pid = self.table.spawn(st.name, restore)
        if pid is None:  # a command took a hold just now: seen on the next tick
            return
        st.state, st.pid = State.STARTING, pid
        st.restarts += 1
        st.last_restart = self.wall_clock()
        st.recent.append(self.clock())
        how = " with -restore (its reload's freeze file)" if restore else ""
        events.append(Event(
            logging.WARNING, st.name, "restart",
            f"restarted {st.name}{how}: pid {pid} (restart {st.restarts} since the supervisor started)",
        ))


# ---- the real cluster ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Proc:
    role: str
    id: int
    log_file: Path
    backups: int
    shared_log: bool  # another process of the cluster writes the same log file


class RunDirProcesses:
    """The processes of a running cluster, through its run directory (``.goworld/``)."""

    def __init__(self, cfg: ClusterConfig, app: Path | None, only: Iterable[str] | None = None) -> None:
        """``only``: the names of the processes to watch (one host's, ``goworld start
        --only``); None: every process of the ini."""
        self.cfg = cfg
        self.root = cfg.config_dir
        self.run_dir = runctl.run_dir(self.root)
        self.app = app
        sections: list[tuple[str, Any]] = [
            *(("dispatcher", c) for c in cfg.dispatchers.values()),
            *(("game", c) for c in cfg.games.values()),
            *(("gate", c) for c in cfg.gates.values()),
            *(("lockstep", c) for c in cfg.lockstep_procs.values()),
        ]
        logs = [self.root / c.log_file for _, c in sections]
        self.procs: dict[str, _Proc] = {}
        chosen = None if only is None else set(only)
        for role, c in sections:
            path = self.root / c.log_file
            if chosen is not None and runctl.proc_name(role, c.id) not in chosen:
                continue
            self.procs[runctl.proc_name(role, c.id)] = _Proc(
                role, c.id, path, c.log_backups, logs.count(path) > 1
            )
        self.children: dict[int, subprocess.Popen[bytes]] = {}
        self.watches: dict[str, runctl.TagWatch] = {}
        self.unserved: set[str] = set()  # games restarted and tagged, not serving yet
        self.identity: dict[int, float | None] = {}  # pid -> its start time when first seen

    def reap(self) -> None:
        """Collect our children that exited and that no pid file names any more (a process
        the CLI replaced under a hold): no zombies pile up."""
        current = {runctl.read_pid(self.run_dir, name) for name in self.procs}
        for pid, child in list(self.children.items()):
            if child.poll() is not None and pid not in current:
                del self.children[pid]

    def order(self) -> list[tuple[str, str]]:
        return [(name, p.role) for name, p in self.procs.items()]

    def held(self, name: str) -> str | None:
        hold = runctl.read_hold(self.run_dir, name)
        return None if hold is None else f"goworld {hold.op} (pid {hold.pid})"

    def live_pid(self, name: str) -> int | None:
        pid = runctl.read_pid(self.run_dir, name)
        if pid is None or not self.is_alive(name, pid):
            return None
        return pid

    def is_alive(self, name: str, pid: int) -> bool:
        child = self.children.get(pid)
        if child is not None:
            return child.poll() is None  # reaps our own children
        if not runctl.alive(pid):
            return False
        started = runctl.start_time(pid)
        first = self.identity.setdefault(pid, started)
        # A pid reused by another process since we first saw it: the one we watched is gone.
        return first is None or started is None or abs(started - first) < 1.0

    def exit_reason(self, name: str, pid: int) -> str:
        child = self.children.pop(pid, None)
        if child is None or child.returncode is None:
            reason = "exit status unknown: not the supervisor's child"
        elif child.returncode < 0:
            try:
                reason = f"killed by {signal.Signals(-child.returncode).name}"
            except ValueError:
                reason = f"killed by signal {-child.returncode}"
        else:
            reason = f"exit status {child.returncode}"
        last = self._last_stderr_line(name, self.identity.pop(pid, None))
        return f"{reason}; its stderr ends: {last}" if last else reason

    def _last_stderr_line(self, name: str, started: float | None) -> str:
        """The last line of ``.goworld/<name>.stderr`` if written since the process started
        (a traceback's exception), at most 200 characters."""
        path = runctl.status_path(self.run_dir, name, ProcFile.STDERR)
        try:
            if started is None or path.stat().st_mtime < started:
                return ""
            with open(path, "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
                lines = f.read().decode("utf-8", errors="replace").splitlines()
        except OSError:
            return ""
        last = next((line.strip() for line in reversed(lines) if line.strip()), "")
        return last[:200]

    def started(self, name: str) -> bool:
        """The start tag in the new log; for a game also its ``serving`` file (cleared before
        the spawn), so that a game counts as up once it serves."""
        watch = self.watches.get(name)
        if watch is not None:
            if not watch.found():
                return False
            del self.watches[name]
            if self.procs[name].role == "game":
                self.unserved.add(name)
        if name in self.unserved:
            if runctl.read_status(self.run_dir, name, ProcFile.SERVING) is None:
                return False
            self.unserved.discard(name)
        return True

    def wants_restore(self, name: str) -> bool:
        proc = self.procs[name]
        return proc.role == "game" and runctl.restore_pending(self.root, proc.id)

    def spawn(self, name: str, restore: bool) -> int | None:
        proc = self.procs[name]
        with runctl.locked(self.run_dir, name, blocking=False) as got:
            if not got or self.held(name) is not None:
                return None
            self._keep_logs(name, proc)
            if proc.role == "game":
                runctl.clear_status(self.run_dir, name, ProcFile.SERVING)
            self.watches[name] = runctl.TagWatch(proc.log_file, runctl.started_tag(proc.role))
            self.unserved.discard(name)
            extra = runctl.restore_args() if restore else []
            child = runctl.spawn(self.root, self.cfg.path, proc.role, proc.id, self.app, extra)
        self.children[child.pid] = child
        self.identity[child.pid] = runctl.start_time(child.pid)
        return child.pid

    def alive_mark(self, name: str) -> int | None:
        try:
            return runctl.status_path(self.run_dir, name, ProcFile.ALIVE).stat().st_mtime_ns
        except OSError:
            return None

    def kill(self, name: str, pid: int, wait: float = 5.0) -> None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        child = self.children.get(pid)
        if child is not None:
            try:
                child.wait(wait)
            except subprocess.TimeoutExpired:
                logger.error("%s (pid %d) still runs %g s after SIGKILL", name, pid, wait)
            return
        deadline = time.monotonic() + wait
        while runctl.alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.identity.pop(pid, None)

    def _keep_logs(self, name: str, proc: _Proc) -> None:
        """The crashed process's log and stderr become ``.1`` (the restarted one writes new
        files); a shared log, or ``log_backups = 0``, is appended to instead."""
        if proc.backups <= 0:
            return
        if not proc.shared_log:
            runctl.rotate(proc.log_file, proc.backups)
        runctl.rotate(runctl.status_path(self.run_dir, name, ProcFile.STDERR), proc.backups)


# ---- the process -----------------------------------------------------------------------------


def write_state(run_dir: Path, supervisor: Supervisor, name: str = runctl.SUPERVISOR) -> None:
    data = {"pid": os.getpid(), "updated": time.time(), "processes": supervisor.snapshot()}
    runctl.write_atomically(run_dir / runctl.supervisor_state(name), json.dumps(data).encode("utf-8"))


def read_state(run_dir: Path) -> dict[str, dict[str, Any]]:
    """The supervisors' last state per process name ({} when there is none): the whole
    cluster's supervisor, or those of ``goworld start --only`` (one per host, when hosts
    share the run directory), each of whose state counts while its writer runs."""
    merged: dict[str, dict[str, Any]] = {}
    for path in sorted(run_dir.glob(runctl.supervisor_state(runctl.SUPERVISOR + "*"))):
        try:
            data = json.loads(path.read_text())
            procs, pid = data["processes"], data["pid"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if isinstance(procs, dict) and isinstance(pid, int) and runctl.alive(pid):
            merged.update(procs)
    return merged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m goworld.supervisor")
    parser.add_argument(f"-{runctl.CONFIG_FLAG}", f"--{runctl.CONFIG_FLAG}", dest="configfile",
                        default="goworld.ini")
    parser.add_argument(f"-{runctl.ONLY_FLAG}", f"--{runctl.ONLY_FLAG}", dest="only", default="",
                        help="watch only these processes (comma-separated names)")
    args = parser.parse_args(argv)
    only = [n for n in args.only.split(",") if n] or None
    try:
        cfg = load(Path(args.configfile), check_files=False)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    run_dir = runctl.run_dir(cfg.config_dir)
    name = runctl.supervisor_name(only)
    log.configure(level="info", log_file=run_dir / runctl.supervisor_log(name), stderr=False,
                  other_loggers=False)
    app = runctl.read_cluster_app(run_dir)
    table = RunDirProcesses(cfg, Path(app) if app else None, only)
    supervisor = Supervisor(table.order(), table, Policy.from_config(cfg.supervisor))
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    policy = supervisor.policy
    logger.info(
        "supervising %s (pid %d): restart back-off %g s to %g s, at most %d restarts within %g s",
        ", ".join(supervisor.procs), os.getpid(), policy.backoff, policy.backoff_max,
        policy.max_restarts, policy.window,
    )
    _announce_started()
    last = ""
    while not stopping:
        table.reap()
        for event in supervisor.tick():
            logger.log(event.level, "%s", event.message)
        state = json.dumps(supervisor.snapshot(), sort_keys=True)
        if state != last:
            write_state(run_dir, supervisor, name)
            last = state
        time.sleep(POLL_INTERVAL)
    logger.info("supervisor stopping (pid %d)", os.getpid())
    return 0


def _announce_started() -> None:
    record = logging.LogRecord(
        logger.name, logging.INFO, __file__, 0, runctl.started_tag(runctl.SUPERVISOR), None, None
    )
    for handler in logging.getLogger("goworld").handlers:
        handler.handle(record)
        handler.flush()


if __name__ == "__main__":
    sys.exit(main())
