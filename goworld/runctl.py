"""Run control: the protocol between the ``goworld`` CLI and the processes it starts.

Both sides import this module (the CLI, ``goworld.process`` and ``game/__main__``); neither
spells a file name, flag, signal or tag of the handshake itself (the freeze file's name
included: :func:`freeze_file`).

Files, relative to the cluster root (the ini's directory, every process's working directory):

- ``.goworld/`` (:data:`RUN_DIR`): the CLI's bookkeeping.
- ``.goworld/cluster.json`` (:data:`CLUSTER_FILE`): ``{"app": "/abs/path"}``, the running
  game package (written by ``goworld start``).
- ``.goworld/cluster.secret`` (:data:`CLUSTER_SECRET_FILE`, mode 0600): the cluster secret
  ``goworld start`` generated because neither ``GOWORLD_CLUSTER_SECRET`` nor the ini sets one;
  every process started here reads it (:mod:`goworld.cluster.auth`).
- ``.goworld/<role><id>.<kind>``, one per process and :class:`ProcFile` kind:
  ``pid`` (the CLI), ``stderr`` (the process's stderr, where a crash before logging shows),
  and a game's status files, each written atomically by the game and read by the CLI:
  ``standby`` (a ``-restore -after-pid`` process has imported everything; contents: its pid),
  ``freeze-error`` (a freeze was cancelled; contents: the reason), ``reload`` (the result of an
  in-place reload, :class:`ReloadResult` as JSON), ``serving`` (deployment ready and every
  service shard known; JSON ``{"services": n, "shards": n}``).
- ``.goworld/<role><id>.stderr.N`` and ``<log_file>.N``: the generations :func:`rotate` keeps
  (``goworld start`` rotates each process's files before it starts anything).
- ``game<id>_freezed.dat`` (:func:`freeze_file`): a frozen game (GoWorld's name), renamed to
  ``game<id>_freezed.restored`` once the restoring game is back on every dispatcher.

Supervision (:mod:`goworld.supervisor`, started by ``goworld start`` unless ``--no-supervise``):

- ``.goworld/supervisor.pid``, ``supervisor.stderr`` (:data:`SUPERVISOR`), its log
  ``.goworld/supervisor.log`` (:data:`SUPERVISOR_LOG`) and its state for ``goworld status``,
  ``.goworld/supervisor.json`` (:data:`SUPERVISOR_STATE`, written atomically). A supervisor
  started by ``goworld start --only`` (one host's processes) watches only those
  (:data:`ONLY_FLAG`) and uses the name :func:`supervisor_name` gives it
  (``supervisor-game1+gate1.pid`` ...), so that hosts sharing a run directory do not clash;
  ``cluster.json`` then records the selection (:func:`read_cluster_only`).
- ``.goworld/<proc>.hold`` (:class:`Hold`): a CLI command (stop of one process, restart,
  reload) is working on that process; the supervisor leaves it alone while the file exists
  and the command (its pid in the file) runs, so an exit under a hold is never a crash.
  Taking and releasing a hold, and the supervisor's check-then-spawn, happen under an
  ``flock`` on ``.goworld/<proc>.lock`` (:func:`locked`): a hold taken after the supervisor
  decided to restart sees the new pid in the pid file.
- ``.goworld/game<id>.restore``: written by ``goworld reload`` once the game froze, removed when
  the freeze file was consumed (renamed ``.restored``) or by ``goworld start``. A game the
  supervisor restarts gets ``-restore`` only while this and the freeze file exist
  (:func:`restore_pending`); any other freeze file is stale.

Environment: ``GOWORLD_STDERR`` (:data:`STDERR_ENV`) is set by the CLI to the ``device:inode``
of the file it captures a process's stderr into (:func:`stderr_capture_env`). A process whose
fd 2 is that file (:func:`stderr_is_captured`) writes its log records to its log file only, so
that each line is stored once; its stderr then holds only what is not a log record (a crash's
traceback, Python warnings). The inode check keeps a grandchild with another stderr, which
inherits the variable, logging to its stderr as configured.

Signals: SIGTERM stops a process (a game first makes sure every message its dispatchers had
for it is handled, then saves every persistent entity), :data:`FREEZE_SIGNAL` freezes a game to
its freeze file and exits, :data:`RELOAD_SIGNAL` re-imports a game's code in place,
:data:`DRAIN_SIGNAL` makes a gate refuse new clients, tell its clients the server is going
down and stop reading them (``goworld stop``'s first step; the gate writes its ``drained``
status file once what it read is with the dispatchers). A stopping game writes its progress to
its ``stopping`` status file. A process logs :func:`started_tag` once it runs.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "RUN_DIR",
    "CLUSTER_FILE",
    "CLUSTER_SECRET_FILE",
    "ProcFile",
    "GameState",
    "ReloadResult",
    "ID_FLAGS",
    "CONFIG_FLAG",
    "APP_FLAG",
    "STATIC_FLAG",
    "RESTORE_FLAG",
    "AFTER_PID_FLAG",
    "FREEZE_SIGNAL",
    "RELOAD_SIGNAL",
    "STOP_SIGNAL",
    "DRAIN_SIGNAL",
    "proc_name",
    "run_dir",
    "status_path",
    "write_status",
    "read_status",
    "clear_status",
    "write_pid",
    "read_pid",
    "clear_stale_pid",
    "write_cluster_app",
    "read_cluster_app",
    "read_cluster_supervised",
    "read_cluster_only",
    "freeze_file",
    "restored_file",
    "role_args",
    "restore_args",
    "started_tag",
    "write_atomically",
    "STDERR_ENV",
    "stderr_capture_env",
    "stderr_is_captured",
    "rotate",
    "SUPERVISOR",
    "SUPERVISOR_LOG",
    "SUPERVISOR_STATE",
    "ONLY_FLAG",
    "supervisor_name",
    "supervisor_log",
    "supervisor_state",
    "Hold",
    "locked",
    "take_hold",
    "release_hold",
    "read_hold",
    "restore_pending",
    "alive",
    "start_time",
    "spawn",
    "TagWatch",
]

#: The CLI's bookkeeping directory, relative to the cluster root.
RUN_DIR = ".goworld"
#: In the run directory: the running cluster's game package.
CLUSTER_FILE = "cluster.json"
#: In the run directory: the cluster secret ``goworld start`` made (mode 0600), used by the
#: processes when neither the environment nor the ini sets one (:mod:`goworld.cluster.auth`).
CLUSTER_SECRET_FILE = "cluster.secret"

#: Each role's id flag (GoWorld's spelling; ``python -m game -gid 1``).
ID_FLAGS = {"dispatcher": "dispid", "game": "gid", "gate": "gateid", "lockstep": "lockstepid"}
#: The ini every process reads (``-configfile PATH``).
CONFIG_FLAG = "configfile"
#: A game's package directory (``-app DIR``).
APP_FLAG = "app"
#: A directory of web files a gate serves over HTTP (``-static DIR``).
STATIC_FLAG = "static"
#: A game started with this flag restores itself from its freeze file.
RESTORE_FLAG = "restore"
#: With -restore: start up now, restore once that (freezing) process has exited.
AFTER_PID_FLAG = "after-pid"

#: Set by the CLI for the processes whose stderr it captures: ``device:inode`` of that file.
STDERR_ENV = "GOWORLD_STDERR"

#: The supervisor's name in the run directory (``supervisor.pid``, ``supervisor.stderr``).
SUPERVISOR = "supervisor"
#: In the run directory: the supervisor's log file and its state (JSON, for ``goworld status``).
SUPERVISOR_LOG = "supervisor.log"
SUPERVISOR_STATE = "supervisor.json"
#: The supervisor's flag naming the processes it watches (``-only game1,gate1``): those of
#: ``goworld start --only`` (one host's share of the ini); without it, every process.
ONLY_FLAG = "only"

STOP_SIGNAL = signal.SIGTERM
FREEZE_SIGNAL = signal.SIGHUP
RELOAD_SIGNAL = signal.SIGUSR1
DRAIN_SIGNAL = signal.SIGUSR2


class ProcFile(enum.StrEnum):
    """The per-process files in the run directory: ``<role><id>.<kind>``."""

    PID = "pid"
    STDERR = "stderr"
    STANDBY = "standby"
    FREEZE_ERROR = "freeze-error"
    RELOAD = "reload"
    SERVING = "serving"
    HOLD = "hold"
    LOCK = "lock"
    RESTORE = "restore"
    DRAINED = "drained"  # a gate after DRAIN_SIGNAL: JSON {"clients", "told", "seconds"}
    STOPPING = "stopping"  # a stopping game's progress: JSON {"phase", ...}
    ALIVE = "alive"  # touched every second while the process's loop runs (supervisor hang check)


class GameState(enum.Enum):
    """A game's answer to the operator's freeze signal, in order; a failed freeze goes back
    to RUNNING."""

    RUNNING = "running"
    FREEZING = "freezing"  # asked every dispatcher to hold its traffic, waiting for the acks
    QUIESCING = "quiescing"  # every dispatcher holds it: draining posts and storage callbacks
    FROZEN = "frozen"  # snapshot taken, the process writes its freeze file and exits


@dataclass(frozen=True)
class ReloadResult:
    """The ``reload`` status file: did the in-place reload take, and the game's summary."""

    ok: bool
    message: str

    def to_json(self) -> str:
        return json.dumps({"ok": self.ok, "message": self.message})

    @classmethod
    def from_json(cls, text: str) -> ReloadResult:
        """Raises ValueError for anything but the object :meth:`to_json` writes."""
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("ok"), bool):
            raise ValueError(f"not a reload result: {text!r}")
        return cls(data["ok"], str(data.get("message", "")))


