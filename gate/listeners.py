"""The gate's client listeners: TCP, WebSocket (``/ws`` on http_addr) and KCP (UDP).

Each listener only moves bytes between its transport and a :class:`~gate.client_proxy.ClientProxy`.
TCP and KCP use the proxy as their ``asyncio.Protocol``. WebSocket carries the packet stream
spread over binary or text messages whose boundaries mean nothing (PROTOCOL.md §1.2); a text
message's payload is taken as raw bytes, with no UTF-8 check, so the handler feeds every message's
bytes to the proxy and a :class:`_WebSocketTransport` writes
each flush as one binary message.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections import deque
from http import HTTPStatus
from pathlib import Path
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from gate.service import GateService
from goworld.net.kcp import KCPServer, start_kcp_server
from goworld.proto.framing import MAX_PAYLOAD

__all__ = ["start_tcp", "start_websocket", "start_kcp", "tls_context"]

logger = logging.getLogger("goworld.gate")

_SOCKET_BUFFER = 1024 * 1024


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
) -> asyncio.Server:
    """Listen for TCP clients; ``start_serving=False`` binds now and accepts after
    ``await server.start_serving()``."""
    loop = asyncio.get_running_loop()

    def factory() -> asyncio.Protocol:
        return gate.new_proxy("tcp")

    server = await loop.create_server(
        factory, host or None, port, ssl=tls, reuse_address=True, backlog=1024,
        start_serving=start_serving,
    )
    for sock in server.sockets:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _SOCKET_BUFFER)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SOCKET_BUFFER)
    return server


class _WebSocketTransport:
    """What :class:`ClientProxy` needs of a transport, over a websockets connection."""

    def __init__(self, conn: ServerConnection) -> None:
        self._conn = conn
        self._queue: deque[bytes] = deque()
        self._queued = 0
        self._wakeup = asyncio.Event()
        self._closing = False
        self._sender = asyncio.create_task(self._send_loop())

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self._conn.remote_address
        return default

    def write(self, data: bytes) -> None:
        if not self._closing:
            self._queue.append(data)
            self._queued += len(data)
            self._wakeup.set()

    def get_write_buffer_size(self) -> int:
        return self._queued

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._wakeup.set()

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


async def start_websocket(
    gate: GateService,
    host: str,
    port: int,
    *,
    tls: ssl.SSLContext | None = None,
    static_dir: Path | None = None,
    start_serving: bool = True,
) -> Server:
    async def handler(conn: ServerConnection) -> None:
        transport = _WebSocketTransport(conn)
        proxy = gate.new_proxy("ws")
        proxy.connection_made(transport)
        try:
            while not proxy.closed:
                # decode=False: text frames are taken as bytes, never checked as UTF-8 (GoWorld's
                # Go bot sends binary packets in text frames, and GoWorld's gate accepts them).
                proxy.data_received(await conn.recv(decode=False))
        except ConnectionClosed:
            pass
        finally:
            transport.close()
            proxy.connection_lost(None)

    def process_request(conn: ServerConnection, request: Request) -> Response | None:
        if request.path.split("?", 1)[0] == "/ws":
            return None
        if static_dir is not None and "upgrade" not in request.headers.get("Connection", "").lower():
            return _static_response(static_dir, request.path)
        return conn.respond(HTTPStatus.NOT_FOUND, "not found\n")

    return await serve(
        handler,
        host or None,
        port,
        ssl=tls,
        process_request=process_request,
        compression=None,
        max_size=MAX_PAYLOAD + 4,
        ping_interval=None,
        logger=logging.getLogger("goworld.gate.ws"),
        start_serving=start_serving,
    )


async def start_kcp(
    gate: GateService, host: str, port: int, *, tls: ssl.SSLContext | None = None
) -> KCPServer:
    """KCP sessions compatible with kcp-go's FEC 10+3 on the UDP port of listen_addr."""
    if tls is not None:
        from goworld.net.tls import TLSProtocol

        def factory() -> asyncio.Protocol:
            return TLSProtocol(gate.new_proxy("kcp"), tls, server_side=True)

    else:

        def factory() -> asyncio.Protocol:
            return gate.new_proxy("kcp")

    return await start_kcp_server(factory, host or "0.0.0.0", port, fec=True)
