"""goworld.runctl: the names and files the CLI and the processes share."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from goworld import process, runctl
from goworld.runctl import GameState, ProcFile, ReloadResult


def test_run_dir_and_status_paths(tmp_path: Path) -> None:
    run_dir = runctl.run_dir(tmp_path)
    assert run_dir == tmp_path / ".goworld"
    name = runctl.proc_name("game", 2)
    assert name == "game2"
    expected = {
        ProcFile.PID: "game2.pid",
        ProcFile.STDERR: "game2.stderr",
        ProcFile.STANDBY: "game2.standby",
        ProcFile.FREEZE_ERROR: "game2.freeze-error",
        ProcFile.RELOAD: "game2.reload",
        ProcFile.SERVING: "game2.serving",
    }
    for kind, file_name in expected.items():
        assert runctl.status_path(run_dir, name, kind) == run_dir / file_name
    # A plain string naming a kind is accepted; an unknown one is not.
    assert runctl.status_path(run_dir, name, "serving") == run_dir / "game2.serving"  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        runctl.status_path(run_dir, name, "bogus")  # type: ignore[arg-type]


def test_write_read_clear_status(tmp_path: Path) -> None:
    run_dir = runctl.run_dir(tmp_path)
    assert runctl.read_status(run_dir, "game1", ProcFile.FREEZE_ERROR) is None
    path = runctl.write_status(run_dir, "game1", ProcFile.FREEZE_ERROR, "on_freeze raised: é")
    assert path == run_dir / "game1.freeze-error"  # the run directory was created
    assert runctl.read_status(run_dir, "game1", ProcFile.FREEZE_ERROR) == "on_freeze raised: é"
    runctl.write_status(run_dir, "game1", ProcFile.FREEZE_ERROR, "second")
    assert runctl.read_status(run_dir, "game1", ProcFile.FREEZE_ERROR) == "second"
    assert sorted(p.name for p in run_dir.iterdir()) == ["game1.freeze-error"]  # no temp left
    runctl.clear_status(run_dir, "game1", ProcFile.FREEZE_ERROR)
    runctl.clear_status(run_dir, "game1", ProcFile.FREEZE_ERROR)  # already gone: fine
    assert runctl.read_status(run_dir, "game1", ProcFile.FREEZE_ERROR) is None


def test_write_atomically_replaces_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "f.dat"
    runctl.write_atomically(path, b"x" * 1000)
    runctl.write_atomically(path, b"short")
    assert path.read_bytes() == b"short"
    assert [p.name for p in tmp_path.iterdir()] == ["f.dat"]


def test_pid_files(tmp_path: Path) -> None:
    run_dir = runctl.run_dir(tmp_path)
    assert runctl.read_pid(run_dir, "gate1") is None
    runctl.write_pid(run_dir, "gate1", 4242)
    assert (run_dir / "gate1.pid").read_text() == "4242\n"
    assert runctl.read_pid(run_dir, "gate1") == 4242
    (run_dir / "gate1.pid").write_text("garbage")
    assert runctl.read_pid(run_dir, "gate1") is None


def test_cluster_app(tmp_path: Path) -> None:
    run_dir = runctl.run_dir(tmp_path)
    assert runctl.read_cluster_app(run_dir) is None
    runctl.write_cluster_app(run_dir, tmp_path / "app")
    assert json.loads((run_dir / "cluster.json").read_text()) == {"app": str(tmp_path / "app")}
    assert runctl.read_cluster_app(run_dir) == str(tmp_path / "app")
    for bad in ("not json", "[]", "{}"):
        (run_dir / runctl.CLUSTER_FILE).write_text(bad)
        assert runctl.read_cluster_app(run_dir) is None


def test_reload_result_round_trip() -> None:
    for result in (ReloadResult(True, "3 types swapped"), ReloadResult(False, "SyntaxError")):
        assert ReloadResult.from_json(result.to_json()) == result
    assert json.loads(ReloadResult(True, "m").to_json()) == {"ok": True, "message": "m"}
    for bad in ("nope", "[]", '{"message": "m"}', '{"ok": "yes"}'):
        with pytest.raises(ValueError):
            ReloadResult.from_json(bad)


def test_freeze_files(tmp_path: Path) -> None:
    assert runctl.freeze_file(tmp_path, 3) == tmp_path / "game3_freezed.dat"
    assert runctl.restored_file(tmp_path, 3) == tmp_path / "game3_freezed.restored"


def test_role_args_parse_back() -> None:
    """What the CLI passes is what a role's parser reads."""
    argv = runctl.role_args("game", 2, Path("/c/goworld.ini"), app=Path("/apps/demo"))
    argv += runctl.restore_args(after_pid=1234)
    assert argv == [
        "-gid", "2", "-configfile", "/c/goworld.ini", "-app", "/apps/demo",
        "-restore", "-after-pid", "1234",
    ]
    args = process.parse_role_args("game", runctl.ID_FLAGS["game"], argv)
    assert (args.id, args.configfile, args.app, args.restore, args.after_pid) == (
        2, "/c/goworld.ini", "/apps/demo", True, 1234,
    )
    assert runctl.restore_args() == ["-restore"]
    gate = runctl.role_args("gate", 1, Path("g.ini"), static=Path("/apps/demo/web"))
    args = process.parse_role_args("gate", runctl.ID_FLAGS["gate"], gate)
    assert (args.id, args.configfile, args.static) == (1, "g.ini", "/apps/demo/web")
    args = process.parse_role_args(
        "dispatcher", runctl.ID_FLAGS["dispatcher"], runctl.role_args("dispatcher", 3, Path("d"))
    )
    assert args.id == 3