def proc_name(role: str, proc_id: int) -> str:
    return f"{role}{proc_id}"


def run_dir(root: Path) -> Path:
    return root / RUN_DIR


def status_path(run_dir: Path, name: str, kind: ProcFile) -> Path:
    """``run_dir/<name>.<kind>``; ``name`` is a :func:`proc_name`."""
    return run_dir / f"{name}.{ProcFile(kind).value}"


def write_atomically(path: Path, data: bytes) -> None:
    """Temporary file, fsync, rename: a reader sees the whole file or none."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_status(run_dir: Path, name: str, kind: ProcFile, text: str) -> Path:
    """Write a status file atomically (creating the run directory); raises OSError."""
    run_dir.mkdir(exist_ok=True)
    path = status_path(run_dir, name, kind)
    write_atomically(path, text.encode("utf-8"))
    return path


def read_status(run_dir: Path, name: str, kind: ProcFile) -> str | None:
    """The status file's text, or None when there is none (or it cannot be read)."""
    try:
        return status_path(run_dir, name, kind).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def clear_status(run_dir: Path, name: str, kind: ProcFile) -> None:
    status_path(run_dir, name, kind).unlink(missing_ok=True)


def write_pid(run_dir: Path, name: str, pid: int) -> None:
    write_status(run_dir, name, ProcFile.PID, f"{pid}\n")


