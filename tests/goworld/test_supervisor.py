"""goworld.supervisor's decisions, with an injected clock and a fake process table: back-off,
giving up, intended exits (holds), adoption, start order, the restore rule."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from goworld import runctl
from goworld.config import SupervisorConfig, load
from goworld.supervisor import Event, Policy, RunDirProcesses, State, Supervisor


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeTable:
    """The processes: name -> pid alive (None: down); holds; spawns recorded."""

    pids: dict[str, int | None] = field(default_factory=dict)
    holds: set[str] = field(default_factory=set)
    restore: set[str] = field(default_factory=set)
    tagged: set[str] = field(default_factory=set)
    spawned: list[tuple[str, bool]] = field(default_factory=list)
    next_pid: int = 100
    marks: dict[str, int] = field(default_factory=dict)  # the alive files' mtimes
    killed: list[tuple[str, int]] = field(default_factory=list)

    def held(self, name: str) -> str | None:
        return "goworld restart (pid 1)" if name in self.holds else None

    def live_pid(self, name: str) -> int | None:
        return self.pids.get(name)

    def is_alive(self, name: str, pid: int) -> bool:
        return self.pids.get(name) == pid

    def exit_reason(self, name: str, pid: int) -> str:
        return "killed by SIGKILL"

    def started(self, name: str) -> bool:
        return name in self.tagged

    def wants_restore(self, name: str) -> bool:
        return name in self.restore

    def spawn(self, name: str, restore: bool) -> int | None:
        if name in self.holds:
            return None
        self.next_pid += 1
        self.pids[name] = self.next_pid
        self.spawned.append((name, restore))
        return self.next_pid

    def alive_mark(self, name: str) -> int | None:
        return self.marks.get(name)

    def kill(self, name: str, pid: int) -> None:
        self.killed.append((name, pid))
        self.pids[name] = None

    def beat(self, but: str | None = None) -> None:
        """Every live process's loop touches its alive file (``but`` one, stalled)."""
        for name, pid in self.pids.items():
            if pid is not None and name != but:
                self.marks[name] = self.marks.get(name, 0) + 1

    def die(self, name: str) -> None:
        self.pids[name] = None


PROCS = [("dispatcher1", "dispatcher"), ("game1", "game"), ("gate1", "gate")]


def make(policy: Policy | None = None) -> tuple[Supervisor, FakeTable, Clock]:
    table = FakeTable(pids={"dispatcher1": 1, "game1": 2, "gate1": 3})
    clock = Clock()
    sup = Supervisor(PROCS, table, policy or Policy(1.0, 8.0, 3, 100.0), clock, wall_clock=lambda: 5e9)
    return sup, table, clock


def kinds(events: list[Event]) -> list[tuple[str, str]]:
    return [(e.name, e.kind) for e in events]


def test_a_running_cluster_is_left_alone() -> None:
    sup, table, clock = make()
    for _ in range(10):
        clock.now += 1
        assert sup.tick() == []
    assert table.spawned == []
    assert {n: s.state for n, s in sup.procs.items()} == dict.fromkeys(sup.procs, State.UP)


def test_a_crash_is_restarted_after_the_back_off_and_logged_once_each() -> None:
    sup, table, clock = make()
    table.die("game1")
    events = sup.tick()
    assert kinds(events) == [("game1", "crash")]
    assert events[0].level == logging.WARNING
    assert "pid 2 exited unexpectedly (killed by SIGKILL); restarting in 1 s" in events[0].message
    clock.now += 0.9
    assert sup.tick() == [] and table.spawned == []
    clock.now += 0.1
    events = sup.tick()
    assert kinds(events) == [("game1", "restart")] and table.spawned == [("game1", False)]
    st = sup.procs["game1"]
    assert (st.state, st.pid, st.restarts, st.last_restart) == (State.STARTING, 101, 1, 5e9)
    assert sup.tick() == []  # no start tag yet
    table.tagged.add("game1")
    assert kinds(sup.tick()) == [("game1", "started")]
    assert sup.procs["game1"].state is State.UP
    assert sup.snapshot()["game1"] == {
        "state": "up", "pid": 101, "restarts": 1, "last_restart": 5e9,
        "last_exit": "pid 2 exited unexpectedly (killed by SIGKILL)",
    }


def crash_and_restart(sup: Supervisor, table: FakeTable, clock: Clock, name: str) -> float:
    """Kill ``name``, return the back-off the supervisor chose (and let it restart)."""
    table.die(name)
    sup.tick()
    st = sup.procs[name]
    if st.state is State.GAVE_UP:
        return -1.0
    delay = st.due - clock.now
    clock.now = st.due
    sup.tick()
    assert sup.procs[name].state is State.STARTING
    return delay


