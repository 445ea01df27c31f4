"""An asyncio client of the lockstep protocol, over KCP or WebSocket (for tests and the bench).

::

    client = await open_kcp("127.0.0.1", 10086)          # or: await open_ws("ws://.../lockstep")
    try:
        assert await client.connect(player_id=1, room_id=7) == ErrorCode.ERR_Ok
        join = await client.join_room()
        client.start_heartbeats()
        client.ready()
        await client.wait_for(MsgId.MSG_Start)
        client.send_input(sid=1, x=2, y=3)
        ...
    finally:
        await client.close()

Everything the server sends is decoded on arrival. Frame messages are also recorded in
:attr:`LockstepClient.frames` (``(frameID, ((player, sid, x, y, seat), ...))`` per FrameData, in
arrival order, duplicates from a resync included), so a test can read the frames without
consuming the queue. Other packets wait in a bounded queue for :meth:`~LockstepClient.recv` /
:meth:`~LockstepClient.wait_for`; a client whose queue reaches ``max_queue`` packets is closed
with :class:`LockstepClosed` as its :attr:`~LockstepClient.error` (a long-running client that
never reads should call :meth:`~LockstepClient.drain`).

:attr:`~LockstepClient.closed` is set when the room announces MSG_Close or when the transport
goes away (:attr:`~LockstepClient.disconnected`). A KCP server drops sessions silently, so over
KCP the transport is only seen to go when ``dead_timeout`` passes with our data unacknowledged.

Sending is synchronous on both transports: over WebSocket each :meth:`~LockstepClient.send`
becomes one binary message, written in order by a writer task.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any, Protocol

from google.protobuf.message import Message
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from goworld.errors import GoWorldError, RemoteProtocolError
from goworld.lockstep import lockstep_pb2 as pb
from goworld.lockstep.codec import (
    MAX_BODY,
    S2C_BODY,
    ErrorCode,
    MsgId,
    PacketReader,
    decode,
    encode_message,
)
from goworld.net.kcp import KCPConfig, KCPTransport, open_kcp_connection

__all__ = [
    "FAST_KCP",
    "GO_CLIENT_KCP",
    "MAX_QUEUE",
    "Frame",
    "Input",
    "LockstepClient",
    "LockstepClosed",
    "open_kcp",
    "open_ws",
]

logger = logging.getLogger("goworld.lockstep.client")

#: Packets kept for recv() before the client gives up on a reader that does not keep up.
MAX_QUEUE = 10_000

#: Fast KCP for tests: nodelay(1, 10, 2, 1) as the server runs, kcp-go's default windows 32/32.
FAST_KCP = KCPConfig(
    interval=10,
    resend=2,
    no_delay=True,
    no_congestion_control=True,
    send_window=32,
    receive_window=32,
    dead_timeout=10.0,
    idle_timeout=None,
    linger=1.0,
)
#: What lockstepserver's Go example client runs with: kcp-go defaults, nodelay off, 100 ms ticks.
GO_CLIENT_KCP = KCPConfig(
    interval=100,
    resend=0,
    no_delay=False,
    no_congestion_control=False,
    send_window=32,
    receive_window=32,
    dead_timeout=10.0,
    idle_timeout=None,
    linger=1.0,
)

#: One InputData as recorded: (player id, sid, x, y, room seat id).
Input = tuple[int, int, int, int, int]
#: One FrameData as recorded: (frame id, its inputs in order).
Frame = tuple[int, tuple[Input, ...]]

_KNOWN_IDS: dict[int, MsgId] = {int(m): m for m in MsgId}
_EOF: Any = object()  # queued once the transport is gone


class LockstepClosed(GoWorldError):
    """The client's connection is gone (or was given up) before what was awaited arrived."""


class _Link(Protocol):
    """What the client needs from a transport."""

    def write(self, data: bytes) -> None: ...

    def abort(self) -> None: ...

    async def aclose(self) -> None: ...


