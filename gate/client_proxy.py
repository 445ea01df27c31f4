"""One client connection at the gate: an ``asyncio.Protocol`` over any byte transport.

TCP and KCP hand their transport to :class:`ClientProxy` directly; WebSocket goes through a
small adapter that offers the same ``write``/``close``/``pause_reading`` calls. Inbound bytes pass
through the optional snappy stream decoder and the framer, and each payload goes to
:meth:`GateService.handle_client_packet`. Outbound packets are framed into a list and written
once per loop iteration (the service calls :meth:`flush`), through the snappy encoder when the
gate compresses.

Inbound bounds (:class:`gate.limits.GateLimits`), checked once per ``data_received``:

* two token buckets, packets/s and bytes/s (decoded bytes). A bucket may go into debt by what
  one read brought; then the gate stops reading this connection (``pause_reading`` on
  :attr:`reader`: TCP back-pressure, a closed KCP window, a WebSocket handler that stops
  receiving) until the debt is repaid, at most ``over_limit_close_after`` s at a time. A
  client still over the limit ``over_limit_close_after`` s after it first went over is closed.
* the bytes of a partial packet count against the gate-wide ``partial_frame_budget``; the
  client whose partial packet takes the gate over it is closed. The time a partial packet
  waits without completing, and the time to the first complete packet, are checked by
  :meth:`GateService.sweep`.

Any protocol error or exceeded bound closes this client only, with one log line (summarised
per kind and interval by the gate's :class:`~gate.limits.Summary`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from goworld.errors import PacketTooLarge, ProtocolError
from goworld.proto import codec
from goworld.proto.framing import Framer, frame
from goworld.proto.msgtypes import MsgType
from goworld.proto.snappy_stream import SnappyStreamDecoder, SnappyStreamEncoder

if TYPE_CHECKING:
    from gate.service import GateService

__all__ = ["ClientProxy", "HOLD_GAME", "HOLD_LINK", "HOLD_STOP", "MAX_PENDING_OUTPUT", "Traffic"]

logger = logging.getLogger("goworld.gate")

#: Bytes a client may leave unread in its send buffer before the gate drops it (a client that
#: stops reading must not make the gate buffer without bound).
MAX_PENDING_OUTPUT = 32 * 1024 * 1024
#: Seconds a closed client's unsent output may take to reach it; then the connection is cut
#: (a peer that stopped reading would otherwise hold its socket, its output and its address
#: slot for as long as it likes: a transport's close waits for its buffer to drain).
CLOSE_LINGER = 5.0

_monotonic = time.monotonic
_NOTICE = int(MsgType.NOTICE_ON_CLIENT).to_bytes(2, "little")


#: Reasons the cluster holds a client (:meth:`ClientProxy.hold`), as bits.
HOLD_GAME = 1
HOLD_LINK = 2
HOLD_STOP = 4  # the cluster is stopping: nothing new is read, what was read is handled


def cut(transport: Any) -> None:
    """Drop a connection and what it had not sent: a reset (SO_LINGER 0), so that neither this
    process nor the kernel keeps trying to push its output to a peer that does not read."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
    transport.abort()


_LINGER_ZERO = struct.pack("ii", 1, 0)


class Traffic:
    """What the clients of one transport sent and received, since the gate started (read by
    the gate's /metrics). Counted once per read and once per flush, not per packet."""

    __slots__ = ("packets_in", "bytes_in", "packets_out", "bytes_out", "throttled")

    def __init__(self) -> None:
        self.packets_in = 0
        self.bytes_in = 0  # as the proxy gets them: compressed if the gate compresses, after TLS
        self.packets_out = 0
        self.bytes_out = 0  # as the proxy writes them (before TLS)
        self.throttled = 0  # times a client was not read for going over a rate limit


