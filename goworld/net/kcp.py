"""KCP over UDP for asyncio, wire-compatible with kcp-go v5 sessions (GoWorld's gate and Go bot).

aiokcp's compiled ikcp core does the ARQ; this module moves its datagrams (PROTOCOL.md §3.4):

* **One DatagramProtocol per UDP socket** (:class:`_Endpoint`). Server sessions are keyed by
  ``(address, conv)``; an address has at most one live session.
* **One tick per socket**, every ``interval`` ms, and only while some session has unacknowledged
  data (idle sockets tick once a second, for timeouts). Writes and received datagrams mark a
  session dirty; a single ``loop.call_soon`` flushes every dirty session once per loop iteration,
  so replies and ACKs go out at once and many writes share datagrams.
* **Clock**: our own monotonic millisecond clock, masked to uint32 before it reaches ikcp (which
  compares times modulo 2**32). ``clock=`` injects another one (tests start it near 2**32).
* **Parameters** (kcp-go / GoWorld): nodelay(1, 10, 2, 1), stream mode, datagrams of at most
  1400 bytes: the KCP MTU is 1400 minus kcp-go's FEC header (8 bytes) when FEC is on. Windows are
  128/128, not kcp-go's 32/32: ikcp raises any receive window below 128 to 128 anyway, and what
  we send is capped by the window the peer advertises, so a kcp-go peer still sees at most 32
  segments in flight while Python peers get more throughput. (Before its first reply arrives
  ikcp assumes a window of 128: a client whose very first write exceeds 32 segments, ~44 KB,
  has the excess dropped by a kcp-go server and resent. GoWorld clients start with 6 bytes.)
* **FEC** (:mod:`goworld.net.fec`, ``fec=True``, kcp-go's 10+3): data shards carry the header,
  Reed-Solomon parity shards compatible with klauspost/reedsolomon follow each group of 10, and
  received parity rebuilds lost data shards. ``fec=False`` speaks plain KCP (a kcp-go peer with
  0/0 shards). Unlike kcp-go we do not auto-detect the other framing: it is dropped and counted.
* **Sessions** are created only by a server, only from a valid first segment of a data shard
  (conv at offset 8), and at most ``max_sessions`` (10k) at once. A datagram with another conv
  from a known address replaces that address's session when its ``sn`` is 0, as kcp-go does (a
  client reconnecting from the same port); otherwise it is a stale straggler and is dropped.
* **Lifetime**: KCP (and kcp-go) has no close handshake: ``close()`` only stops us, after
  pending data is acknowledged (at most ``linger`` s); the peer notices by its own timeouts. We
  drop a session after ``dead_timeout`` (20 s) without any datagram while our data waits for an
  ACK (the peer is gone: kcp-go's dead-link close), and after ``idle_timeout`` (600 s) without
  any datagram at all. GoWorld never disconnects idle clients, so the idle limit is long; a
  game server sends its clients something often enough that dead peers are found by the first
  rule.
* **Hostile input**: nothing raises out of ``datagram_received``; malformed datagrams are
  counted in :class:`KCPStatistics` and logged at DEBUG.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, cast

from aiokcp.exceptions import KCPException
from aiokcp.kcp import KCP

from goworld.net.fec import DATA_HEADER, TYPE_DATA, TYPE_PARITY, FECDecoder, FECEncoder

__all__ = [
    "KCPConfig",
    "KCPServer",
    "KCPStatistics",
    "KCPTransport",
    "open_kcp_connection",
    "start_kcp_server",
]

logger = logging.getLogger("goworld.net.kcp")

Address = Any  # (host, port) or the IPv6 4-tuple; None for a client's connected socket
ProtocolFactory = Callable[[], asyncio.Protocol]
Clock = Callable[[], int]  # milliseconds, any int: we mask it to uint32

IKCP_OVERHEAD = 24
_U32 = struct.Struct("<I")
_CMD_PUSH, _CMD_WINS = 81, 84
_SN_OFFSET = 12
_HOUSEKEEPING = 1.0  # longest time between timeout checks (the tick period when none is busy)

_OPEN, _CLOSING, _CLOSED = range(3)


@dataclass(frozen=True, slots=True)
class KCPConfig:
    """Session parameters; the defaults match kcp-go as GoWorld configures it (see module doc)."""

    data_shards: int = 10
    parity_shards: int = 3
    send_parity: bool = True  # emit parity shards (kcp-go receivers work without them)
    recover: bool = True  # rebuild lost data shards from received parity
    mtu: int = 1400  # largest datagram, FEC header included
    interval: int = 10
    resend: int = 2
    no_delay: bool = True
    no_congestion_control: bool = True
    send_window: int = 128
    receive_window: int = 128
    idle_timeout: float | None = 600.0  # s without any datagram from the peer (None: never)
    dead_timeout: float | None = 20.0  # s without any datagram while our data awaits an ACK
    linger: float = 5.0  # s that close() waits for queued data to be acknowledged
    max_sessions: int = 10_000  # per server socket; further new addresses are dropped
    socket_buffer: int = 1 << 20  # SO_RCVBUF / SO_SNDBUF asked for (the kernel may cap it)
    write_high_water: int = 1 << 20  # bytes queued in KCP before protocol.pause_writing()


@dataclass(slots=True)
class KCPStatistics:
    """Counters of one UDP socket (server or client); :meth:`KCPServer.statistics` copies them."""

    datagrams_received: int = 0
    datagrams_sent: int = 0
    dropped_short: int = 0  # shorter than the FEC header or a KCP segment header
    dropped_bad_flag: int = 0  # FEC flag neither 0xf1 nor 0xf2
    dropped_malformed: int = 0  # bad size field, bad first segment, or ikcp refused it
    dropped_unknown: int = 0  # no session for it (stray parity, foreign conv, client mode)
    dropped_session_cap: int = 0
    parity_received: int = 0
    fec_recovered: int = 0
    sessions_opened: int = 0
    sessions_closed: int = 0
    errors: int = 0  # unexpected exceptions caught in datagram_received


def _ms_clock() -> int:
    return time.monotonic_ns() // 1_000_000


class KCPTransport(asyncio.Transport):
    """One KCP session, seen by its protocol as a stream transport like TCP's."""

    def __init__(self, endpoint: _Endpoint, addr: Address, conv: int) -> None:
        super().__init__({"peername": endpoint.peername(addr), "conv": conv})
        cfg = endpoint.config
        self._endpoint = endpoint
        self._loop = endpoint.loop
        self._addr = addr
        self.conv = conv
        kcp_mtu = cfg.mtu - (8 if endpoint.fec else 0)
        self._mss = kcp_mtu - IKCP_OVERHEAD
        self._kcp = KCP(
            conv,
            max_transmission=kcp_mtu,
            no_delay=cfg.no_delay,
            update_interval=cfg.interval,
            resend_count=cfg.resend,
            no_congestion_control=cfg.no_congestion_control,
            send_window_size=cfg.send_window,
            receive_window_size=cfg.receive_window,
            stream=1,
        )
        self._encoder: FECEncoder | None = None
        self._decoder: FECDecoder | None = None
        if endpoint.fec:
            self._encoder = FECEncoder(cfg.data_shards, cfg.parity_shards, parity=cfg.send_parity)
            if cfg.recover:
                self._decoder = FECDecoder(cfg.data_shards, cfg.parity_shards)
        self._kcp.set_output_handler(self._output)
        self._protocol: asyncio.BaseProtocol | None = None
        self._state = _OPEN
        self._reading_paused = False
        self._writing_paused = False
        self._high_water = cfg.write_high_water
        self._low_water = cfg.write_high_water // 4
        self._last_recv = self._loop.time()
        self._pending_since: float | None = None  # when unacknowledged data appeared
        self._linger_until = 0.0

    # -- asyncio.Transport -------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._state != _OPEN or not data:
            return
        if not isinstance(data, bytes):
            data = bytes(data)
        chunk = self._mss * 64  # ikcp refuses one send of >= 128 segments
        if len(data) <= chunk:
            self._kcp.enqueue(data)
        else:
            for i in range(0, len(data), chunk):
                self._kcp.enqueue(data[i : i + chunk])
        if self._pending_since is None:
            self._pending_since = self._loop.time()
        self._endpoint.mark_dirty(self)
        if not self._writing_paused and self.get_write_buffer_size() > self._high_water:
            self._writing_paused = True
            self._call_protocol("pause_writing")

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:
        raise NotImplementedError("KCP has no half-close")

    def get_write_buffer_size(self) -> int:
        return self._kcp.get_waitsnd() * self._mss if self._state != _CLOSED else 0

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._low_water, self._high_water

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._high_water = 1 << 20 if high is None else high
        self._low_water = self._high_water // 4 if low is None else low

    def close(self) -> None:
        """Stop reading, flush what is queued, then drop the session (no close handshake)."""
        if self._state != _OPEN:
            return
        self._state = _CLOSING
        self._linger_until = self._loop.time() + self._endpoint.config.linger
        self._endpoint.mark_dirty(self)

    def abort(self) -> None:
        self._finish(None)

    def is_closing(self) -> bool:
        return self._state != _OPEN

    def is_reading(self) -> bool:
        return self._state == _OPEN and not self._reading_paused

    def pause_reading(self) -> None:
        self._reading_paused = True  # KCP's receive window closes and the peer waits

    def resume_reading(self) -> None:
        if self._reading_paused:
            self._reading_paused = False
            self._loop.call_soon(self._deliver)
            self._endpoint.mark_dirty(self)  # tell the peer the window reopened

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self._protocol is not None
        return self._protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name in ("sockname", "socket"):
            return self._endpoint.get_extra_info(name, default)
        return super().get_extra_info(name, default)

    # -- driven by the endpoint --------------------------------------------------------------

    def _output(self, _kcp: object, data: bytes) -> None:
        send = self._endpoint.sendto
        if self._encoder is None:
            send(data, self._addr)
        else:
            for datagram in self._encoder.encode(data):
                send(datagram, self._addr)

    def _input(self, segment: bytes, now_ms: int) -> None:
        kcp = self._kcp
        kcp.update(now_ms)  # ikcp measures RTT against its current time: set it first
        try:
            kcp.receive(segment)
        except KCPException:
            self._endpoint.stats.dropped_malformed += 1
        self._last_recv = self._loop.time()
        self._endpoint.mark_dirty(self)
        self._deliver()

    def _deliver(self) -> None:
        kcp = self._kcp
        if self._state == _CLOSED or (self._reading_paused and self._state == _OPEN):
            return
        if kcp.get_peeksize() < 0:
            return
        chunks = []
        while kcp.get_peeksize() >= 0:
            chunks.append(kcp.get_received())
        if self._state == _OPEN and self._protocol is not None:
            data = b"".join(chunks)
            self._call_protocol("data_received", data)

    def _flush(self, now_ms: int) -> None:
        if self._state == _CLOSED:
            return
        self._kcp.update(now_ms)
        self._kcp.flush()
        self._after_update()

    def _tick(self, now_ms: int) -> None:
        self._kcp.update(now_ms)
        self._after_update()

    def _after_update(self) -> None:
        waiting = self._kcp.get_waitsnd()
        if waiting:
            self._endpoint.make_busy(self)
        else:
            self._endpoint.busy.discard(self)
            self._pending_since = None
        if self._writing_paused and waiting * self._mss <= self._low_water:
            self._writing_paused = False
            self._call_protocol("resume_writing")
        if self._state == _CLOSING and (not waiting or self._loop.time() >= self._linger_until):
            self._finish(None)

    def _check_timeouts(self, now: float, cfg: KCPConfig) -> None:
        silent = now - self._last_recv
        if cfg.idle_timeout is not None and silent > cfg.idle_timeout:
            self._finish(TimeoutError(f"KCP session silent for {silent:.0f} s"))
        elif cfg.dead_timeout is not None and self._pending_since is not None:
            stalled = now - max(self._last_recv, self._pending_since)
            if stalled > cfg.dead_timeout and self._kcp.get_waitsnd():
                self._finish(TimeoutError(f"KCP peer unresponsive for {stalled:.0f} s"))

    def _call_protocol(self, method: str, *args: Any) -> None:
        try:
            getattr(self._protocol, method)(*args)
        except Exception as exc:  # a protocol bug must not break the shared socket
            logger.exception(
                "! %s.%s failed; aborting KCP session %s",
                type(self._protocol).__name__,
                method,
                self.get_extra_info("peername"),
            )
            self._finish(exc)

    def _finish(self, exc: Exception | None) -> None:
        if self._state == _CLOSED:
            return
        self._state = _CLOSED
        self._endpoint.forget(self)
        if logger.isEnabledFor(logging.DEBUG):
            peer = self.get_extra_info("peername")
            logger.debug("= KCP session %s conv=%d closed (%r)", peer, self.conv, exc)
        if self._protocol is not None:
            self._loop.call_soon(self._protocol.connection_lost, exc)

    def __repr__(self) -> str:
        state = ("open", "closing", "closed")[self._state]
        return f"<KCPTransport {self.get_extra_info('peername')} conv={self.conv} {state}>"


