"""The gate's TCP accept loop (plain TCP clients and the WebSocket/HTTP port).

asyncio's own server accepts every connection it can, and knows a connection's peer only after
its TLS handshake. We accept ourselves, so that a connection is judged the moment it exists:

* :class:`~gate.limits.AddressBook` counts it against ``max_clients`` and
  ``max_connections_per_ip`` from ``accept()`` on (TLS or WebSocket handshake included) until it
  is gone; over a limit it is reset at once (``SO_LINGER`` 0: no TIME_WAIT, no descriptor kept),
  and the refusal is logged through the gate's :class:`~gate.limits.Summary`;
* when ``accept()`` fails for lack of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM)
  the listener stops watching its sockets and tries again after a back-off (50 ms doubling to
  1 s); waiting connections stay in the kernel's backlog and are accepted once descriptors are
  free. One ERROR line per :data:`~gate.limits.SUMMARY_INTERVAL` says how often it happened, and
  one INFO line says when accepting works again;
* the TLS handshake is bounded by ``handshake_timeout`` (``ssl_handshake_timeout``); a failed
  or late handshake releases the connection's place and is logged as a summary.

:class:`Acceptor` offers the part of :class:`asyncio.Server` that :mod:`websockets` and the
gate's composition root use (``sockets``, ``start_serving``, ``is_serving``, ``close``,
``wait_closed``, ``get_loop``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import ssl
import struct
from collections.abc import Callable

from gate.limits import SUMMARY_INTERVAL, AddressBook, Summary

__all__ = ["Acceptor", "Slot", "bind_tcp"]

logger = logging.getLogger("goworld.gate")

_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_SKIP_ERRNOS = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.ETIMEDOUT})
_ACCEPT_BATCH = 128  # accepts per readiness event, so one listener cannot starve the loop
_MIN_BACKOFF, _MAX_BACKOFF = 0.05, 1.0
_LINGER_RESET = struct.pack("ii", 1, 0)


def bind_tcp(host: str, port: int, *, backlog: int = 1024, buffer: int = 0) -> list[socket.socket]:
    """Listening sockets for ``host:port`` (an empty host: every interface), as asyncio binds.

    ``buffer`` sets SO_RCVBUF/SO_SNDBUF on them (accepted sockets inherit it). Raises OSError.
    """
    infos = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    seen = set()
    sockets: list[socket.socket] = []
    try:
        for family, type_, proto, _, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            sock = socket.socket(family, type_, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if buffer:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffer)
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class Slot:
    """A connection's place in the address book; :meth:`release` may be called any number of
    times (the connection's end and a failed handshake can both call it)."""

    __slots__ = ("_book", "ip")

    def __init__(self, book: AddressBook | None, ip: str) -> None:
        self._book = book
        self.ip = ip

    def release(self) -> None:
        book, self._book = self._book, None
        if book is not None:
            book.release(self.ip)


ProtocolFactory = Callable[[Slot], asyncio.BaseProtocol]


class Acceptor:
    def __init__(
        self,
        sockets: list[socket.socket],
        factory: ProtocolFactory,
        *,
        book: AddressBook,
        summary: Summary,
        what: str,
        tls: ssl.SSLContext | None = None,
        handshake_timeout: float = 10.0,
    ) -> None:
        self._sockets = sockets
        self._factory = factory
        self.book = book
        self.summary = summary
        self.what = what
        self._tls = tls
        self._handshake_timeout = handshake_timeout or None
        self._loop = asyncio.get_running_loop()
        self._serving = False
        self._closed = False
        self._backoff = _MIN_BACKOFF
        self._retry: asyncio.TimerHandle | None = None
        self._failures = 0  # accept() failures for lack of resources since the last report
        self._reported_at = -SUMMARY_INTERVAL
        self._starving = False
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- asyncio.Server's subset ---------------------------------------------------------

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return tuple(self._sockets)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return self._serving

    async def start_serving(self) -> None:
        if self._serving or self._closed:
            return
        self._serving = True
        self._watch()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._serving = False
        self._unwatch()
        if self._retry is not None:
            self._retry.cancel()
        for sock in self._sockets:
            sock.close()
        for task in list(self._tasks):
            task.cancel()

    async def wait_closed(self) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks))

    # ---- accepting -----------------------------------------------------------------------

    def _watch(self) -> None:
        for sock in self._sockets:
            self._loop.add_reader(sock.fileno(), self._on_readable, sock)

    def _unwatch(self) -> None:
        for sock in self._sockets:
            if sock.fileno() >= 0:
                self._loop.remove_reader(sock.fileno())

    def _on_readable(self, lsock: socket.socket) -> None:
        for _ in range(_ACCEPT_BATCH):
            try:
                conn, addr = lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _RESOURCE_ERRNOS:
                    self._back_off(exc)
                    return
                if exc.errno in _SKIP_ERRNOS:
                    continue
                self.summary.event("accept failed", f"{self.what}: {exc}")
                return
            if self._starving:
                self._starving = False
                self._backoff = _MIN_BACKOFF
                logger.info(
                    "%s: accepting again (%d accept() failures since the last report)",
                    self.what,
                    self._failures,
                )
                self._failures = 0
            self._admit(conn, addr)

    def _back_off(self, exc: OSError) -> None:
        self._failures += 1
        now = self._loop.time()
        if now - self._reported_at >= SUMMARY_INTERVAL:
            self._reported_at = now
            logger.error(
                "%s: cannot accept connections: %s (%d time(s) since the last report); "
                "new clients wait in the backlog, retrying every %.2f s up to %.0f s",
                self.what,
                exc.strerror or exc,
                self._failures,
                self._backoff,
                _MAX_BACKOFF,
            )
            self._failures = 0
        self._starving = True
        self._unwatch()
        self._retry = self._loop.call_later(self._backoff, self._resume)
        self._backoff = min(self._backoff * 2, _MAX_BACKOFF)

    def _resume(self) -> None:
        self._retry = None
        if self._serving and not self._closed:
            self._watch()

    def _admit(self, conn: socket.socket, addr: object) -> None:
        ip = addr[0] if isinstance(addr, tuple) else str(addr)
        refused = self.book.admit(ip) if not self._closed else "the gate is stopping"
        if refused is not None:
            port = addr[1] if isinstance(addr, tuple) else "?"
            self.summary.event(
                "connection refused", f"{self.what} connection from {ip}:{port} refused: {refused}", ip
            )
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            conn.close()
            return
        slot = Slot(self.book, ip)
        conn.setblocking(False)
        task = self._loop.create_task(self._connect(conn, slot))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, conn: socket.socket, slot: Slot) -> None:
        try:
            if self._tls is None:
                await self._loop.connect_accepted_socket(lambda: self._factory(slot), conn)
            else:
                await self._loop.connect_accepted_socket(
                    lambda: self._factory(slot),
                    conn,
                    ssl=self._tls,
                    ssl_handshake_timeout=self._handshake_timeout,
                )
        except asyncio.CancelledError:
            slot.release()
            conn.close()
            raise
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
            slot.release()
            conn.close()
            self.summary.event(
                "TLS handshake failed",
                f"{self.what} connection from {slot.ip}: TLS handshake failed: {exc}",
                slot.ip,
            )