class ClientProxy(asyncio.Protocol):
    __slots__ = (
        "gate",
        "transport",
        "reader",
        "on_gone",
        "client_id",
        "boot_eid",
        "owner_eid",
        "owner_bytes",
        "heartbeat",
        "connected_at",
        "got_packet",
        "kind",
        "peer",
        "partial_since",
        "refused_syncs",
        "notices",
        "_framer",
        "_decoder",
        "_encoder",
        "_out",
        "_closed",
        "_gone",
        "_tp",
        "_tb",
        "_fill",
        "_over_since",
        "_paused",
        "_held",
        "_partial",
        "_traffic",
    )

    def __init__(
        self,
        gate: GateService,
        client_id: str,
        boot_eid: str,
        *,
        kind: str,
        compress: bool,
        traffic: Traffic | None = None,
    ) -> None:
        self.gate = gate
        self.transport: Any = None
        self._gone = False  # connection_lost came
        #: What ``pause_reading``/``resume_reading`` go to (the transport unless a listener set
        #: another, e.g. the KCP session under TLS).
        self.reader: Any = None
        #: Called once when the connection is gone (a listener's address-book release).
        self.on_gone: Callable[[], None] | None = None
        self.client_id = client_id
        self.boot_eid = boot_eid
        self.owner_eid = boot_eid
        self.owner_bytes = boot_eid.encode("latin-1")
        now = _monotonic()
        self.heartbeat = now
        self.connected_at = now
        self.got_packet = False
        self.kind = kind
        self.peer = "?"
        self.partial_since = 0.0  # when the partial packet in the framer last made no progress
        self.refused_syncs = 0
        #: the client announced (heartbeat body) that it understands NOTICE_ON_CLIENT
        self.notices = False
        self._framer = Framer()
        self._decoder = SnappyStreamDecoder() if compress else None
        self._encoder = SnappyStreamEncoder() if compress else None
        self._out: list[bytes] = []
        self._closed = False
        limits = gate.limits
        self._tp = float(limits.packets_burst)
        self._tb = float(limits.bytes_burst)
        self._fill = now
        self._over_since = 0.0
        self._paused = False  # by a rate limit, until a timer
        self._held = 0  # HOLD_* reasons the cluster has for not reading this client
        self._partial = 0  # this client's bytes in gate.partial_bytes
        self._traffic = traffic if traffic is not None else Traffic()

    # ---- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        if self.reader is None:
            self.reader = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.gate.client_connected(self)

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        traffic = self._traffic
        traffic.bytes_in += len(data)
        try:
            if self._decoder is not None:
                data = self._decoder.feed(data)
            try:
                payloads = self._framer.feed(data)
            except PacketTooLarge as exc:
                self._handle(exc.payloads)
                raise
        except ProtocolError as exc:
            self.abort(f"protocol error: {exc}", kind="protocol error")
            return
        now = _monotonic()
        gate = self.gate
        limits = gate.limits
        # Token buckets: refill for the time since the last read, then take this read.
        elapsed = now - self._fill
        self._fill = now
        # ``rested``: every bucket held a second's worth (or its burst) before this read, so an
        # excess now starts a new episode instead of continuing the last one.
        over = False
        rested = True
        rate = limits.max_bytes_per_sec
        if rate:
            tokens = self._tb + elapsed * rate
            burst = limits.bytes_burst
            if tokens > burst:
                tokens = burst
            if tokens < rate and tokens < burst:
                rested = False
            self._tb = tokens = tokens - len(data)
            over = tokens < 0
        rate = limits.max_packets_per_sec
        if rate:
            tokens = self._tp + elapsed * rate
            burst = limits.packets_burst
            if tokens > burst:
                tokens = burst
            if tokens < rate and tokens < burst:
                rested = False
            self._tp = tokens = tokens - len(payloads)
            if tokens < 0:
                over = True
        # The partial packet left in the framer: the gate-wide budget and its age.
        buffered = self._framer.buffered
        if buffered != self._partial:
            gate.partial_bytes += buffered - self._partial
            self._partial = buffered
            if buffered and gate.partial_bytes > limits.partial_frame_budget:
                self._handle(payloads)
                self.abort(
                    f"a partial packet of {buffered} bytes takes the gate's partial packets over "
                    f"partial_frame_budget ({limits.partial_frame_budget} bytes)",
                    kind="partial packet budget",
                )
                return
        if payloads:
            traffic.packets_in += len(payloads)
            self.got_packet = True
            self.heartbeat = now
            self.partial_since = now if buffered else 0.0
            self._handle(payloads)
        elif buffered and not self.partial_since:
            self.partial_since = now
        if over:
            if rested:
                self._over_since = 0.0
            self._over_limit(now)
        elif self._over_since:
            self._over_since = 0.0

    def _handle(self, payloads: list[bytes]) -> None:
        handle = self.gate.handle_client_packet
        for payload in payloads:
            if self._closed:
                return
            handle(self, payload)

    def _over_limit(self, now: float) -> None:
        """A bucket is in debt: stop reading until it is repaid, or close a persistent client."""
        if self._closed:
            return
        limits = self.gate.limits
        if not self._over_since:
            self._over_since = now
        elif now - self._over_since > limits.over_limit_close_after:
            self.abort(
                f"over the rate limit for {now - self._over_since:.1f} s "
                f"(client_max_packets_per_sec {limits.max_packets_per_sec}, "
                f"client_max_bytes_per_sec {limits.max_bytes_per_sec})",
                kind="rate limit",
            )
            return
        if self._paused:
            return
        delay = 0.0
        if limits.max_bytes_per_sec and self._tb < 0:
            delay = -self._tb / limits.max_bytes_per_sec
        if limits.max_packets_per_sec and self._tp < 0:
            delay = max(delay, -self._tp / limits.max_packets_per_sec)
        delay = min(max(delay, 0.001), limits.over_limit_close_after + 0.1)
        if not self._held and not self._pause_reader():
            return
        self._paused = True
        self._traffic.throttled += 1
        asyncio.get_running_loop().call_later(delay, self._resume)

    def _resume(self) -> None:
        self._paused = False
        if not self._closed and not self._held:
            self._resume_reader()

    def hold(self, held: bool, reason: int = HOLD_GAME) -> None:
        """Stop (``True``) or start again reading this client for the cluster's back-pressure,
        for ``reason`` (:data:`HOLD_GAME`: the dispatcher's PAUSE_CLIENTS / RESUME_CLIENTS;
        :data:`HOLD_LINK`: the gate's own link to a dispatcher is behind; :data:`HOLD_STOP`:
        the cluster is stopping, for good). Reading resumes when
        no reason is left; independent of the rate limits."""
        if self._closed:
            return
        was = self._held
        now_held = was | reason if held else was & ~reason
        if bool(now_held) == bool(was):
            self._held = now_held
            return
        self._held = now_held
        held = bool(now_held)
        if not held:  # the time bounds restart: the silence was ours
            now = _monotonic()
            self.heartbeat = now
            if self.partial_since:
                self.partial_since = now
        if self._paused:
            return  # the rate limit's timer resumes it (if no longer held)
        if held:
            self._pause_reader()
        else:
            self._resume_reader()

    def _pause_reader(self) -> bool:
        pause = getattr(self.reader, "pause_reading", None)
        if pause is None:
            return False
        try:
            pause()
        except RuntimeError:  # a transport that is closing
            return False
        return True

    def _resume_reader(self) -> None:
        resume = getattr(self.reader, "resume_reading", None)
        if resume is not None:
            with contextlib.suppress(RuntimeError):
                resume()

    @property
    def paused(self) -> bool:
        """Whether the gate stopped reading this client (over a rate limit, or held)."""
        return self._paused or bool(self._held)

    def eof_received(self) -> bool | None:
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._gone = True
        if not self._closed:
            self._closed = True
        self._release()
        self.gate.client_disconnected(self)

    def _release(self) -> None:
        self._drop_partial()
        on_gone, self.on_gone = self.on_gone, None
        if on_gone is not None:
            on_gone()

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
        n = len(out)
        data = out[0] if n == 1 else b"".join(out)
        out.clear()
        if self._encoder is not None:
            data = self._encoder.encode(data)
        transport = self.transport
        transport.write(data)
        traffic = self._traffic
        traffic.packets_out += n
        traffic.bytes_out += len(data)
        pending = getattr(transport, "get_write_buffer_size", None)
        if pending is not None and pending() > MAX_PENDING_OUTPUT:
            # not told: it does not read (and telling it would write more); cut at once
            self.tell_and_close("not_reading", f"not reading: {pending()} bytes waiting to be sent",
                                kind="not reading", tell=False, linger=False)

    @property
    def closed(self) -> bool:
        return self._closed

    def abort(self, reason: str, *, kind: str = "bad packet", tell: bool = True) -> None:
        """Close this client after a violation: one log line, summarised per ``kind``; a
        client that announced notices is told ``reason`` first (code: ``kind`` with ``_``)
        unless ``tell`` is false."""
        self.tell_and_close(kind.replace(" ", "_"), reason, kind=kind, tell=tell)

    def tell_and_close(
        self, code: str, reason: str, *, kind: str, log: str = "", tell: bool = True,
        linger: bool = True,
    ) -> None:
        """Close this client for ``reason``; a client that announced notices gets
        NOTICE_ON_CLIENT (``code``, ``reason``) first, after what was already queued for it.
        One log line (``log``, else ``reason``), summarised per ``kind``. ``linger``: see
        :meth:`close`."""
        if self._closed:
            return
        if tell:
            self.tell(code, reason)
            self.flush()  # written before the close: every transport flushes, then closes
        self.gate.summary.event(
            kind, f"client {self.client_id} ({self.kind} {self.peer}) closed: {log or reason}", self.peer
        )
        self.close(linger=linger)

    def tell(self, code: str, reason: str) -> bool:
        """Queue NOTICE_ON_CLIENT (``code``, ``reason``) if this client announced notices
        (GoWorld's clients did not: they get nothing). Returns whether it was queued."""
        if self._closed or not self.notices or self.transport is None:
            return False
        out = bytearray(_NOTICE)
        codec.write_varstr(out, code)
        codec.write_varstr(out, reason)
        self.send_payload(bytes(out))
        return True

    def close(self, *, linger: bool = True) -> None:
        """Close the connection. What was written still goes out, for :data:`CLOSE_LINGER`
        seconds at most (``linger`` false: not at all), then the connection is cut."""
        if self._closed:
            return
        self._closed = True
        self._out.clear()
        self._drop_partial()
        transport = self.transport
        if transport is None:
            return
        transport.close()
        if self._gone or not hasattr(transport, "abort"):
            return
        pending = getattr(transport, "get_write_buffer_size", None)
        if pending is None or not pending():
            return
        if linger:
            asyncio.get_running_loop().call_later(CLOSE_LINGER, self._cut)
        else:
            cut(transport)

    def _cut(self) -> None:
        """A closed client's output did not drain within :data:`CLOSE_LINGER`: drop it."""
        if not self._gone:
            cut(self.transport)

    def _drop_partial(self) -> None:
        """Free the partial packet now: the proxy itself may live on until the cyclic GC
        (it and its transport refer to each other), and the budget no longer counts it."""
        if self._partial:
            self.gate.partial_bytes -= self._partial
            self._partial = 0
        if self._framer.buffered:
            self._framer = Framer()
