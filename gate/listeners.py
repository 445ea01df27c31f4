"""The gate's client listeners: TCP, WebSocket (``/ws`` on http_addr) and KCP (UDP).

Each listener only moves bytes between its transport and a :class:`~gate.client_proxy.ClientProxy`.
TCP and KCP use the proxy as their ``asyncio.Protocol``. WebSocket carries the packet stream
spread over binary or text messages whose boundaries mean nothing (PROTOCOL.md §1.2); a text
message's payload is taken as raw bytes, with no UTF-8 check, so the handler feeds every message's
bytes to the proxy and a :class:`_WebSocketTransport` writes
each flush as one binary message.

Bounds (:mod:`gate.limits`): TCP and WebSocket connections are accepted by
:class:`gate.acceptor.Acceptor` (address book, accept back-off, TLS handshake timeout). A
WebSocket message is at most ``ws_max_message_size`` bytes (1009 close above it), the library
queues at most :data:`_WS_QUEUE` received messages before it stops reading the socket, and the
WebSocket opening handshake must finish within ``handshake_timeout``. Under TLS, a KCP session
must finish its TLS handshake within ``handshake_timeout``.

The same HTTP listener serves the operators' ``/metrics``, ``/status`` and status page
(``/goworld/status``) when given an exporter (:mod:`goworld.ops_http`: its access rule, and
these paths come before the game's web files).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from http import HTTPStatus
from pathlib import Path
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol

from gate import client_proxy
from gate.acceptor import Acceptor, Slot, bind_tcp
from gate.client_proxy import ClientProxy, cut
from gate.service import GateService
from goworld import ops_http
from goworld.metrics import Exporter
from goworld.net.kcp import KCPConfig, KCPServer, start_kcp_server
from goworld.net.tls import TLSProtocol

__all__ = ["start_tcp", "start_websocket", "start_kcp", "tls_context"]

logger = logging.getLogger("goworld.gate")

_SOCKET_BUFFER = 1024 * 1024
#: Received WebSocket messages the library may hold before it stops reading the socket.
_WS_QUEUE = 2


def tls_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certfile, keyfile)
    return ctx


async def start_tcp(
    gate: GateService,
    host: str,
    port: int,
    *,
    tls: ssl.SSLContext | None = None,
    start_serving: bool = True,
) -> Acceptor:
    """Listen for TCP clients; ``start_serving=False`` binds now and accepts after
    ``await server.start_serving()``."""

    def factory(slot: Slot) -> asyncio.Protocol:
        proxy = gate.new_proxy("tcp")
        proxy.on_gone = slot.release
        return proxy

    acceptor = Acceptor(
        bind_tcp(host, port, buffer=_SOCKET_BUFFER),
        factory,
        book=gate.addresses,
        summary=gate.summary,
        what="tcp" if tls is None else "tcp+tls",
        tls=tls,
        handshake_timeout=gate.limits.handshake_timeout,
    )
    if start_serving:
        await acceptor.start_serving()
    return acceptor


class _WebSocketTransport:
    """What :class:`ClientProxy` needs of a transport, over a websockets connection."""

    def __init__(self, conn: ServerConnection) -> None:
        self._conn = conn
        self._queue: deque[bytes] = deque()
        self._queued = 0
        self._wakeup = asyncio.Event()
        self._closing = False
        self.reading = True
        self.resumed = asyncio.Event()
        self.resumed.set()
        self._sender = asyncio.create_task(self._send_loop())

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self._conn.remote_address
        if name == "socket":
            return self._conn.transport.get_extra_info("socket")
        return default

    def write(self, data: bytes) -> None:
        if not self._closing:
            self._queue.append(data)
            self._queued += len(data)
            self._wakeup.set()

    def get_write_buffer_size(self) -> int:
        """Queued here, plus what the socket has not taken yet (a send waits on it)."""
        transport = self._conn.transport
        return self._queued + (transport.get_write_buffer_size() if transport is not None else 0)

    def is_closing(self) -> bool:
        return self._closing

    def pause_reading(self) -> None:
        """The handler stops taking messages; the library's queue fills, then it stops reading."""
        self.reading = False
        self.resumed.clear()

    def resume_reading(self) -> None:
        self.reading = True
        self.resumed.set()

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._wakeup.set()
            self.resumed.set()

    async def finished(self, within: float) -> None:
        """Wait (after :meth:`close`) until what was queued is sent and the WebSocket closed;
        cut the connection if that takes over ``within`` seconds (a peer that does not read
        would hold it, and its output, for ever: the library's drain has no timeout)."""
        sender = self._sender
        if not sender.done():
            done, _ = await asyncio.wait({sender}, timeout=within)  # never raises its error
            if not done:
                cut(self)

    def abort(self) -> None:
        """Cut the connection now, dropping what was not sent (a peer that does not read)."""
        self.close()
        self._queue.clear()
        self._queued = 0
        self._sender.cancel()
        self._conn.transport.abort()

    async def _send_loop(self) -> None:
        conn = self._conn
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                while self._queue:
                    data = self._queue.popleft()
                    self._queued -= len(data)
                    await conn.send(data)
                if self._closing:
                    await conn.close()
                    return
        except ConnectionClosed:
            pass


