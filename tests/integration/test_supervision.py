"""Supervision with real processes through the CLI: a 1+1+1 cluster (tests/apps/cluster_app)
whose game, gate and dispatcher are each killed with SIGKILL in turn and come back by
themselves; goworld restart, reload and stop under the supervisor; --no-supervise.

Nothing here is timed: each wait is for an outcome, with a generous bound."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from goworld import runctl
from goworld.client import GoWorldClient
from goworld.errors import GoWorldError
from goworld.testing import ClusterRunner, login

APP = Path(__file__).resolve().parents[1] / "apps" / "cluster_app"
WAIT = 90.0  # seconds: a bound for a stuck test, not a measurement


def supervised_runner(directory: Path, **supervisor: str) -> ClusterRunner:
    runner = ClusterRunner(directory, APP, dispatchers=1, games=1, gates=1)
    keys = {"restart_backoff": "0.2", "restart_backoff_max": "2", **supervisor}
    with open(runner.ini, "a") as f:
        f.write("[supervisor]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items()))
    return runner


def status(runner: ClusterRunner) -> tuple[int, dict[str, Any]]:
    result = runner.cli("status", "--json")
    return result.returncode, json.loads(result.stdout)


def procs(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in report["processes"]}


def wait_until(what: str, check: Callable[[], bool], runner: ClusterRunner) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        if time.monotonic() > deadline:
            sup = runner.dir / ".goworld" / runctl.SUPERVISOR_LOG
            raise AssertionError(f"not {what} after {WAIT} s\n{runner.logs()}\n==== supervisor\n"
                                 + (sup.read_text() if sup.exists() else "(none)"))
        time.sleep(0.1)


def pid_of(runner: ClusterRunner, name: str) -> int:
    pid = runctl.read_pid(runner.dir / ".goworld", name)
    assert pid is not None and runctl.alive(pid), name
    return pid


async def a_client_logs_in(runner: ClusterRunner, name: str) -> None:
    """A new client logs in and its avatar answers (retried until the cluster has rejoined)."""
    deadline = time.monotonic() + WAIT
    while True:
        client = None
        try:
            client = await GoWorldClient.connect("127.0.0.1", runner.gate(0, "tcp"))
            account = await client.wait_player("Account")
            client.call(account.id, "Login", name)
            await client.wait_player("Avatar")
            client.call_player("Echo", 1, "back")
            await client.wait_call("OnEcho")
            return
        except (TimeoutError, OSError, GoWorldError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
        finally:
            if client is not None:
                await client.aclose()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterRunner]:
    runner = supervised_runner(tmp_path_factory.mktemp("supervised"))
    runner.start()
    try:
        yield runner
    finally:
        runner.stop()
        runner.kill()


def test_start_launches_the_supervisor_and_status_shows_every_process(cluster: ClusterRunner) -> None:
    code, report = status(cluster)
    assert code == 0, report
    assert report["ok"] and report["supervisor"]["up"] and report["supervisor"]["expected"]
    assert sorted(procs(report)) == ["dispatcher1", "game1", "gate1"]
    for p in report["processes"]:
        assert p["up"] and p["state"] == "up" and p["restarts"] == 0 and p["uptime"] >= 0, p
    text = cluster.cli("status")
    assert "supervisor pid" in text.stdout and "RESTARTS" in text.stdout, text.stdout


@pytest.mark.asyncio
@pytest.mark.parametrize("name", ["game1", "gate1", "dispatcher1"])
async def test_a_killed_process_comes_back_by_itself(cluster: ClusterRunner, name: str) -> None:
    old = pid_of(cluster, name)
    log = cluster.dir / f"{name}.log"
    before = log.read_text()
    restarts = procs(status(cluster)[1])[name]["restarts"]
    serving = cluster.dir / ".goworld" / "game1.serving"
    os.kill(old, signal.SIGKILL)

    def back() -> bool:
        code, report = status(cluster)
        p = procs(report)[name]
        return code == 0 and p["restarts"] == restarts + 1 and p["state"] == "up" and serving.exists()

    wait_until(f"{name} back", back, cluster)
    p = procs(status(cluster)[1])[name]
    assert p["pid"] != old and p["last_restart"] is not None
    assert p["restarts"] == 1  # each process is killed once in this module
    await a_client_logs_in(cluster, f"after-{name}")
    # The crashed process's log is kept; the new one started a new file.
    assert (cluster.dir / f"{name}.log.1").read_text().startswith(before[:200])
    assert runctl.started_tag(name.rstrip("0123456789")) in log.read_text()
    sup = (cluster.dir / ".goworld" / runctl.SUPERVISOR_LOG).read_text()
    assert f"{name} pid {old} exited unexpectedly" in sup
    assert f"restarted {name}: pid {p['pid']}" in sup


@pytest.mark.asyncio
async def test_restart_one_game_waits_until_it_serves(cluster: ClusterRunner) -> None:
    old = pid_of(cluster, "game1")
    result = cluster.cli("restart", str(APP), "game1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "restarting game1" in result.stdout
    assert (cluster.dir / ".goworld" / "game1.serving").exists()  # back when the command returns
    new = pid_of(cluster, "game1")
    assert new != old
    time.sleep(1)  # a few supervisor polls: it adopted the new pid, restarted nothing
    p = procs(status(cluster)[1])["game1"]
    assert (p["pid"], p["restarts"], p["state"]) == (new, 1, "up")
    await a_client_logs_in(cluster, "after-restart")


@pytest.mark.asyncio
async def test_reload_in_both_modes_is_not_a_crash(cluster: ClusterRunner) -> None:
    for args in (("reload",), ("reload", "--in-place")):
        result = cluster.cli(*args)
        assert result.returncode == 0, result.stdout + result.stderr
    time.sleep(1)
    code, report = status(cluster)
    assert code == 0 and procs(report)["game1"]["restarts"] == 1, report
    sup = (cluster.dir / ".goworld" / runctl.SUPERVISOR_LOG).read_text()
    assert sup.count("game1 pid") == 1  # only the kill -9 of the earlier test
    await a_client_logs_in(cluster, "after-reload")


def test_restart_all_in_order(cluster: ClusterRunner) -> None:
    result = cluster.cli("restart")
    assert result.returncode == 0, result.stdout + result.stderr
    order = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("restarting")]
    assert order == ["dispatcher1", "game1", "gate1"]
    time.sleep(1)
    code, report = status(cluster)
    assert code == 0 and [p["restarts"] for p in report["processes"]] == [1, 1, 1], report


def test_stop_leaves_nothing_running(cluster: ClusterRunner) -> None:
    run_dir = cluster.dir / ".goworld"
    pids = {n: pid_of(cluster, n) for n in ("dispatcher1", "game1", "gate1", runctl.SUPERVISOR)}
    result = cluster.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("stopping supervisor")
    assert [n for n, pid in pids.items() if runctl.alive(pid)] == []
    assert not list(run_dir.glob("*.pid"))
    code, report = status(cluster)
    assert code == 3 and not report["supervisor"]["up"]
    assert "supervisor stopping" in (run_dir / runctl.SUPERVISOR_LOG).read_text()


def test_no_supervise_leaves_a_killed_process_dead(tmp_path: Path) -> None:
    runner = supervised_runner(tmp_path)
    try:
        result = runner.cli("start", str(APP), "--no-supervise")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "supervisor" not in result.stdout
        gate = pid_of(runner, "gate1")
        os.kill(gate, signal.SIGKILL)
        wait_until("gate1 down", lambda: not runctl.alive(gate), runner)
        time.sleep(2)  # ten back-offs of the ini's 0.2 s, had anything been supervising
        code, report = status(runner)
        assert code == 1 and not report["ok"], report
        assert not procs(report)["gate1"]["up"] and procs(report)["game1"]["up"]
        assert report["supervisor"] == {"expected": False, "up": False, "pid": None}
        assert "not supervised" in runner.cli("status").stdout
        # An operator brings it back by hand.
        back = runner.cli("restart", "gate1")
        assert back.returncode == 0, back.stdout + back.stderr
        assert status(runner)[0] == 0
    finally:
        runner.stop()
        runner.kill()


def test_a_process_that_keeps_dying_is_given_up_on(tmp_path: Path) -> None:
    runner = supervised_runner(tmp_path, max_restarts="2", restart_backoff_max="0.2")
    try:
        runner.start()
        for n in range(3):
            pid = pid_of(runner, "gate1")
            os.kill(pid, signal.SIGKILL)
            if n < 2:
                wait_until(f"gate1 restart {n + 1}", lambda n=n: procs(status(runner)[1])["gate1"]["restarts"] == n + 1
                           and procs(status(runner)[1])["gate1"]["state"] == "up", runner)
        wait_until("gave up", lambda: procs(status(runner)[1])["gate1"]["state"] == "down (gave up)", runner)
        code, _ = status(runner)
        assert code == 1
        sup = (tmp_path / ".goworld" / runctl.SUPERVISOR_LOG).read_text()
        assert "CRITICAL goworld.supervisor: gate1 pid" in sup and "giving up after 2 restarts" in sup
        assert runner.cli("restart", "gate1").returncode == 0  # the operator's way back
        wait_until("gate1 watched again", lambda: status(runner)[0] == 0, runner)
    finally:
        runner.stop()
        runner.kill()


def test_a_stale_freeze_file_is_not_restored_and_a_dead_supervisor_is_reported(tmp_path: Path) -> None:
    runner = supervised_runner(tmp_path)
    try:
        runner.start()
        stale = runctl.freeze_file(tmp_path, 1)
        stale.write_bytes(b"a freeze file no reload is waiting for")
        game = pid_of(runner, "game1")
        os.kill(game, signal.SIGKILL)
        wait_until("game1 back", lambda: procs(status(runner)[1])["game1"]["restarts"] == 1
                   and status(runner)[0] == 0, runner)
        sup_log = (tmp_path / ".goworld" / runctl.SUPERVISOR_LOG).read_text()
        assert "restarted game1: pid" in sup_log and "-restore" not in sup_log
        assert stale.exists()  # untouched: the game started fresh

        os.kill(pid_of(runner, runctl.SUPERVISOR), signal.SIGKILL)
        wait_until("the supervisor reported down", lambda: status(runner)[0] == 1, runner)
        code, report = status(runner)
        assert report["supervisor"] == {"expected": True, "up": False, "pid": None}
        assert all(p["up"] for p in report["processes"])
        assert "supervisor NOT RUNNING" in runner.cli("status").stdout
        result = runner.cli("restart", "gate1")  # also brings the supervisor back
        assert result.returncode == 0 and "starting supervisor" in result.stdout, result.stdout
        assert status(runner)[0] == 0
        pids = [pid_of(runner, n) for n in ("dispatcher1", "game1", "gate1", runctl.SUPERVISOR)]
        killed = runner.cli("kill")
        assert killed.stdout.startswith("killed supervisor"), killed.stdout
        assert not any(runctl.alive(pid) for pid in pids)
    finally:
        runner.stop()
        runner.kill()


CRASH_ON_RESTORE = '''

import os
from pathlib import Path


class RestoreCrasher(goworld.Entity):
    """Kills its game while it is restored, as long as crash_on_restore exists (cwd: the cluster)."""

    def on_restored(self) -> None:
        if Path("crash_on_restore").exists():
            os._exit(3)


goworld.register_service(RestoreCrasher, 1)
'''


@pytest.mark.asyncio
async def test_a_game_that_dies_restoring_after_a_reload_is_restored_by_the_supervisor(tmp_path: Path) -> None:
    """The reload froze game1; its standby dies while restoring. The freeze file is the
    game's state, so the supervisor restarts it with -restore (and only then)."""
    import shutil

    app = tmp_path / "crashing_app"
    shutil.copytree(APP, app, ignore=shutil.ignore_patterns("__pycache__"))
    with open(app / "__init__.py", "a") as f:
        f.write(CRASH_ON_RESTORE)
    cluster_dir = tmp_path / "cluster"
    cluster_dir.mkdir()
    runner = supervised_runner(cluster_dir, restart_backoff="0.5", max_restarts="10")
    runner.app = app
    try:
        runner.start()
        client = await login(runner, "frozen-and-back")
        await client.aclose()
        flag = cluster_dir / "crash_on_restore"
        flag.write_text("")
        reload = runner.cli("reload")
        flag.unlink()
        assert "freezing game1        ok" in reload.stdout, reload.stdout + reload.stderr
        assert reload.returncode == 1 and "the supervisor retries the restore" in reload.stderr
        frozen = runctl.freeze_file(cluster_dir, 1)

        def restored() -> bool:
            code, report = status(runner)
            return code == 0 and not frozen.exists() and runctl.restored_file(cluster_dir, 1).exists()

        wait_until("game1 restored by the supervisor", restored, runner)
        sup = (cluster_dir / ".goworld" / runctl.SUPERVISOR_LOG).read_text()
        assert "restarted game1 with -restore (its reload's freeze file)" in sup, sup
        assert "left to goworld reload" in sup
        assert not (cluster_dir / ".goworld" / "game1.restore").exists() or not frozen.exists()
        await a_client_logs_in(runner, "after-the-restore")
        # The next crash is a plain one: the freeze file was consumed.
        os.kill(pid_of(runner, "game1"), signal.SIGKILL)
        wait_until("game1 back again", lambda: status(runner)[0] == 0
                   and procs(status(runner)[1])["game1"]["restarts"] >= 2, runner)
        sup = (cluster_dir / ".goworld" / runctl.SUPERVISOR_LOG).read_text()
        assert sup.count("with -restore") == sup.count("restarted game1") - 1, sup
    finally:
        runner.stop()
        runner.kill()


