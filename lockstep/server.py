"""The lockstep process's I/O: KCP and WebSocket sessions, the HTTP room API, the room clock.

Everything about rooms is in :class:`goworld.lockstep.rooms.RoomManager`; this module moves
bytes to and from it and calls its ``tick`` on time:

* **KCP** (``listen_addr``): :func:`goworld.net.kcp.start_kcp_server` without FEC, with
  lockstepserver's session settings (stream mode, nodelay 1/10/2/1, windows 4096/4096). Our
  return-routability cookie stays: kcp-go clients answer it without knowing.
* **HTTP** (``http_addr``): ``/create?room=&member=`` (lockstepserver's text answer), the
  WebSocket endpoint at ``ws_path`` (binary messages carrying whole packets), ``/static/``
  files from ``web_dir``, ``/metrics`` and ``/status``; any other path: lockstepserver's form
  (no query) or an empty 200 (a query).
* **Bounds**: a session is closed (one log line) when it sends a body over 1024 bytes, an
  unreadable Connect, anything but Connect/Heartbeat/MSG_END before Connect, more than
  ``max_packets_per_sec`` packets in a second, nothing for ``session_timeout`` seconds, or
  when more than :data:`SEND_BUFFER_LIMIT` bytes wait to be sent to it, or when it has not
  joined a room ``connect_timeout`` seconds after it opened. At most ``max_sessions`` sessions
  exist, ``max_sessions_per_ip`` from one host; more are closed at once. ``GET /create`` makes
  at most ``http_max_rooms`` live rooms, ``http_rooms_per_ip`` per host
  (:meth:`goworld.lockstep.rooms.RoomManager.http_create`), so game code's rooms keep theirs.
* **The clock**: one task sleeps until the earliest room is due (:meth:`RoomManager.next_due`)
  and ticks every due room; a room's frame N is due at its start + N / tick_hz whatever the
  loop's delays (:class:`goworld.lockstep.room.Room`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from goworld import ops_http
from goworld.address import address_key
from goworld.config import LockstepConfig
from goworld.errors import RemoteProtocolError
from goworld.lockstep.codec import PacketReader
from goworld.lockstep.room import Room
from goworld.lockstep.rooms import RoomManager
from goworld.metrics import Exporter
from goworld.net.kcp import KCPConfig, KCPServer, start_kcp_server

__all__ = ["LockstepServer", "SEND_BUFFER_LIMIT", "KCP_SETTINGS"]

logger = logging.getLogger("goworld.lockstep")
#: websockets logs every HTTP answer and connection at INFO: one line per room API call
_ws_logger = logging.getLogger("goworld.lockstep.ws")
_ws_logger.setLevel(logging.WARNING)

#: Bytes waiting to be sent to one session before it is closed (lockstepserver: 1024 packets).
SEND_BUFFER_LIMIT = 256 * 1024
#: lockstepserver's server-side session settings (LOCKSTEP.md §2.2), FEC off.
KCP_SETTINGS = {
    "data_shards": 0,
    "parity_shards": 0,
    "send_parity": False,
    "recover": False,
    "interval": 10,
    "resend": 2,
    "no_delay": True,
    "no_congestion_control": True,
    "send_window": 4096,
    "receive_window": 4096,
    "socket_buffer": 4 * 1024 * 1024,
    "idle_timeout": None,  # our own session_timeout closes silent sessions
}
_FORM = (
    b"<!doctype html><title>lockstep rooms</title><form action=/create>"
    b"room <input name=room> members <input name=member placeholder=1,2> "
    b"<button>create</button></form>\n"
)
_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".json": "application/json",
}


@dataclass
class Traffic:
    sessions_opened: dict[str, int] = field(default_factory=lambda: {"kcp": 0, "ws": 0})
    sessions_closed: dict[str, int] = field(default_factory=dict)  # by reason
    packets_in: int = 0
    bytes_in: int = 0
    packets_out: int = 0
    bytes_out: int = 0

    def closed(self, reason: str) -> None:
        self.sessions_closed[reason] = self.sessions_closed.get(reason, 0) + 1


class _Session:
    """One client connection, whatever carries it; the room layer's ``Session``."""

    __slots__ = (
        "server", "kind", "peer", "host", "reader", "opened_at", "last_heard", "closed", "window",
        "packets", "__weakref__",
    )

    def __init__(self, server: LockstepServer, kind: str, peer: str) -> None:
        self.server = server
        self.kind = kind
        self.peer = peer
        self.host = ""  # address_key of the peer, once counted (LockstepServer.opened)
        self.reader = PacketReader()
        self.opened_at = self.last_heard = server.now()
        self.closed = False
        self.window = 0  # the whole second packets are counted in
        self.packets = 0

    def received(self, data: bytes) -> None:
        server = self.server
        now = self.last_heard = server.now()
        traffic = server.traffic
        traffic.bytes_in += len(data)
        try:
            packets = self.reader.feed(data)
        except RemoteProtocolError as exc:
            self.abort("bad_packet", str(exc))
            return
        traffic.packets_in += len(packets)
        limit = server.cfg.max_packets_per_sec
        if limit:
            second = int(now)
            if second != self.window:
                self.window, self.packets = second, 0
            self.packets += len(packets)
            if self.packets > limit:
                self.abort("rate", f"over max_packets_per_sec = {limit}")
                return
        receive = server.rooms.receive
        for msg_id, body in packets:
            if self.closed:
                return
            receive(self, msg_id, body, now)

    def abort(self, reason: str, detail: str) -> None:
        if self.closed:
            return
        logger.info("closed %s session %s: %s", self.kind, self.peer, detail)
        self.server.traffic.closed(reason)
        self.close()

    def buffered(self) -> int:
        raise NotImplementedError

    def send(self, data: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def gone(self) -> None:
        """The connection is closed (by either side): the rooms forget it."""
        self.closed = True
        self.server.forget(self)


class _KCPSession(_Session, asyncio.Protocol):
    __slots__ = ("transport",)

    def __init__(self, server: LockstepServer) -> None:
        _Session.__init__(self, server, "kcp", "?")
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peername = transport.get_extra_info("peername")
        self.peer = str(peername)
        self.server.opened(self, peername)

    def data_received(self, data: bytes) -> None:
        self.received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.gone()

    def send(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or self.closed:
            return
        if transport.get_write_buffer_size() > SEND_BUFFER_LIMIT:
            self.abort("send_buffer", f"over {SEND_BUFFER_LIMIT} bytes wait to be sent to it")
            return
        traffic = self.server.traffic
        traffic.packets_out += 1
        traffic.bytes_out += len(data)
        transport.write(data)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        if not self.closed:
            self.gone()


class _WSSession(_Session):
    __slots__ = ("conn", "queue", "queued", "wake", "task")

    def __init__(self, server: LockstepServer, conn: ServerConnection) -> None:
        super().__init__(server, "ws", str(conn.remote_address))
        self.conn = conn
        self.queue: deque[bytes] = deque()
        self.queued = 0
        self.wake = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._send_loop())

    def send(self, data: bytes) -> None:
        if self.closed:
            return
        if self.queued + len(data) > SEND_BUFFER_LIMIT:
            self.abort("send_buffer", f"over {SEND_BUFFER_LIMIT} bytes wait to be sent to it")
            return
        traffic = self.server.traffic
        traffic.packets_out += 1
        traffic.bytes_out += len(data)
        self.queue.append(data)
        self.queued += len(data)
        self.wake.set()

    async def _send_loop(self) -> None:
        conn, queue = self.conn, self.queue
        try:
            while True:
                await self.wake.wait()
                self.wake.clear()
                while queue:
                    data = queue.popleft()
                    self.queued -= len(data)
                    await conn.send(data)
        except ConnectionClosed:
            pass

    def close(self) -> None:
        if not self.closed:
            self.gone()
        self.task.cancel()
        asyncio.get_running_loop().create_task(self.conn.close())


class LockstepServer:
    """Sessions, HTTP and the clock around one :class:`RoomManager`."""

    def __init__(
        self,
        cfg: LockstepConfig,
        rooms: RoomManager,
        *,
        exporter: Exporter | None = None,
        on_ended: Callable[[Room], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.rooms = rooms
        self.exporter = exporter
        self.on_ended = on_ended
        self.traffic = Traffic()
        self.sessions: set[_Session] = set()
        self._per_host: dict[str, int] = {}  # sessions per address_key
        self.kcp: KCPServer | None = None
        self.http: Server | None = None
        self._loop = asyncio.get_running_loop()
        self.now = self._loop.time
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.tick_lateness: deque[float] = deque(maxlen=4096)  # s past due, recent ticks
        self._period = 1.0 / cfg.tick_hz

    # ---- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Bind both listeners (OSError names nothing: the caller knows which key failed)."""
        cfg = self.cfg
        self.kcp = await start_kcp_server(
            lambda: _KCPSession(self),
            cfg.listen_addr.host or "0.0.0.0",
            cfg.listen_addr.port,
            fec=False,
            config=KCPConfig(**KCP_SETTINGS, max_sessions=cfg.max_sessions),  # type: ignore[arg-type]
        )
        self.http = await serve(
            self._ws_handler,
            cfg.http_addr.host or None,
            cfg.http_addr.port,
            process_request=self._http,
            compression=None,
            max_size=64 * 1024,
            max_queue=16,
            ping_interval=None,
            open_timeout=10,
            logger=_ws_logger,
        )
        self._tasks = [
            self._loop.create_task(self._clock(), name="lockstep-clock"),
            self._loop.create_task(self._sweep(), name="lockstep-sweep"),
        ]

    @property
    def kcp_address(self) -> tuple[str, int]:
        assert self.kcp is not None
        host, port = self.kcp.address
        return str(host), int(port)

    @property
    def http_port(self) -> int:
        assert self.http is not None
        return int(next(iter(self.http.sockets)).getsockname()[1])

    async def stop(self) -> list[Room]:
        """End every room (Close to its players), close every session and listener; returns
        the rooms whose game had not ended."""
        for task in self._tasks:
            task.cancel()
        ended = self.rooms.stop(self.now())
        for session in list(self.sessions):
            session.close()
        await asyncio.sleep(0.05)  # KCP and WebSocket flush what was written
        if self.kcp is not None:
            self.kcp.close()
        if self.http is not None:
            self.http.close()
            await self.http.wait_closed()
        return ended

    # ---- sessions ------------------------------------------------------------------------

    def opened(self, session: _Session, peername: Any) -> bool:
        cfg = self.cfg
        if len(self.sessions) >= cfg.max_sessions:
            session.abort("session_cap", f"max_sessions = {cfg.max_sessions} reached")
            return False
        host = address_key(ops_http.peer_host(peername))
        if cfg.max_sessions_per_ip and self._per_host.get(host, 0) >= cfg.max_sessions_per_ip:
            session.abort("session_cap", f"max_sessions_per_ip = {cfg.max_sessions_per_ip} reached for {host}")
            return False
        session.host = host
        self._per_host[host] = self._per_host.get(host, 0) + 1
        self.sessions.add(session)
        self.traffic.sessions_opened[session.kind] += 1
        return True

    def forget(self, session: _Session) -> None:
        if session in self.sessions:
            self.sessions.discard(session)
            left = self._per_host.get(session.host, 0) - 1
            if left > 0:
                self._per_host[session.host] = left
            else:
                self._per_host.pop(session.host, None)
        self.rooms.session_closed(session)

    async def _ws_handler(self, conn: ServerConnection) -> None:
        session = _WSSession(self, conn)
        if not self.opened(session, conn.remote_address):
            return
        try:
            async for message in conn:
                if session.closed:
                    break
                session.received(message if isinstance(message, bytes) else message.encode())
        except ConnectionClosed:
            pass
        finally:
            if not session.closed:
                session.gone()
            session.task.cancel()

    async def _sweep(self) -> None:
        """Close sessions silent for session_timeout (lockstepserver: 5 s read deadline), and
        those that did not join a room within connect_timeout (heartbeats alone must not hold
        a session: max_sessions would be anyone's to fill)."""
        timeout, deadline = self.cfg.session_timeout, self.cfg.connect_timeout
        while True:
            await asyncio.sleep(min(1.0, timeout / 2, deadline / 2))
            now = self.now()
            for session in [s for s in self.sessions if now - s.last_heard > timeout]:
                session.abort("timeout", f"nothing received for {timeout:g} s")
            for session in [s for s in self.sessions
                            if now - s.opened_at > deadline and not self.rooms.is_bound(s)]:
                session.abort("connect_timeout", f"no room joined within connect_timeout = {deadline:g} s")

    # ---- the clock -----------------------------------------------------------------------

    def room_created(self) -> None:
        self._wake.set()

    async def _clock(self) -> None:
        rooms, now = self.rooms, self.now
        lateness = self.tick_lateness
        while True:
            due = rooms.next_due()
            if due is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            wait = due - now()
            if wait > self._period:  # nothing due this tick (rooms closing): a new room may be
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
                continue
            if wait > 0:  # the common case: every room is due on the next grid tick
                await asyncio.sleep(wait)
                continue
            t = now()
            lateness.append(t - due)
            ended = rooms.tick(t)
            for room in ended:
                self._ended(room)

    def _ended(self, room: Room) -> None:
        if self.cfg.replay_dir is not None:
            self._save_log(room)
        if self.on_ended is not None:
            try:
                self.on_ended(room)
            except Exception:
                logger.exception("room %d: reporting its result failed", room.id)

    def _save_log(self, room: Room) -> None:
        assert self.cfg.replay_dir is not None
        path = self.cfg.replay_dir / f"room-{room.id}-{room.created_wall}.json"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(room.input_log()))
        except OSError as exc:
            logger.error("room %d: cannot write its input log to %s: %s", room.id, path, exc)

    # ---- HTTP ----------------------------------------------------------------------------

    def _http(self, conn: ServerConnection, request: Request) -> Response | None:
        path, _, query = request.path.partition("?")
        if path == self.cfg.ws_path:
            return None
        if path == "/create":
            origin = ops_http.peer_host(conn.remote_address)
            status, text = self.rooms.http_create(query, self.now(), origin)
            if status == 200:
                self.room_created()
            return _response(status, text.encode(), "text/plain; charset=utf-8")
        if self.exporter is not None:
            peer = ops_http.peer_host(conn.remote_address)
            reply = ops_http.respond(
                self.exporter, request.path, peer, request.headers.get("Authorization")
            )
            if reply is not None:
                response = _response(reply.status, reply.body, reply.content_type)
                for name, value in reply.headers:
                    response.headers[name] = value
                return response
        if path.startswith("/static/") and self.cfg.web_dir is not None:
            return _static(self.cfg.web_dir, path[len("/static/") :])
        if query:
            return _response(200, b"", "text/plain; charset=utf-8")
        return _response(200, _FORM, "text/html; charset=utf-8")


def _response(status: int, body: bytes, content_type: str) -> Response:
    code = HTTPStatus(status)
    headers = Headers()
    headers["Content-Type"] = content_type
    headers["Content-Length"] = str(len(body))
    headers["Cache-Control"] = "no-store"
    return Response(code.value, code.phrase, headers, body)


def _static(root: Path, rel: str) -> Response:
    base = root.resolve()
    target = (base / (rel or "index.html")).resolve()
    if base not in target.parents or not target.is_file():
        return _response(404, b"not found\n", "text/plain; charset=utf-8")
    return _response(
        200, target.read_bytes(), _CONTENT_TYPES.get(target.suffix, "application/octet-stream")
    )


def describe(server: LockstepServer) -> dict[str, Any]:
    """The /status facts of the lockstep process."""
    rooms = server.rooms
    late = sorted(server.tick_lateness)
    return {
        "clients": len(server.sessions),
        "entities": None,
        "rooms": len(rooms.rooms),
        "players_in_rooms": rooms.players_in_rooms(),
        "tick_late_p99_ms": round(late[int(len(late) * 0.99) - 1] * 1000, 3) if late else 0.0,
        **rooms.stats,
    }