def test_back_off_doubles_up_to_the_maximum_then_gives_up() -> None:
    sup, table, clock = make(Policy(1.0, 3.0, 4, 100.0))
    delays = [crash_and_restart(sup, table, clock, "gate1") for _ in range(4)]
    assert delays == [1.0, 2.0, 3.0, 3.0]
    table.die("gate1")
    events = sup.tick()
    assert kinds(events) == [("gate1", "gave-up")]
    assert events[0].level == logging.CRITICAL
    assert "giving up after 4 restarts within 100 s" in events[0].message
    clock.now += 1000
    assert sup.tick() == [] and len(table.spawned) == 4  # it stays down
    assert sup.snapshot()["gate1"]["state"] == "gave-up"


def test_restarts_older_than_the_window_no_longer_count() -> None:
    sup, table, clock = make(Policy(1.0, 60.0, 2, 100.0))
    assert crash_and_restart(sup, table, clock, "game1") == 1.0
    assert crash_and_restart(sup, table, clock, "game1") == 2.0
    clock.now += 101  # both restarts fell out of the window
    assert crash_and_restart(sup, table, clock, "game1") == 1.0
    assert sup.procs["game1"].restarts == 3


def test_max_restarts_zero_never_restarts() -> None:
    sup, table, clock = make(Policy(1.0, 60.0, 0, 100.0))
    table.die("game1")
    assert kinds(sup.tick()) == [("game1", "gave-up")]


def test_a_held_process_may_exit_and_the_new_pid_is_adopted_without_a_restart() -> None:
    """goworld restart / reload: the CLI holds it, stops it, starts another."""
    sup, table, clock = make()
    table.holds.add("game1")
    events = sup.tick()
    assert kinds(events) == [("game1", "held")]
    assert events[0].message == "game1: left to goworld restart (pid 1)"
    table.die("game1")
    clock.now += 50
    assert sup.tick() == []
    table.pids["game1"] = 77  # the CLI's new process (a reload's standby)
    table.holds.clear()
    assert kinds(sup.tick()) == [("game1", "released")]
    st = sup.procs["game1"]
    assert (st.state, st.pid, st.restarts, table.spawned) == (State.UP, 77, 0, [])
    table.die("game1")
    assert kinds(sup.tick()) == [("game1", "crash")]  # watched again


def test_a_process_left_down_by_a_command_is_restarted() -> None:
    sup, table, clock = make()
    table.holds.add("game1")
    sup.tick()
    table.die("game1")  # e.g. a reload whose restore failed
    table.restore.add("game1")
    table.holds.clear()
    events = sup.tick()
    assert kinds(events) == [("game1", "crash")]
    assert "down when the goworld command working on it finished" in events[0].message
    clock.now += 1
    assert kinds(sup.tick()) == [("game1", "restart")]
    assert table.spawned == [("game1", True)]  # its reload's freeze file is restored


def test_a_restart_uses_restore_only_when_the_table_says_so() -> None:
    sup, table, clock = make()
    crash_and_restart(sup, table, clock, "game1")
    table.restore.add("gate1")  # never asked for a gate or dispatcher
    crash_and_restart(sup, table, clock, "gate1")
    assert table.spawned == [("game1", False), ("gate1", False)]


def test_a_hold_taken_just_before_the_spawn_wins() -> None:
    sup, table, clock = make()
    table.die("game1")
    sup.tick()
    clock.now += 5
    table.holds.add("game1")  # the table refuses the spawn under the lock
    assert kinds(sup.tick()) == [("game1", "held")]
    assert table.spawned == []


def test_a_process_started_by_someone_else_during_the_back_off_is_adopted() -> None:
    sup, table, clock = make()
    table.die("gate1")
    sup.tick()
    table.pids["gate1"] = 55
    assert kinds(sup.tick()) == [("gate1", "adopted")]
    clock.now += 100
    assert sup.tick() == [] and table.spawned == []


def test_a_given_up_process_started_by_an_operator_is_watched_again() -> None:
    sup, table, clock = make(Policy(1.0, 1.0, 0, 100.0))
    table.die("game1")
    sup.tick()
    table.pids["game1"] = 9
    assert kinds(sup.tick()) == [("game1", "adopted")]
    assert sup.procs["game1"].state is State.UP


