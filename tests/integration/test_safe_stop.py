"""`goworld stop` on a real cluster: new clients refused first, clients told, what was sent
before the stop handled, every persistent entity saved, progress shown, `--timeout` kills."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import signal
import socket
import time
from pathlib import Path

import pytest

from goworld import runctl
from goworld.client import GoWorldClient
from goworld.cluster import auth
from goworld.testing import ClusterRunner, login, running_cluster

APP = Path(__file__).resolve().parents[1] / "apps" / "cluster_app"

pytestmark = pytest.mark.slow

#: Calls of 10 ms each: about 1 s of one game's time.
WORK_CALLS = 100


async def _login_quiet(runner: ClusterRunner, name: str, gate: int) -> GoWorldClient:
    """Log in as GoWorld's clients do: no notices announced."""
    client = await GoWorldClient.connect(
        "127.0.0.1", runner.gate(gate, "tcp"), transport="tcp", notices=False
    )
    account = await client.wait_player("Account")
    client.call(account.id, "Login", name)
    await client.wait_player("Avatar")
    return client


def _pid(runner: ClusterRunner, name: str) -> int:
    pid = runctl.read_pid(runner.dir / runctl.RUN_DIR, name)
    assert pid is not None, name
    return pid


@pytest.mark.asyncio
async def test_stop_tells_clients_handles_what_was_sent_and_saves(tmp_path: Path) -> None:
    with running_cluster(tmp_path, APP, dispatchers=1, games=1, gates=2) as runner:
        told = await login(runner, "told", gate=0)
        quiet = await _login_quiet(runner, "quiet", gate=1)
        notices: list[tuple[str, str]] = []
        told.on_notice = lambda code, text: notices.append((code, text))
        for client in (told, quiet):
            client.call_player("Incr")
            client.call_player("Echo", 1)
            await client.wait_call("OnEcho")
        # Keep the game busy while the stop begins: all must be handled before the save.
        for _ in range(WORK_CALLS):
            told.call_player("Work", 10)
        await asyncio.sleep(0.2)
        started = time.monotonic()
        stopped = await asyncio.to_thread(runner.stop)
        took = time.monotonic() - started
        out = stopped.stdout
        assert stopped.returncode == 0, out + stopped.stderr
        assert "draining gate1" in out and "1 of 1 clients told" in out, out
        assert "draining gate2" in out and "0 of 1 clients told" in out, out
        assert "stopping game1" in out and "persistent saved" in out, out
        assert out.index("draining gate2") < out.index("stopping gate1"), out
        for client in (told, quiet):
            await asyncio.wait_for(client.closed, 10)
        assert notices and notices[0][0] == "shutdown", notices
        assert told.close_code == "shutdown"
        assert quiet.close_code is None  # GoWorld's clients: just the disconnect
        print(f"stop took {took:.2f} s")

        runner.start()
        again = await login(runner, "told", gate=1)
        assert again.player is not None
        assert again.player.attrs["counter"] == 1 + WORK_CALLS, runner.logs()
        await again.aclose()