def read_pid(run_dir: Path, name: str) -> int | None:
    """The pid in the pid file (alive or not), or None."""
    text = read_status(run_dir, name, ProcFile.PID)
    try:
        return int(text.strip()) if text is not None else None
    except ValueError:
        return None


def clear_stale_pid(run_dir: Path, name: str, pid: int) -> None:
    """Remove ``name``'s pid file if it still names ``pid`` (gone): under the process's lock, so
    a pid the supervisor has just written for a restart is never removed by a reader."""
    with locked(run_dir, name):
        if read_pid(run_dir, name) == pid:
            clear_status(run_dir, name, ProcFile.PID)


def write_cluster_app(
    run_dir: Path, app: Path, *, supervise: bool | None = None, only: Sequence[str] | None = None
) -> None:
    """``supervise``: whether ``goworld start`` launched a supervisor (None: not recorded);
    ``only``: the processes it started (``--only``; None: all of the ini)."""
    run_dir.mkdir(exist_ok=True)
    data: dict[str, object] = {"app": str(app)}
    if supervise is not None:
        data["supervise"] = supervise
    if only is not None:
        data["only"] = list(only)
    write_atomically(run_dir / CLUSTER_FILE, json.dumps(data).encode("utf-8"))


def read_cluster_supervised(run_dir: Path) -> bool:
    """Whether the running cluster was started with a supervisor."""
    try:
        return json.loads((run_dir / CLUSTER_FILE).read_text()).get("supervise") is True
    except (OSError, ValueError, AttributeError):
        return False


