"""One client connection at the gate: an ``asyncio.Protocol`` over any byte transport.

TCP and KCP hand their transport to :class:`ClientProxy` directly; WebSocket goes through a
small adapter that offers the same ``write``/``close`` calls. Inbound bytes pass through the
optional snappy stream decoder and the framer, and each payload goes to
:meth:`GateService.handle_client_packet`. Outbound packets are framed into a list and written
once per loop iteration (the service calls :meth:`flush`), through the snappy encoder when the
gate compresses.

Any protocol error closes this client only, with one log line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from goworld.errors import PacketTooLarge, ProtocolError
from goworld.proto.framing import Framer, frame
from goworld.proto.snappy_stream import SnappyStreamDecoder, SnappyStreamEncoder

if TYPE_CHECKING:
    from gate.service import GateService

__all__ = ["ClientProxy", "MAX_PENDING_OUTPUT"]

logger = logging.getLogger("goworld.gate")

#: Bytes a client may leave unread in its send buffer before the gate drops it (a client that
#: stops reading must not make the gate buffer without bound).
MAX_PENDING_OUTPUT = 32 * 1024 * 1024


class ClientProxy(asyncio.Protocol):
    __slots__ = (
        "gate",
        "transport",
        "client_id",
        "boot_eid",
        "owner_eid",
        "heartbeat",
        "kind",
        "peer",
        "_framer",
        "_decoder",
        "_encoder",
        "_out",
        "_closed",
    )

    def __init__(
        self, gate: GateService, client_id: str, boot_eid: str, *, kind: str, compress: bool
    ) -> None:
        self.gate = gate
        self.transport: Any = None
        self.client_id = client_id
        self.boot_eid = boot_eid
        self.owner_eid = boot_eid
        self.heartbeat = time.monotonic()
        self.kind = kind
        self.peer = "?"
        self._framer = Framer()
        self._decoder = SnappyStreamDecoder() if compress else None
        self._encoder = SnappyStreamEncoder() if compress else None
        self._out: list[bytes] = []
        self._closed = False

    # ---- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.gate.client_connected(self)

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        try:
            if self._decoder is not None:
                data = self._decoder.feed(data)
            try:
                payloads = self._framer.feed(data)
            except PacketTooLarge as exc:
                self._handle(exc.payloads)
                raise
            self._handle(payloads)
        except ProtocolError as exc:
            self.abort(f"protocol error: {exc}")

    def _handle(self, payloads: list[bytes]) -> None:
        handle = self.gate.handle_client_packet
        for payload in payloads:
            if self._closed:
                return
            handle(self, payload)

    def eof_received(self) -> bool | None:
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._closed:
            self._closed = True
        self.gate.client_disconnected(self)

    # ---- output --------------------------------------------------------------------------

    def send_payload(self, payload: bytes) -> None:
        """Queue one packet payload; it is written at the end of this loop iteration."""
        if self._closed:
            return
        if not self._out:
            self.gate.mark_dirty(self)
        self._out.append(frame(payload))

    def send_frame(self, framed: bytes) -> None:
        """Queue an already framed packet (broadcasts frame once for every receiver)."""
        if self._closed:
            return
        if not self._out:
            self.gate.mark_dirty(self)
        self._out.append(framed)

    def flush(self) -> None:
        out = self._out
        if not out or self._closed:
            out.clear()
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        if self._encoder is not None:
            data = self._encoder.encode(data)
        transport = self.transport
        transport.write(data)
        pending = getattr(transport, "get_write_buffer_size", None)
        if pending is not None and pending() > MAX_PENDING_OUTPUT:
            self.abort(f"not reading: {pending()} bytes waiting to be sent")

    @property
    def closed(self) -> bool:
        return self._closed

    def abort(self, reason: str) -> None:
        """Close this client after a protocol violation (one log line)."""
        if self._closed:
            return
        logger.warning(
            "client %s (%s %s) closed: %s", self.client_id, self.kind, self.peer, reason
        )
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._out.clear()
        if self.transport is not None:
            self.transport.close()