_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".ico": "image/x-icon",
}


def _static_response(static_dir: Path, path: str) -> Response:
    """A GET for a file under ``static_dir`` (``/`` is index.html); never outside it."""
    rel = path.split("?", 1)[0].lstrip("/") or "index.html"
    root = static_dir.resolve()
    target = (root / rel).resolve()
    if root not in target.parents or not target.is_file():
        return _response(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")
    body = target.read_bytes()
    return _response(HTTPStatus.OK, body, _CONTENT_TYPES.get(target.suffix, "application/octet-stream"))


def _response(status: HTTPStatus, body: bytes, content_type: str) -> Response:
    headers = Headers()
    headers["Content-Type"] = content_type
    headers["Content-Length"] = str(len(body))
    headers["Cache-Control"] = "no-cache"
    return Response(status.value, status.phrase, headers, body)


def _ops_response(reply: ops_http.Reply) -> Response:
    status = HTTPStatus(reply.status)
    headers = Headers()
    headers["Content-Type"] = reply.content_type
    headers["Content-Length"] = str(len(reply.body))
    headers["Cache-Control"] = "no-store"
    for name, value in reply.headers:
        headers[name] = value
    return Response(status.value, status.phrase, headers, reply.body)


async def start_websocket(
    gate: GateService,
    host: str,
    port: int,
    *,
    tls: ssl.SSLContext | None = None,
    static_dir: Path | None = None,
    start_serving: bool = True,
    ops: Exporter | None = None,
) -> Server:
    limits = gate.limits
    ws_logger = logging.getLogger("goworld.gate.ws")

    async def handler(conn: ServerConnection) -> None:
        transport = _WebSocketTransport(conn)
        proxy = gate.new_proxy("ws")
        if isinstance(conn, _GateWSConnection) and conn.slot is not None:
            proxy.on_gone = conn.slot.release
        proxy.connection_made(transport)
        try:
            while not proxy.closed:
                if not transport.reading:
                    await transport.resumed.wait()
                    continue
                # decode=False: text frames are taken as bytes, never checked as UTF-8 (GoWorld's
                # Go bot sends binary packets in text frames, and GoWorld's gate accepts them).
                proxy.data_received(await conn.recv(decode=False))
        except ConnectionClosed as exc:
            if exc.rcvd is None and exc.sent is not None and exc.sent.code == 1009:
                proxy.abort(f"WebSocket: {exc.sent.reason or 'message too big'}")
        finally:
            # the proxy may have closed it while the peer still holds the socket: the client
            # is gone (and its address slot free) only once the socket is
            transport.close()
            await transport.finished(client_proxy.CLOSE_LINGER)
            proxy.connection_lost(None)

    def process_request(conn: ServerConnection, request: Request) -> Response | None:
        if request.path.split("?", 1)[0] == "/ws":
            return None
        if ops is not None:
            peer = ops_http.peer_host(conn.remote_address)
            reply = ops_http.respond(ops, request.path, peer, request.headers.get("Authorization"))
            if reply is not None:
                return _ops_response(reply)
        if static_dir is not None and "upgrade" not in request.headers.get("Connection", "").lower():
            return _static_response(static_dir, request.path)
        return conn.respond(HTTPStatus.NOT_FOUND, "not found\n")

    server = serve(
        handler,
        host or None,
        port,
        ssl=tls,
        process_request=process_request,
        compression=None,
        max_size=limits.ws_max_message_size or None,
        max_queue=_WS_QUEUE,
        ping_interval=None,
        open_timeout=limits.handshake_timeout or None,
        logger=ws_logger,
    )

    def factory(slot: Slot) -> asyncio.Protocol:
        # What websockets' serve() builds per connection, with the address slot attached.
        conn = _GateWSConnection(
            ServerProtocol(max_size=limits.ws_max_message_size or None, logger=ws_logger),
            server,
            ping_interval=None,
            max_queue=_WS_QUEUE,
        )
        conn.slot = slot
        return conn

    acceptor = Acceptor(
        bind_tcp(host, port),
        factory,
        book=gate.addresses,
        summary=gate.summary,
        what="ws" if tls is None else "wss",
        tls=tls,
        handshake_timeout=limits.handshake_timeout,
    )

    async def listen() -> Any:
        if start_serving:
            await acceptor.start_serving()
        return acceptor

    # The server accepts through our Acceptor instead of loop.create_server (serve() has not
    # listened yet: it does when awaited, by calling this attribute).
    server.create_server = listen
    return await server


class _GateWSConnection(ServerConnection):
    """A websockets connection that gives its address slot back when the socket is gone."""

    slot: Slot | None = None

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            super().connection_lost(exc)
        finally:
            if self.slot is not None:
                self.slot.release()


class _KCPTLS(TLSProtocol):
    """TLS over a KCP session for one client: the proxy pauses the KCP session itself, and a
    session that has not finished its TLS handshake within ``handshake_timeout`` is closed."""

    def __init__(self, gate: GateService, proxy: ClientProxy, context: ssl.SSLContext) -> None:
        super().__init__(proxy, context, server_side=True)
        self._gate = gate
        self._proxy = proxy
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:
        self._proxy.reader = transport
        super().connection_made(transport)
        timeout = self._gate.limits.handshake_timeout
        if timeout:
            self._timer = asyncio.get_running_loop().call_later(timeout, self._expire)

    def _expire(self) -> None:
        self._timer = None
        if self._proxy.transport is None and not self.closing:
            peer = self._peer()
            ip = peer[0] if isinstance(peer, tuple) else str(peer)
            self._gate.summary.event(
                "handshake timeout",
                f"kcp+tls session from {peer}: no TLS handshake within "
                f"{self._gate.limits.handshake_timeout:.0f} s (handshake_timeout)",
                ip,
            )
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)


async def start_kcp(
    gate: GateService, host: str, port: int, *, tls: ssl.SSLContext | None = None
) -> KCPServer:
    """KCP sessions compatible with kcp-go's FEC 10+3 on the UDP port of listen_addr."""
    if tls is not None:

        def factory() -> asyncio.Protocol:
            return _KCPTLS(gate, gate.new_proxy("kcp"), tls)

    else:

        def factory() -> asyncio.Protocol:
            return gate.new_proxy("kcp")

    limits = gate.limits
    unbounded = 1 << 30  # the gate's 0 turns a bound off; KCPConfig's 0 would allow none
    config = KCPConfig(
        max_sessions=limits.max_clients or unbounded,
        max_sessions_per_address=limits.max_connections_per_ip or unbounded,
    )
    return await start_kcp_server(factory, host or "0.0.0.0", port, fec=True, config=config)
