"""An asyncio client for goworld gates (TCP, WebSocket or KCP), for bots, tests and tools.

It speaks the client side of PROTOCOL.md: it keeps replicas of the entities the server
creates on it (type, attributes, position, yaw), applies attribute deltas exactly as GoWorld's
clients do (paths walked leaf-first), and records every server call::

    async with await GoWorldClient.connect("127.0.0.1", 14001) as client:
        account = await client.wait_player("Account")
        client.call(account.id, "Login", "alice", "secret")
        await client.wait_call("OnLogin")          # a method the server calls on us
        avatar = await client.wait_player("Avatar")
        print(avatar.attrs["name"])

``on_call`` and ``on_attr_change`` callbacks can be set to react instead of waiting.

When our gate closes the connection for a reason (the game hosting the player died, the
cluster kicked the client), the client knows why: its first heartbeat announces that it
understands notices (a ``u32`` feature word, which GoWorld's gates ignore), and our gate sends
it NOTICE_ON_CLIENT just before the close. :attr:`GoWorldClient.close_reason` (text) and
:attr:`GoWorldClient.close_code` (``"game_lost"``, ``"kicked"``) hold it; ``on_notice`` is
called with both. When the cluster is being stopped (``goworld stop``) the notice (code
``"shutdown"``) comes ahead of the close: the gate no longer reads the client from then on.
``connect(..., notices=False)`` behaves like GoWorld's clients.

The client sends a heartbeat right after connecting (a KCP server only learns about a session when
the client speaks first), then every ``heartbeat_interval`` seconds (10 by default; ``None``:
never): our gates close clients silent for ``heartbeat_check_interval`` (120 s by default).
Over WebSocket, writes are split into messages of at most :data:`WS_MESSAGE_MAX` bytes (the
gate refuses messages above its ``ws_max_message_size``; the packet stream ignores message
boundaries).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from goworld.errors import GoWorldError, ProtocolError
from goworld.proto import codec
from goworld.proto.dialect import Dialect
from goworld.proto.framing import Framer, frame
from goworld.proto.messages import (
    CallEntityMethodFromClient,
    HeartbeatFromClient,
    SyncPositionYawFromClient,
)
from goworld.proto.msgtypes import FEATURE_NOTICES, MsgType
from goworld.proto.snappy_stream import SnappyStreamDecoder, SnappyStreamEncoder

__all__ = ["GoWorldClient", "ClientEntity", "ServerCall", "HEARTBEAT_INTERVAL", "WS_MESSAGE_MAX"]

#: Seconds between two heartbeats (GoWorld's Go clients send one every 10 s as well).
HEARTBEAT_INTERVAL = 10.0
#: The largest WebSocket message the client sends.
WS_MESSAGE_MAX = 256 * 1024

_POS = struct.Struct("<ffff")
SPACE_TYPE = "__space__"


@dataclass
class ClientEntity:
    """The client's replica of a server entity."""

    id: str
    type_name: str
    is_player: bool
    attrs: dict[str, Any]
    x: float = 0.0
    y: float = 0.0
    z: float = 0.0
    yaw: float = 0.0


@dataclass(frozen=True)
class ServerCall:
    """A method the server called on this client: on ``entity_id`` (1009) or the player (1501)."""

    entity_id: str
    method: str
    args: tuple[Any, ...]
    filtered: bool = False


@dataclass
class _State:
    entities: dict[str, ClientEntity] = field(default_factory=dict)
    player: ClientEntity | None = None
    space: ClientEntity | None = None
    client_id: str | None = None