class _Endpoint(asyncio.DatagramProtocol):
    """The DatagramProtocol of one UDP socket: demultiplexes, ticks and flushes its sessions."""

    def __init__(
        self,
        config: KCPConfig,
        fec: bool,
        protocol_factory: ProtocolFactory | None,
        clock: Clock | None,
    ) -> None:
        self.config = config
        self.fec = fec
        self.loop = asyncio.get_running_loop()
        self.stats = KCPStatistics()
        self.busy: set[KCPTransport] = set()
        self._factory = protocol_factory  # None: client, sessions are opened by us
        self._clock = clock or _ms_clock
        self._sessions: dict[tuple[Address, int], KCPTransport] = {}
        self._by_addr: dict[Address, KCPTransport] = {}
        self._dirty: set[KCPTransport] = set()
        self._flush_handle: asyncio.Handle | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self._tick_fast = False
        timeouts = [t / 4 for t in (config.idle_timeout, config.dead_timeout) if t]
        self._housekeeping = min([_HOUSEKEEPING, *timeouts])
        self._next_housekeeping = 0.0
        self._transport: asyncio.DatagramTransport | None = None
        self._closing = False
        self.closed: asyncio.Future[None] = self.loop.create_future()

    # -- plumbing ----------------------------------------------------------------------------

    def now_ms(self) -> int:
        return self._clock() & 0xFFFFFFFF

    def peername(self, addr: Address) -> Any:
        if addr is None and self._transport is not None:
            return self._transport.get_extra_info("peername")
        return addr

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default if self._transport is None else self._transport.get_extra_info(name, default)

    def sendto(self, data: bytes, addr: Address) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(data, addr)
            self.stats.datagrams_sent += 1

    def mark_dirty(self, session: KCPTransport) -> None:
        self._dirty.add(session)
        if self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self._flush_dirty)

    def _flush_dirty(self) -> None:
        self._flush_handle = None
        dirty, self._dirty = self._dirty, set()
        now = self.now_ms()
        for session in dirty:
            session._flush(now)

    def make_busy(self, session: KCPTransport) -> None:
        self.busy.add(session)
        if not self._tick_fast and self._tick_handle is not None and self._transport is not None:
            self._tick_handle.cancel()
            self._schedule_tick()

    def _schedule_tick(self) -> None:
        self._tick_fast = bool(self.busy)
        delay = self.config.interval / 1000 if self._tick_fast else self._housekeeping
        self._tick_handle = self.loop.call_later(delay, self._on_tick)

    def _on_tick(self) -> None:
        now_ms = self.now_ms()
        for session in list(self.busy):
            session._tick(now_ms)
        now = self.loop.time()
        if now >= self._next_housekeeping:
            self._next_housekeeping = now + self._housekeeping
            for session in list(self._sessions.values()):
                session._check_timeouts(now, self.config)
        if self._transport is not None:
            self._schedule_tick()

    # -- sessions ----------------------------------------------------------------------------

    def open_session(
        self, addr: Address, conv: int, protocol: asyncio.Protocol | None
    ) -> KCPTransport:
        return self._register(KCPTransport(self, addr, conv), protocol)

    def _register(self, session: KCPTransport, protocol: asyncio.Protocol | None) -> KCPTransport:
        self._sessions[session._addr, session.conv] = session
        self._by_addr[session._addr] = session
        self.stats.sessions_opened += 1
        if protocol is not None:
            session.set_protocol(protocol)
            protocol.connection_made(session)
        return session

    def forget(self, session: KCPTransport) -> None:
        key = (session._addr, session.conv)
        if self._sessions.get(key) is session:
            del self._sessions[key]
            self.stats.sessions_closed += 1
        if self._by_addr.get(session._addr) is session:
            del self._by_addr[session._addr]
        self.busy.discard(session)
        self._dirty.discard(session)
        lonely = (self._closing or self._factory is None) and not self._sessions
        if lonely and self._transport is not None:
            self._transport.close()

    @property
    def sessions(self) -> tuple[KCPTransport, ...]:
        return tuple(self._sessions.values())

    def close(self) -> None:
        self._closing = True
        if not self._sessions and self._transport is not None:
            self._transport.close()
        for session in list(self._sessions.values()):
            session.close()

    # -- asyncio.DatagramProtocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)
        sock = transport.get_extra_info("socket")
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.SOL_SOCKET, option, self.config.socket_buffer)
        self._next_housekeeping = self.loop.time() + self._housekeeping
        self._schedule_tick()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        for session in list(self._sessions.values()):
            session._finish(exc or ConnectionAbortedError("KCP socket closed"))
        if not self.closed.done():
            self.closed.set_result(None)

    def error_received(self, exc: Exception) -> None:
        if self._factory is None and isinstance(exc, ConnectionRefusedError):
            for session in list(self._sessions.values()):  # as kcp-go's dialled sessions do
                session._finish(exc)
        elif logger.isEnabledFor(logging.DEBUG):
            logger.debug("! KCP socket error: %r", exc)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.stats.datagrams_received += 1
        try:
            self._receive(data, None if self._factory is None else addr)
        except Exception:
            self.stats.errors += 1
            logger.exception("! KCP datagram from %s crashed the receive path", addr)

    def _receive(self, data: bytes, addr: Address) -> None:
        stats = self.stats
        if not self.fec:
            self._segment(data, addr, data, 0, 0)
            return
        if len(data) < 8:
            stats.dropped_short += 1
            return
        seqid, flag, size = DATA_HEADER.unpack_from(data)
        if flag == TYPE_DATA:
            if size < 2 or 6 + size > len(data):
                stats.dropped_malformed += 1
                return
            self._segment(data[8 : 6 + size], addr, data, seqid, flag)
        elif flag == TYPE_PARITY:
            stats.parity_received += 1
            session = self._by_addr.get(addr)
            if session is None or session._decoder is None:
                stats.dropped_unknown += 1
                return
            self._recover(session, data, seqid, flag)
        else:
            stats.dropped_bad_flag += 1

    def _recover(self, session: KCPTransport, data: bytes, seqid: int, flag: int) -> None:
        assert session._decoder is not None
        recovered = session._decoder.feed(seqid, flag, data[6:])
        if recovered:
            self.stats.fec_recovered += len(recovered)
            now = self.now_ms()
            for segment in recovered:
                if session._state != _CLOSED:
                    session._input(segment, now)

    def _segment(self, segment: bytes, addr: Address, data: bytes, seqid: int, flag: int) -> None:
        stats = self.stats
        if len(segment) < IKCP_OVERHEAD:
            stats.dropped_short += 1
            return
        (conv,) = _U32.unpack_from(segment)
        session = self._by_addr.get(addr)
        if session is not None and session.conv != conv:
            if self._factory is None or self._closing or _U32.unpack_from(segment, _SN_OFFSET)[0]:
                stats.dropped_unknown += 1
                return
            session._finish(ConnectionResetError("replaced by a new KCP conversation"))
            session = None
        if session is None:
            session = self._accept(segment, addr, conv)
            if session is None:
                return
        else:
            session._input(segment, self.now_ms())
        if session._decoder is not None and session._state != _CLOSED:
            self._recover(session, data, seqid, flag)

    def _accept(self, segment: bytes, addr: Address, conv: int) -> KCPTransport | None:
        stats = self.stats
        if self._factory is None or self._closing:
            stats.dropped_unknown += 1
            return None
        if len(self._sessions) >= self.config.max_sessions:
            stats.dropped_session_cap += 1
            return None
        if not _CMD_PUSH <= segment[4] <= _CMD_WINS:
            stats.dropped_malformed += 1
            return None
        session = KCPTransport(self, addr, conv)
        try:  # a session exists only once ikcp accepted its first datagram
            session._kcp.update(self.now_ms())
            session._kcp.receive(segment)
        except KCPException:
            stats.dropped_malformed += 1
            return None
        try:
            self._register(session, self._factory())
        except Exception:
            logger.exception("! KCP protocol factory failed for %s", addr)
            session._finish(None)
            return None
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("= KCP session %s conv=%d opened", addr, conv)
        self.mark_dirty(session)
        session._deliver()
        return session


