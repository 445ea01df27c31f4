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

**Sessions exist only for addresses that proved they receive** (the return-routability check).
UDP source addresses can be forged, and a KCP server that opened a session on any first datagram
(as kcp-go does, and as this module did) sends a forged address the game's boot entity and
retransmits it for 20 s: a reflection attack worth ~60x the bytes the attacker sent. So:

1. A datagram from an address without a session (or with another conv, see below) opens
   nothing. The server answers it with one **cookie**: a single KCP PUSH segment with
   ``len = 0``, ``una = 0``, ``sn = 0xC0000000 | m1`` and ``ts = T + 2**30 + m2`` (32 bytes with
   the FEC header, 24 without: never more than the smallest datagram that can trigger it, so the
   reply to any datagram is at most as long as that datagram: an address that never proves
   itself gets back at most 1x the bytes it sent, counted in UDP payload bytes). ``m1`` (30 bits)
   and ``m2`` (29 bits) come from a keyed BLAKE2s MAC, under a random 128-bit key drawn when the
   socket opens, of the source address, the client's conv and the epoch ``T // P`` (``T`` is our
   millisecond clock at the start of the epoch, ``P`` is ``handshake_timeout``).
2. An unmodified KCP client (kcp-go, or ikcp) treats it as a duplicate of data it already has:
   its ``sn`` lies 1 to 2**30 segments before the client's ``rcv_nxt`` (0: the server has sent
   it nothing yet) in 32-bit sequence arithmetic, so inside ``rcv_nxt + rcv_wnd`` too, and the
   client drops the (empty) payload and **acknowledges it, echoing** ``sn`` **and** ``ts`` **in an
   ACK segment** (ikcp_input: ``ack_push(sn, ts)`` comes before the "already received" test;
   kcp-go's flush sends an ACK for a segment before ``rcv_nxt`` when it is the last of its ACK
   list, which it is: the server sends nothing else yet). Nothing reaches the client's
   application. The FEC data shard of the cookie uses seqid ``_COOKIE_SEQID``, far
   behind the seqids of the real session's shards in kcp-go's sequence arithmetic and at a
   data-shard position, so kcp-go's FEC decoder (and its shard-size auto-tuning in v5.6) never
   mixes it into a real group.
3. The session is created, and only then is the gate's protocol built and ``connection_made``
   called, when a datagram from that address and conv carries an ACK echoing the cookie of the
   current or the previous epoch (so a cookie is good for ``P`` to ``2P`` seconds).

*Why a blind spoofer cannot pass*: the cookie is sent only to the address it names. Someone who
forges that address does not receive it and must guess 59 bits of a MAC under a key they never
see (one guess per datagram, 2**-59 each, within at most ``2P`` s); a cookie learned at the
attacker's own address is bound to that address and conv and useless for any other, and it
expires with its epoch. The cookie needs no server state, so a flood of first datagrams cannot
exhaust anything: honest clients still get theirs.

The cookie ACK is then fed to ikcp with the rest of its datagram, harmlessly: its ``sn`` is far
outside the server's send window (ignored), and its ``ts`` lies 2**30 ms (12 days) in the
future of our clock, so ikcp takes no RTT sample from it (``ikcp_input`` only measures
``current - ts >= 0``). Late duplicate cookie ACKs do nothing either.

**Unverified state**: a client may send data before the round trip completes (GoWorld's bot
sends a 2001 heartbeat, or TLS its ClientHello). The server keeps a small *pending* record per
address (its conv, when it began, and at most ``unverified_buffer`` bytes of distinct PUSH
segments, fed to ikcp when the session opens) for ``handshake_timeout`` seconds, at most
``max_unverified`` of them and ``max_unverified_per_address`` per IP. Over those caps the cookie
is still sent but nothing is kept: the client's data is resent by KCP after verification (one
retransmission timeout later). Verified sessions are capped at ``max_sessions`` in total and
``max_sessions_per_address`` per source address (the host, any port; an IPv6 /64); a datagram
from an address over a cap is dropped silently (no cookie either). The defaults (10,000 and
4,096) are the gate's ``max_clients`` and ``max_connections_per_ip`` for TCP: a verified KCP
session has proved its address as a TCP handshake does. Drops, expiries and bad cookies are
counted in :class:`KCPStatistics` and summarised in one line per ``log_interval`` seconds at
most: a WARNING if something was refused (a cap, a bad cookie), else INFO (handshakes not kept
or never verified: also what an honest burst of clients from one host, or a client that went
away mid-handshake, looks like).

