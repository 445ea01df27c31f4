"""goworld.lockstep.client over real KCP and WebSocket sockets on 127.0.0.1.

The peer is a scripted fake (:class:`FakeRoom`): it answers each packet with fixed golden
packets, enough to check the client's framing, decoding and bookkeeping. Room behaviour is
tested with the real server elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from goworld.lockstep import lockstep_pb2 as pb
from goworld.lockstep.client import (
    GO_CLIENT_KCP,
    LockstepClient,
    LockstepClosed,
    open_kcp,
    open_ws,
)
from goworld.lockstep.codec import (
    ErrorCode,
    LockstepDecodeError,
    LockstepPacketTooLarge,
    MsgId,
    PacketReader,
    decode,
    encode,
    encode_message,
)
from goworld.net.kcp import KCPConfig, KCPTransport, start_kcp_server
from tests.goworld.lockstep import vectors as V

TRANSPORTS = ["kcp", "ws"]
CLOSE_NOW = None  # a FakeRoom reply: drop the connection (silently, as lockstepserver does)

JOIN_REPLY = next(v for v in V.VECTORS if v.name == "join room reply (observed)")
START = next(v for v in V.VECTORS if v.name == "start")
FRAME_ZERO = next(v for v in V.VECTORS if v.name == "frame 0")
TWO_FRAMES = next(v for v in V.VECTORS if v.name == "two frames, two inputs")


class FakeRoom:
    """Fixed answers per packet id; MSG_END bodies are commands for edge cases."""

    def __init__(self) -> None:
        self.connects: list[Any] = []
        self.inputs: list[Any] = []
        self.received: list[int] = []
        self.mute = False

    def handle(self, msg_id: int, body: bytes) -> list[bytes | None]:
        self.received.append(msg_id)
        if self.mute:
            return []
        if msg_id == MsgId.MSG_Connect:
            msg = decode(msg_id, body)
            self.connects.append(msg)
            code = ErrorCode.ERR_Ok if msg.battleID == 1 else ErrorCode.ERR_NoRoom
            return [encode_message(MsgId.MSG_Connect, pb.S2C_ConnectMsg(errorCode=code))]
        if msg_id == MsgId.MSG_Heartbeat:
            return [V.HEARTBEAT_PACKET]
        if msg_id == MsgId.MSG_JoinRoom:
            return [JOIN_REPLY.packet]
        if msg_id == MsgId.MSG_Ready:
            # Ack, Start, frame 0, then frames 5 and 6; the last three as one write.
            return [V.READY_PACKET, START.packet + FRAME_ZERO.packet + TWO_FRAMES.packet]
        if msg_id == MsgId.MSG_Progress:
            pro = decode(msg_id, body).pro
            return [encode_message(MsgId.MSG_Progress, pb.S2C_ProgressMsg(id=1, pro=pro))]
        if msg_id == MsgId.MSG_Input:
            msg = decode(msg_id, body)
            self.inputs.append(msg)
            data = pb.InputData(id=1, sid=msg.sid, x=msg.x, y=msg.y, roomseatid=1)
            frame = pb.FrameData(frameID=7, input=[data])
            return [encode_message(MsgId.MSG_Frame, pb.S2C_FrameMsg(frames=[frame]))]
        if msg_id == MsgId.MSG_Result:
            return [V.RESULT_ACK, V.CLOSE_PACKET]
        if msg_id == MsgId.MSG_END:
            return self._command(body.decode())
        return []

    def _command(self, command: str) -> list[bytes | None]:
        name, _, arg = command.partition(":")
        if name == "flood":
            return [V.HEARTBEAT_PACKET] * int(arg)
        if name == "huge":  # a heartbeat, then a header announcing 1025 bytes
            return [V.HEARTBEAT_PACKET + b"\x04\x01\x32" + b"\x00" * 1025]
        if name == "garbage":  # a Connect reply whose body does not parse
            return [encode(MsgId.MSG_Connect, b"\x08")]
        if name == "unknown":  # an id no message names, with a body
            return [encode(99, b"hello")]
        if name == "bye":
            return [CLOSE_NOW]
        assert not command, command
        return []


class _KCPPeer(asyncio.Protocol):
    def __init__(self, room: FakeRoom) -> None:
        self.room = room
        self.reader = PacketReader()
        self.transport: KCPTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, KCPTransport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        for msg_id, body in self.reader.feed(data):
            for reply in self.room.handle(msg_id, body):
                if reply is CLOSE_NOW:
                    self.transport.abort()
                    return
                self.transport.write(reply)


async def _ws_handler(room: FakeRoom, ws: ServerConnection) -> None:
    reader = PacketReader()
    async for message in ws:
        assert isinstance(message, bytes)
        if message == b"\x00\x05\xffsplit":  # one packet cut across two messages
            await ws.send(V.HEARTBEAT_PACKET + START.packet[:4])
            await ws.send(START.packet[4:])
            continue
        if message == b"\x00\x04\xfftext":
            await ws.send("not binary")
            continue
        for msg_id, body in reader.feed(message):
            for reply in room.handle(msg_id, body):
                if reply is CLOSE_NOW:
                    await ws.close()
                    return
                await ws.send(reply)


Opener = Callable[..., Awaitable[LockstepClient]]


@contextlib.asynccontextmanager
async def serving(kind: str) -> AsyncIterator[tuple[FakeRoom, Opener]]:
    """A fake server of ``kind`` on an ephemeral port, and a client opener; all closed after."""
    room = FakeRoom()
    clients: list[LockstepClient] = []
    if kind == "kcp":
        server = await start_kcp_server(
            lambda: _KCPPeer(room), "127.0.0.1", 0, fec=False, config=KCPConfig(linger=0.2)
        )
        host, port = server.address[:2]

        async def open_client(**kwargs: Any) -> LockstepClient:
            client = await open_kcp(host, port, **kwargs)
            clients.append(client)
            return client

        try:
            yield room, open_client
        finally:
            for client in clients:
                await client.close()
            server.close()
            await server.wait_closed()
    else:
        async with serve(lambda ws: _ws_handler(room, ws), "127.0.0.1", 0) as ws_server:
            port = next(iter(ws_server.sockets)).getsockname()[1]

            async def open_client(**kwargs: Any) -> LockstepClient:
                client = await open_ws(f"ws://127.0.0.1:{port}/lockstep", **kwargs)
                clients.append(client)
                return client

            try:
                yield room, open_client
            finally:
                for client in clients:
                    await client.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_a_whole_session(kind: str) -> None:
    async with serving(kind) as (room, open_client):
        client = await open_client()
        code = await client.connect(5, 1, token="t0k", resume_frame=3)
        assert code is ErrorCode.ERR_Ok
        sent = room.connects[0]
        assert (sent.playerID, sent.battleID, sent.token, sent.resumeFrame) == (5, 1, "t0k", 3)

        join = await client.join_room()
        assert JOIN_REPLY.make is not None and join == JOIN_REPLY.make()
        assert list(join.others) == [2] and join.roomseatid == 1

        client.progress(40)
        assert (await client.wait_for(MsgId.MSG_Progress)).pro == 40

        assert client.next_frame_id == 0
        client.ready()
        assert await client.recv() == (MsgId.MSG_Ready, None)
        msg_id, start = await client.recv()
        assert msg_id is MsgId.MSG_Start and start.timeStamp == 1765000000
        for _ in range(2):
            assert (await client.recv())[0] is MsgId.MSG_Frame
        assert client.frames == [
            (0, ()),
            (5, ()),
            (6, ((11, 1, 2, 3, 1), (12, 0, 127, 128, 2))),
        ]
        assert client.last_frame_id == 6 and client.next_frame_id == 7

        client.send_input(sid=3, x=-4, y=5)
        await client.wait_for(MsgId.MSG_Frame)
        assert client.frames[-1] == (7, ((1, 3, -4, 5, 1),))
        assert room.inputs[0].x == -4

        client.heartbeat()
        assert await client.recv() == (MsgId.MSG_Heartbeat, None)

        assert not client.closed.is_set()
        client.result(5)
        await client.wait_for(MsgId.MSG_Close)
        assert client.room_closed and client.closed.is_set()
        assert not client.disconnected.is_set()
        assert client.counts[MsgId.MSG_Frame] == 3
        assert client.error is None

        await client.close()
        assert client.disconnected.is_set()
        with pytest.raises(LockstepClosed):
            client.heartbeat()
        with pytest.raises(LockstepClosed):
            await client.recv(1.0)


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_connect_reports_the_error_code(kind: str) -> None:
    async with serving(kind) as (room, open_client):
        client = await open_client()
        assert await client.connect(1, 99) is ErrorCode.ERR_NoRoom
        assert not room.connects[0].HasField("token")
        assert not room.connects[0].HasField("resumeFrame")


@pytest.mark.asyncio
async def test_go_client_kcp_settings_work() -> None:
    async with serving("kcp") as (_, open_client):
        client = await open_client(config=GO_CLIENT_KCP)
        assert await client.connect(1, 1) is ErrorCode.ERR_Ok


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_many_packets_at_once(kind: str) -> None:
    async with serving(kind) as (_, open_client):
        client = await open_client()
        client.send_raw(V.HEARTBEAT_PACKET * 50)  # one write, fifty packets
        for _ in range(50):
            assert await client.recv() == (MsgId.MSG_Heartbeat, None)
        client.send_raw(encode(MsgId.MSG_END, b"flood:300"))
        for _ in range(300):
            assert (await client.recv())[0] is MsgId.MSG_Heartbeat
        assert client.counts[MsgId.MSG_Heartbeat] == 350


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_unknown_ids_are_queued_raw(kind: str) -> None:
    async with serving(kind) as (_, open_client):
        client = await open_client()
        client.send(MsgId.MSG_END, None)  # empty command: ignored by the fake
        client.send_raw(encode(MsgId.MSG_END, b"unknown"))
        assert await client.recv() == (99, None)
        assert client.error is None


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_an_oversized_packet_closes_the_client(kind: str) -> None:
    async with serving(kind) as (_, open_client):
        client = await open_client()
        client.send_raw(encode(MsgId.MSG_END, b"huge"))
        await asyncio.wait_for(client.disconnected.wait(), 5)
        assert isinstance(client.error, LockstepPacketTooLarge)
        assert client.counts[MsgId.MSG_Heartbeat] == 1  # the packet before it was handled
        assert await client.recv() == (MsgId.MSG_Heartbeat, None)
        with pytest.raises(LockstepClosed):
            await client.recv()


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_a_malformed_body_closes_the_client(kind: str) -> None:
    async with serving(kind) as (_, open_client):
        client = await open_client()
        client.send_raw(encode(MsgId.MSG_END, b"garbage"))
        await asyncio.wait_for(client.disconnected.wait(), 5)
        assert isinstance(client.error, LockstepDecodeError)


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_a_full_queue_closes_the_client(kind: str) -> None:
    async with serving(kind) as (_, open_client):
        client = await open_client(max_queue=20)
        client.send_raw(encode(MsgId.MSG_END, b"flood:30"))
        await asyncio.wait_for(client.disconnected.wait(), 5)
        assert isinstance(client.error, LockstepClosed)
        assert len(client.drain()) == 20


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_quiet_background_heartbeats(kind: str) -> None:
    async with serving(kind) as (room, open_client):
        client = await open_client()
        client.start_heartbeats(0.02)
        async with asyncio.timeout(5):
            while client.counts[MsgId.MSG_Heartbeat] < 5:
                await asyncio.sleep(0.01)
        assert client.queued == 0
        client.stop_heartbeats()
        client.heartbeat()
        assert await client.wait_for(MsgId.MSG_Heartbeat) is None
        sent = room.received.count(MsgId.MSG_Heartbeat)
        await asyncio.sleep(0.1)
        assert room.received.count(MsgId.MSG_Heartbeat) == sent


@pytest.mark.asyncio
async def test_recv_times_out() -> None:
    async with serving("ws") as (_, open_client):
        client = await open_client()
        with pytest.raises(TimeoutError):
            await client.recv(0.05)
        with pytest.raises(TimeoutError):
            await client.wait_for(MsgId.MSG_Start, 0.05)


@pytest.mark.asyncio
async def test_ws_server_close_is_seen() -> None:
    async with serving("ws") as (_, open_client):
        client = await open_client()
        client.send_raw(encode(MsgId.MSG_END, b"bye"))
        await asyncio.wait_for(client.disconnected.wait(), 5)
        assert client.closed.is_set() and not client.room_closed
        assert client.error is None
        with pytest.raises(LockstepClosed):
            await client.recv()


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_a_silent_server_is_noticed_through_heartbeats(kind: str) -> None:
    async with serving(kind) as (room, open_client):
        client = await open_client()
        assert await client.connect(1, 1) is ErrorCode.ERR_Ok
        room.mute = True  # the server still reads, but answers nothing
        client.start_heartbeats(0.05, stale_after=0.3)
        await asyncio.wait_for(client.disconnected.wait(), 5)
        assert client.closed.is_set() and not client.room_closed
        assert isinstance(client.error, LockstepClosed)
        assert "no packet" in str(client.error)


@pytest.mark.asyncio
async def test_ws_packet_across_two_messages_is_refused() -> None:
    async with serving("ws") as (_, open_client):
        client = await open_client()
        client.send_raw(encode(MsgId.MSG_END, b"split"))
        await asyncio.wait_for(client.disconnected.wait(), 5)
        assert "straddles" in str(client.error)
        assert client.counts[MsgId.MSG_Heartbeat] == 1
        assert client.counts[MsgId.MSG_Start] == 0


@pytest.mark.asyncio
async def test_ws_text_message_is_refused() -> None:
    async with serving("ws") as (_, open_client):
        client = await open_client()
        client.send_raw(encode(MsgId.MSG_END, b"text"))
        await asyncio.wait_for(client.disconnected.wait(), 5)
        assert "text" in str(client.error)
