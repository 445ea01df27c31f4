"""Gate options on a real cluster: heartbeat_check_interval closes silent clients only."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from goworld.client import GoWorldClient
from goworld.proto.messages import HeartbeatFromClient
from goworld.testing import ClusterRunner

APP = Path(__file__).resolve().parents[1] / "apps" / "cluster_app"


@pytest.mark.asyncio
async def test_heartbeat_check_closes_silent_clients_only(tmp_path: Path) -> None:
    runner = ClusterRunner(
        tmp_path, APP, dispatchers=1, games=1, gates=1, gate_extra="heartbeat_check_interval = 2"
    )
    runner.start()
    silent = lively = None
    try:
        silent = await GoWorldClient.connect("127.0.0.1", runner.gate(0, "tcp"))
        lively = await GoWorldClient.connect("127.0.0.1", runner.gate(0, "kcp"), transport="kcp")
        await silent.wait_player("Account")
        await lively.wait_player("Account")
        for _ in range(10):  # 5 s: well past the 2 s limit
            lively.send(HeartbeatFromClient())
            await asyncio.sleep(0.5)
        assert silent.is_closed
        assert not lively.is_closed
        assert runner.grep("heartbeat_check_interval")
    finally:
        for c in (silent, lively):
            if c is not None:
                await c.aclose()
        runner.stop()
        runner.kill()