* **Sessions** are created only by a server, only through the cookie round trip above. A
  datagram with another conv from an address that has a session starts a handshake only when its
  first segment has ``sn`` 0 (a client reconnecting from the same port, as kcp-go allows);
  otherwise it is a stale straggler and is dropped. The old session is replaced only once the
  new conv is verified, so a spoofer cannot reset an honest session either.
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
import hashlib
import ipaddress
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
_SEGMENT = struct.Struct("<IBBHIIII")  # conv, cmd, frg, wnd, ts, sn, una, len
_MAC = struct.Struct("<II")
_COOKIE_INPUT = struct.Struct("<QI")  # epoch, conv
_CMD_PUSH, _CMD_ACK, _CMD_WINS = 81, 82, 84
_SN_OFFSET = 12
_HOUSEKEEPING = 1.0  # longest time between timeout checks (the tick period when none is busy)
#: Cookie segments: sn in [0xC0000000, 2**32), ts 2**30 ms ahead of the epoch's start (module doc).
_COOKIE_SN = 0xC0000000
_COOKIE_AHEAD = 1 << 30
#: FEC seqid of cookie datagrams: a multiple of 13 (a data-shard slot for kcp-go's 10+3 groups),
#: below kcp-go's seqid wrap (0xFFFFFFFF // 13 * 13) and 13,000 behind seqid 0 in 32-bit order.
_COOKIE_SEQID = 0xFFFFFFFF // 13 * 13 - 13 * 1000

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
    max_sessions: int = 10_000  # verified sessions per server socket
    max_sessions_per_address: int = 4096  # verified sessions per source IP (as the gate's TCP)
    max_unverified: int = 1_000  # pending handshakes kept (over it: cookie sent, nothing kept)
    max_unverified_per_address: int = 64  # pending handshakes kept per source IP
    handshake_timeout: float = 5.0  # s a pending handshake is kept; a cookie is good P..2P s
    unverified_buffer: int = 4096  # bytes of PUSH segments kept per pending handshake
    log_interval: float = 10.0  # s between two summaries of drops (one WARNING at most)
    socket_buffer: int = 1 << 20  # SO_RCVBUF / SO_SNDBUF asked for (the kernel may cap it)
    write_high_water: int = 1 << 20  # bytes queued in KCP before protocol.pause_writing()

    def __post_init__(self) -> None:
        if not self.handshake_timeout > 0:
            raise ValueError("KCPConfig.handshake_timeout must be > 0 (it is the cookie epoch)")
        for name in (
            "max_sessions",
            "max_sessions_per_address",
            "max_unverified",
            "max_unverified_per_address",
            "unverified_buffer",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"KCPConfig.{name} must be >= 0")


@dataclass(slots=True)
class KCPStatistics:
    """Counters of one UDP socket (server or client); :meth:`KCPServer.statistics` copies them."""

    datagrams_received: int = 0
    datagrams_sent: int = 0
    dropped_short: int = 0  # shorter than the FEC header or a KCP segment header
    dropped_bad_flag: int = 0  # FEC flag neither 0xf1 nor 0xf2
    dropped_malformed: int = 0  # bad size field, bad first segment, or ikcp refused it
    dropped_unknown: int = 0  # no session for it (stray parity, foreign conv, client mode)
    dropped_session_cap: int = 0  # from a new address while max_sessions are open
    dropped_address_cap: int = 0  # from a new address whose IP has max_sessions_per_address
    bytes_received: int = 0  # UDP payload bytes
    bytes_sent: int = 0
    cookies_sent: int = 0
    bad_cookies: int = 0  # ACKs shaped like a cookie's that did not match
    handshakes_verified: int = 0
    unverified_kept: int = 0  # pending handshakes recorded
    unverified_not_kept: int = 0  # over max_unverified(_per_address): cookie only
    unverified_expired: int = 0  # pending handshakes never verified
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
                self._decoder = FECDecoder(cfg.data_shards, cfg.parity_shards, max_shard_bytes=cfg.mtu)
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
            self._loop.call_soon(self._resume)

    def _resume(self) -> None:
        self._deliver()
        # Flush after the drain, not before (a flush may already be queued for other
        # sessions): the drain is what makes ikcp announce the reopened window (ASK_TELL).
        self._endpoint.mark_dirty(self)

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


