"""A dispatcher killed (kill -9) and started again: gates keep their clients and reconnect,
games reconnect and rebuild the routes, and nothing the players had is lost (issue 15).

The dispatcher is started again by hand here, with the command line it had (supervision,
which does it by itself, has its own tests). GoWorld's gates quit when a dispatcher goes;
ours hold what they cannot send (bounded) and carry on.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from goworld import runctl
from goworld.client import GoWorldClient
from goworld.testing import ClusterRunner, login

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "tests" / "apps" / "cluster_app"


def _wait_dead(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z":
        assert time.monotonic() < deadline, f"pid {pid} still alive"
        time.sleep(0.05)


async def _echoed(client: GoWorldClient, seq: int, timeout: float = 30.0) -> None:
    def seen() -> bool:
        return any(c.method == "OnEcho" and c.args[0] == seq for c in client.calls)

    await client.wait_until(seen, timeout)


async def _echo(client: GoWorldClient, seq: int) -> None:
    client.call_player("Echo", seq)
    await _echoed(client, seq)


@pytest.mark.asyncio
async def test_a_killed_dispatcher_comes_back_and_the_players_never_notice(tmp_path: Path) -> None:
    runner = ClusterRunner(tmp_path, APP)
    runner.start()
    relaunched: subprocess.Popen[bytes] | None = None
    clients = []
    try:
        clients = [
            await login(runner, f"p{n}", transport) for n, transport in enumerate(("tcp", "ws", "kcp"))
        ]
        for seq, c in enumerate(clients):
            await _echo(c, seq)
        pid = runctl.read_pid(runctl.run_dir(tmp_path), "dispatcher1")
        assert pid is not None
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        assert b"dispatcher" in cmd
        os.kill(pid, signal.SIGKILL)
        _wait_dead(pid)
        await asyncio.sleep(2.0)  # the gate and the game notice, and keep retrying
        assert not any(c.is_closed for c in clients), runner.logs()
        for seq, c in enumerate(clients):  # sent while no dispatcher runs: held by the links
            c.call_player("Echo", 100 + seq)
        with (tmp_path / "dispatcher1.relaunched.out").open("wb") as out:
            relaunched = subprocess.Popen(
                cmd.rstrip(b"\0").split(b"\0"), cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        for seq, c in enumerate(clients):
            await _echoed(c, 100 + seq)
        for seq, c in enumerate(clients):
            await _echo(c, 200 + seq)
        assert not any(c.is_closed for c in clients)
        newcomer = await asyncio.wait_for(login(runner, "late", "tcp"), 30)
        clients.append(newcomer)
        await _echo(newcomer, 300)
        assert runner.grep("gate1 connected"), runner.logs()
        assert not runner.grep("the gate shuts down")
    finally:
        for c in clients:
            c.close()
        if relaunched is not None:
            relaunched.kill()
            relaunched.wait(10)
        runner.kill()


def test_a_game_restarted_after_a_dispatcher_restart_serves_again(tmp_path: Path) -> None:
    """2+2+2: the restarted dispatcher rebuilds its kvreg from the games, so the services a
    restarted game held come back on it and nobody destroys theirs."""
    runner = ClusterRunner(tmp_path, APP)
    runner.start()
    try:
        for proc in ("dispatcher1", "game1", "dispatcher2", "game2"):
            done = runner.cli("restart", str(APP), proc, timeout=120)
            assert done.returncode == 0, f"restart {proc}:\n{done.stdout}\n{done.stderr}\n{runner.logs()}"
        assert not runner.grep("is owned elsewhere"), runner.grep("is owned elsewhere")
        status = runner.cli("status", "--json")
        assert status.returncode == 0, status.stdout + status.stderr
    finally:
        runner.kill()
