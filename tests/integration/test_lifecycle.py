"""CLI lifecycle of a real cluster: start refuses twice, status, stop saves, start loads."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from goworld.testing import ClusterRunner, login

APP = Path(__file__).resolve().parents[1] / "apps" / "cluster_app"



@pytest.mark.asyncio
async def test_stop_saves_and_start_loads_persistent_entities(tmp_path: Path) -> None:
    runner = ClusterRunner(tmp_path, APP)
    runner.start()
    try:
        status = runner.cli("status")
        assert status.returncode == 0
        assert "2/2 dispatchers, 2/2 games" in status.stdout and "2/2 gates" in status.stdout
        again = runner.cli("start", str(APP))
        assert again.returncode != 0 and "already running" in again.stderr

        runner.wait_for_log("created here", count=5)
        clients = [await login(runner, f"keeper{i}", gate=i % 2) for i in range(4)]
        for i, c in enumerate(clients):
            for _ in range(i + 1):
                c.call_player("Incr")
            c.call_player("Echo", 0)
            await c.wait_call("OnEcho")
        ids = [c.player.id for c in clients]  # type: ignore[union-attr]
        # Stop with the clients still connected: games destroy (and so save) every avatar.
        stopped = runner.stop()
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        for c in clients:
            await asyncio.wait_for(c.closed, 10)
        assert runner.cli("status").returncode != 0

        runner.start()
        runner.wait_for_log("created here", count=5)  # logs are truncated on start
        for i in range(4):
            c = await login(runner, f"keeper{i}", gate=(i + 1) % 2)
            assert c.player is not None
            assert c.player.id == ids[i]
            assert c.player.attrs["counter"] == i + 1
            await c.aclose()
    finally:
        runner.stop()
        runner.kill()