def read_cluster_only(run_dir: Path) -> list[str] | None:
    """The processes the last ``goworld start --only`` here started (None: all, or unknown)."""
    try:
        only = json.loads((run_dir / CLUSTER_FILE).read_text()).get("only")
    except (OSError, ValueError, AttributeError):
        return None
    if isinstance(only, list) and only and all(isinstance(n, str) for n in only):
        return only
    return None


def supervisor_name(only: Sequence[str] | None = None) -> str:
    """The supervisor's name in the run directory (its ``.pid``, ``.stderr``, ``.log``,
    ``.json``): :data:`SUPERVISOR` for a whole cluster; for one started with ``--only``,
    ``supervisor-<names joined by +>`` (a digest of them when that is long), so that
    supervisors of several hosts sharing a run directory do not clash."""
    if not only:
        return SUPERVISOR
    joined = "+".join(only)
    if len(joined) > 80:
        joined = hashlib.sha1(joined.encode()).hexdigest()[:16]
    return f"{SUPERVISOR}-{joined}"


def supervisor_log(name: str) -> str:
    """The log file (in the run directory) of supervisor ``name`` (:func:`supervisor_name`)."""
    return f"{name}.log"


def supervisor_state(name: str) -> str:
    """The state file (in the run directory) of supervisor ``name``."""
    return f"{name}.json"


