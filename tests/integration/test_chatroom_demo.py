"""The README's main job: examples/chatroom_demo on a cluster, used by scripts/chat_bots.py."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

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


@pytest.mark.asyncio
async def test_2017_gate_sends_the_top_level_chatroom_path_as_an_empty_array(tmp_path: Path) -> None:
    """GoWorld's 2017 JS chatroom client reads attribute paths as arrays: a 2017 gate must send
    the ``chatroom`` change of ``/join`` with path ``[]`` (0x90), as GoWorld did in 2017."""
    from goworld.client import GoWorldClient
    from goworld.proto import codec
    from goworld.proto.dialect import Dialect
    from goworld.proto.msgtypes import MsgType

    class RawClient(GoWorldClient):
        """Keeps every payload it receives, as bytes on the wire."""

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.payloads: list[bytes] = []

        def _handle(self, payload: bytes) -> None:
            self.payloads.append(bytes(payload))
            super()._handle(payload)

    runner = ClusterRunner(
        tmp_path, ROOT / "examples" / "chatroom_demo", dispatchers=1, games=1, gates=1,
        gate_extra="legacy_client_protocol = 2017",
    )
    runner.start()
    clients: list[GoWorldClient] = []
    try:
        # the JS client speaks WebSocket
        a, b = [
            await RawClient.connect("127.0.0.1", runner.gate(0, "ws"), transport="ws", dialect=Dialect.G2017)
            for _ in range(2)
        ]
        clients = [a, b]
        for client, name in ((a, "ann"), (b, "ben")):
            account = await client.wait_player("Account")
            client.call(account.id, "Register", name, "pw")
            await client.wait_call("ShowInfo")
            client.call(account.id, "Login", name, "pw")
            avatar = await client.wait_player("Avatar")
            client.call_player("SendChat", "/join room1")
            await client.wait_until(lambda c=client, e=avatar: c.entities[e.id].attrs.get("chatroom") == "room1")

        [change] = [p for p in a.payloads if codec.peek_msgtype(p) == MsgType.NOTIFY_MAP_ATTR_CHANGE_ON_CLIENT]
        assert change[36:41] == b"\x01\x00\x00\x00\x90"  # Data: length 1, msgpack []
        msg = codec.decode_payload(change, Dialect.G2017)
        assert (msg.path, msg.key, msg.value) == ([], "chatroom", "room1")  # type: ignore[attr-defined]

        # and chat in the room works (1501 without the op byte)
        a.call_player("SendChat", "hello ben")
        got = await b.wait_call("OnRecvChat")
        assert got.args == ("ann", "hello ben")
        for client in clients:
            assert not client.is_closed
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
        runner.stop()
        runner.kill()