class GoWorldClient(asyncio.Protocol):
    """One client connection. Create it with :meth:`connect`."""

    def __init__(
        self, *, dialect: Dialect = Dialect.HEAD, compress: bool = False, record: bool = True
    ) -> None:
        self.dialect = dialect
        self.record = record  # keep ``calls`` and ``log``; long-running bots turn it off
        self.state = _State()
        self.calls: list[ServerCall] = []
        self.log: list[tuple[int, Any]] = []  # (msgtype, detail) of everything received
        self.on_call: Callable[[ServerCall], Any] | None = None
        self.on_attr_change: Callable[[ClientEntity, str], Any] | None = None
        #: why the gate closed this client (NOTICE_ON_CLIENT), if it said: code and text
        self.close_code: str | None = None
        self.close_reason: str | None = None
        self.on_notice: Callable[[str, str], Any] | None = None
        self._framer = Framer()
        self._decoder = SnappyStreamDecoder() if compress else None
        self._encoder = SnappyStreamEncoder() if compress else None
        self._transport: Any = None
        self._changed = asyncio.Event()
        self.closed = asyncio.get_running_loop().create_future()
        self.error: BaseException | None = None
        self._heartbeats: asyncio.Task[None] | None = None

    # ---- connecting ----------------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        *,
        transport: str = "tcp",
        tls: bool = False,
        compress: bool = False,
        dialect: Dialect = Dialect.HEAD,
        record: bool = True,
        ws_text_frames: bool = False,
        heartbeat_interval: float | None = HEARTBEAT_INTERVAL,
        local_addr: tuple[str, int] | None = None,
        notices: bool = True,
    ) -> GoWorldClient:
        """Connect over ``transport`` ("tcp", "ws" or "kcp"); ``port`` is the gate's port for it.

        With ``record=False`` the client keeps no history (``calls``, ``log``): use ``on_call``.
        ``ws_text_frames=True`` sends the binary packet stream in WebSocket *text* frames, as
        GoWorld's Go clients do (golang.org/x/net/websocket's default frame type).
        ``heartbeat_interval``: seconds between heartbeats (None: none after the first);
        ``local_addr``: the (host, port) to connect from, over TCP and WebSocket.
        ``notices``: announce in the first heartbeat that the client understands our gate's
        NOTICE_ON_CLIENT (False: send a bare heartbeat, as GoWorld's clients do).
        """
        client = cls(dialect=dialect, compress=compress, record=record)
        ctx = None
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        loop = asyncio.get_running_loop()
        if transport == "tcp":
            await loop.create_connection(lambda: client, host, port, ssl=ctx, local_addr=local_addr)
        elif transport == "ws":
            await _WebSocketPump.open(
                client, host, port, ctx, text_frames=ws_text_frames, local_addr=local_addr
            )
        elif transport == "kcp":
            from goworld.net.kcp import open_kcp_connection

            if ctx is not None:
                from goworld.net.tls import TLSProtocol

                await open_kcp_connection(
                    host, port, lambda: TLSProtocol(client, ctx, server_side=False)
                )
                await client.wait_until(lambda: client._transport is not None, 10.0)
            else:
                await open_kcp_connection(host, port, lambda: client)
        else:
            raise ValueError(f"unknown transport {transport!r}")
        if notices:
            client.announce_features(FEATURE_NOTICES)
        else:
            client.send(HeartbeatFromClient())
        if heartbeat_interval:
            client.start_heartbeats(heartbeat_interval)
        return client

    def announce_features(self, features: int) -> None:
        """Send a heartbeat whose body is the ``u32`` feature word (our gates read it;
        GoWorld's ignore it)."""
        msgtype = self.dialect.type_to_wire.get(MsgType.HEARTBEAT_FROM_CLIENT, MsgType.HEARTBEAT_FROM_CLIENT)
        data = frame(struct.pack("<HI", msgtype, features))
        if self._encoder is not None:
            data = self._encoder.encode(data)
        self._transport.write(data)

    def start_heartbeats(self, interval: float = HEARTBEAT_INTERVAL) -> None:
        """Send a heartbeat every ``interval`` seconds until the connection is gone (for
        subclasses that open their connection themselves; :meth:`connect` calls it)."""
        if self._heartbeats is None and not self.closed.done():
            self._heartbeats = asyncio.create_task(self._send_heartbeats(interval))

    async def _send_heartbeats(self, interval: float) -> None:
        while not self.closed.done():
            await asyncio.sleep(interval)
            if self._transport is None or self._transport.is_closing():
                return
            self.send(HeartbeatFromClient())

    async def __aenter__(self) -> GoWorldClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self, timeout: float = 5.0) -> None:
        """Close and wait until the connection is gone."""
        self.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.closed), timeout)

    # ---- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self._transport = transport
        self._changed.set()

    def data_received(self, data: bytes) -> None:
        try:
            if self._decoder is not None:
                data = self._decoder.feed(data)
            for payload in self._framer.feed(data):
                self._handle(payload)
        except (ProtocolError, KeyError, IndexError) as exc:
            self.error = exc
            self.close()
        self._changed.set()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(exc)
        if self._heartbeats is not None:
            self._heartbeats.cancel()
            self._heartbeats = None
        self._changed.set()

    def close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    @property
    def is_closed(self) -> bool:
        return self.closed.done()

    # ---- sending -------------------------------------------------------------------------

    def send(self, msg: Any) -> None:
        data = codec.encode(msg, self.dialect)
        if self._encoder is not None:
            data = self._encoder.encode(data)
        self._transport.write(data)

    def send_raw(self, data: bytes) -> None:
        """Write bytes as they are (for tests of malformed input)."""
        self._transport.write(data)

    def call(self, entity_id: str, method: str, *args: Any) -> None:
        """Call ``method`` (its wire name) on a server entity."""
        self.send(CallEntityMethodFromClient(entity_id, method, args))

    def call_player(self, method: str, *args: Any) -> None:
        if self.state.player is None:
            raise GoWorldError("no player entity yet")
        self.call(self.state.player.id, method, *args)

    def sync_position(self, entity_id: str, x: float, y: float, z: float, yaw: float) -> None:
        self.send(SyncPositionYawFromClient(entity_id, x, y, z, yaw))

    # ---- state ---------------------------------------------------------------------------

    @property
    def player(self) -> ClientEntity | None:
        return self.state.player

    @property
    def space(self) -> ClientEntity | None:
        return self.state.space

    @property
    def entities(self) -> dict[str, ClientEntity]:
        return self.state.entities

    async def wait_until(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Wait until ``predicate()`` is truthy (re-checked after every packet)."""
        async def waiter() -> Any:
            while True:
                value = predicate()
                if value:
                    return value
                if self.closed.done():
                    raise GoWorldError(
                        f"connection closed while waiting (reason: {self.close_reason}, "
                        f"error: {self.error})"
                    )
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(waiter(), timeout)

    async def wait_player(self, type_name: str | None = None, timeout: float = 10.0) -> ClientEntity:
        def check() -> ClientEntity | None:
            p = self.state.player
            return p if p is not None and (type_name is None or p.type_name == type_name) else None

        player: ClientEntity = await self.wait_until(check, timeout)
        return player

    async def wait_call(self, method: str, timeout: float = 10.0, *, start: int = 0) -> ServerCall:
        """The first call of ``method`` received at index >= ``start`` of :attr:`calls`."""
        def check() -> ServerCall | None:
            for call in self.calls[start:]:
                if call.method == method:
                    return call
            return None

        found: ServerCall = await self.wait_until(check, timeout)
        return found

    # ---- receiving -----------------------------------------------------------------------

    def _handle(self, payload: bytes) -> None:
        msgtype = codec.peek_msgtype(payload)
        if 1001 <= msgtype <= 1499:
            if self.state.client_id is None:
                self.state.client_id = payload[4:20].decode("latin-1")
            handler = _HANDLERS.get(msgtype)
            if handler is None:
                raise ProtocolError(f"unexpected message type {msgtype}")
            handler(self, payload, 20)
        elif msgtype == MsgType.CALL_FILTERED_CLIENTS:
            pos = 3 if self.dialect.has_filter_op else 2
            _key, pos = codec.read_varstr(payload, pos)
            _val, pos = codec.read_varstr(payload, pos)
            method, pos = codec.read_varstr(payload, pos)
            args, _ = codec.decode_args(payload, pos)
            player = self.state.player
            self._record(ServerCall(player.id if player else "", method, args, filtered=True))
        elif msgtype == MsgType.NOTICE_ON_CLIENT:
            code, pos = codec.read_varstr(payload, 2)
            text, _ = codec.read_varstr(payload, pos)
            self.close_code, self.close_reason = code, text
            if self.record:
                self.log.append((msgtype, (code, text)))
            if self.on_notice is not None:
                self.on_notice(code, text)
        elif msgtype == MsgType.SYNC_POSITION_YAW_ON_CLIENTS:
            entities = self.state.entities
            for off in range(2, len(payload) - 31, 32):
                e = entities.get(payload[off : off + 16].decode("latin-1"))
                if e is not None:
                    e.x, e.y, e.z, e.yaw = _POS.unpack_from(payload, off + 16)
            if self.record:
                self.log.append((msgtype, (len(payload) - 2) // 32))
        else:
            raise ProtocolError(f"unexpected message type {msgtype}")

    def _record(self, call: ServerCall) -> None:
        if self.record:
            self.calls.append(call)
            self.log.append((MsgType.CALL_ENTITY_METHOD_ON_CLIENT, call))
        if self.on_call is not None:
            self.on_call(call)

    def _on_create(self, p: bytes, pos: int) -> None:
        is_player = p[pos] != 0
        eid, pos = codec.read_entity_id(p, pos + 1)
        type_name, pos = codec.read_varstr(p, pos)
        x, y, z, yaw = _POS.unpack_from(p, pos)
        data, _ = codec.read_data(p, pos + 16)
        entity = ClientEntity(eid, type_name, is_player, data if isinstance(data, dict) else {}, x, y, z, yaw)
        self.state.entities[eid] = entity
        if type_name == SPACE_TYPE:
            self.state.space = entity
        if is_player:
            self.state.player = entity
        if self.record:
            self.log.append((MsgType.CREATE_ENTITY_ON_CLIENT, (type_name, eid, is_player)))

    def _on_destroy(self, p: bytes, pos: int) -> None:
        type_name, pos = codec.read_varstr(p, pos)
        eid, _ = codec.read_entity_id(p, pos)
        entity = self.state.entities.pop(eid, None)
        if entity is not None and self.state.space is entity:
            self.state.space = None
        if entity is not None and self.state.player is entity:
            self.state.player = None
        if self.record:
            self.log.append((MsgType.DESTROY_ENTITY_ON_CLIENT, (type_name, eid)))

    def _target(self, p: bytes, pos: int) -> tuple[ClientEntity, Any, Any, int]:
        eid, pos = codec.read_entity_id(p, pos)
        path, pos = codec.read_data(p, pos)
        entity = self.state.entities.get(eid)
        if entity is None:
            raise ProtocolError(f"attribute change for unknown entity {eid}")
        node: Any = entity.attrs
        for key in reversed(path or []):
            node = node[key]
        root = path[-1] if path else None
        return entity, node, root, pos

    def _attr(self, p: bytes, pos: int, msgtype: int) -> None:
        entity, node, root, pos = self._target(p, pos)
        if msgtype == MsgType.NOTIFY_MAP_ATTR_CHANGE_ON_CLIENT:
            key, pos = codec.read_varstr(p, pos)
            node[key], _ = codec.read_data(p, pos)
            root = root if root is not None else key
        elif msgtype == MsgType.NOTIFY_MAP_ATTR_DEL_ON_CLIENT:
            key, _ = codec.read_varstr(p, pos)
            node.pop(key, None)
            root = root if root is not None else key
        elif msgtype == MsgType.NOTIFY_MAP_ATTR_CLEAR_ON_CLIENT:
            node.clear()
        elif msgtype == MsgType.NOTIFY_LIST_ATTR_CHANGE_ON_CLIENT:
            (index,) = struct.unpack_from("<I", p, pos)
            node[index], _ = codec.read_data(p, pos + 4)
        elif msgtype == MsgType.NOTIFY_LIST_ATTR_POP_ON_CLIENT:
            node.pop()
        elif msgtype == MsgType.NOTIFY_LIST_ATTR_APPEND_ON_CLIENT:
            value, _ = codec.read_data(p, pos)
            node.append(value)
        if self.record:
            self.log.append((msgtype, (entity.id, root)))
        if self.on_attr_change is not None:
            self.on_attr_change(entity, str(root))

    def _on_call(self, p: bytes, pos: int) -> None:
        eid, pos = codec.read_entity_id(p, pos)
        method, pos = codec.read_varstr(p, pos)
        args, _ = codec.decode_args(p, pos)
        self._record(ServerCall(eid, method, args))


def _attr_handler(t: MsgType) -> Callable[[GoWorldClient, bytes, int], None]:
    return lambda self, p, pos: self._attr(p, pos, t)


_HANDLERS: dict[int, Callable[[GoWorldClient, bytes, int], None]] = {
    MsgType.CREATE_ENTITY_ON_CLIENT: GoWorldClient._on_create,
    MsgType.DESTROY_ENTITY_ON_CLIENT: GoWorldClient._on_destroy,
    MsgType.CALL_ENTITY_METHOD_ON_CLIENT: GoWorldClient._on_call,
    **{
        t: _attr_handler(t)
        for t in (
            MsgType.NOTIFY_MAP_ATTR_CHANGE_ON_CLIENT,
            MsgType.NOTIFY_MAP_ATTR_DEL_ON_CLIENT,
            MsgType.NOTIFY_MAP_ATTR_CLEAR_ON_CLIENT,
            MsgType.NOTIFY_LIST_ATTR_CHANGE_ON_CLIENT,
            MsgType.NOTIFY_LIST_ATTR_POP_ON_CLIENT,
            MsgType.NOTIFY_LIST_ATTR_APPEND_ON_CLIENT,
        )
    },
}


class _WebSocketPump:
    """Moves bytes between a websockets client connection and the protocol."""

    def __init__(self, conn: Any, client: GoWorldClient, text_frames: bool) -> None:
        self.conn = conn
        self.client = client
        self._text_frames = text_frames
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._closing = False
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    async def open(
        cls,
        client: GoWorldClient,
        host: str,
        port: int,
        ctx: ssl.SSLContext | None,
        *,
        text_frames: bool = False,
        local_addr: tuple[str, int] | None = None,
    ) -> None:
        from websockets.asyncio.client import connect

        scheme = "wss" if ctx is not None else "ws"
        conn = await connect(
            f"{scheme}://{host}:{port}/ws",
            ssl=ctx,
            compression=None,
            max_size=None,
            ping_interval=None,
            origin=f"http://{host}:{port}/",  # type: ignore[arg-type]
            local_addr=local_addr,
        )
        pump = cls(conn, client, text_frames)
        client.connection_made(pump)
        pump._tasks = [asyncio.create_task(pump._reader()), asyncio.create_task(pump._writer())]

    def write(self, data: bytes) -> None:
        if len(data) <= WS_MESSAGE_MAX:
            self._queue.put_nowait(data)
        else:
            for start in range(0, len(data), WS_MESSAGE_MAX):
                self._queue.put_nowait(data[start : start + WS_MESSAGE_MAX])

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._queue.put_nowait(None)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    async def _reader(self) -> None:
        try:
            while True:  # text or binary frames alike: raw bytes, no UTF-8 check
                self.client.data_received(await self.conn.recv(decode=False))
        except Exception:
            pass
        self._closing = True
        self._queue.put_nowait(None)
        self.client.connection_lost(None)

    async def _writer(self) -> None:
        try:
            while True:
                data = await self._queue.get()
                if data is None:
                    break
                await self.conn.send(data, text=self._text_frames)
        except Exception:
            pass
        await self.conn.close()
