"""GoWorldClient announces notices in its first heartbeat and keeps the reason the gate gives
before closing it (NOTICE_ON_CLIENT); with ``notices=False`` it sends GoWorld's bare heartbeat."""

from __future__ import annotations

import asyncio
import struct

import pytest

from goworld.client import GoWorldClient
from goworld.errors import GoWorldError
from goworld.proto import codec
from goworld.proto.framing import Framer, frame
from goworld.proto.msgtypes import FEATURE_NOTICES, MsgType


async def _serve(first: asyncio.Future[bytes], reply: bytes) -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        framer = Framer()
        while True:
            payloads = framer.feed(await reader.read(1024))
            if payloads:
                first.set_result(payloads[0])
                break
        writer.write(reply)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def _notice(code: str, text: str) -> bytes:
    out = bytearray(struct.pack("<H", MsgType.NOTICE_ON_CLIENT))
    codec.write_varstr(out, code)
    codec.write_varstr(out, text)
    return frame(bytes(out))


@pytest.mark.asyncio
async def test_the_client_announces_notices_and_keeps_the_reason() -> None:
    first: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    server, port = await _serve(first, _notice("game_lost", "game1 stopped: log in again"))
    async with server:
        client = await GoWorldClient.connect("127.0.0.1", port, heartbeat_interval=None)
        seen: list[tuple[str, str]] = []
        client.on_notice = lambda code, text: seen.append((code, text))
        assert await asyncio.wait_for(first, 5) == struct.pack("<HI", MsgType.HEARTBEAT_FROM_CLIENT, FEATURE_NOTICES)
        with pytest.raises(GoWorldError, match="game1 stopped"):
            await client.wait_player(timeout=5)
        assert (client.close_code, client.close_reason) == ("game_lost", "game1 stopped: log in again")
        assert seen == [("game_lost", "game1 stopped: log in again")]
        assert client.error is None


@pytest.mark.asyncio
async def test_without_notices_the_heartbeat_is_goworlds() -> None:
    first: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    server, port = await _serve(first, b"")
    async with server:
        client = await GoWorldClient.connect("127.0.0.1", port, heartbeat_interval=None, notices=False)
        assert await asyncio.wait_for(first, 5) == struct.pack("<H", MsgType.HEARTBEAT_FROM_CLIENT)
        await client.aclose()
        assert client.close_reason is None