@pytest.mark.asyncio
async def test_a_busy_game_handles_what_was_queued_for_it_before_it_saves(tmp_path: Path) -> None:
    """SIGTERM to a game (as `goworld restart`, a service manager or `goworld stop` send)
    while the dispatcher holds a backlog of calls for it: the game answers only after its
    stop barrier came back, so every queued call is handled before its entities are saved."""
    with running_cluster(tmp_path, APP, dispatchers=1, games=1, gates=1) as runner:
        client = await login(runner, "busy", gate=0)
        calls = 150
        for _ in range(calls):  # one every 3 ms, 10 ms of work each: a backlog builds up
            client.call_player("Work", 10)
            await asyncio.sleep(0.003)
        game = _pid(runner, "game1")
        os.kill(game, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while runctl.alive(game):
            assert time.monotonic() < deadline, runner.logs()
            await asyncio.sleep(0.05)
        step = json.loads((runner.dir / runctl.RUN_DIR / "game1.stopping").read_text())
        assert step["phase"] == "saved" and step["saved"] == 1, step
        await asyncio.wait_for(client.closed, 10)  # its player went with the game
        restarted = runner.cli("restart", "game1")  # the supervisor may have done it already
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
        again = await login(runner, "busy", gate=0)
        assert again.player is not None
        assert again.player.attrs["counter"] == calls, runner.grep("game1")
        await again.aclose()


@pytest.mark.asyncio
async def test_a_draining_gate_refuses_new_clients_and_keeps_the_old(tmp_path: Path) -> None:
    with running_cluster(tmp_path, APP, dispatchers=1, games=1, gates=1) as runner:
        old = await login(runner, "old", gate=0)
        os.kill(_pid(runner, "gate1"), runctl.DRAIN_SIGNAL)
        drained = runner.dir / runctl.RUN_DIR / "gate1.drained"
        deadline = time.monotonic() + 10
        while not drained.exists():
            assert time.monotonic() < deadline, runner.logs()
            await asyncio.sleep(0.05)
        report = json.loads(drained.read_text())
        assert report["clients"] == 1 and report["told"] == 1, report
        assert old.close_code == "shutdown" and not old.closed.done()
        with pytest.raises(ConnectionRefusedError):  # TCP: the listener is closed
            socket.create_connection(("127.0.0.1", runner.gate(0, "tcp")), timeout=5).close()
        late = await GoWorldClient.connect("127.0.0.1", runner.gate(0, "ws"), transport="ws")
        await asyncio.wait_for(late.closed, 10)  # WebSocket: closed at once, no boot entity
        assert late.state.player is None
        runner.wait_for_log("draining: refusing new clients")

        stopped = runner.stop()  # a second drain request gets the same answer at once
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert "1 of 1 clients told" in stopped.stdout, stopped.stdout
        await asyncio.wait_for(old.closed, 10)


def test_stop_timeout_kills_what_does_not_stop(tmp_path: Path) -> None:
    with running_cluster(tmp_path, APP, dispatchers=1, games=1, gates=1) as runner:
        game = _pid(runner, "game1")
        os.kill(game, signal.SIGSTOP)
        stopped = runner.cli("stop", "--timeout", "4")
        assert stopped.returncode == 1, stopped.stdout + stopped.stderr
        assert "game1" in stopped.stdout and "killed" in stopped.stdout, stopped.stdout
        assert "killed at the timeout" in stopped.stderr and "game1" in stopped.stderr, stopped.stderr
        assert not runctl.alive(game)
        status = runner.cli("status")
        assert status.returncode == 3, status.stdout  # nothing runs


@pytest.mark.asyncio
async def test_stop_cluster_drains_the_other_hosts_gates_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two "hosts" on loopback, each its own directory: A runs dispatcher1, game1 and gate1,
    B runs gate2. `goworld stop --cluster` on A drains gate2 too, through dispatcher1's POST
    /drain (with credentials made from the cluster secret), before anything of A stops: gate2's player is told, gate2 refuses new clients
    and keeps running, drained, until B's own stop."""
    monkeypatch.setenv(auth.SECRET_ENV, secrets.token_hex(16))  # one cluster: one secret
    for letter in "AB":
        (tmp_path / letter).mkdir()
    host_a = ClusterRunner(tmp_path / "A", APP, dispatchers=1, games=1, gates=2)
    host_b = ClusterRunner(tmp_path / "B", APP, dispatchers=1, games=1, gates=2)
    host_b.ini.write_text(host_a.ini.read_text())  # the same ini on both hosts
    try:
        started = await asyncio.gather(
            asyncio.to_thread(host_a.cli, "start", str(APP), "--only", "dispatcher1,game1,gate1"),
            asyncio.to_thread(host_b.cli, "start", str(APP), "--only", "gate2"),
        )
        for result in started:
            assert result.returncode == 0, result.stdout + result.stderr + host_a.logs() + host_b.logs()
        gate2 = _pid(host_b, "gate2")
        here = await login(host_a, "here", gate=0)
        there = await login(host_a, "there", gate=1)
        notices: list[tuple[str, str]] = []
        there.on_notice = lambda code, text: notices.append((code, text))

        stopped = await asyncio.to_thread(host_a.cli, "stop", "--cluster")
        out = stopped.stdout
        assert stopped.returncode == 0, out + stopped.stderr + host_a.logs() + host_b.logs()
        assert "draining every gate through dispatcher1 (2 connected)" in out, out
        assert re.search(r"draining gate2 +new clients refused; 1 of 1 clients told .*\(elsewhere\)", out), out
        assert re.search(r"draining gate1 +new clients refused; 1 of 1 clients told", out), out
        assert out.index("draining gate2") < out.index("stopping gate1"), out
        assert "on other hosts: gate2 (their gates drained)" in out, out
        await asyncio.wait_for(here.closed, 10)
        await asyncio.wait_for(there.closed, 10)  # its game stopped: gate2 closed it, told first
        assert notices and notices[0][0] == "shutdown", notices
        assert runctl.alive(gate2) and runctl.read_pid(runctl.run_dir(host_a.dir), "dispatcher1") is None
        with pytest.raises(OSError):  # gate2 refuses new clients
            socket.create_connection(("127.0.0.1", host_a.gate(1, "tcp")), timeout=2).close()
        assert host_b.grep("draining: refusing new clients"), host_b.logs()
        status = await asyncio.to_thread(host_b.cli, "status")
        assert "drained: refuses new clients" in status.stdout, status.stdout
        (gate,) = json.loads((await asyncio.to_thread(host_b.cli, "status", "--json")).stdout)["processes"]
        assert gate["name"] == "gate2" and gate["draining"] is True, gate

        result = await asyncio.to_thread(host_b.cli, "stop")
        assert result.returncode == 0, result.stdout + result.stderr
        assert not runctl.alive(gate2)
    finally:
        host_b.kill()
        host_a.kill()


def test_stop_cluster_without_a_cluster_secret_stops_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(auth.SECRET_ENV, raising=False)
    runner = ClusterRunner(tmp_path, APP, dispatchers=1, games=1, gates=1)
    result = runner.cli("stop", "--cluster")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "credentials made from the cluster secret, and none is set" in result.stderr
    assert result.stderr.rstrip().endswith("nothing stopped")
