"""TLS over any byte transport, both sides (used for KCP; TCP uses asyncio's own TLS).

GoWorld runs TLS *over* KCP sessions (PROTOCOL.md §3.2). :class:`TLSProtocol` sits
between a transport and the real protocol: it feeds received bytes through an
``ssl.SSLObject`` with memory BIOs and hands the plaintext on; the inner protocol writes to a
:class:`_TLSTransport` that encrypts. No I/O of its own, so it works over KCP sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import Any

__all__ = ["TLSProtocol"]

logger = logging.getLogger("goworld.net.tls")


class _TLSTransport(asyncio.BaseTransport):
    """What the inner protocol sees: writes are encrypted onto the outer transport.

    A BaseTransport, not a Transport: it has no write-buffer size, which the gate's client
    proxy looks up with getattr (Transport's would raise NotImplementedError).
    """

    def __init__(self, outer: TLSProtocol) -> None:
        super().__init__()
        self._outer = outer

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._outer.write_plain(data)

    def close(self) -> None:
        self._outer.close()

    def is_closing(self) -> bool:
        return self._outer.closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object":
            return self._outer.sslobj
        transport = self._outer.transport
        return transport.get_extra_info(name, default) if transport is not None else default


class TLSProtocol(asyncio.Protocol):
    def __init__(
        self, inner: asyncio.Protocol, context: ssl.SSLContext, *, server_side: bool = True
    ) -> None:
        self.inner = inner
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._server_side = server_side
        self.sslobj = context.wrap_bio(self._in, self._out, server_side=server_side)
        self.transport: Any = None
        self.closing = False
        self._handshaken = False
        self._pending: list[bytes | bytearray | memoryview] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        if not self._server_side:  # the client speaks first: send its ClientHello now
            with contextlib.suppress(ssl.SSLWantReadError):
                self.sslobj.do_handshake()
            self._flush()

    def data_received(self, data: bytes) -> None:
        self._in.write(data)
        try:
            if not self._handshaken:
                try:
                    self.sslobj.do_handshake()
                except ssl.SSLWantReadError:
                    self._flush()
                    return
                self._handshaken = True
                self._flush()
                self.inner.connection_made(_TLSTransport(self))
                for chunk in self._pending:
                    self.write_plain(chunk)
                self._pending.clear()
            chunks = []
            while True:
                try:
                    chunk = self.sslobj.read(65536)
                except ssl.SSLWantReadError:
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            self._flush()
            if chunks:
                self.inner.data_received(b"".join(chunks))
        except ssl.SSLError as exc:
            logger.warning("TLS error from %s: %s", self._peer(), exc)
            self.close()

    def write_plain(self, data: bytes | bytearray | memoryview) -> None:
        if self.closing:
            return
        if not self._handshaken:
            self._pending.append(data)
            return
        self.sslobj.write(data)
        self._flush()

    def _flush(self) -> None:
        data = self._out.read()
        if data and self.transport is not None:
            self.transport.write(data)

    def _peer(self) -> Any:
        return self.transport.get_extra_info("peername") if self.transport is not None else None

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        if self._handshaken:
            self.inner.connection_lost(exc)