def _ip(addr: Address) -> Any:
    """What per-address caps count: the host (any port); for IPv6 its /64 (one subscriber's
    prefix), except IPv4-mapped addresses, which count as their IPv4 host."""
    if not isinstance(addr, tuple):
        return addr
    host = addr[0]
    if ":" not in host:
        return host
    try:
        ip = ipaddress.IPv6Address(host.partition("%")[0])
    except ValueError:
        return host
    return str(ip.ipv4_mapped) if ip.ipv4_mapped else ip.packed[:8]


def _walk(segment: bytes) -> list[tuple[int, int, int, int, int]] | None:
    """``(cmd, ts, sn, start, end)`` of each KCP segment of a datagram, as ikcp_input reads
    them (a tail shorter than a header is ignored); None if one is malformed or has another
    conv than the first."""
    out: list[tuple[int, int, int, int, int]] = []
    size = len(segment)
    first_conv = -1
    offset = 0
    while size - offset >= IKCP_OVERHEAD:
        conv, cmd, _frg, _wnd, ts, sn, _una, length = _SEGMENT.unpack_from(segment, offset)
        end = offset + IKCP_OVERHEAD + length
        if end > size or not _CMD_PUSH <= cmd <= _CMD_WINS or first_conv not in (-1, conv):
            return None
        first_conv = conv
        out.append((cmd, ts, sn, offset, end))
        offset = end
    return out


