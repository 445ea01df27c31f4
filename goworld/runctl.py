"""Run control: the protocol between the ``goworld`` CLI and the processes it starts.

Both sides import this module (the CLI, ``goworld.process`` and ``game/__main__``); neither
spells a file name, flag, signal or tag of the handshake itself (the freeze file's name
included: :func:`freeze_file`).

Files, relative to the cluster root (the ini's directory, every process's working directory):

- ``.goworld/`` (:data:`RUN_DIR`): the CLI's bookkeeping.
- ``.goworld/cluster.json`` (:data:`CLUSTER_FILE`): ``{"app": "/abs/path"}``, the running
  game package (written by ``goworld start``).
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

Environment: ``GOWORLD_STDERR`` (:data:`STDERR_ENV`) is set by the CLI to the ``device:inode``
of the file it captures a process's stderr into (:func:`stderr_capture_env`). A process whose
fd 2 is that file (:func:`stderr_is_captured`) writes its log records to its log file only, so
that each line is stored once; its stderr then holds only what is not a log record (a crash's
traceback, Python warnings). The inode check keeps a grandchild with another stderr, which
inherits the variable, logging to its stderr as configured.

Signals: SIGTERM stops a process (a game saves every persistent entity first),
:data:`FREEZE_SIGNAL` freezes a game to its freeze file and exits, :data:`RELOAD_SIGNAL`
re-imports a game's code in place. A process logs :func:`started_tag` once it runs.
"""

from __future__ import annotations

import enum
import json
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "RUN_DIR",
    "CLUSTER_FILE",
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
    "proc_name",
    "run_dir",
    "status_path",
    "write_status",
    "read_status",
    "clear_status",
    "write_pid",
    "read_pid",
    "write_cluster_app",
    "read_cluster_app",
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
]

#: The CLI's bookkeeping directory, relative to the cluster root.
RUN_DIR = ".goworld"
#: In the run directory: the running cluster's game package.
CLUSTER_FILE = "cluster.json"

#: Each role's id flag (GoWorld's spelling; ``python -m game -gid 1``).
ID_FLAGS = {"dispatcher": "dispid", "game": "gid", "gate": "gateid"}
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

STOP_SIGNAL = signal.SIGTERM
FREEZE_SIGNAL = signal.SIGHUP
RELOAD_SIGNAL = signal.SIGUSR1


class ProcFile(enum.StrEnum):
    """The per-process files in the run directory: ``<role><id>.<kind>``."""

    PID = "pid"
    STDERR = "stderr"
    STANDBY = "standby"
    FREEZE_ERROR = "freeze-error"
    RELOAD = "reload"
    SERVING = "serving"


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


def write_cluster_app(run_dir: Path, app: Path) -> None:
    run_dir.mkdir(exist_ok=True)
    write_atomically(run_dir / CLUSTER_FILE, json.dumps({"app": str(app)}).encode("utf-8"))


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