def read_cluster_app(run_dir: Path) -> str | None:
    try:
        app = json.loads((run_dir / CLUSTER_FILE).read_text())["app"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return app if isinstance(app, str) else None


def freeze_file(root: Path, game_id: int) -> Path:
    """Where game ``game_id`` freezes to (GoWorld's name), in the cluster root."""
    return root / f"game{game_id}_freezed.dat"


def restored_file(root: Path, game_id: int) -> Path:
    """The freeze file once the restored game is back on every dispatcher (kept, not loaded)."""
    return freeze_file(root, game_id).with_suffix(".restored")


def role_args(
    role: str,
    proc_id: int,
    configfile: Path,
    *,
    app: Path | None = None,
    static: Path | None = None,
) -> list[str]:
    """The arguments of ``python -m <role>`` for one process of the cluster."""
    args = [f"-{ID_FLAGS[role]}", str(proc_id), f"-{CONFIG_FLAG}", str(configfile)]
    if app is not None:
        args += [f"-{APP_FLAG}", str(app)]
    if static is not None:
        args += [f"-{STATIC_FLAG}", str(static)]
    return args


def restore_args(after_pid: int | None = None) -> list[str]:
    """The extra arguments of a restoring game; with ``after_pid``, a standby that restores
    once that process has frozen."""
    args = [f"-{RESTORE_FLAG}"]
    if after_pid is not None:
        args += [f"-{AFTER_PID_FLAG}", str(after_pid)]
    return args


def started_tag(role: str) -> str:
    """The line the CLI waits for in a process's log file (GoWorld's supervisor tag)."""
    return f"<!--XSUPERVISOR:BEGIN--> {role.upper()} STARTED <!--XSUPERVISOR:END-->"


def _identity(st: os.stat_result) -> str:
    return f"{st.st_dev}:{st.st_ino}"


def stderr_capture_env(fd: int) -> dict[str, str]:
    """The environment entry telling a child that its stderr (``fd``, a file) is captured."""
    return {STDERR_ENV: _identity(os.fstat(fd))}


def stderr_is_captured(environ: Mapping[str, str] | None = None, fd: int = 2) -> bool:
    """True when the CLI captures this process's stderr (``fd``) into a file it keeps."""
    expected = (os.environ if environ is None else environ).get(STDERR_ENV)
    if not expected:
        return False
    try:
        return _identity(os.fstat(fd)) == expected
    except OSError:
        return False


def rotate(path: Path, backups: int) -> None:
    """Keep ``path`` as ``path.1`` (``path.1`` as ``path.2``... up to ``backups``, the oldest
    dropped) so the next run starts a fresh file; ``backups=0`` truncates it instead. A missing
    or empty ``path`` is left alone (the generations before it are kept)."""
    try:
        if path.stat().st_size == 0:
            return
    except FileNotFoundError:
        return
    if backups <= 0:
        with open(path, "wb"):
            return
    path.with_name(f"{path.name}.{backups}").unlink(missing_ok=True)
    for n in range(backups - 1, 0, -1):
        older = path.with_name(f"{path.name}.{n}")
        if older.exists():
            os.replace(older, path.with_name(f"{path.name}.{n + 1}"))
    os.replace(path, path.with_name(f"{path.name}.1"))


# ---- supervision: holds, the restore marker, processes ---------------------------------------


@dataclass(frozen=True)
class Hold:
    """The ``<proc>.hold`` file: command ``op`` (``restart``, ``reload``...) of CLI ``pid``
    works on the process."""

    op: str
    pid: int

    def to_json(self) -> str:
        return json.dumps({"op": self.op, "pid": self.pid})

    @classmethod
    def from_json(cls, text: str) -> Hold:
        """Raises ValueError for anything but what :meth:`to_json` writes."""
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("pid"), int):
            raise ValueError(f"not a hold: {text!r}")
        return cls(str(data.get("op", "")), data["pid"])


