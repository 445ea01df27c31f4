"""The ``goworld`` command line: build, start, stop, kill, status (PROTOCOL.md §6), restart, reload
and config.

``goworld start examples/chatroom_demo`` starts every dispatcher, then every game, then every
gate of ``goworld.ini``, one at a time, each confirmed by the start tag in its log file. The
processes run detached (``python -m dispatcher|game|gate``) with the ini's directory as their
working directory, so log files land there. The CLI keeps its bookkeeping in ``.goworld/``
next to the ini: one pid file per process, the running game package, and each process's
stderr. A process started here writes its log records to its log file only (the CLI tells it
its stderr is captured: ``runctl.stderr_is_captured``), so its stderr holds what is not a log
record: a crash's traceback, Python warnings. ``start`` first rotates every log file and stderr
capture of the previous run (``game1.log`` -> ``game1.log.1`` ..., ``log_backups``
generations) instead of erasing them. Once the cluster serves, ``start`` launches the
supervisor (:mod:`goworld.supervisor`), which restarts a process that dies unexpectedly;
``restart`` and ``reload`` hold each process they work on (``runctl.take_hold``) so that it
leaves them alone. ``stop`` stops the supervisor, then sends SIGTERM to gates, then games
(which save every persistent entity), then dispatchers, waiting for each.
Every file name, flag, signal and tag the CLI and the processes share is defined once, in
``goworld.runctl``.

The CLI never imports a role package: roles are subprocesses.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from goworld import ports, runctl
from goworld.cluster import auth
from goworld.config import (
    Address,
    ClusterConfig,
    DispatcherConfig,
    GameConfig,
    GateConfig,
    LockstepConfig,
    load,
)
from goworld.errors import ConfigError, GoWorldError
from goworld.runctl import ProcFile

__all__ = ["main"]

# A gate gives up on unreachable dispatchers after 30 s itself (its log names them): the CLI
# waits longer, so that is what the operator sees. A game waits for them as long as it takes.
START_TIMEOUT = {"dispatcher": 10.0, "game": 600.0, "gate": 45.0, "lockstep": 45.0}
#: After the last gate: how long every game may take to report deployment-ready + services.
SERVE_TIMEOUT = 60.0
STOP_TIMEOUT = {"gate": 30.0, "game": 600.0, "dispatcher": 30.0, "lockstep": 30.0}  # games wait for queued saves

_INI_OPTION = click.option(
    "--ini",
    "ini_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("goworld.ini"),
    show_default=True,
    help="The cluster configuration file.",
)


_ONLY_OPTION = click.option(
    "--only",
    "only",
    metavar="NAMES",
    help="Only these processes of the ini (comma-separated, e.g. game2,gate2): this host's "
    "share of a cluster spread over several hosts. Default: what the last `goworld start "
    "--only` in this directory started, else every process.",
)


def _cluster(ini_path: Path, only: str | None, *, check_files: bool = True, recorded: bool = True) -> Cluster:
    """The cluster of ``ini_path``, restricted to ``--only``'s processes; without ``--only``
    (and with ``recorded``) to those the last ``goworld start --only`` here started. Exits 2
    on a config error or a name the ini lacks."""
    cfg = _load_or_exit(ini_path, check_files=check_files)
    names = None if only is None else only.split(",")
    note = ""
    if names is None and recorded:
        names = runctl.read_cluster_only(runctl.run_dir(cfg.config_dir))
        note = f" (recorded in {runctl.run_dir(cfg.config_dir) / runctl.CLUSTER_FILE} by `goworld start --only`)"
    try:
        return Cluster(cfg, names)
    except GoWorldError as exc:
        click.echo(f"goworld: {exc}{note}", err=True)
        sys.exit(2)


def _load_or_exit(path: Path, *, check_files: bool = True) -> ClusterConfig:
    """``check_files=False`` for commands on a running cluster (stop, kill, status, reload):
    a key file or log directory that went away since start must not stop an operator."""
    try:
        return load(path, check_files=check_files)
    except ConfigError as exc:
        click.echo(f"goworld: config error: {exc}", err=True)
        sys.exit(2)


@dataclass(frozen=True)
class Proc:
    role: str
    id: int
    log_file: Path
    backups: int = 0  # log_backups: generations of its log and stderr kept by start

    @property
    def name(self) -> str:
        return runctl.proc_name(self.role, self.id)


def select_procs(cfg: ClusterConfig, names: Sequence[str]) -> tuple[str, ...]:
    """``--only``'s names checked against the ini, in the ini's start order (dispatchers,
    games, gates); :class:`GoWorldError` names what the ini lacks and what it has."""
    known = [runctl.proc_name(role, i) for role, table in
             (("dispatcher", cfg.dispatchers), ("game", cfg.games), ("gate", cfg.gates),
              ("lockstep", cfg.lockstep_procs))
             for i in table]
    wanted = [n.strip() for n in names if n.strip()]
    if not wanted:
        raise GoWorldError(f"--only names no process (the processes of {cfg.path}: {', '.join(known)})")
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise GoWorldError(
            f"--only {','.join(wanted)}: {cfg.path} has no {', '.join(unknown)} (its processes: "
            f"{', '.join(known)})"
        )
    return tuple(n for n in known if n in wanted)


class Cluster:
    """The processes goworld.ini describes, and the bookkeeping of the running ones.

    ``only`` (``--only``: one host's share of a cluster spread over several hosts) restricts
    every command to the processes it names: :meth:`procs` and :meth:`all_procs` list only
    those, and the supervisor started here watches only those (:func:`select_procs` checks
    the names)."""

    def __init__(self, cfg: ClusterConfig, only: Sequence[str] | None = None) -> None:
        self.cfg = cfg
        self.root = cfg.config_dir
        self.run_dir = runctl.run_dir(self.root)
        self.only = None if only is None else select_procs(cfg, only)

    def procs(self, role: str) -> list[Proc]:
        tables: dict[str, Mapping[int, DispatcherConfig | GameConfig | GateConfig | LockstepConfig]] = {
            "dispatcher": self.cfg.dispatchers, "game": self.cfg.games, "gate": self.cfg.gates,
            "lockstep": self.cfg.lockstep_procs,
        }
        table = tables[role]
        procs = [Proc(role, pid, self.root / c.log_file, c.log_backups) for pid, c in table.items()]
        return procs if self.only is None else [p for p in procs if p.name in self.only]

    def all_procs(self) -> list[Proc]:
        return self.procs("dispatcher") + self.procs("game") + self.procs("gate") + self.procs("lockstep")

    def file(self, proc: Proc, kind: ProcFile) -> Path:
        """One of ``proc``'s files in the run directory (its pid, stderr, status files)."""
        return runctl.status_path(self.run_dir, proc.name, kind)

    def write_pid(self, proc: Proc, pid: int) -> None:
        runctl.write_pid(self.run_dir, proc.name, pid)

    def pid(self, proc: Proc) -> int | None:
        """The pid of ``proc`` if it is running (stale pid files are removed)."""
        pid = runctl.read_pid(self.run_dir, proc.name)
        if pid is None:
            return None
        if _alive(pid):
            return pid
        runctl.clear_stale_pid(self.run_dir, proc.name, pid)
        return None

    def running(self) -> dict[Proc, int]:
        return {p: pid for p in self.all_procs() if (pid := self.pid(p)) is not None}

    def app(self) -> str | None:
        return runctl.read_cluster_app(self.run_dir)

    def keep_logs(self, proc: Proc) -> None:
        """Before ``proc`` starts again alone: its log and stderr become ``.1`` (``log_backups``),
        unless another process shares the log file (then appended to) or it keeps none."""
        if proc.backups <= 0:
            return
        if sum(1 for p in self.all_procs() if p.log_file == proc.log_file) == 1:
            runctl.rotate(proc.log_file, proc.backups)
        runctl.rotate(self.file(proc, ProcFile.STDERR), proc.backups)

    def rotate_logs(self) -> None:
        """Keep the previous run's log files and stderr captures as ``.1``, ``.2``... (each
        process's ``log_backups``; GoWorld truncates them). Before anything starts: processes
        may share a log file."""
        self.run_dir.mkdir(exist_ok=True)
        backups: dict[Path, int] = {}
        for proc in self.all_procs():
            backups[proc.log_file] = max(backups.get(proc.log_file, 0), proc.backups)
            backups[self.file(proc, ProcFile.STDERR)] = proc.backups
        most = max(backups.values(), default=0)
        backups[self.run_dir / runctl.supervisor_log(self.supervisor_name)] = most
        backups[self.file_named(self.supervisor_name, ProcFile.STDERR)] = most
        for path, n in backups.items():
            runctl.rotate(path, n)

    def spawn(self, proc: Proc, app: Path | None, extra: Sequence[str] = ()) -> int:
        """Start ``proc`` detached; its stderr is appended to ``.goworld/<name>.stderr`` (a
        reload's standby shares it with the game it replaces)."""
        return runctl.spawn(self.root, self.cfg.path, proc.role, proc.id, app, extra).pid

    # ---- the supervisor ----

    @property
    def supervisor_name(self) -> str:
        """The name of the supervisor this cluster (selection) starts: ``runctl.supervisor_name``."""
        return runctl.supervisor_name(self.only)

    def supervisors(self) -> dict[str, int]:
        """The running supervisors (name -> pid) that watch a process of this selection: the
        whole cluster's, or one started with ``--only`` (checked by the command line: a stale
        pid file's number may belong to another process by now)."""
        found: dict[str, int] = {}
        suffix = f".{ProcFile.PID.value}"
        for path in sorted(self.run_dir.glob(f"{runctl.SUPERVISOR}*{suffix}")):
            name = path.name[: -len(suffix)]
            pid = runctl.read_pid(self.run_dir, name)
            if pid is None or not _alive(pid):
                continue
            args = _supervisor_args(pid)
            if args is None:
                continue
            watched = _watched_by(args)
            if self.only is None or watched is None or watched & set(self.only):
                found[name] = pid
        return found

    def supervisor_pid(self) -> int | None:
        """The pid of a supervisor watching a process of this selection, if one runs."""
        return next(iter(self.supervisors().values()), None)

    def start_supervisor(self) -> int:
        """Launch ``python -m goworld.supervisor`` (watching this selection) and wait for its
        start tag."""
        name = self.supervisor_name
        log_file = self.run_dir / runctl.supervisor_log(name)
        watch = _TagWatch(log_file, runctl.started_tag(runctl.SUPERVISOR))
        pid = runctl.spawn(self.root, self.cfg.path, runctl.SUPERVISOR, 0, None, only=self.only).pid
        if not watch.wait(pid, START_TIMEOUT["dispatcher"]):
            tail = "\n".join(_tail_of(p) for p in (log_file, self.file_named(name, ProcFile.STDERR)))
            raise GoWorldError(f"the supervisor did not start\n{tail}")
        return pid

    def stop_supervisor(self, sig: int = runctl.STOP_SIGNAL) -> int | None:
        """Stop every supervisor watching a process of this selection (first, so that it
        restarts nothing that is being stopped); the pid of one that ran."""
        stopped = None
        for name, pid in self.supervisors().items():
            for s, timeout in ((sig, 10.0), (signal.SIGKILL, 5.0)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, s)
                deadline = time.monotonic() + timeout
                while _alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                if not _alive(pid):
                    break
            runctl.clear_status(self.run_dir, name, ProcFile.PID)
            stopped = pid if stopped is None else stopped
        return stopped

    def file_named(self, name: str, kind: ProcFile) -> Path:
        return runctl.status_path(self.run_dir, name, kind)

    def watch_started(self, proc: Proc) -> _TagWatch:
        """Call before spawning ``proc``: watches its log for the start tag from now on."""
        return _TagWatch(proc.log_file, runctl.started_tag(proc.role))

    def wait_started(self, proc: Proc, pid: int, watch: _TagWatch) -> None:
        """Wait for the start tag to be appended to the log (``watch``, made before the spawn)."""
        deadline = time.monotonic() + START_TIMEOUT[proc.role]
        while time.monotonic() < deadline:
            if watch.found():
                return
            if not _alive(pid):
                raise GoWorldError(f"{proc.name} exited during start-up\n{self.tail(proc)}")
            time.sleep(0.1)
        raise GoWorldError(f"{proc.name} did not report started within "
                           f"{START_TIMEOUT[proc.role]:.0f} s\n{self.tail(proc)}")

    def wait_serving(self, timeout: float = SERVE_TIMEOUT) -> None:
        """Wait until every game has reported serving: the deployment is ready (every desired
        game and gate joined the dispatchers) and every registered service has all its shards."""
        games = self.procs("game")
        deadline = time.monotonic() + timeout
        while True:
            waiting = [p for p in games if not self.file(p, ProcFile.SERVING).exists()]
            if not waiting:
                return
            for proc in waiting:
                pid = self.pid(proc)
                if pid is None:
                    raise GoWorldError(f"{proc.name} exited before it could serve\n{self.tail(proc)}")
            if time.monotonic() > deadline:
                names = ", ".join(p.name for p in waiting)
                tails = "\n".join(self.tail(p) for p in waiting)
                raise GoWorldError(
                    f"{names} did not report serving within {timeout:.0f} s (deployment ready "
                    f"and every service's shards created)\n{tails}"
                )
            time.sleep(0.05)

    def tail(self, proc: Proc, lines: int = 15) -> str:
        out = []
        for path in (proc.log_file, self.file(proc, ProcFile.STDERR)):
            try:
                text = _last_lines(path, lines)
            except OSError:
                continue
            if text:
                out.append(f"--- {path} (last {len(text)} lines)\n" + "\n".join(text))
        return "\n".join(out)

    def signal_and_wait(self, proc: Proc, sig: int, timeout: float) -> bool:
        pid = self.pid(proc)
        if pid is None:
            return True
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _alive(pid):
                runctl.clear_stale_pid(self.run_dir, proc.name, pid)
                return True
            time.sleep(0.05)
        return False


_alive = runctl.alive


def _supervisor_args(pid: int) -> list[str] | None:
    """The command line of supervisor ``pid`` ([] when /proc does not tell); None when
    ``pid`` is not a supervisor."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    if b"goworld.supervisor" not in cmdline:
        return None
    return cmdline.decode("utf-8", errors="replace").split("\0")


def _watched_by(args: Sequence[str]) -> set[str] | None:
    """The processes a supervisor with command line ``args`` watches (None: all)."""
    flag = f"-{runctl.ONLY_FLAG}"
    if flag in args[:-1]:
        return {n for n in args[args.index(flag) + 1].split(",") if n}
    return None


def _last_lines(path: Path, lines: int, window: int = 64 * 1024) -> list[str]:
    """The last ``lines`` lines of ``path``, reading at most its last ``window`` bytes."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - window))
        return f.read().decode("utf-8", errors="replace").splitlines()[-lines:]


_TagWatch = runctl.TagWatch


def _tail_of(path: Path, lines: int = 15) -> str:
    try:
        text = _last_lines(path, lines)
    except OSError:
        return ""
    return f"--- {path} (last {len(text)} lines)\n" + "\n".join(text) if text else ""


def _progress(msg: str) -> None:
    click.echo(msg, nl=False)
    sys.stdout.flush()


# ---- commands --------------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="goworld-py")
def main() -> None:
    """goworld: run and manage a GoWorld-compatible game-server cluster."""


@main.command("config")
@_INI_OPTION
def config_command(ini_path: Path) -> None:
    """Validate goworld.ini and show the cluster it describes."""
    cfg = _load_or_exit(ini_path)
    for line in describe(cfg):
        click.echo(line)


@main.command("build")
@click.argument("app", type=click.Path(file_okay=False, path_type=Path))
@_INI_OPTION
def build_command(app: Path, ini_path: Path) -> None:
    """Import the game package APP and check what it registers."""
    cfg = _load_or_exit(ini_path)
    result = subprocess.run(
        [sys.executable, "-c", _BUILD_SCRIPT, str(app.resolve()),
         json.dumps(sorted({g.boot_entity for g in cfg.games.values()}))],
        capture_output=True, text=True,
    )
    sys.stdout.write(result.stdout)
    if result.returncode != 0:
        click.echo(f"goworld build {app}: FAILED\n{result.stderr.strip()}", err=True)
        sys.exit(1)


_BUILD_SCRIPT = """
import json, sys
from game.loader import GamePackageError, load_game_package
app, boots = sys.argv[1], json.loads(sys.argv[2])
try:
    reg = None
    for boot in boots or [None]:
        reg = load_game_package(app, boot_entity=boot)
except GamePackageError as exc:
    print(exc, file=sys.stderr)
    sys.exit(1)
for name, desc in sorted(reg.types.items()):
    kind = "space" if desc.is_space else ("service x%d" % desc.service_shards if desc.service_shards else "entity")
    extra = []
    if desc.persistent: extra.append("persistent")
    if desc.use_aoi: extra.append("aoi %g" % desc.aoi_distance)
    print("%-24s %-12s %d attrs, %d rpcs %s" % (name, kind, len(desc.attr_flags), len(desc.rpcs), " ".join(extra)))
print("ok: %d types" % len(reg.types))
"""


@main.command("start")
@click.argument("app", type=click.Path(exists=True, file_okay=False, path_type=Path))
@_INI_OPTION
@click.option(
    "--timeout",
    type=click.FloatRange(min=1.0),
    default=SERVE_TIMEOUT,
    show_default=True,
    help="Seconds to wait, after the last gate, for the cluster to serve.",
)
@click.option(
    "--no-supervise",
    is_flag=True,
    help="Do not launch the supervisor: a process that dies stays dead ([supervisor] enabled = 0 "
    "does the same).",
)
@click.option(
    "--only",
    "only",
    metavar="NAMES",
    help="Start only these processes of the ini (comma-separated, e.g. game2,gate2): this "
    "host's share of a cluster spread over several hosts. Other commands here then default "
    "to them.",
)
def start_command(app: Path, ini_path: Path, timeout: float, no_supervise: bool, only: str | None) -> None:
    """Start dispatchers, then games running APP, then gates; return once the cluster serves.

    Serving: every game has seen the deployment ready (all desired games and gates joined the
    dispatchers) and knows the entity of every shard of every registered service. Then the
    supervisor starts, which restarts a process that dies unexpectedly.

    With --only, on each host of a cluster spread over several: only the processes named
    (their ports alone are checked), the supervisor watches only them, and start waits for
    this host's games to serve (which needs every other host's games and gates to have
    joined: start the dispatchers' host first, then the others within --timeout); a host
    without games returns once its processes started."""
    cluster = _cluster(ini_path, only, recorded=False)
    running = [p.name for p in cluster.running()]
    if cluster.supervisor_pid() is not None:
        running.append(runctl.SUPERVISOR)
    if running:
        names = ", ".join(running)
        click.echo(f"goworld start: refused, already running: {names} (goworld stop first)", err=True)
        sys.exit(1)
    clashes = ports.problems(cluster.cfg, cluster.only)
    if clashes:
        click.echo(
            f"goworld start: refused, {cluster.cfg.path} names addresses that cannot be listened "
            "on:\n  " + "\n  ".join(clashes),
            err=True,
        )
        sys.exit(1)
    try:  # a random one in .goworld/ unless set; kept while another part of the cluster runs
        auth.prepare_run_secret(cluster.cfg, fresh=not Cluster(cluster.cfg).running())
    except ConfigError as exc:
        click.echo(f"goworld start: refused, {exc}", err=True)
        sys.exit(1)
    supervise = cluster.cfg.supervisor.enabled and not no_supervise
    runctl.write_cluster_app(cluster.run_dir, app.resolve(), supervise=supervise, only=cluster.only)
    for proc in cluster.all_procs():
        for kind in (ProcFile.SERVING, ProcFile.HOLD, ProcFile.RESTORE):  # an earlier run's
            runctl.clear_status(cluster.run_dir, proc.name, kind)
    (cluster.run_dir / runctl.supervisor_state(cluster.supervisor_name)).unlink(missing_ok=True)
    cluster.rotate_logs()
    started: list[Proc] = []
    try:
        for proc in cluster.all_procs():
            t0 = time.monotonic()
            _progress(f"starting {proc.name:<12} ")
            watch = cluster.watch_started(proc)
            pid = cluster.spawn(proc, app.resolve())
            started.append(proc)
            cluster.wait_started(proc, pid, watch)
            click.echo(f"ok  pid {pid}  ({time.monotonic() - t0:.1f} s)")
        if cluster.procs("game"):  # a host without games has nothing to wait for
            t0 = time.monotonic()
            _progress(f"{'waiting for services':<21} ")
            cluster.wait_serving(timeout)
            click.echo(f"ok  ({time.monotonic() - t0:.1f} s)")
        if supervise:
            _progress(f"starting {runctl.SUPERVISOR:<12} ")
            click.echo(f"ok  pid {cluster.start_supervisor()}")
    except GoWorldError as exc:
        click.echo("FAILED")
        click.echo(f"goworld start: {exc}", err=True)
        cluster.stop_supervisor(signal.SIGKILL)
        for proc in reversed(started):
            cluster.signal_and_wait(proc, signal.SIGKILL, 5)
        sys.exit(1)
    gates = [cluster.cfg.gates[p.id] for p in cluster.procs("gate")]
    web = (app / "web").is_dir()
    for g in gates:
        scheme = "https" if g.encrypt_connection else "http"
        http = _reachable(g.http_addr)
        page = f"  browser client {scheme}://{http}/" if web else ""
        click.echo(f"gate{g.id}: tcp/kcp {g.listen_addr}  ws://{http}/ws{page}")
    for p in cluster.procs("lockstep"):
        ls = cluster.cfg.lockstep_procs[p.id]
        http = _reachable(ls.http_addr)
        page = f"  pages http://{http}/static/" if ls.web_dir is not None else ""
        click.echo(f"{p.name}: kcp {ls.listen_addr}  rooms http://{http}/create  ws://{http}{ls.ws_path}{page}")


def _reachable(addr: Address) -> str:
    """``addr`` as a client would dial it: a wildcard host (listening on every interface)
    becomes this host's name."""
    if addr.host in ("", "0.0.0.0", "::"):
        return f"{socket.gethostname()}:{addr.port}"
    return str(addr)


@main.command("reload")
@click.argument("app", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--in-place", is_flag=True, help="Swap code inside the running games (no restart).")
@_INI_OPTION
@_ONLY_OPTION
def reload_command(app: Path | None, in_place: bool, ini_path: Path, only: str | None) -> None:
    """Hot-swap the game logic of the running cluster.

    By default each game in turn is frozen to disk (SIGHUP), restarted on the current code with
    -restore, and confirmed started; clients stay connected and dispatchers hold the game's
    traffic meanwhile. --in-place re-imports the code inside each running game instead and
    keeps the old code if the new one fails its checks.
    """
    cluster = _cluster(ini_path, only, check_files=False)
    current = cluster.app()
    if current is None:
        click.echo("goworld reload: no cluster was started here (goworld start first)", err=True)
        sys.exit(1)
    _check_app(cluster, app, "reload")
    if not cluster.procs("game"):
        click.echo(f"goworld reload: no game among this host's processes ({', '.join(cluster.only or ())}): "
                   "run it on the games' hosts")
        return
    ok = _reload_in_place(cluster) if in_place else _reload_by_restart(cluster, Path(current))
    if not ok:
        sys.exit(1)


@contextlib.contextmanager
def _held(cluster: Cluster, procs: Sequence[Proc], op: str) -> Iterator[None]:
    """Tell the supervisor that this command works on ``procs``: it restarts none of them
    meanwhile, and afterwards watches whatever pid their pid files name (or restarts one
    left down)."""
    taken: list[Proc] = []
    try:
        for proc in procs:
            runctl.take_hold(cluster.run_dir, proc.name, op)
            taken.append(proc)
        yield
    finally:
        for proc in taken:
            runctl.release_hold(cluster.run_dir, proc.name)


def _reload_in_place(cluster: Cluster) -> bool:
    ok = True
    for proc in cluster.procs("game"):
        with _held(cluster, [proc], "reload"):
            ok = _reload_one_in_place(cluster, proc) and ok
    return ok


def _reload_one_in_place(cluster: Cluster, proc: Proc) -> bool:
    pid = cluster.pid(proc)
    if pid is None:
        click.echo(f"{proc.name}: not running", err=True)
        return False
    status = cluster.file(proc, ProcFile.RELOAD)
    status.unlink(missing_ok=True)
    _progress(f"reloading {proc.name:<11} ")
    os.kill(pid, runctl.RELOAD_SIGNAL)
    deadline = time.monotonic() + 60
    while not status.exists() and time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    try:
        result = runctl.ReloadResult.from_json(status.read_text())
    except (OSError, ValueError):
        click.echo("no answer")
        return False
    if not result.ok:
        click.echo("REJECTED (the old code keeps running)")
        click.echo(f"  {result.message}", err=True)
        return False
    click.echo(f"ok  {result.message}")
    return True


def _reload_by_restart(cluster: Cluster, app: Path) -> bool:
    """Freeze and restore the games one at a time.

    For a running game the restoring process is started first, as a standby that imports
    everything and then waits for the freezing process to exit: the clients' pause is the
    freeze plus the restore, not the Python start-up in between.
    """
    for proc in cluster.procs("game"):
        with _held(cluster, [proc], "reload"):
            if not _reload_one_by_restart(cluster, app, proc):
                return False
    return True


def _reload_one_by_restart(cluster: Cluster, app: Path, proc: Proc) -> bool:
    frozen = runctl.freeze_file(cluster.root, proc.id)
    pid = cluster.pid(proc)
    watch = cluster.watch_started(proc)
    t0 = time.monotonic()
    if pid is not None:
        new_pid = _freeze_with_standby(cluster, proc, pid, app, t0)
        if new_pid is None:
            return False
    elif frozen.exists():
        click.echo(f"{proc.name} is not running: restoring it from {frozen.name}")
        new_pid = cluster.spawn(proc, app, runctl.restore_args())
    else:
        click.echo(f"goworld reload: {proc.name} is not running and has no freeze file", err=True)
        return False
    _progress(f"restoring {proc.name:<11} ")
    try:
        cluster.wait_started(proc, new_pid, watch)
    except GoWorldError as exc:
        click.echo("FAILED")
        cluster.signal_and_wait(proc, signal.SIGKILL, 5)
        retry = ("the supervisor retries the restore with back-off; fix the problem (or run "
                 "`goworld reload` again once it gave up)"
                 if cluster.supervisor_pid() is not None
                 else "fix the problem and run `goworld reload` again to restore it")
        click.echo(f"goworld reload: {exc}\nThe freeze file {frozen} is kept: {retry}.", err=True)
        return False
    click.echo(f"ok  pid {new_pid}  ({time.monotonic() - t0:.2f} s since the freeze began)")
    runctl.restore_pending(cluster.root, proc.id)  # drops the marker once the file is consumed
    return True


def _freeze_with_standby(
    cluster: Cluster, proc: Proc, pid: int, app: Path, t0: float
) -> int | None:
    """Start the standby restoring process, then freeze the running game ``pid``.

    Returns the standby's pid (now in the pid file) once the freeze file is written; None,
    with the failure reported and the standby killed, when the freeze did not happen."""
    standby = cluster.spawn(proc, app, runctl.restore_args(after_pid=pid))
    cluster.write_pid(proc, pid)  # the old one is still the running one
    _progress(f"freezing {proc.name:<12} ")
    failure = _wait_standby(cluster, proc, standby) or _freeze(cluster, proc, pid)
    if failure is not None:
        _kill(standby)
        head, _, detail = failure.partition("\n")
        click.echo(head)
        click.echo(f"goworld reload: {detail}", err=True)
        return None
    click.echo(f"ok  {_frozen_size(cluster, proc)} bytes  ({time.monotonic() - t0:.2f} s)")
    # Should the standby die before it consumed the freeze file, the supervisor restores.
    runctl.write_status(cluster.run_dir, proc.name, ProcFile.RESTORE, f"{pid}\n")
    cluster.write_pid(proc, standby)
    return standby


def _wait_standby(cluster: Cluster, proc: Proc, standby: int) -> str | None:
    """Let the standby finish its imports before the pause starts; the failure, if any.

    The marker names the standby's pid: one left by an earlier reload's standby (now the
    running game) does not count, or the freeze would start while this one still imports."""
    marker = cluster.file(proc, ProcFile.STANDBY)
    deadline = time.monotonic() + START_TIMEOUT["game"]
    while not _is_standby(marker, standby) and _alive(standby) and time.monotonic() < deadline:
        time.sleep(0.005)
    if _is_standby(marker, standby):
        return None
    return f"FAILED\nthe standby {proc.name} did not come up\n{cluster.tail(proc)}"


def _is_standby(marker: Path, pid: int) -> bool:
    try:
        return marker.read_text().strip() == str(pid)
    except OSError:
        return False


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def _frozen_size(cluster: Cluster, proc: Proc) -> int | str:
    for path in (runctl.freeze_file(cluster.root, proc.id), runctl.restored_file(cluster.root, proc.id)):
        with contextlib.suppress(OSError):
            return path.stat().st_size
    return "?"


def _freeze(cluster: Cluster, proc: Proc, pid: int) -> str | None:
    """Signal the game to freeze and wait for it to exit; the failure, if any.

    The standby restores as soon as the game has exited and, once back on every dispatcher,
    renames the freeze file to ``.restored``: that may happen before we look, so a new
    ``.restored`` file (not the one of an earlier reload) counts as written too."""
    error = cluster.file(proc, ProcFile.FREEZE_ERROR)
    error.unlink(missing_ok=True)
    restored = runctl.restored_file(cluster.root, proc.id)
    restored_before = _file_id(restored)
    os.kill(pid, runctl.FREEZE_SIGNAL)
    deadline = time.monotonic() + STOP_TIMEOUT["game"]
    while _alive(pid) and not error.exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    frozen = runctl.freeze_file(cluster.root, proc.id)
    if error.exists():
        return f"FAILED (the game keeps running)\n{proc.name}: {error.read_text()}"
    if _alive(pid):
        return (f"FAILED\n{proc.name} did not freeze within {STOP_TIMEOUT['game']:.0f} s\n"
                f"{cluster.tail(proc)}")
    if not frozen.exists() and _file_id(restored) in (None, restored_before):
        return f"FAILED\n{proc.name} exited without writing {frozen}\n{cluster.tail(proc)}"
    return None


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


_APP_ARGUMENT = click.argument(
    "app", required=False, type=click.Path(file_okay=False, path_type=Path)
)


def _check_app(cluster: Cluster, app: Path | None, command: str) -> None:
    """GoWorld's forms name the app (``goworld stop examples/test_game``): when one is given,
    it must be the one this ini's cluster was started with."""
    current = cluster.app()
    if app is None or current is None:
        return
    if app.resolve() != Path(current):
        click.echo(
            f"goworld {command}: the cluster of {cluster.cfg.path} runs {current}, not "
            f"{app.resolve()} (pass --ini for another cluster)",
            err=True,
        )
        sys.exit(1)


@main.command("stop")
@_APP_ARGUMENT
@_INI_OPTION
@_ONLY_OPTION
@click.option(
    "--timeout", type=click.FloatRange(min=0), default=120.0, show_default=True,
    help="Seconds the whole stop may take; what still runs then is killed and named "
    "(0: no bound).",
)
@click.option("--cluster", "everywhere", is_flag=True,
              help="First drain every gate of the cluster, on every host (through a "
              "dispatcher's POST /drain; needs the ops_token), then stop this host's share.")
def stop_command(app: Path | None, ini_path: Path, only: str | None, timeout: float,
                 everywhere: bool) -> None:
    """Stop the cluster without losing anything, showing each step: the gates refuse new
    clients and tell theirs the server is going down (all gates before any closes), then
    close them; the games handle what was already sent to them, then save every persistent
    entity; then the dispatchers stop. The supervisor is stopped first.

    With --cluster (a cluster over several hosts), the gates of every host are drained
    first; the other hosts' processes keep running, drained, until their own `goworld stop`.

    APP (optional, as in GoWorld's `goworld stop APP`) must be the running cluster's app."""
    from goworld.safestop import SafeStop

    cluster = _cluster(ini_path, only, check_files=False)
    _check_app(cluster, app, "stop")
    if everywhere:
        _drain_cluster(cluster)
    if cluster.supervisor_pid() is not None:
        _progress(f"stopping {runctl.SUPERVISOR:<12} ")
        cluster.stop_supervisor()
        click.echo("ok")
    if not cluster.running():
        click.echo("goworld stop: nothing is running" + (" here" if everywhere else ""))
        _say_what_runs_elsewhere(cluster, everywhere)
        return
    stop = SafeStop(cluster, timeout, click.echo)
    if not stop.run():
        problems = [f"{', '.join(stop.killed)} killed at the timeout"] if stop.killed else []
        if stop.failed:
            problems.append(f"{', '.join(stop.failed)} did not stop cleanly (see the logs)")
        click.echo(f"goworld stop: {'; '.join(problems)}", err=True)
        sys.exit(1)
    _say_what_runs_elsewhere(cluster, everywhere)


def _drain_cluster(cluster: Cluster) -> None:
    """`goworld stop --cluster`'s first step: the dispatchers (this host's first) drain every
    gate connected to them, on whichever host, until every gate of the ini has answered or
    every dispatcher was asked; the other hosts' gates' reports are shown, and a gate that
    could not be drained is named. Exits (nothing stopped) when no dispatcher could do it."""
    from goworld.cluster import auth
    from goworld.ops_client import Unaddressable, fetch_status, status_url
    from goworld.ops_http import CREDENTIALS_HEADER, DRAIN_PATH
    from goworld.safestop import DRAIN_WAIT

    try:
        secret = auth.resolve_secret(cluster.cfg)
    except ConfigError as exc:
        click.echo(f"goworld stop --cluster: {exc}; nothing stopped", err=True)
        sys.exit(2)
    if secret is None:
        click.echo("goworld stop --cluster: the dispatchers take orders only with credentials "
                   "made from the cluster secret, and none is set: set [deployment] "
                   f"cluster_secret or cluster_secret_file (or {auth.SECRET_ENV}) as on every "
                   "host; nothing stopped", err=True)
        sys.exit(2)
    whole = Cluster(cluster.cfg)
    share = {p.name for p in cluster.all_procs()}
    gates = [g.name for g in whole.procs("gate")]
    dispatchers = sorted(whole.procs("dispatcher"),
                         key=lambda d: not (d.name in share and cluster.pid(d) is not None))
    drained: dict[str, dict[str, Any]] = {}
    silent: set[str] = set()  # asked, no report in time
    why_not: list[str] = []
    answered = 0
    for d in dispatchers:
        if all(g in drained for g in gates):
            break
        here = d.name in share and cluster.pid(d) is not None
        try:
            url = status_url(d.name, cluster.cfg.dispatchers[d.id], here=here, path=DRAIN_PATH)
        except Unaddressable as exc:
            why_not.append(str(exc))
            continue
        _progress(f"draining every gate through {d.name} ")
        order = auth.make_token(secret.value, auth.Identity("ops", 1), d.id, time.time())
        answer = fetch_status(url, "", DRAIN_WAIT + 5, method="POST", expect={"dispatcher": d.id},
                              headers={CREDENTIALS_HEADER: order})
        if isinstance(answer, str):
            click.echo("no answer")
            why_not.append(answer)
            continue
        answered += 1
        reports = answer.get("gates") or {}
        click.echo(f"({len(reports)} connected)")
        for name, report in reports.items():
            if isinstance(report, dict):
                drained.setdefault(name, report)
            else:
                silent.add(name)
    if not answered:
        click.echo("goworld stop --cluster: no dispatcher could drain the gates; nothing stopped:\n  "
                   + "\n  ".join(why_not), err=True)
        sys.exit(1)
    for name in gates:
        if name in share:
            continue  # this host's: shown by the stop below (its report comes at once)
        report = drained.get(name)
        if report is None:
            why = f"no answer within {DRAIN_WAIT:g} s" if name in silent else "connected to no dispatcher asked (down?)"
            click.echo(f"draining {name:<12} NOT drained: {why}")
            continue
        click.echo(
            f"draining {name:<12} new clients refused; {report.get('told', 0)} of "
            f"{report.get('clients', 0)} clients told the server is going down; drained "
            f"in {report.get('seconds', 0):.2f} s (elsewhere)"
        )


def _say_what_runs_elsewhere(cluster: Cluster, everywhere: bool) -> None:
    """After `goworld stop --cluster`: the ini's processes outside this host's share."""
    share = {p.name for p in cluster.all_procs()}
    others = [p.name for p in Cluster(cluster.cfg).all_procs() if p.name not in share]
    if everywhere and others:
        click.echo(f"on other hosts: {', '.join(others)} (their gates drained): stop each "
                   "host's share there with `goworld stop`")


@main.command("kill")
@_APP_ARGUMENT
@_INI_OPTION
@_ONLY_OPTION
def kill_command(app: Path | None, ini_path: Path, only: str | None) -> None:
    """Kill every process of the cluster at once (SIGKILL: nothing is saved).

    APP (optional, as in GoWorld's `goworld kill APP`) must be the running cluster's app."""
    cluster = _cluster(ini_path, only, check_files=False)
    _check_app(cluster, app, "kill")
    if cluster.stop_supervisor(signal.SIGKILL) is not None:
        click.echo(f"killed {runctl.SUPERVISOR}")
    for proc in cluster.all_procs():
        if cluster.pid(proc) is not None:
            cluster.signal_and_wait(proc, signal.SIGKILL, 10)
            click.echo(f"killed {proc.name}")


@main.command("status")
@_APP_ARGUMENT
@_INI_OPTION
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for scripts.")
@_ONLY_OPTION
@click.option("--cluster", "everywhere", is_flag=True,
              help="Every process of the ini, on every host: those that do not run here are "
              "asked for their /status over HTTP (at their http_addr; other hosts need the "
              "ops_token).")
def status_command(app: Path | None, ini_path: Path, as_json: bool, only: str | None,
                   everywhere: bool) -> None:
    """Show each process of the cluster: up or down, pid, uptime, restarts by the supervisor.

    Exits 0 when everything (the supervisor too, unless started with --no-supervise) runs,
    3 when nothing runs, 1 when something is down. APP (optional, as in GoWorld's
    `goworld status APP`) must be the running cluster's app. With --cluster, "everything"
    is every process of the ini, wherever it runs."""
    cluster = _cluster(ini_path, only, check_files=False)
    _check_app(cluster, app, "status")
    report = _status(cluster, everywhere=everywhere)
    procs = report["processes"]
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        _print_status(cluster, report)
    if not any(p["up"] for p in procs):
        sys.exit(3)
    if not report["ok"]:
        sys.exit(1)


def _status(cluster: Cluster, *, everywhere: bool = False) -> dict[str, Any]:
    """The report of `goworld status` (its --json). ``everywhere`` (--cluster): every process
    of the ini, those outside this host's share or not running here asked over HTTP."""
    from goworld.supervisor import read_state

    supervised = runctl.read_cluster_supervised(cluster.run_dir)
    sup_pid = cluster.supervisor_pid()
    state = read_state(cluster.run_dir) if sup_pid is not None else {}
    now = time.time()
    procs = []
    share = {p.name for p in cluster.all_procs()}
    listed = Cluster(cluster.cfg).all_procs() if everywhere else cluster.all_procs()
    for proc in listed:
        pid = cluster.pid(proc) if proc.name in share else None
        seen = state.get(proc.name, {})
        started = runctl.start_time(pid) if pid is not None else None
        if pid is None:
            label = {"backoff": "down (restarting)", "gave-up": "down (gave up)"}.get(
                seen.get("state", ""), "down")
        else:
            label = "starting" if seen.get("state") == "starting" else "up"
        procs.append({
            "name": proc.name, "role": proc.role, "id": proc.id, "up": pid is not None,
            "state": label, "pid": pid,
            "uptime": round(now - started, 1) if started is not None else None,
            "restarts": int(seen.get("restarts", 0)), "last_restart": seen.get("last_restart"),
            "last_exit": seen.get("last_exit", ""), "log": str(proc.log_file),
            "silent_seconds": _silent_seconds(cluster, proc.name, now) if pid is not None else None,
            "here": proc.name in share, "address": None,
        })
    _add_live_figures(cluster, procs, everywhere=everywhere)
    ok = all(p["up"] for p in procs) and (sup_pid is not None or not supervised)
    return {
        "app": cluster.app(), "ok": ok, "processes": procs, "cluster": everywhere,
        "hang_timeout": cluster.cfg.supervisor.hang_timeout,
        "supervisor": {"expected": supervised, "up": sup_pid is not None, "pid": sup_pid},
    }


#: A running process whose alive file is older than this is reported as stalled.
_STALLED_AFTER = 5.0


def _silent_seconds(cluster: Cluster, name: str, now: float) -> float | None:
    """Seconds since the process's event loop last touched its alive file (None: no file)."""
    try:
        mtime = runctl.status_path(cluster.run_dir, name, runctl.ProcFile.ALIVE).stat().st_mtime
    except OSError:
        return None
    return round(max(0.0, now - mtime), 1)


#: What `goworld status` shows of each running process's /status (goworld.metrics).
_LIVE_KEYS = ("clients", "entities", "loop_lag_seconds", "loop_lag_max_seconds", "cpu_seconds", "rss_bytes",
              "draining")
#: Seconds a process has to answer /status (asked in parallel).
_LIVE_TIMEOUT = 1.0


def _add_live_figures(cluster: Cluster, procs: list[dict[str, Any]], *, everywhere: bool = False) -> None:
    """Each running process's figures from GET /status on its http_addr (None where it did
    not answer within _LIVE_TIMEOUT; ``status_error`` says why). ``everywhere``: a process
    not running here is asked too (goworld.ops_client says where); its answer makes it up
    elsewhere ("here" false, "address" the URL asked), its silence leaves it down with why."""
    from concurrent.futures import ThreadPoolExecutor

    from goworld.metrics import ops_token
    from goworld.ops_client import Unaddressable, fetch_status, status_url

    token = ops_token(cluster.cfg)
    sections = {
        "dispatcher": cluster.cfg.dispatchers, "game": cluster.cfg.games, "gate": cluster.cfg.gates,
        "lockstep": cluster.cfg.lockstep_procs,
    }
    for p in procs:
        p.update(dict.fromkeys(_LIVE_KEYS), status_error=None)
    asked = [p for p in procs if p["up"] or everywhere]

    def ask(p: dict[str, Any]) -> dict[str, Any] | str:
        try:
            url = status_url(p["name"], sections[p["role"]][p["id"]], here=p["up"])
        except Unaddressable as exc:
            return str(exc)
        p["address"] = url
        return fetch_status(url, token, _LIVE_TIMEOUT, expect={"role": p["role"], "id": p["id"]})

    if not asked:
        return
    with ThreadPoolExecutor(max_workers=min(16, len(asked))) as pool:
        for p, answer in zip(asked, pool.map(ask, asked), strict=True):
            if isinstance(answer, str):
                p["status_error"] = answer
                continue
            p.update({key: answer.get(key) for key in _LIVE_KEYS})
            if not p["up"]:  # it answers from another host (or from here, started elsewhere)
                p.update(up=True, here=False, state="up (elsewhere)", pid=answer.get("pid"),
                         uptime=answer.get("uptime_seconds"), silent_seconds=None)


def _live_cells(p: dict[str, Any]) -> str:
    """CLIENTS ENTITIES LAG CPU RSS of one process ('-' where it did not answer)."""

    def num(v: Any) -> str:
        return "-" if v is None else str(v)

    lag = "-" if p["loop_lag_max_seconds"] is None else f"{p['loop_lag_max_seconds'] * 1000:.1f}ms"
    cpu = "-" if p["cpu_seconds"] is None else f"{p['cpu_seconds']:.1f}s"
    rss = "-" if p["rss_bytes"] is None else f"{p['rss_bytes'] / 1048576:.0f}MiB"
    return f"{num(p['clients']):<8} {num(p['entities']):<9} {lag:<8} {cpu:<8} {rss:<7}"


def _print_status(cluster: Cluster, report: dict[str, Any]) -> None:
    procs = report["processes"]
    roles = ("dispatcher", "game", "gate", "lockstep")
    count = {r: sum(1 for p in procs if p["role"] == r and p["up"]) for r in roles}
    total = {r: sum(1 for p in procs if p["role"] == r) for r in roles}  # the ini's, or --only's
    sup = report["supervisor"]
    if sup["up"]:
        supervisor = f"supervisor pid {sup['pid']}"
    else:
        expected = sup["expected"] and any(p["up"] for p in procs)
        supervisor = "supervisor NOT RUNNING" if expected else "not supervised"
    parts = [f"{count[r]}/{total[r]} {r}s" + (f" ({report['app'] or '-'})" if r == "game" else "")
             for r in roles if total[r] or (cluster.only is None and r != "lockstep")]
    share = f" (this host's share: {','.join(cluster.only)})" if cluster.only is not None else ""
    if report.get("cluster"):
        elsewhere = sum(1 for p in procs if p["up"] and not p["here"])
        share = f" ({elsewhere} of them on other hosts)" if elsewhere else " (all of them here)"
    click.echo(f"{', '.join(parts)} running{share}; {supervisor}")
    click.echo(f"  {'NAME':<12} {'STATE':<18} {'PID':<8} {'UPTIME':<9} {'RESTARTS':<8}  "
               f"{'CLIENTS':<8} {'ENTITIES':<9} {'LAG':<8} {'CPU':<8} {'RSS':<7}  LAST RESTART")
    for p in procs:
        last = "-"
        if p["last_restart"] is not None:
            when = time.strftime("%H:%M:%S", time.localtime(p["last_restart"]))
            last = f"{when} ({_duration(time.time() - p['last_restart'])} ago)"
        uptime = _duration(p["uptime"]) if p["uptime"] is not None else "-"
        click.echo(f"  {p['name']:<12} {p['state']:<18} {p['pid'] or '-'!s:<8} {uptime:<9} "
                   f"{p['restarts']:<8}  {_live_cells(p)}  {last}")
        if not p["up"] and p["last_exit"]:
            click.echo(f"      {p['last_exit']}")
        if p["up"] and p.get("status_error"):
            click.echo(f"      no figures: {p['status_error']}")
        if not p["up"] and p.get("status_error"):
            click.echo(f"      not answering: {p['status_error']}")
        if p["up"] and not p["here"]:
            click.echo(f"      at {p['address']}")
        if p["up"] and p.get("draining"):
            click.echo("      drained: refuses new clients (the cluster is stopping)")
        silent = p.get("silent_seconds")
        if p["up"] and silent is not None and silent > _STALLED_AFTER:
            hang = report.get("hang_timeout") or 0
            then = f"; the supervisor kills it after {hang:g} s" if hang and report["supervisor"]["up"] else ""
            click.echo(f"      STALLED: its event loop showed no sign of life for {silent:.0f} s{then}")


def _duration(seconds: float) -> str:
    s = int(max(seconds, 0))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


_PROC_NAME = re.compile(r"(dispatcher|game|gate)([1-9][0-9]*)")


@main.command("restart")
@click.argument("args", nargs=-1, metavar="[APP] [PROCESS]")
@_INI_OPTION
@_ONLY_OPTION
def restart_command(args: tuple[str, ...], ini_path: Path, only: str | None) -> None:
    """Restart one process (game1, gate2, dispatcher1) or, without PROCESS, all of them.

    One process: stopped (a game saves its entities), started again (a game fresh, never from
    a freeze file) and waited for: a game until it serves, a gate until it listens. All:
    dispatchers, then games, then gates, one at a time. The supervisor leaves them alone
    meanwhile and watches the new processes afterwards. APP (optional, as in GoWorld's forms)
    must be the running cluster's app."""
    names = [a for a in args if _PROC_NAME.fullmatch(a)]
    apps = [a for a in args if not _PROC_NAME.fullmatch(a)]
    if len(names) > 1 or len(apps) > 1:
        click.echo("goworld restart: give at most one APP and one PROCESS (e.g. game1)", err=True)
        sys.exit(2)
    cluster = _cluster(ini_path, only, check_files=False)
    _check_app(cluster, Path(apps[0]) if apps else None, "restart")
    current = cluster.app()
    if current is None:
        click.echo("goworld restart: no cluster was started here (goworld start first)", err=True)
        sys.exit(1)
    procs = cluster.all_procs()
    if names:
        procs = [p for p in procs if p.name == names[0]]
        if not procs:
            where = f"{cluster.cfg.path} has no {names[0]}"
            if cluster.only is not None and names[0] in {p.name for p in Cluster(cluster.cfg).all_procs()}:
                where = f"{names[0]} is not one of this host's processes ({', '.join(cluster.only)}; --only)"
            click.echo(f"goworld restart: {where}", err=True)
            sys.exit(2)
    with _held(cluster, procs, "restart"):
        for proc in procs:
            t0 = time.monotonic()
            _progress(f"restarting {proc.name:<10} ")
            try:
                pid = _restart_one(cluster, proc, Path(current))
            except GoWorldError as exc:
                click.echo("FAILED")
                click.echo(f"goworld restart: {exc}", err=True)
                sys.exit(1)
            click.echo(f"ok  pid {pid}  ({time.monotonic() - t0:.1f} s)")
    if runctl.read_cluster_supervised(cluster.run_dir) and cluster.supervisor_pid() is None:
        _progress(f"starting {runctl.SUPERVISOR:<12} ")  # it died: bring it back too
        try:
            click.echo(f"ok  pid {cluster.start_supervisor()}")
        except GoWorldError as exc:
            click.echo("FAILED")
            click.echo(f"goworld restart: {exc}", err=True)
            sys.exit(1)


def _restart_one(cluster: Cluster, proc: Proc, app: Path) -> int:
    """Stop ``proc`` (SIGTERM, then SIGKILL), start it fresh and wait until it is back."""
    if not cluster.signal_and_wait(proc, runctl.STOP_SIGNAL, STOP_TIMEOUT[proc.role]):
        cluster.signal_and_wait(proc, signal.SIGKILL, 10)
    cluster.keep_logs(proc)
    runctl.clear_status(cluster.run_dir, proc.name, ProcFile.RESTORE)  # a freeze file is stale now
    serving = cluster.file(proc, ProcFile.SERVING)
    serving.unlink(missing_ok=True)
    watch = cluster.watch_started(proc)
    pid = cluster.spawn(proc, app)
    cluster.wait_started(proc, pid, watch)  # a gate logs it once it listens
    if proc.role == "game":
        deadline = time.monotonic() + SERVE_TIMEOUT
        while not serving.exists():
            if not _alive(pid):
                raise GoWorldError(f"{proc.name} exited before it could serve\n{cluster.tail(proc)}")
            if time.monotonic() > deadline:
                raise GoWorldError(f"{proc.name} did not report serving within {SERVE_TIMEOUT:.0f} s\n"
                                   f"{cluster.tail(proc)}")
            time.sleep(0.05)
    return pid


@main.command("bench")
@click.option("--quick", is_flag=True, help="Shrink every scenario to seconds (a smoke run).")
@click.option("--only", "only", metavar="SCENARIO,...", help="Run only these scenarios.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("docs/bench"),
    show_default=True,
    help="Where bench-results.jsonl (appended) and BENCHMARKS.md (rewritten) go.",
)
@click.option(
    "--steps",
    metavar="N,N,...",
    help="Capacity scenarios: the bot counts to ramp through (default 200,400,800,1200,1600,"
    "2000,2500,3000 with the Go bot, 100-1600 with the Python bot); sidebyside: the N of each "
    "step (default 100,300,1000); lockstep: the room counts (default 10,25,50,100,150,200,...,800).",
)
@click.option(
    "--window",
    type=click.FloatRange(min=1.0),
    help="Capacity scenarios: seconds measured per step (default 10); sidebyside: the bot's "
    "-duration per run (default 40); lockstep: seconds per measured window (default 5).",
)
@click.option(
    "--bot",
    type=click.Choice(["go", "python"]),
    help="Capacity scenarios: the load, GoWorld's Go bot (default) or our Python bot.",
)
@click.option(
    "--repeat",
    type=click.IntRange(min=1, max=20),
    help="sidebyside: runs of each engine at each N (default 3; the table shows medians and "
    "the spread); lockstep: windows per step (default 3, medians).",
)
def bench_command(
    quick: bool, only: str | None, out_dir: Path, steps: str | None, window: float | None,
    bot: str | None, repeat: int | None,
) -> None:
    """Measure the engine (capacity, routing, fan-out, memory, AOI, reload pause, codec,
    lockstep rooms) and write BENCHMARKS.md."""
    from goworld.bench import BenchError, report, runner
    from goworld.bench.scenarios import NOT_YET

    try:
        names = runner.parse_only(only)
        options = {"steps": _parse_steps(steps), "window": window, "bot": bot, "repeat": repeat}
        runner.check_options(names, options)
    except BenchError as exc:
        click.echo(f"goworld: {exc}", err=True)
        sys.exit(2)
    _, errors = runner.run(names, quick=quick, out=out_dir, options=options)
    path = report.write(runner.latest(out_dir), out_dir, NOT_YET)
    click.echo(f"wrote {path} and {out_dir / runner.RESULTS_FILE}")
    if errors:
        click.echo("goworld: failed scenario(s):\n  " + "\n  ".join(e.splitlines()[0] for e in errors), err=True)
        sys.exit(1)


def _parse_steps(steps: str | None) -> list[int] | None:
    from goworld.bench import BenchError

    if steps is None:
        return None
    try:
        values = [int(v) for v in steps.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or any(v <= 0 for v in values) or values != sorted(set(values)):
        raise BenchError(f"--steps {steps!r}: give increasing positive bot counts, e.g. 100,200,400")
    return values


def describe(cfg: ClusterConfig) -> list[str]:
    """Human-readable lines describing the cluster layout."""
    d = cfg.deployment
    lines = [
        f"config   {cfg.path}",
        f"cluster  {d.desired_dispatchers} dispatcher(s), {d.desired_games} game(s), "
        f"{d.desired_gates} gate(s)",
        f"storage  {cfg.storage.type} {cfg.storage.path or cfg.storage.url}",
        "kvdb     "
        + (f"{cfg.kvdb.type} {cfg.kvdb.path or cfg.kvdb.url}" if cfg.kvdb else "disabled"),
    ]
    for dispatcher in cfg.dispatchers.values():
        lines.append(
            f"dispatcher{dispatcher.id}  grpc {dispatcher.listen_addr} "
            f"(advertised {dispatcher.advertise_addr})  log {dispatcher.log_file}"
        )
    for game in cfg.games.values():
        lines.append(
            f"game{game.id}        boot entity {game.boot_entity}  save every "
            f"{game.save_interval}s  log {game.log_file}"
        )
    for gate in cfg.gates.values():
        extras = [
            name
            for name, on in (
                ("snappy", gate.compress_connection),
                ("tls", gate.encrypt_connection),
                (f"legacy {gate.legacy_client_protocol}", gate.legacy_client_protocol),
            )
            if on
        ]
        lines.append(
            f"gate{gate.id}        tcp+kcp {gate.listen_addr}  ws://{gate.http_addr}/ws"
            + (f"  [{', '.join(extras)}]" if extras else "")
            + f"  log {gate.log_file}"
        )
    return lines


if __name__ == "__main__":
    main()