class LockstepClient:
    """One session with a lockstep server; made by :func:`open_kcp` or :func:`open_ws`."""

    def __init__(self, *, max_queue: int = MAX_QUEUE, transport: str = "?") -> None:
        self.transport = transport  # "kcp" or "ws", for logs
        self.player_id: int | None = None
        self.room_id: int | None = None
        #: Every FrameData received, in arrival order (see the module docstring).
        self.frames: list[Frame] = []
        #: The frameID of the last FrameData received (None before any).
        self.last_frame_id: int | None = None
        #: Packets received per id (all of them, queued or not).
        self.counts: Counter[int] = Counter()
        #: Whether MSG_Close arrived.
        self.room_closed = False
        #: Set on MSG_Close or when the transport is gone.
        self.closed = asyncio.Event()
        #: Set when the transport is gone.
        self.disconnected = asyncio.Event()
        #: Why the client gave up, if it did (protocol error, queue overflow).
        self.error: BaseException | None = None
        #: False while background heartbeats run quietly: their replies are counted only.
        self.queue_heartbeats = True
        self._max_queue = max_queue
        self._queue: asyncio.Queue[tuple[MsgId | int, Any]] = asyncio.Queue()
        self._link: _Link | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._last_packet = 0.0  # loop time of the last packet received
        self._clock = asyncio.get_running_loop().time

    def _attach(self, link: _Link) -> None:
        self._link = link

    # -- sending -------------------------------------------------------------------------------

    def send(self, msg_id: int, message: Message | None = None) -> None:
        """Send one packet (``message`` serialised as its body, or an empty body)."""
        self.send_raw(encode_message(msg_id, message))

    def send_raw(self, data: bytes) -> None:
        """Write ``data`` as it is: over KCP into the stream, over WebSocket as one message
        (several packets or a malformed one, for tests of the server)."""
        if self._link is None or self.disconnected.is_set():
            raise LockstepClosed(f"lockstep {self.transport} client is closed")
        self._link.write(data)

    def heartbeat(self) -> None:
        self.send(MsgId.MSG_Heartbeat)

    def ready(self) -> None:
        self.send(MsgId.MSG_Ready)

    def progress(self, pro: int) -> None:
        self.send(MsgId.MSG_Progress, pb.C2S_ProgressMsg(pro=pro))

    def send_input(self, sid: int, x: int = 0, y: int = 0, frame_id: int | None = None) -> None:
        msg = pb.C2S_InputMsg(sid=sid, x=x, y=y)
        if frame_id is not None:
            msg.frameID = frame_id
        self.send(MsgId.MSG_Input, msg)

    def result(self, winner: int) -> None:
        self.send(MsgId.MSG_Result, pb.C2S_ResultMsg(winnerID=winner))

    async def connect(
        self,
        player_id: int,
        room_id: int,
        token: str | None = None,
        resume_frame: int | None = None,
        timeout: float = 5.0,
    ) -> int:
        """Send Connect and return the server's error code (an :class:`ErrorCode` if known)."""
        msg = pb.C2S_ConnectMsg(playerID=player_id, battleID=room_id)
        if token is not None:
            msg.token = token
        if resume_frame is not None:
            msg.resumeFrame = resume_frame
        self.player_id, self.room_id = player_id, room_id
        self.send(MsgId.MSG_Connect, msg)
        reply = await self.wait_for(MsgId.MSG_Connect, timeout)
        code = int(reply.errorCode)
        try:
            return ErrorCode(code)
        except ValueError:
            return code

    async def join_room(self, timeout: float = 5.0) -> Any:
        """Send JoinRoom and return the server's ``S2C_JoinRoomMsg``."""
        self.send(MsgId.MSG_JoinRoom)
        return await self.wait_for(MsgId.MSG_JoinRoom, timeout)

    def start_heartbeats(
        self, period: float = 0.5, quiet: bool = True, stale_after: float | None = 5.0
    ) -> None:
        """Send a Heartbeat every ``period`` seconds until the transport goes (or
        :meth:`stop_heartbeats`). With ``quiet`` their replies are counted, not queued.

        A server answers every Heartbeat, so ``stale_after`` seconds without any packet mean
        it is gone: the client then closes with :class:`LockstepClosed` as its error. (Over
        KCP nothing else would tell: a server drops sessions without a word, and the KCP
        layer may keep acknowledging what we send.)
        """
        self.stop_heartbeats()
        self.queue_heartbeats = not quiet
        self._heartbeat_task = asyncio.create_task(self._beat(period, stale_after))

    def stop_heartbeats(self) -> None:
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            self._heartbeat_task = None
        self.queue_heartbeats = True

    async def _beat(self, period: float, stale_after: float | None) -> None:
        loop = asyncio.get_running_loop()
        self._last_packet = max(self._last_packet, loop.time())
        try:
            while not self.disconnected.is_set():
                silent = loop.time() - self._last_packet
                if stale_after is not None and silent > stale_after:
                    self._fail(LockstepClosed(f"no packet from the server for {silent:.1f} s"))
                    return
                self.heartbeat()
                await asyncio.sleep(period)
        except LockstepClosed:
            pass

    # -- receiving -----------------------------------------------------------------------------

    async def recv(self, timeout: float = 5.0) -> tuple[MsgId | int, Any]:
        """The next queued packet as ``(id, decoded message or None)``; the id is a
        :class:`MsgId` when known. Raises ``TimeoutError``, or :class:`LockstepClosed` once
        the queue is empty and the transport gone."""
        if self._queue.empty():
            item = await asyncio.wait_for(self._queue.get(), timeout)
        else:
            item = self._queue.get_nowait()
        if item is _EOF:
            self._queue.put_nowait(_EOF)  # every later recv sees it too
            raise LockstepClosed(
                f"lockstep {self.transport} client disconnected"
                + (f" ({self.error})" if self.error else "")
            )
        return item

    async def wait_for(self, msg_id: int, timeout: float = 5.0) -> Any:
        """Receive until a packet with ``msg_id`` arrives; return its message (None for an
        empty one). Packets with other ids are dropped from the queue (their bookkeeping is
        already done)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            got_id, message = await self.recv(max(0.0, deadline - loop.time()))
            if got_id == msg_id:
                return message
            logger.debug("waiting for %s, skipped %s", msg_id, got_id)

    def drain(self) -> list[tuple[MsgId | int, Any]]:
        """Take every queued packet now (the end-of-stream mark stays)."""
        out = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is _EOF:
                self._queue.put_nowait(_EOF)
                break
            out.append(item)
        return out

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    @property
    def next_frame_id(self) -> int:
        """The first frame id not received yet: what a resuming Connect names."""
        return 0 if self.last_frame_id is None else self.last_frame_id + 1

    def _on_packets(self, packets: list[tuple[int, bytes]]) -> None:
        if packets:
            self._last_packet = self._clock()
        for msg_id, body in packets:
            if self.error is not None:
                return
            self._on_packet(msg_id, body)

    def _on_packet(self, msg_id: int, body: bytes) -> None:
        try:
            message = decode(msg_id, body, S2C_BODY)
        except RemoteProtocolError as exc:
            self._fail(exc)
            return
        self.counts[msg_id] += 1
        if msg_id == MsgId.MSG_Frame:
            assert message is not None
            frames = self.frames
            for frame in message.frames:
                frames.append(
                    (
                        frame.frameID,
                        tuple((i.id, i.sid, i.x, i.y, i.roomseatid) for i in frame.input),
                    )
                )
                self.last_frame_id = frame.frameID
        elif msg_id == MsgId.MSG_Close:
            self.room_closed = True
            self.closed.set()
        elif msg_id == MsgId.MSG_Heartbeat and not self.queue_heartbeats:
            return
        if self._queue.qsize() >= self._max_queue:
            self._fail(LockstepClosed(f"more than {self._max_queue} packets not read"))
            return
        self._queue.put_nowait((_KNOWN_IDS.get(msg_id, msg_id), message))

    def _fail(self, exc: BaseException) -> None:
        """Give up on the connection: a malformed packet or a reader that does not keep up."""
        if self.error is None:
            self.error = exc
            logger.warning("! lockstep %s client closed: %s", self.transport, exc)
        if self._link is not None:
            self._link.abort()

    def _on_disconnected(self, exc: BaseException | None) -> None:
        if self.disconnected.is_set():
            return
        if exc is not None and self.error is None:
            self.error = exc
        logger.debug("lockstep %s client disconnected (%r)", self.transport, exc)
        self.disconnected.set()
        self.closed.set()
        self._queue.put_nowait(_EOF)
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            self._heartbeat_task = None

    async def close(self) -> None:
        """Stop heartbeats and close the transport (queued sends are flushed first, briefly)."""
        self.stop_heartbeats()
        if self._link is not None and not self.disconnected.is_set():
            await self._link.aclose()
        self._on_disconnected(None)


# -- KCP -----------------------------------------------------------------------------------------


class _KCPLink(asyncio.Protocol):
    def __init__(self, client: LockstepClient, max_body: int, linger: float) -> None:
        self._client = client
        self._reader = PacketReader(max_body)
        self._linger = linger
        self._transport: KCPTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, KCPTransport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            packets = self._reader.feed(data)
        except RemoteProtocolError as exc:
            self._client._on_packets(getattr(exc, "packets", []))
            self._client._fail(exc)
            return
        self._client._on_packets(packets)

    def connection_lost(self, exc: Exception | None) -> None:
        self._client._on_disconnected(exc)

    def write(self, data: bytes) -> None:
        assert self._transport is not None
        self._transport.write(data)

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    async def aclose(self) -> None:
        if self._transport is None:
            return
        self._transport.close()  # flushes, then connection_lost (at most `linger` s)
        try:
            await asyncio.wait_for(self._client.disconnected.wait(), self._linger + 1.0)
        except TimeoutError:
            self._transport.abort()


async def open_kcp(
    host: str,
    port: int,
    *,
    config: KCPConfig = FAST_KCP,
    conv: int | None = None,
    max_body: int = MAX_BODY,
    max_queue: int = MAX_QUEUE,
) -> LockstepClient:
    """A client on a new KCP session to ``host:port`` (plain KCP: no FEC, no encryption).

    ``config`` is :data:`FAST_KCP` by default; :data:`GO_CLIENT_KCP` behaves like the Go
    example client. Nothing is sent before the first packet (KCP has no handshake of its own).
    """
    client = LockstepClient(max_queue=max_queue, transport="kcp")
    link = _KCPLink(client, max_body, config.linger)
    await open_kcp_connection(host, port, lambda: link, fec=False, config=config, conv=conv)
    client._attach(link)
    return client


# -- WebSocket -----------------------------------------------------------------------------------


class _WSFramingError(RemoteProtocolError):
    """A WebSocket message that does not hold whole packets."""


class _WSLink:
    def __init__(self, client: LockstepClient, ws: ClientConnection, max_body: int) -> None:
        self._client = client
        self._ws = ws
        self._max_body = max_body
        self._outgoing: asyncio.Queue[bytes] = asyncio.Queue()
        self._reader_task = asyncio.create_task(self._read())
        self._writer_task = asyncio.create_task(self._write())
        self._close_task: asyncio.Task[None] | None = None

    async def _read(self) -> None:
        client = self._client
        reader = PacketReader(self._max_body)
        exc: BaseException | None = None
        try:
            async for message in self._ws:
                if isinstance(message, str):
                    raise _WSFramingError("text message from a lockstep server")
                try:
                    packets = reader.feed(message)
                except RemoteProtocolError as bad:
                    client._on_packets(getattr(bad, "packets", []))
                    raise
                client._on_packets(packets)
                if reader.buffered:
                    raise _WSFramingError("a packet straddles two WebSocket messages")
        except ConnectionClosed as closed:
            exc = None if closed.rcvd is not None and closed.rcvd.code == 1000 else closed
        except RemoteProtocolError as bad:
            client._fail(bad)
        finally:
            self._writer_task.cancel()
            client._on_disconnected(exc)

    async def _write(self) -> None:
        ws = self._ws
        try:
            while True:
                await ws.send(await self._outgoing.get())
        except ConnectionClosed:
            pass

    def write(self, data: bytes) -> None:
        self._outgoing.put_nowait(data)

    def abort(self) -> None:
        if self._close_task is None:
            self._close_task = asyncio.create_task(self._ws.close())

    async def aclose(self) -> None:
        # Let queued sends go out first (briefly), then close the WebSocket.
        for _ in range(100):
            if self._outgoing.empty():
                break
            await asyncio.sleep(0.01)
        self._writer_task.cancel()
        await self._ws.close()
        await asyncio.gather(self._reader_task, self._writer_task, return_exceptions=True)
        if self._close_task is not None:
            await asyncio.gather(self._close_task, return_exceptions=True)


async def open_ws(
    url: str,
    *,
    max_body: int = MAX_BODY,
    max_queue: int = MAX_QUEUE,
    open_timeout: float = 5.0,
) -> LockstepClient:
    """A client on a new WebSocket connection to ``url`` (binary messages of whole packets)."""
    client = LockstepClient(max_queue=max_queue, transport="ws")
    ws = await ws_connect(url, open_timeout=open_timeout, compression=None, max_size=1 << 20)
    client._attach(_WSLink(client, ws, max_body))
    return client
