"""The README's main job: examples/chatroom_demo on a cluster, used by scripts/chat_bots.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from goworld.testing import ClusterRunner

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("transport", ["tcp", "ws", "kcp"])
def test_chat_bots_talk_through_the_chatroom_demo(tmp_path: Path, transport: str) -> None:
    runner = ClusterRunner(tmp_path, ROOT / "examples" / "chatroom_demo", dispatchers=1, games=1, gates=1)
    runner.start()
    try:
        result = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "chat_bots.py"), "--ini", str(runner.ini),
             "--transport", transport],
            capture_output=True, text=True, timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr + runner.logs()
        assert "says 'hello bob!'" in result.stdout and "says 'hi alice'" in result.stdout
    finally:
        runner.stop()
        runner.kill()


def test_accounts_and_avatars_survive_stop_and_start(tmp_path: Path) -> None:
    import asyncio

    from goworld.client import GoWorldClient

    runner = ClusterRunner(tmp_path, ROOT / "examples" / "chatroom_demo", dispatchers=1, games=1, gates=1)

    async def session(register: bool) -> tuple[str, list[str]]:
        client = await GoWorldClient.connect("127.0.0.1", runner.gate(0, "tcp"))
        try:
            account = await client.wait_player("Account")
            if register:
                client.call(account.id, "Register", "dora", "pw")
                await client.wait_call("ShowInfo")
                client.call(account.id, "Register", "dora", "other")  # taken now
                await client.wait_call("ShowError")
            client.call(account.id, "Login", "dora", "wrong")
            await client.wait_call("ShowError", start=len(client.calls))
            client.call(account.id, "Login", "dora", "pw")
            avatar = await client.wait_player("Avatar")
            errors = [c.args[0] for c in client.calls if c.method == "ShowError"]
            return avatar.id, errors
        finally:
            await client.aclose()

    runner.start()
    try:
        first_id, errors = asyncio.run(session(register=True))
        assert errors == ["this account already exists", "wrong password"]
        assert runner.stop().returncode == 0
        runner.start()
        second_id, errors = asyncio.run(session(register=False))
        assert second_id == first_id  # the same avatar, loaded from SQLite
        assert errors == ["wrong password"]
    finally:
        runner.stop()
        runner.kill()