class KCPServer:
    """A listening KCP socket; :meth:`close` closes every session, then the socket."""

    def __init__(self, endpoint: _Endpoint) -> None:
        self._endpoint = endpoint

    @property
    def address(self) -> Any:
        """The bound ``(host, port)``."""
        return self._endpoint.get_extra_info("sockname")

    @property
    def sessions(self) -> tuple[KCPTransport, ...]:
        return self._endpoint.sessions

    def statistics(self) -> KCPStatistics:
        return replace(self._endpoint.stats)

    def is_serving(self) -> bool:
        return not self._endpoint._closing

    def close(self) -> None:
        """Stop accepting; each session flushes (at most ``linger`` s) and is dropped."""
        if not self._endpoint._closing:
            logger.info("= KCP server %s closing (%d sessions)", self.address, len(self.sessions))
            self._endpoint.close()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._endpoint.closed)

    async def __aenter__(self) -> KCPServer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
        await self.wait_closed()


async def start_kcp_server(
    protocol_factory: ProtocolFactory,
    host: str,
    port: int,
    *,
    fec: bool = True,
    config: KCPConfig | None = None,
    clock: Clock | None = None,
) -> KCPServer:
    """Listen for KCP sessions on UDP ``host:port`` (port 0 picks one: see ``address``)."""
    loop = asyncio.get_running_loop()
    endpoint = _Endpoint(config or KCPConfig(), fec, protocol_factory, clock)
    await loop.create_datagram_endpoint(lambda: endpoint, local_addr=(host, port))
    server = KCPServer(endpoint)
    logger.info("= KCP server listening on %s (fec=%s)", server.address, fec)
    return server


async def open_kcp_connection(
    host: str,
    port: int,
    protocol_factory: ProtocolFactory,
    *,
    fec: bool = True,
    config: KCPConfig | None = None,
    conv: int | None = None,
    clock: Clock | None = None,
) -> tuple[KCPTransport, asyncio.Protocol]:
    """Open a KCP session to ``host:port`` on a new connected UDP socket.

    The conv id is random unless given. Nothing is sent until the caller writes: a kcp-go
    server only creates the session when the client speaks first (GoWorld's bot sends a 2001
    heartbeat). Closing the transport also closes the socket.
    """
    loop = asyncio.get_running_loop()
    endpoint = _Endpoint(config or KCPConfig(), fec, None, clock)
    await loop.create_datagram_endpoint(lambda: endpoint, remote_addr=(host, port))
    protocol = protocol_factory()
    session = endpoint.open_session(None, secrets.randbits(32) if conv is None else conv, protocol)
    return session, protocol