class _Pending:
    """An address that has been sent a cookie and has not answered yet (module doc)."""

    __slots__ = ("conv", "since", "pushes", "buffered")

    def __init__(self, conv: int, since: float) -> None:
        self.conv = conv
        self.since = since
        self.pushes: dict[int, bytes] = {}  # sn -> the PUSH segment's bytes
        self.buffered = 0


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
        self._per_ip: dict[Any, int] = {}  # verified sessions per source IP
        self._pending: dict[Address, _Pending] = {}  # in creation order
        self._pending_per_ip: dict[Any, int] = {}
        self._secret = secrets.token_bytes(16)
        self._cookie_period = max(1, round(config.handshake_timeout * 1000))
        self._cookie_size = IKCP_OVERHEAD + (8 if fec else 0)
        self._dirty: set[KCPTransport] = set()
        self._flush_handle: asyncio.Handle | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self._tick_fast = False
        timeouts = [
            t / 4 for t in (config.idle_timeout, config.dead_timeout, config.handshake_timeout) if t
        ]
        self._housekeeping = min([_HOUSEKEEPING, *timeouts])
        self._next_housekeeping = 0.0
        self._noted: dict[str, int] = {}  # events since the last summary, by kind
        self._noted_refusal = False  # one of them refused something (the summary is a WARNING)
        self._next_summary = 0.0
        self._transport: asyncio.DatagramTransport | None = None
        self._sockname: Any = None
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
            self.stats.bytes_sent += len(data)

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
            self._expire_pending(now)
            if self._noted and now >= self._next_summary:
                self._summarise(now)
        if self._transport is not None:
            self._schedule_tick()

    def _note(self, kind: str, count: int = 1, *, refused: bool = True) -> None:
        """Count an event for the next summary; ``refused=False`` for benign ones (an honest
        burst of handshakes from one host, a client that went away mid-handshake): a summary
        of only those is logged at INFO, not WARNING."""
        self._noted[kind] = self._noted.get(kind, 0) + count
        self._noted_refusal = self._noted_refusal or refused

    def _summarise(self, now: float) -> None:
        """One WARNING for every drop since the last one (at most one per ``log_interval``)."""
        noted, self._noted = self._noted, {}
        level = logging.WARNING if self._noted_refusal else logging.INFO
        self._noted_refusal = False
        self._next_summary = now + self.config.log_interval
        logger.log(
            level,
            "! KCP %s: %s since the last such line (one per %.0f s at most)",
            self._sockname,
            ", ".join(f"{count} {kind}" for kind, count in noted.items()),
            self.config.log_interval,
        )

    # -- sessions ----------------------------------------------------------------------------

    def open_session(
        self, addr: Address, conv: int, protocol: asyncio.Protocol | None
    ) -> KCPTransport:
        return self._register(KCPTransport(self, addr, conv), protocol)

    def _register(self, session: KCPTransport, protocol: asyncio.Protocol | None) -> KCPTransport:
        self._sessions[session._addr, session.conv] = session
        self._by_addr[session._addr] = session
        if self._factory is not None:
            ip = _ip(session._addr)
            self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
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
            if self._factory is not None:
                ip = _ip(session._addr)
                left = self._per_ip.get(ip, 1) - 1
                if left > 0:
                    self._per_ip[ip] = left
                else:
                    self._per_ip.pop(ip, None)
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

    @property
    def unverified(self) -> int:
        return len(self._pending)

    def close(self) -> None:
        self._closing = True
        self._pending.clear()
        self._pending_per_ip.clear()
        if not self._sessions and self._transport is not None:
            self._transport.close()
        for session in list(self._sessions.values()):
            session.close()

    # -- asyncio.DatagramProtocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)
        self._sockname = transport.get_extra_info("sockname")
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
        if self._noted:
            self._summarise(self.loop.time())
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
        self.stats.bytes_received += len(data)
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
        if session is not None and session.conv == conv:
            session._input(segment, self.now_ms())
        elif self._factory is None or self._closing:
            stats.dropped_unknown += 1
            return
        else:
            session = self._handshake(segment, addr, conv, len(data), session)
            if session is None:
                return
        if session._decoder is not None and session._state != _CLOSED:
            self._recover(session, data, seqid, flag)

    # -- the return-routability check (module doc) -------------------------------------------

    def _cookie(self, addr: Address, conv: int, epoch: int) -> tuple[int, int]:
        """``(ts, sn)`` of the cookie for ``addr`` and ``conv`` in ``epoch``."""
        mac = hashlib.blake2s(
            _COOKIE_INPUT.pack(epoch & 0xFFFFFFFFFFFFFFFF, conv) + repr(addr).encode(),
            key=self._secret,
            digest_size=8,
        ).digest()
        high, low = _MAC.unpack(mac)
        ts = (epoch * self._cookie_period + _COOKIE_AHEAD + (high & 0x1FFFFFFF)) & 0xFFFFFFFF
        return ts, _COOKIE_SN | (low & 0x3FFFFFFF)

    def _verified(
        self, addr: Address, conv: int, segments: list[tuple[int, int, int, int, int]]
    ) -> bool:
        """Whether one of ``segments`` is an ACK echoing this or the last epoch's cookie."""
        echoes = {
            (ts, sn) for cmd, ts, sn, _, _ in segments if cmd == _CMD_ACK and sn >= _COOKIE_SN
        }
        if not echoes:
            return False
        epoch = self._clock() // self._cookie_period
        if any(self._cookie(addr, conv, e) in echoes for e in (epoch, epoch - 1)):
            return True
        self.stats.bad_cookies += 1
        self._note("bad cookies")
        return False

    def _over_cap(self, addr: Address, replacing: bool) -> bool:
        """Whether a new session for ``addr`` would exceed max_sessions(_per_address)."""
        config = self.config
        if len(self._sessions) - replacing >= config.max_sessions:
            self.stats.dropped_session_cap += 1
            self._note(f"datagrams dropped: {config.max_sessions} sessions open")
            return True
        if self._per_ip.get(_ip(addr), 0) - replacing >= config.max_sessions_per_address:
            self.stats.dropped_address_cap += 1
            self._note(f"datagrams dropped: {config.max_sessions_per_address} sessions from one IP")
            return True
        return False

    def _handshake(
        self, segment: bytes, addr: Address, conv: int, size: int, existing: KCPTransport | None
    ) -> KCPTransport | None:
        """A datagram from an address without a session for ``conv``: open the session if it
        echoes our cookie, else keep (a little of) it and answer with a cookie."""
        stats = self.stats
        segments = _walk(segment)
        if not segments:
            stats.dropped_malformed += 1
            return None
        if self._verified(addr, conv, segments):
            if self._over_cap(addr, existing is not None):
                return None
            return self._open(segment, addr, conv, existing)
        if existing is not None and segments[0][2] != 0:
            stats.dropped_unknown += 1  # a straggler of an older conversation from this port
            return None
        if self._over_cap(addr, existing is not None):
            return None
        pending = self._pending.get(addr)
        if pending is None or pending.conv != conv:
            pending = self._keep(addr, conv, pending)
        if pending is not None:
            budget = self.config.unverified_buffer
            for cmd, _ts, sn, start, end in segments:
                if (
                    cmd == _CMD_PUSH
                    and sn not in pending.pushes
                    and pending.buffered + end - start <= budget
                ):
                    pending.pushes[sn] = segment[start:end]
                    pending.buffered += end - start
        if size >= self._cookie_size:  # always true for a datagram that got here
            self._send_cookie(addr, conv)
        return None

    def _keep(self, addr: Address, conv: int, old: _Pending | None) -> _Pending | None:
        """A new pending record for ``addr`` (replacing ``old``), or None over the caps."""
        ip = _ip(addr)
        if old is not None:
            self._drop_pending(addr)
        config = self.config
        if (
            len(self._pending) >= config.max_unverified
            or self._pending_per_ip.get(ip, 0) >= config.max_unverified_per_address
        ):
            self.stats.unverified_not_kept += 1
            self._note(
                "handshakes over the unverified caps (cookie sent, data not kept)", refused=False
            )
            return None
        pending = self._pending[addr] = _Pending(conv, self.loop.time())
        self._pending_per_ip[ip] = self._pending_per_ip.get(ip, 0) + 1
        self.stats.unverified_kept += 1
        return pending

    def _drop_pending(self, addr: Address) -> _Pending | None:
        pending = self._pending.pop(addr, None)
        if pending is not None:
            ip = _ip(addr)
            left = self._pending_per_ip.get(ip, 1) - 1
            if left > 0:
                self._pending_per_ip[ip] = left
            else:
                self._pending_per_ip.pop(ip, None)
        return pending

    def _expire_pending(self, now: float) -> None:
        deadline = now - self.config.handshake_timeout
        expired = 0
        pending = self._pending
        while pending:
            addr, oldest = next(iter(pending.items()))  # the dict is in creation order
            if oldest.since > deadline:
                break
            self._drop_pending(addr)
            expired += 1
        if expired:
            self.stats.unverified_expired += expired
            self._note("handshakes never verified", expired, refused=False)

    def _send_cookie(self, addr: Address, conv: int) -> None:
        ts, sn = self._cookie(addr, conv, self._clock() // self._cookie_period)
        wnd = min(self.config.receive_window, 0xFFFF)
        cookie = _SEGMENT.pack(conv, _CMD_PUSH, 0, wnd, ts, sn, 0, 0)
        if self.fec:
            cookie = DATA_HEADER.pack(_COOKIE_SEQID, TYPE_DATA, len(cookie) + 2) + cookie
        self.sendto(cookie, addr)
        self.stats.cookies_sent += 1

    def _open(
        self, segment: bytes, addr: Address, conv: int, existing: KCPTransport | None
    ) -> KCPTransport | None:
        """The verified session: ikcp gets the kept PUSH segments, then this datagram."""
        stats = self.stats
        pending = self._drop_pending(addr)
        session = KCPTransport(self, addr, conv)
        kcp = session._kcp
        kcp.update(self.now_ms())
        kept = (
            sorted(pending.pushes.items()) if pending is not None and pending.conv == conv else []
        )
        for _sn, push in kept:
            with contextlib.suppress(KCPException):
                kcp.receive(push)
        try:
            kcp.receive(segment)
        except KCPException:
            stats.dropped_malformed += 1
        if existing is not None:
            existing._finish(ConnectionResetError("replaced by a new KCP conversation"))
        stats.handshakes_verified += 1
        try:
            self._register(session, self._factory() if self._factory is not None else None)
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
    def config(self) -> KCPConfig:
        return self._endpoint.config

    @property
    def sessions(self) -> tuple[KCPTransport, ...]:
        """The verified sessions."""
        return self._endpoint.sessions

    @property
    def unverified(self) -> int:
        """Pending handshakes kept (addresses sent a cookie that have not echoed it yet)."""
        return self._endpoint.unverified

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