def test_games_and_gates_wait_for_a_dispatcher_being_restarted() -> None:
    sup, table, clock = make(Policy(1.0, 60.0, 5, 100.0))
    table.die("dispatcher1")
    table.die("gate1")
    table.die("game1")
    assert [k for _, k in kinds(sup.tick())] == ["crash"] * 3
    clock.now += 1
    assert kinds(sup.tick()) == [("dispatcher1", "restart")]
    clock.now += 5
    assert sup.tick() == []  # the dispatcher has not started yet
    table.tagged.add("dispatcher1")
    events = sup.tick()
    assert kinds(events) == [("dispatcher1", "started"), ("game1", "restart"), ("gate1", "restart")]


def test_a_process_not_running_when_the_supervisor_starts_is_restarted() -> None:
    table = FakeTable(pids={"dispatcher1": 1, "game1": None, "gate1": 3})
    clock = Clock()
    sup = Supervisor(PROCS, table, Policy(), clock)
    events = sup.tick()
    assert kinds(events) == [("game1", "crash")] and "not running" in events[0].message


def test_policy_delays_and_config() -> None:
    p = Policy.from_config(SupervisorConfig(True, 0.5, 10.0, 3, 60.0))
    assert [p.delay(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0]
    assert p.delay(10_000) == 10.0
    assert (p.max_restarts, p.window) == (3, 60.0)


def test_supervisor_section(tmp_path: Path) -> None:
    ini = tmp_path / "goworld.ini"
    base = "[deployment]\ndesired_dispatchers = 1\ndesired_games = 1\ndesired_gates = 1\n"
    ini.write_text(base)
    assert load(ini).supervisor == SupervisorConfig()
    ini.write_text(base + "[supervisor]\nenabled = off\nrestart_backoff = 0.25\nrestart_backoff_max = 4\n"
                   "max_restarts = 2\nrestart_window = 30\n")
    assert load(ini).supervisor == SupervisorConfig(False, 0.25, 4.0, 2, 30.0)
    from goworld.errors import ConfigError

    for bad in ("restart_backoff = -1", "restart_backoff = soon", "restart_window = 0",
                "restart_backoff = nan", "bogus = 1"):
        ini.write_text(base + "[supervisor]\n" + bad + "\n")
        with pytest.raises(ConfigError) as info:
            load(ini)
        assert "[supervisor]" in str(info.value), bad


# ---- the real table: spawning a process again keeps the crashed one's files -------------------


def test_the_run_dir_table_keeps_the_crashed_process_log_and_honours_holds(tmp_path: Path) -> None:
    ini = tmp_path / "goworld.ini"
    ini.write_text(
        "[deployment]\ndesired_dispatchers = 1\ndesired_games = 2\ndesired_gates = 1\n"
        "[game1]\nlog_file = game1.log\n[game2]\nlog_file = game2.log\n"
        "[gate_common]\nlog_file = shared.log\n[dispatcher1]\nlog_file = shared.log\n"
    )
    table = RunDirProcesses(load(ini), None)
    assert [n for n, _ in table.order()] == ["dispatcher1", "game1", "game2", "gate1"]
    run_dir = runctl.run_dir(tmp_path)
    (tmp_path / "game1.log").write_text("the crashed game\n")
    (tmp_path / "shared.log").write_text("a dispatcher and a gate\n")
    run_dir.mkdir()
    (run_dir / "game1.stderr").write_text("Traceback\n")
    (run_dir / "game1.serving").write_text("{}")
    table._keep_logs("game1", table.procs["game1"])
    table._keep_logs("gate1", table.procs["gate1"])
    assert (tmp_path / "game1.log.1").read_text() == "the crashed game\n"
    assert (run_dir / "game1.stderr.1").read_text() == "Traceback\n"
    assert not (tmp_path / "shared.log.1").exists()  # shared: appended to instead

    assert table.held("game1") is None
    runctl.take_hold(run_dir, "game1", "restart", pid=os.getpid())
    assert table.held("game1") == f"goworld restart (pid {os.getpid()})"
    assert table.spawn("game1", False) is None  # refused under the hold
    runctl.release_hold(run_dir, "game1")
    assert table.held("game1") is None
    runctl.take_hold(run_dir, "game2", "restart", pid=2**22 + 12345)  # its command is gone
    assert table.held("game2") is None


def test_the_run_dir_table_reaps_children_no_pid_file_names(tmp_path: Path) -> None:
    import subprocess
    import sys

    ini = tmp_path / "goworld.ini"
    ini.write_text("[deployment]\ndesired_dispatchers = 1\ndesired_games = 1\ndesired_gates = 1\n")
    table = RunDirProcesses(load(ini), None)
    run_dir = runctl.run_dir(tmp_path)
    replaced = subprocess.Popen([sys.executable, "-c", "pass"])  # the CLI replaced it
    current = subprocess.Popen([sys.executable, "-c", "pass"])  # crashed, not looked at yet
    runctl.write_pid(run_dir, "game1", current.pid)
    table.children = {replaced.pid: replaced, current.pid: current}
    replaced.wait()
    current.wait()
    table.reap()
    assert list(table.children) == [current.pid]
    assert table.exit_reason("game1", current.pid) == "exit status 0"
    assert table.children == {}


def test_the_exit_reason_quotes_the_end_of_a_fresh_stderr(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    ini = tmp_path / "goworld.ini"
    ini.write_text("[deployment]\ndesired_dispatchers = 1\ndesired_games = 1\ndesired_gates = 1\n")
    table = RunDirProcesses(load(ini), None)
    run_dir = runctl.run_dir(tmp_path)
    run_dir.mkdir()
    before = time.time() - 1  # start_time's resolution: the boot time is whole seconds
    with open(run_dir / "game1.stderr", "ab") as err:
        child = subprocess.Popen(
            [sys.executable, "-c", "raise RuntimeError('boom in on_created')"], stderr=err
        )
    table.children[child.pid] = child
    table.identity[child.pid] = before
    child.wait()
    assert table.exit_reason("game1", child.pid) == (
        "exit status 1; its stderr ends: RuntimeError: boom in on_created"
    )


def test_a_hung_process_is_killed_and_restarted_after_hang_timeout() -> None:
    sup, table, clock = make(Policy(1.0, 8.0, 3, 100.0, hang_timeout=10.0))
    for _ in range(30):  # everyone beats: nobody is touched, however long it runs
        table.beat()
        clock.now += 1
        assert sup.tick() == []
    # gate1 stops (SIGSTOP, a deadlock): its file stays as it was; the others go on
    for _ in range(9):
        table.beat(but="gate1")
        clock.now += 1
        assert sup.tick() == []
    table.beat(but="gate1")
    clock.now += 1.5
    events = sup.tick()
    assert kinds(events) == [("gate1", "crash")] and table.killed == [("gate1", 3)]
    assert "pid 3 hung: its event loop showed no sign of life for 10 s (hang_timeout 10 s); " \
        "killed with SIGKILL; restarting in 1 s" in events[0].message
    clock.now += 1
    assert kinds(sup.tick()) == [("gate1", "restart")] and table.spawned == [("gate1", False)]
    table.tagged.add("gate1")
    assert kinds(sup.tick()) == [("gate1", "started")]
    # the new process gets a whole hang_timeout from its start, even though the file is old
    for _ in range(9):
        table.beat(but="gate1")
        clock.now += 1
        assert sup.tick() == []
    assert table.killed == [("gate1", 3)]


def test_the_hang_check_spares_processes_without_an_alive_file_and_can_be_off() -> None:
    sup, table, clock = make(Policy(1.0, 8.0, 3, 100.0, hang_timeout=5.0))
    clock.now += 100  # no process has ever written an alive file (an older build): left alone
    assert sup.tick() == [] and table.killed == []
    off, table_off, clock_off = make(Policy(1.0, 8.0, 3, 100.0, hang_timeout=0.0))
    table_off.beat()
    off.tick()
    clock_off.now += 1000
    assert off.tick() == [] and table_off.killed == []


def test_a_held_or_adopted_process_is_not_judged_on_the_time_before() -> None:
    sup, table, clock = make(Policy(1.0, 8.0, 3, 100.0, hang_timeout=5.0))
    table.beat()
    sup.tick()
    table.holds.add("game1")  # goworld reload freezes it: its loop may stop as it pleases
    assert kinds(sup.tick()) == [("game1", "held")]
    for _ in range(60):
        table.beat(but="game1")
        clock.now += 1
        assert sup.tick() == []
    table.holds.clear()
    table.pids["game1"] = 50  # the restored game
    clock.now += 1
    assert kinds(sup.tick()) == [("game1", "released")]
    for _ in range(4):  # 4 s after the release, with the file 61 s old: not yet
        table.beat(but="game1")
        clock.now += 1
        assert sup.tick() == [] and table.killed == []
    table.beat(but="game1")
    clock.now += 1.5
    assert kinds(sup.tick()) == [("game1", "crash")] and table.killed == [("game1", 50)]


def test_the_hang_timeout_key(tmp_path: Path) -> None:
    ini = tmp_path / "goworld.ini"
    ini.write_text("[deployment]\ndesired_dispatchers = 1\ndesired_games = 1\ndesired_gates = 1\n"
                   "[supervisor]\nhang_timeout = 12.5\n")
    assert load(ini, check_files=False).supervisor.hang_timeout == 12.5
    assert Policy.from_config(SupervisorConfig()).hang_timeout == 30.0