def test_started_tag_is_the_supervisor_tag() -> None:
    assert runctl.started_tag("game") == "<!--XSUPERVISOR:BEGIN--> GAME STARTED <!--XSUPERVISOR:END-->"
    assert process.started_tag is runctl.started_tag


def test_signals_and_states() -> None:
    assert runctl.STOP_SIGNAL == signal.SIGTERM
    assert runctl.FREEZE_SIGNAL == signal.SIGHUP
    assert runctl.RELOAD_SIGNAL == signal.SIGUSR1
    assert [s.value for s in GameState] == ["running", "freezing", "quiescing", "frozen"]



def test_holds_name_a_live_command_and_a_stale_one_is_none(tmp_path: Path) -> None:
    import os

    run_dir = runctl.run_dir(tmp_path)
    assert runctl.read_hold(run_dir, "game1") is None
    runctl.take_hold(run_dir, "game1", "reload")
    assert runctl.read_hold(run_dir, "game1") == runctl.Hold("reload", os.getpid())
    runctl.release_hold(run_dir, "game1")
    assert runctl.read_hold(run_dir, "game1") is None
    runctl.take_hold(run_dir, "gate1", "restart", pid=2**22 + 4321)  # no such process
    assert runctl.read_hold(run_dir, "gate1") is None
    (run_dir / "gate1.hold").write_text("garbage")
    assert runctl.read_hold(run_dir, "gate1") is None


def test_the_lock_is_exclusive(tmp_path: Path) -> None:
    run_dir = runctl.run_dir(tmp_path)
    with runctl.locked(run_dir, "game1") as got:
        assert got
        with runctl.locked(run_dir, "game1", blocking=False) as again:
            assert not again  # flock: another open file description is refused
        with runctl.locked(run_dir, "game2", blocking=False) as other:
            assert other
    with runctl.locked(run_dir, "game1", blocking=False) as got:
        assert got


def test_restore_pending_needs_the_marker_and_the_freeze_file(tmp_path: Path) -> None:
    run_dir = runctl.run_dir(tmp_path)
    assert not runctl.restore_pending(tmp_path, 1)
    runctl.freeze_file(tmp_path, 1).write_bytes(b"stale")  # a freeze file alone is stale
    assert not runctl.restore_pending(tmp_path, 1)
    runctl.write_status(run_dir, "game1", ProcFile.RESTORE, "123\n")
    assert runctl.restore_pending(tmp_path, 1)
    runctl.freeze_file(tmp_path, 1).rename(runctl.restored_file(tmp_path, 1))  # consumed
    assert not runctl.restore_pending(tmp_path, 1)
    assert runctl.read_status(run_dir, "game1", ProcFile.RESTORE) is None  # marker dropped


def test_alive_and_start_time() -> None:
    import os
    import subprocess
    import sys
    import time

    assert runctl.alive(os.getpid())
    started = runctl.start_time(os.getpid())
    assert started is not None and 0 <= time.time() - started < 24 * 3600
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 60
    while runctl.alive(child.pid):  # a zombie counts as gone
        assert time.monotonic() < deadline
        time.sleep(0.01)
    child.wait()
    assert runctl.start_time(child.pid) is None


def test_cluster_app_records_supervision(tmp_path: Path) -> None:
    run_dir = runctl.run_dir(tmp_path)
    assert not runctl.read_cluster_supervised(run_dir)
    runctl.write_cluster_app(run_dir, tmp_path / "app", supervise=True)
    assert runctl.read_cluster_app(run_dir) == str(tmp_path / "app")
    assert runctl.read_cluster_supervised(run_dir)
    runctl.write_cluster_app(run_dir, tmp_path / "app", supervise=False)
    assert not runctl.read_cluster_supervised(run_dir)


def test_clear_stale_pid_leaves_a_newer_pid(tmp_path: Path) -> None:
    run_dir = runctl.run_dir(tmp_path)
    runctl.write_pid(run_dir, "game1", 111)
    runctl.write_pid(run_dir, "game1", 222)  # the supervisor restarted it meanwhile
    runctl.clear_stale_pid(run_dir, "game1", 111)
    assert runctl.read_pid(run_dir, "game1") == 222
    runctl.clear_stale_pid(run_dir, "game1", 222)
    assert runctl.read_pid(run_dir, "game1") is None