@contextlib.contextmanager
def locked(run_dir: Path, name: str, *, blocking: bool = True) -> Iterator[bool]:
    """Hold the ``flock`` of process ``name``; yields False (not held) when ``blocking`` is
    off and someone else has it."""
    run_dir.mkdir(exist_ok=True)
    fd = os.open(status_path(run_dir, name, ProcFile.LOCK), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # releases the lock


def take_hold(run_dir: Path, name: str, op: str, pid: int | None = None) -> None:
    """Tell the supervisor that this command (``pid``, default ours) works on ``name``."""
    with locked(run_dir, name):
        write_status(run_dir, name, ProcFile.HOLD, Hold(op, os.getpid() if pid is None else pid).to_json())


def release_hold(run_dir: Path, name: str) -> None:
    with locked(run_dir, name):
        clear_status(run_dir, name, ProcFile.HOLD)


def read_hold(run_dir: Path, name: str) -> Hold | None:
    """The hold on ``name`` if its command still runs (a stale or unreadable one is None)."""
    text = read_status(run_dir, name, ProcFile.HOLD)
    if text is None:
        return None
    try:
        hold = Hold.from_json(text)
    except ValueError:
        return None
    return hold if alive(hold.pid) else None


def restore_pending(root: Path, game_id: int) -> bool:
    """Whether game ``game_id`` froze for a reload whose restore has not consumed the freeze
    file: only then does a restart of that game use ``-restore``. A marker whose freeze file
    is gone is removed."""
    rd, name = run_dir(root), proc_name("game", game_id)
    if read_status(rd, name, ProcFile.RESTORE) is None:
        return False
    if freeze_file(root, game_id).exists():
        return True
    clear_status(rd, name, ProcFile.RESTORE)
    return False


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True


def start_time(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), from ``/proc``; None if unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            ticks = int(f.read().split(") ", 1)[1].split()[19])
        with open("/proc/stat") as f:
            btime = next(int(line.split()[1]) for line in f if line.startswith("btime "))
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return btime + ticks / os.sysconf("SC_CLK_TCK")


def spawn(
    root: Path,
    configfile: Path,
    role: str,
    proc_id: int,
    app: Path | None,
    extra: Sequence[str] = (),
    *,
    only: Sequence[str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``python -m <role>`` for one process of the cluster rooted at ``root``, detached
    (its own session), its stderr appended to ``.goworld/<name>.stderr``; writes its pid file.

    A game gets ``-app``; a gate gets ``-static`` when the app has a ``web/`` directory (the
    game's browser client). ``role`` may also be :data:`SUPERVISOR` (``python -m
    goworld.supervisor -configfile ... [-only NAMES]``, ``only`` naming the processes it
    watches)."""
    rd = run_dir(root)
    rd.mkdir(exist_ok=True)
    if role == SUPERVISOR:
        name, module = supervisor_name(only), "goworld.supervisor"
        args = [f"-{CONFIG_FLAG}", str(configfile)]
        if only:
            args += [f"-{ONLY_FLAG}", ",".join(only)]
    else:
        name, module = proc_name(role, proc_id), role
        static = app / "web" if role == "gate" and app is not None and (app / "web").is_dir() else None
        args = role_args(role, proc_id, configfile, app=app if role == "game" else None, static=static)
    env = dict(os.environ)
    source_root = str(Path(__file__).resolve().parent.parent)  # where the role packages are
    env["PYTHONPATH"] = os.pathsep.join(p for p in (source_root, env.get("PYTHONPATH", "")) if p)
    with open(status_path(rd, name, ProcFile.STDERR), "ab") as stderr:
        env.update(stderr_capture_env(stderr.fileno()))
        child = subprocess.Popen(
            [sys.executable, "-m", module, *args, *extra], cwd=root, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True, env=env,
        )
    write_pid(rd, name, child.pid)
    return child


class TagWatch:
    """Looks for ``tag`` in what gets appended to a log file after this object is made.

    Reads only the new bytes on each call (a log may be hundreds of MB). Follows rotations
    (a process rotating its log by size, possibly two: a reload's standby writes the same file):
    every generation ``path``, ``path.1``... is remembered by inode with the size it had, and
    whatever an inode gains, or a new inode holds, is searched."""

    def __init__(self, path: Path, tag: str) -> None:
        self.path = path
        self.tag = tag.encode()
        self.pos: dict[int, int] = {}  # inode -> bytes already looked at
        self.carry: dict[int, bytes] = {}  # inode -> its last bytes, should a tag straddle reads
        for file in self._generations():
            with contextlib.suppress(OSError):
                st = file.stat()
                self.pos[st.st_ino] = st.st_size

    def _generations(self) -> list[Path]:
        rotated = [p for p in self.path.parent.glob(self.path.name + ".*")
                   if p.name[len(self.path.name) + 1:].isdigit()]
        return [self.path, *rotated]

    def found(self) -> bool:
        for file in self._generations():
            try:
                st = file.stat()
                pos = self.pos.get(st.st_ino, 0)
                if st.st_size < pos:
                    pos = 0  # truncated
                if st.st_size == pos:
                    continue
                with open(file, "rb") as f:
                    if os.fstat(f.fileno()).st_ino != st.st_ino:
                        continue  # rotated meanwhile: seen on the next call
                    f.seek(pos)
                    chunk = f.read()
            except OSError:
                continue
            self.pos[st.st_ino] = pos + len(chunk)
            seen = self.carry.get(st.st_ino, b"") + chunk
            if self.tag in seen:
                return True
            self.carry[st.st_ino] = seen[-len(self.tag):]
        return False

    def wait(self, pid: int, timeout: float) -> bool:
        """Wait for the tag while ``pid`` lives; False when it exited or time ran out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.found():
                return True
            if not alive(pid):
                return self.found()
            time.sleep(0.05)
        return False