@pytest.mark.asyncio
async def test_two_of_each_lose_a_dispatcher_and_a_gate_at_once(tmp_path: Path) -> None:
    """2+2+2: kill -9 of dispatcher2 and gate2 together; the dispatcher is restarted first,
    then the gate (which waited for it)."""
    runner = ClusterRunner(tmp_path, APP)  # 2 dispatchers, 2 games, 2 gates
    with open(runner.ini, "a") as f:
        f.write("[supervisor]\nrestart_backoff = 0.2\n")
    try:
        runner.start()
        for name in ("gate2", "dispatcher2"):
            os.kill(pid_of(runner, name), signal.SIGKILL)

        def back() -> bool:
            code, report = status(runner)
            p = procs(report)
            return code == 0 and p["gate2"]["restarts"] == 1 and p["dispatcher2"]["restarts"] == 1

        wait_until("dispatcher2 and gate2 back", back, runner)
        sup = (tmp_path / ".goworld" / runctl.SUPERVISOR_LOG).read_text()
        assert sup.index("restarted dispatcher2") < sup.index("dispatcher2 (pid") < sup.index("restarted gate2")
        await a_client_logs_in(runner, "two-of-each")
    finally:
        runner.stop()
        runner.kill()


@pytest.mark.asyncio
async def test_a_hung_gate_is_killed_and_restarted(tmp_path: Path) -> None:
    """SIGSTOP: the gate's pid lives on but its loop no longer runs. After hang_timeout the
    supervisor kills it; its client's connection closes; a new client logs in on the new gate."""
    runner = supervised_runner(tmp_path, hang_timeout="8")
    try:
        runner.start()
        alive = tmp_path / ".goworld" / "gate1.alive"
        wait_until("gate1's alive file", alive.exists, runner)
        stale = alive.stat().st_mtime_ns
        wait_until("gate1's alive file touched again", lambda: alive.stat().st_mtime_ns != stale, runner)
        await a_client_logs_in(runner, "before-hang")
        client = await GoWorldClient.connect("127.0.0.1", runner.gate(0, "tcp"))
        try:
            await client.wait_player("Account")
            old = pid_of(runner, "gate1")
            assert procs(status(runner)[1])["gate1"]["silent_seconds"] < 5
            os.kill(old, signal.SIGSTOP)
            # goworld status says so before the supervisor acts (after 5 s of silence)
            seen: list[str] = []

            def reported() -> bool:
                seen.append(runner.cli("status").stdout)
                return "STALLED" in seen[-1] or not runctl.alive(old)

            wait_until("gate1 reported stalled", reported, runner)
            assert "STALLED: its event loop showed no sign of life for" in seen[-1], seen[-1]
            assert "the supervisor kills it after 8 s" in seen[-1]
            wait_until("gate1 restarted", lambda: procs(status(runner)[1])["gate1"]["restarts"] == 1
                       and procs(status(runner)[1])["gate1"]["state"] == "up", runner)
            assert not runctl.alive(old)
            # The old gate's client is told by its closed connection, not left waiting.
            await asyncio.wait_for(asyncio.shield(client.closed), WAIT)
        finally:
            await client.aclose()
        sup = (tmp_path / ".goworld" / runctl.SUPERVISOR_LOG).read_text()
        assert f"gate1 pid {old} hung: its event loop showed no sign of life for" in sup, sup
        assert "killed with SIGKILL; restarting in" in sup
        assert procs(status(runner)[1])["game1"]["restarts"] == 0  # the others went on
        await a_client_logs_in(runner, "after-hang")
    finally:
        runner.stop()
        runner.kill()
