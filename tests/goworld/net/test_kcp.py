"""Tests for goworld.net.kcp and goworld.net.fec: Python<->Python, interop with kcp-go, hostile
input, clock wraparound.

The kcp-go peer (tests/goworld/net/kcp_peer, a test tool) is built and cached by
tests/goworld/net/kcp_peer_build.py; what happens when it cannot be built is decided by its
:func:`require_kcp_peer` alone.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import struct
import time
from collections.abc import Callable

import pytest

from goworld.net.fec import (
    DATA_HEADER,
    PARITY_HEADER,
    TYPE_DATA,
    TYPE_PARITY,
    FECDecoder,
    FECEncoder,
    coding_matrix,
    encode_parity,
)
from goworld.net.kcp import KCPConfig, KCPServer, _ip, open_kcp_connection, start_kcp_server
from tests.goworld.net.kcp_peer_build import require_kcp_peer

# -- helpers -------------------------------------------------------------------------------------


class Echo(asyncio.Protocol):
    """Server side: echoes everything and records its lifecycle."""

    instances: list[Echo]

    def __init__(self) -> None:
        self.received = 0
        self.lost: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        Echo.instances.append(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        self.transport.write(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.set_result(exc)


class Collector(asyncio.Protocol):
    """Client side: accumulates the byte stream."""

    def __init__(self) -> None:
        self.data = bytearray()
        self._event = asyncio.Event()
        self.lost: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data
        self._event.set()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.set_result(exc)

    async def wait_for_size(self, size: int, timeout: float = 10.0) -> bytes:
        async with asyncio.timeout(timeout):
            while len(self.data) < size:
                self._event.clear()
                await self._event.wait()
        return bytes(self.data)


async def echo_server(**kwargs: object) -> KCPServer:
    """An echo server; its sessions linger 0.5 s at close for ACKs that closed clients never
    send (KCP has no close handshake, and loopback drops datagrams when a burst overflows the
    socket buffer)."""
    Echo.instances = []
    kwargs.setdefault("config", KCPConfig(linger=0.5))
    return await start_kcp_server(Echo, "127.0.0.1", 0, **kwargs)  # type: ignore[arg-type]


async def connect(server: KCPServer, **kwargs: object) -> tuple[asyncio.Transport, Collector]:
    host, port = server.address
    transport, protocol = await open_kcp_connection(host, port, Collector, **kwargs)  # type: ignore[arg-type]
    assert isinstance(protocol, Collector)
    return transport, protocol


def kcp_segment(conv: int, sn: int = 0, payload: bytes = b"hi", cmd: int = 81) -> bytes:
    """One raw KCP segment: conv, cmd, frg, wnd, ts, sn, una, len, data."""
    return struct.pack("<IBBHIIII", conv, cmd, 0, 128, 0, sn, 0, len(payload)) + payload


def data_shard(segment: bytes, seqid: int = 0) -> bytes:
    return DATA_HEADER.pack(seqid, TYPE_DATA, len(segment) + 2) + segment


def ack_segment(conv: int, ts: int, sn: int) -> bytes:
    """A KCP ACK echoing ``ts`` and ``sn``, as a KCP client acknowledges a segment."""
    return struct.pack("<IBBHIIII", conv, 82, 0, 128, ts, sn, 0, 0)


def udp_socket(host: str = "127.0.0.1") -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setblocking(False)
    s.bind((host, 0))
    return s


def drain(sock: socket.socket) -> list[bytes]:
    """Every datagram waiting on a non-blocking socket."""
    out = []
    while True:
        try:
            out.append(sock.recv(65536))
        except BlockingIOError:
            return out


async def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll ``condition`` (the timeout only stops a hung test; nothing is timed)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def receive_cookie(sock: socket.socket, fec: bool = True) -> tuple[int, int]:
    """The ``(ts, sn)`` of the next cookie the server sends back (other datagrams, such as an
    older session's retransmissions, are skipped)."""
    loop = asyncio.get_running_loop()
    while True:
        datagram = await asyncio.wait_for(loop.sock_recv(sock, 2048), 10)
        segment = datagram[8:] if fec else datagram
        if len(segment) != 24:
            continue
        _conv, cmd, _frg, _wnd, ts, sn, una, length = struct.unpack("<IBBHIIII", segment)
        if cmd == 81 and sn >= 0xC0000000:
            assert (una, length) == (0, 0)
            return ts, sn


async def handshake(
    sock: socket.socket, address: tuple[str, int], conv: int, payload: bytes = b"hi"
) -> bool:
    """Send a first segment, echo the cookie back: the return-routability round trip."""
    sock.sendto(data_shard(kcp_segment(conv, payload=payload)), address)
    ts, sn = await receive_cookie(sock)
    sock.sendto(data_shard(ack_segment(conv, ts, sn)), address)
    return True


# -- FEC -----------------------------------------------------------------------------------------

# klauspost/reedsolomon v1.12.0 and v1.14.2, New(10, 3).Encode on 10 shards where shard i has
# 20+3i bytes ((31i + 7j + 1) & 255), zero-padded to 47: the three parity shards.
GOLDEN_PARITY = [
    "0b174524e32a0ebca0f27dca46110a3b15c8da8523bd58d6c57d1a6dbfac468470c9c23e3c523f8341465de098a6b4",
    "8cb464cec271ef8e41bf1c5d678264e4740bbb55be2dda1d408085c50c6367ff3b0a7561d89c9af6ed697c83d4f5ee",
    "8c3b832af68e57702286a6dd6026a588a4330b1e6b928830012e0de9e4b22b6845bafedd305d55a76da49bb72d5175",
]


def test_parity_matches_klauspost_reedsolomon() -> None:
    shards = [bytes((31 * i + 7 * j + 1) & 255 for j in range(20 + 3 * i)) for i in range(10)]
    assert [p.hex() for p in encode_parity(shards, 3)] == GOLDEN_PARITY
    matrix = coding_matrix(10, 3)
    assert [list(r) for r in matrix[:10]] == [[int(i == j) for j in range(10)] for i in range(10)]


def test_fec_encoder_frames_like_kcp_go() -> None:
    rng = random.Random(0)
    encoder = FECEncoder(10, 3)
    segments = [rng.randbytes(rng.randrange(24, 1392)) for _ in range(10)]
    datagrams = [d for s in segments for d in encoder.encode(s)]
    assert len(datagrams) == 13
    for i, (segment, datagram) in enumerate(zip(segments, datagrams[:10], strict=True)):
        assert datagram == DATA_HEADER.pack(i, TYPE_DATA, len(segment) + 2) + segment
    parity = encode_parity([d[6:] for d in datagrams[:10]], 3)
    for k, datagram in enumerate(datagrams[10:]):
        assert datagram == PARITY_HEADER.pack(10 + k, TYPE_PARITY) + parity[k]
        assert len(datagram) == max(map(len, datagrams[:10]))  # kcp-go pads to the longest
    assert DATA_HEADER.unpack_from(encoder.encode(b"x" * 24)[0])[0] == 13


def test_fec_encoder_seqids_stay_aligned_without_parity() -> None:
    encoder = FECEncoder(10, 3, parity=False)
    seqids = [DATA_HEADER.unpack_from(encoder.encode(b"x" * 30)[0])[0] for _ in range(25)]
    assert seqids == list(range(10)) + list(range(13, 23)) + list(range(26, 31))
    assert encoder.encode(b"abc")[0] == DATA_HEADER.pack(31, TYPE_DATA, 5) + b"abc"


@pytest.mark.parametrize("lost", [(0,), (3, 7), (0, 5, 9), (1, 11)])
def test_fec_decoder_rebuilds_lost_data_shards(lost: tuple[int, ...]) -> None:
    rng = random.Random(len(lost))
    encoder, decoder = FECEncoder(10, 3), FECDecoder(10, 3)
    for group in range(3):
        segments = [rng.randbytes(rng.randrange(24, 1300)) for _ in range(10)]
        datagrams = [d for s in segments for d in encoder.encode(s)]
        assert len(datagrams) == 13
        recovered: list[bytes] = []
        for index, datagram in enumerate(datagrams):
            if index in lost:
                continue
            seqid, flag = PARITY_HEADER.unpack_from(datagram)
            assert seqid == group * 13 + index
            recovered += decoder.feed(seqid, flag, datagram[6:])
        assert recovered == [segments[i] for i in lost if i < 10]
    assert decoder.feed(0, TYPE_DATA, b"\x05\x00abc") == []  # an old group is ignored


def test_fec_decoder_ignores_garbage() -> None:
    decoder = FECDecoder(10, 3)
    rng = random.Random(7)
    for _ in range(2000):
        flag = rng.choice([TYPE_DATA, TYPE_PARITY])
        assert isinstance(
            decoder.feed(rng.getrandbits(32), flag, rng.randbytes(rng.randrange(40))), list
        )


def test_fec_decoder_holds_a_bounded_number_of_bytes() -> None:
    """Hostile shards: oversized ones are dropped, and incomplete groups are capped at three
    groups' worth of shards (kcp-go's limit), the oldest going first; recovery still works."""
    decoder = FECDecoder(10, 3, max_shard_bytes=1400)
    assert decoder.feed(0, TYPE_DATA, b"\x00" * 1401) == [] and decoder._held == 0
    for group in range(32):  # 9 of 10 data shards of 32 groups, each shard at the MTU
        for index in range(9):
            decoder.feed(group * 13 + index, TYPE_DATA, b"\x00" * 1400)
    assert decoder._held <= 39
    assert sum(map(len, decoder._groups.values())) == decoder._held
    assert sum(len(p) for g in decoder._groups.values() for p in g.values()) <= 39 * 1400
    # a real group after the flood is still rebuilt
    encoder = FECEncoder(10, 3)
    encoder._next = 40 * 13
    segments = [bytes([i]) * 100 for i in range(10)]
    datagrams = [d for s in segments for d in encoder.encode(s)]
    got: list[bytes] = []
    for index, datagram in enumerate(datagrams):
        if index != 4:
            seqid, flag = PARITY_HEADER.unpack_from(datagram)
            got += decoder.feed(seqid, flag, datagram[6:])
    assert got == [segments[4]]


# -- Python <-> Python ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_echo_large_small_concurrent_and_clean_close() -> None:
    server = await echo_server()
    rng = random.Random(1)
    transport, client = await connect(server)
    assert transport.get_extra_info("peername") == server.address

    big = rng.randbytes(1 << 20)  # 1 MiB in one write: stream reassembly
    transport.write(big)
    assert await client.wait_for_size(len(big)) == big

    client.data.clear()
    small = [rng.randbytes(rng.randrange(1, 80)) for _ in range(3000)]
    for piece in small:
        transport.write(piece)
    expected = b"".join(small)
    assert await client.wait_for_size(len(expected)) == expected

    async def session(n: int) -> None:
        t, c = await connect(server)
        payload = random.Random(n).randbytes(50_000)
        for i in range(0, len(payload), 700):
            t.write(payload[i : i + 700])
        assert await c.wait_for_size(len(payload)) == payload
        t.close()
        assert await asyncio.wait_for(c.lost, 5) is None

    await asyncio.gather(*(session(n) for n in range(20)))
    assert server.statistics().sessions_opened == 21

    transport.close()
    assert transport.is_closing()
    assert await asyncio.wait_for(client.lost, 5) is None
    server.close()
    await asyncio.wait_for(server.wait_closed(), 10)
    assert all(e.lost.done() and e.lost.result() is None for e in Echo.instances)
    stats = server.statistics()
    assert stats.sessions_closed == stats.sessions_opened == 21
    assert stats.errors == stats.dropped_malformed == 0
    assert server.sessions == ()


@pytest.mark.asyncio
async def test_close_flushes_pending_data_first() -> None:
    server = await echo_server()
    transport, client = await connect(server)
    payload = random.Random(2).randbytes(300_000)
    transport.write(payload)
    transport.close()  # before a single byte was acknowledged
    transport.write(b"ignored after close")
    assert await asyncio.wait_for(client.lost, 5) is None
    await asyncio.sleep(0.05)
    assert Echo.instances[0].received == len(payload)
    server.close()
    await asyncio.wait_for(server.wait_closed(), 10)


@pytest.mark.asyncio
async def test_plain_kcp_without_fec_and_parity_recovery() -> None:
    server = await echo_server(fec=False)
    transport, client = await connect(server, fec=False)
    payload = random.Random(3).randbytes(200_000)
    transport.write(payload)
    assert await client.wait_for_size(len(payload)) == payload
    transport.close()
    server.close()
    await asyncio.wait_for(server.wait_closed(), 10)

    # FEC on, and the client loses every 4th data shard it sends: parity rebuilds them
    server = await echo_server()
    transport, client = await connect(server)
    endpoint = transport._endpoint  # type: ignore[attr-defined]
    real_sendto, count = endpoint.sendto, 0

    def lossy_sendto(data: bytes, addr: object) -> None:
        nonlocal count
        count += 1
        if data[4] != TYPE_DATA or count % 4:
            real_sendto(data, addr)

    endpoint.sendto = lossy_sendto
    transport.write(payload)
    assert await client.wait_for_size(len(payload)) == payload
    assert server.statistics().fec_recovered > 0
    transport.close()
    server.close()
    await asyncio.wait_for(server.wait_closed(), 10)


@pytest.mark.asyncio
async def test_idle_and_dead_peer_timeouts() -> None:
    config = KCPConfig(idle_timeout=0.3, dead_timeout=None, linger=0.5)
    server = await echo_server(config=config)
    transport, client = await connect(server)
    transport.write(b"ping")
    await client.wait_for_size(4)
    lost = await asyncio.wait_for(Echo.instances[0].lost, 5)
    assert isinstance(lost, TimeoutError)
    transport.abort()
    server.close()
    await server.wait_closed()

    server = await echo_server(config=KCPConfig(dead_timeout=0.3, linger=0.5))
    transport, client = await connect(server)
    transport.write(b"ping")
    await client.wait_for_size(4)
    transport.abort()  # the client vanishes without a word (KCP has no close handshake)
    await asyncio.sleep(0)
    Echo.instances[0].transport.write(b"anyone there?")
    lost = await asyncio.wait_for(Echo.instances[0].lost, 5)
    assert isinstance(lost, TimeoutError)
    server.close()
    await server.wait_closed()


@pytest.mark.asyncio
async def test_flow_control_both_ways() -> None:
    """A server that stops reading closes KCP's window; the client's queue grows past the high
    water mark (pause_writing) and drains once reading resumes (resume_writing)."""
    server = await echo_server()
    transport, client = await connect(server)
    events: list[str] = []
    client.pause_writing = lambda: events.append("pause")  # type: ignore[method-assign]
    client.resume_writing = lambda: events.append("resume")  # type: ignore[method-assign]
    transport.set_write_buffer_limits(high=200_000, low=50_000)
    transport.write(b"hello")
    await client.wait_for_size(5)
    echo = Echo.instances[0]
    echo.transport.pause_reading()
    assert not echo.transport.is_reading()
    payload = random.Random(8).randbytes(600_000)
    transport.write(payload)
    await asyncio.sleep(0.2)
    assert events == ["pause"]
    assert echo.received == 5
    assert transport.get_write_buffer_size() > 200_000
    echo.transport.resume_reading()
    assert await client.wait_for_size(5 + len(payload)) == b"hello" + payload
    assert events == ["pause", "resume"]
    transport.close()
    server.close()
    await asyncio.wait_for(server.wait_closed(), 10)


# -- hostile input -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_garbage_never_crashes_nor_creates_sessions() -> None:
    server = await echo_server(config=KCPConfig(max_sessions=5, linger=0.2))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(server.address)
    rng = random.Random(4)
    garbage = [rng.randbytes(rng.randrange(0, 1500)) for _ in range(500)]
    garbage += [rng.randbytes(n) for n in range(8)]  # shorter than the FEC header
    garbage += [PARITY_HEADER.pack(i, TYPE_PARITY) + rng.randbytes(100) for i in range(50)]
    garbage += [data_shard(kcp_segment(9, cmd=99))]  # not a KCP command
    garbage += [DATA_HEADER.pack(0, TYPE_DATA, 5000) + kcp_segment(9)]  # size past the end
    garbage += [data_shard(b"\x01\x02\x03")]  # shorter than a KCP header
    garbage += [data_shard(kcp_segment(9)[:-1])]  # its len field overruns: ikcp refuses it
    garbage += [kcp_segment(9)]  # plain KCP at a FEC server
    for datagram in garbage:
        sock.send(datagram)
    await asyncio.sleep(0.2)
    stats = server.statistics()
    assert server.sessions == () and stats.sessions_opened == 0
    assert stats.errors == 0
    assert stats.datagrams_received == len(garbage)
    assert stats.dropped_short >= 9 and stats.dropped_bad_flag > 400
    assert stats.parity_received >= 50 and stats.dropped_malformed >= 3

    # the session cap holds against valid handshakes from new addresses; over it, no cookie
    flood = [udp_socket() for _ in range(20)]
    for n, s in enumerate(flood[:5]):
        assert await handshake(s, server.address, 1000 + n)
    await wait_until(lambda: len(server.sessions) == 5)
    for n, s in enumerate(flood[5:], 5):
        s.sendto(data_shard(kcp_segment(1000 + n)), server.address)
    await wait_until(lambda: server.statistics().dropped_session_cap == 15)
    assert all(drain(s) == [] for s in flood[5:])
    for s in flood[:5]:
        drain(s)  # the sessions' ACKs and echoes
    assert len(server.sessions) == 5 and server.unverified == 0

    # a new conv from a known address replaces its session (sn 0), a straggler (sn > 0) does
    # not, and the old session lives until the new conv has echoed its cookie
    first = Echo.instances[0]
    before = server.statistics().dropped_unknown
    flood[0].sendto(data_shard(kcp_segment(77, sn=5)), server.address)
    await wait_until(lambda: server.statistics().dropped_unknown == before + 1)
    flood[0].sendto(data_shard(kcp_segment(77)), server.address)
    cookie = await receive_cookie(flood[0])
    assert not first.lost.done()
    flood[0].sendto(data_shard(ack_segment(77, *cookie)), server.address)
    assert isinstance(await asyncio.wait_for(first.lost, 2), ConnectionResetError)
    await wait_until(lambda: 77 in {t.conv for t in server.sessions})
    assert sorted(t.conv for t in server.sessions) == [77, 1001, 1002, 1003, 1004]

    for s in [sock, *flood]:
        s.close()
    server.close()
    await asyncio.wait_for(server.wait_closed(), 10)
    assert server.statistics().errors == 0


# -- clock wraparound ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_clock_wraparound() -> None:
    """Both ends start their clock 500 ms before 2**32; the client sends no parity and loses
    every 5th datagram, so KCP's retransmission timers must work across the wrap too."""

    def wrapping_clock() -> int:
        return time.monotonic_ns() // 1_000_000 + offset

    offset = 0
    offset = 2**32 - 500 - wrapping_clock()
    server = await echo_server(clock=wrapping_clock)
    transport, client = await connect(
        server, clock=wrapping_clock, config=KCPConfig(send_parity=False)
    )
    endpoint = transport._endpoint  # type: ignore[attr-defined]
    real_sendto, count = endpoint.sendto, 0

    def lossy_sendto(data: bytes, addr: object) -> None:
        nonlocal count
        count += 1
        if count % 5:
            real_sendto(data, addr)

    endpoint.sendto = lossy_sendto
    rng = random.Random(5)
    sent = bytearray()
    worst = 0.0
    while wrapping_clock() < 2**32 + 700:  # from 500 ms before the wrap to 700 ms after it
        piece = rng.randbytes(rng.randrange(1, 3000))
        sent += piece
        started = time.monotonic()
        transport.write(piece)
        await client.wait_for_size(len(sent), timeout=5)
        worst = max(worst, time.monotonic() - started)
    assert client.data == sent
    assert worst < 0.5, f"an echo took {worst:.3f} s around the wrap"
    bulk = rng.randbytes(300_000)
    transport.write(bulk)
    assert await client.wait_for_size(len(sent) + len(bulk)) == bytes(sent + bulk)
    assert count > 100
    transport.close()
    server.close()
    await asyncio.wait_for(server.wait_closed(), 10)


# -- interop with kcp-go v5.4.19 -----------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("fec", [True, False], ids=["fec10+3", "nofec"])
async def test_kcp_go_client_to_python_server(fec: bool) -> None:
    peer = require_kcp_peer()
    server = await echo_server(fec=fec)
    host, port = server.address
    shards = ["-ds", "10", "-ps", "3"] if fec else ["-ds", "0", "-ps", "0"]
    proc = await asyncio.create_subprocess_exec(
        str(peer),
        "client",
        "-addr",
        f"{host}:{port}",
        "-n",
        "300",
        "-size",
        "2000",
        *shards,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 25)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    assert out.decode().startswith("OK ")
    assert int(out.split()[1]) > 250_000
    assert server.statistics().dropped_malformed == 0
    server.close()
    await asyncio.wait_for(server.wait_closed(), 10)


@pytest.mark.asyncio
@pytest.mark.parametrize("fec", [True, False], ids=["fec10+3", "nofec"])
async def test_python_client_to_kcp_go_server(fec: bool) -> None:
    peer = require_kcp_peer()
    shards = ["-ds", "10", "-ps", "3"] if fec else ["-ds", "0", "-ps", "0"]
    proc = await asyncio.create_subprocess_exec(
        str(peer),
        "server",
        "-listen",
        "127.0.0.1:0",
        *shards,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode().split()
        assert line[0] == "LISTEN", line
        host, port = line[1].rsplit(":", 1)
        transport, client = await open_kcp_connection(host, int(port), Collector, fec=fec)
        assert isinstance(client, Collector)
        rng = random.Random(6)
        messages = [rng.randbytes(rng.randrange(1, 4000)) for _ in range(200)]
        framed = [struct.pack("<I", len(m)) + m for m in messages]
        for frame in framed:
            transport.write(frame)
        expected = b"".join(framed)
        assert len(expected) > 300_000
        assert await client.wait_for_size(len(expected), timeout=20) == expected
        transport.close()
        assert await asyncio.wait_for(client.lost, 5) is None
    finally:
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:
            proc.kill()
            await proc.wait()


# -- return routability: no session, and no more bytes back, before an address proves it
# receives (issue 14) --------------------------------------------------------------------------


class Greeter(asyncio.Protocol):
    """Like the gate: on connection_made, sends a few KB at once (GoWorld's boot entity)."""

    made: list[Greeter]

    def __init__(self) -> None:
        self.received = bytearray()
        Greeter.made.append(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(bytes(3000))

    def data_received(self, data: bytes) -> None:
        self.received += data


async def greeter_server(**config: object) -> KCPServer:
    Greeter.made = []
    settings: dict[str, object] = {"linger": 0.2, "log_interval": 3600.0, **config}
    return await start_kcp_server(Greeter, "127.0.0.1", 0, config=KCPConfig(**settings))  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_a_spoofed_flood_gets_back_at_most_what_it_sent_and_opens_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """1,000 one-datagram handshakes (each also "retransmitted" once, and a 600-byte first
    flight on some) from 250 sockets on 50 addresses that never read: nothing reaches the
    protocol, each address gets back at most the bytes it sent, the pending state stays under
    its caps and expires, drops are summarised in at most two log lines, and an honest client
    connects in the middle of it all."""
    caplog.set_level(logging.INFO, logger="goworld.net.kcp")
    server = await greeter_server(
        handshake_timeout=1.0, max_unverified=100, max_unverified_per_address=4
    )
    endpoint = server._endpoint  # type: ignore[attr-defined]
    flood_seen = [0]  # datagrams the server has read from the flood's addresses
    real_datagram_received = endpoint.datagram_received

    def counting(data: bytes, addr: tuple[str, int]) -> None:
        flood_seen[0] += addr[0] != "127.0.0.1"
        real_datagram_received(data, addr)

    endpoint.datagram_received = counting
    hosts = [f"127.0.0.{i}" for i in range(2, 52)]
    socks = [udp_socket(host) for host in hosts for _ in range(5)]
    sent: dict[tuple[str, int], int] = {}
    count = 0
    worst_pending_per_ip = 0
    try:
        for round_ in range(4):
            for n, s in enumerate(socks):
                conv = 1 + round_ * 1000 + n
                payload = b"\x02\x00\x00\x00\xd1\x07" if n % 3 else bytes(600)
                datagram = data_shard(kcp_segment(conv, payload=payload))
                for _ in range(2):  # the first flight and one retransmission
                    s.sendto(datagram, server.address)
                    sent[s.getsockname()] = sent.get(s.getsockname(), 0) + len(datagram)
                    count += 1
                if n % 10 == 9:  # let the server read before the socket buffer overflows
                    await wait_until(lambda: flood_seen[0] == count)  # noqa: B023
                    assert server.unverified <= 100
                    per_ip = endpoint._pending_per_ip.values()
                    worst_pending_per_ip = max(worst_pending_per_ip, *per_ip, 0)
            if round_ == 1:  # an honest client, in the middle of the flood
                transport, client = await connect(server)
                transport.write(b"ping")
                await client.wait_for_size(3000)
                await wait_until(lambda: bytes(Greeter.made[0].received) == b"ping")
                transport.abort()
        await wait_until(lambda: flood_seen[0] == count)
        stats = server.statistics()
        assert stats.unverified_not_kept > 0 and stats.unverified_kept > 0
        assert worst_pending_per_ip <= 4
        await wait_until(lambda: server.unverified == 0)  # they expire (handshake_timeout)

        # only the honest client's session ever reached a protocol
        assert len(Greeter.made) == 1
        stats = server.statistics()
        assert stats.handshakes_verified == 1 and stats.sessions_opened == 1
        assert stats.cookies_sent >= count + 1  # every flood datagram, and the honest one
        back: dict[tuple[str, int], int] = {}
        for s in socks:
            back[s.getsockname()] = sum(map(len, drain(s)))
        for address, received in sent.items():
            assert back[address] <= received, address
        for host in hosts:
            host_back = sum(v for (h, _), v in back.items() if h == host)
            assert 0 < host_back <= sum(v for (h, _), v in sent.items() if h == host)
        assert sum(back.values()) == 32 * count  # one 32-byte cookie per datagram, no more
    finally:
        for s in socks:
            s.close()
        server.close()
        await asyncio.wait_for(server.wait_closed(), 10)
    summaries = [r for r in caplog.records if r.getMessage().startswith("! KCP")]
    assert 1 <= len(summaries) <= 2, [r.getMessage() for r in summaries]
    assert "over the unverified caps" in " ".join(r.getMessage() for r in summaries)
    assert {r.levelno for r in summaries} == {logging.INFO}  # nothing was refused: no WARNING


@pytest.mark.asyncio
async def test_cookies_are_bound_to_address_conv_and_epoch() -> None:
    """Wrong guesses, another address's cookie, another conv's cookie and a cookie two epochs
    old open nothing; the previous epoch's cookie still does."""
    now = [10_000_000]
    server = await start_kcp_server(
        Greeter, "127.0.0.1", 0, clock=lambda: now[0], config=KCPConfig(linger=0.2)
    )
    Greeter.made = []
    a, b = udp_socket(), udp_socket("127.0.0.2")
    try:
        a.sendto(data_shard(kcp_segment(5)), server.address)
        ts, sn = await receive_cookie(a)
        assert 2**30 - 5000 <= (ts - now[0]) % 2**32 <= 2**30 + 2**29  # ahead: no RTT sample
        rng = random.Random(9)
        for _ in range(200):  # blind guesses
            guess = (rng.getrandbits(32), 0xC0000000 | rng.getrandbits(30))
            a.sendto(data_shard(ack_segment(5, *guess)), server.address)
        b.sendto(data_shard(ack_segment(5, ts, sn)), server.address)  # replayed elsewhere
        b.sendto(data_shard(ack_segment(6, ts, sn)), server.address)  # for another conv
        await wait_until(lambda: server.statistics().datagrams_received == 203)
        assert server.statistics().bad_cookies == 202
        drain(b)  # (a bad echo is answered like any first datagram: with a cookie)
        assert Greeter.made == [] and server.sessions == ()

        now[0] += 5000  # the next epoch: the cookie is still good
        a.sendto(data_shard(ack_segment(5, ts, sn)), server.address)
        await wait_until(lambda: len(Greeter.made) == 1)
        assert server.sessions[0].get_extra_info("peername") == a.getsockname()
        before = server.statistics()
        for _ in range(3):  # late duplicates of the echo go to the session, which ignores them
            a.sendto(data_shard(ack_segment(5, ts, sn)), server.address)
        a.sendto(data_shard(kcp_segment(5, sn=1, payload=b"after")), server.address)
        await wait_until(lambda: bytes(Greeter.made[0].received) == b"hiafter")
        after = server.statistics()
        assert after.datagrams_received == before.datagrams_received + 4
        assert after.cookies_sent == before.cookies_sent and len(server.sessions) == 1

        b.sendto(data_shard(kcp_segment(7)), server.address)
        old = await receive_cookie(b)
        now[0] += 10_000  # two epochs later: too old
        b.sendto(data_shard(ack_segment(7, *old)), server.address)
        await wait_until(lambda: server.statistics().bad_cookies == 203)
        assert len(Greeter.made) == 1
    finally:
        a.close()
        b.close()
        server.close()
        await asyncio.wait_for(server.wait_closed(), 10)


@pytest.mark.asyncio
async def test_data_sent_before_the_cookie_round_trip_is_kept_within_bounds() -> None:
    server = await greeter_server(max_unverified=1, unverified_buffer=100)
    a, b = udp_socket(), udp_socket("127.0.0.2")
    try:
        # kept: the session's protocol gets it with no retransmission
        a.sendto(data_shard(kcp_segment(1, payload=b"hello")), server.address)
        a.sendto(data_shard(kcp_segment(1, sn=1, payload=bytes(90))), server.address)  # over budget
        ts, sn = await receive_cookie(a)
        assert server.unverified == 1
        b.sendto(data_shard(kcp_segment(2, payload=b"lost")), server.address)  # over max_unverified
        cookie_b = await receive_cookie(b)
        assert server.statistics().unverified_not_kept == 1
        a.sendto(data_shard(ack_segment(1, ts, sn)), server.address)
        await wait_until(lambda: len(Greeter.made) == 1)
        assert bytes(Greeter.made[0].received) == b"hello"
        assert server.unverified == 0

        # not kept: the session opens empty and KCP's retransmission brings the data
        b.sendto(data_shard(ack_segment(2, *cookie_b)), server.address)
        await wait_until(lambda: len(Greeter.made) == 2)
        assert Greeter.made[1].received == b""
        b.sendto(data_shard(kcp_segment(2, payload=b"lost")), server.address)
        await wait_until(lambda: bytes(Greeter.made[1].received) == b"lost")
    finally:
        a.close()
        b.close()
        server.close()
        await asyncio.wait_for(server.wait_closed(), 10)


@pytest.mark.asyncio
async def test_sessions_are_capped_per_address(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="goworld.net.kcp")
    server = await greeter_server(max_sessions_per_address=3)
    socks = [udp_socket() for _ in range(5)]
    other = udp_socket("127.0.0.2")
    try:
        for conv, s in enumerate(socks[:3], 1):
            await handshake(s, server.address, conv)
        await wait_until(lambda: len(server.sessions) == 3)
        for conv, s in enumerate(socks[3:], 4):
            s.sendto(data_shard(kcp_segment(conv)), server.address)
        await wait_until(lambda: server.statistics().dropped_address_cap == 2)
        assert [drain(s) for s in socks[3:]] == [[], []]  # dropped silently: not even a cookie
        await handshake(other, server.address, 9)  # another address is not affected
        await wait_until(lambda: len(server.sessions) == 4)
        Greeter.made[0].transport.abort()  # a slot frees up
        socks[3].sendto(data_shard(kcp_segment(4)), server.address)
        await receive_cookie(socks[3])
    finally:
        for s in [*socks, other]:
            s.close()
        server.close()
        await asyncio.wait_for(server.wait_closed(), 10)
    summaries = [r for r in caplog.records if r.getMessage().startswith("! KCP")]
    assert 1 <= len(summaries) <= 2  # at once, or at the close (log_interval is an hour)
    assert all(r.levelno == logging.WARNING for r in summaries)
    assert "datagrams dropped: 3 sessions from one IP" in summaries[0].getMessage()


@pytest.mark.asyncio
async def test_kcp_go_client_connects_during_a_spoofed_flood() -> None:
    """The unverified caps are full of spoofed handshakes: kcp-go's client still gets its
    cookie, echoes it unmodified, and its session works."""
    peer = require_kcp_peer()
    server = await echo_server(
        config=KCPConfig(linger=0.5, max_unverified=10, max_unverified_per_address=2)
    )
    socks = [udp_socket(f"127.0.0.{2 + i // 4}") for i in range(40)]
    for n, s in enumerate(socks):
        s.sendto(data_shard(kcp_segment(100 + n)), server.address)
    await wait_until(lambda: server.statistics().datagrams_received == 40)
    assert server.unverified == 10
    host, port = server.address
    proc = await asyncio.create_subprocess_exec(
        str(peer), "client", "-addr", f"{host}:{port}", "-n", "100", "-size", "2000",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 25)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        for s in socks:
            s.close()
    assert proc.returncode == 0, err.decode()
    assert out.decode().startswith("OK ")
    stats = server.statistics()
    assert stats.handshakes_verified == 1 and len(Echo.instances) == 1
    server.close()
    await asyncio.wait_for(server.wait_closed(), 10)


@pytest.mark.parametrize(
    ("addr", "key"),
    [
        (("10.1.2.3", 5), "10.1.2.3"),
        (("::ffff:10.1.2.3", 5, 0, 0), "10.1.2.3"),  # a dual-stack socket's IPv4 client
        (("2001:db8:1:2:aaaa::1", 5, 0, 0), bytes.fromhex("20010db800010002")),
        (("2001:db8:1:2:bbbb::9", 7, 0, 0), bytes.fromhex("20010db800010002")),  # same /64
        (("fe80::1%lo", 5, 0, 1), bytes.fromhex("fe80000000000000")),
    ],
)
def test_per_address_caps_count_hosts_and_ipv6_prefixes(addr: tuple[object, ...], key: object) -> None:
    assert _ip(addr) == key


def test_config_refuses_a_useless_handshake_timeout_and_negative_caps() -> None:
    with pytest.raises(ValueError, match="handshake_timeout"):
        KCPConfig(handshake_timeout=0)
    with pytest.raises(ValueError, match="max_sessions_per_address"):
        KCPConfig(max_sessions_per_address=-1)


@pytest.mark.asyncio
async def test_the_cookie_echo_gives_ikcp_no_rtt_sample() -> None:
    """ikcp takes an RTT sample from any ACK whose ts is not in the future: the cookie's ts is
    2**30 ms ahead, so the echo leaves the retransmission timer at its 200 ms start (were it
    in the past, the sample would push the timeout to ikcp's 60 s maximum). Our clock, not
    the wall clock, decides: a retransmission must follow a 1 s step of it."""
    now = [10_000_000]
    server = await start_kcp_server(
        Greeter, "127.0.0.1", 0, clock=lambda: now[0], config=KCPConfig(linger=0.2)
    )
    Greeter.made = []
    s = udp_socket()
    loop = asyncio.get_running_loop()

    async def next_push_of_sn_0() -> None:
        while True:
            segment = (await asyncio.wait_for(loop.sock_recv(s, 2048), 10))[8:]
            _conv, cmd, _frg, _wnd, _ts, sn, _una, _len = struct.unpack_from("<IBBHIIII", segment)
            if cmd == 81 and sn == 0:
                return

    try:
        s.sendto(data_shard(kcp_segment(5)), server.address)
        ts, sn = await receive_cookie(s)
        now[0] += 4000  # an echo from late in the epoch: a past ts would sample a 4 s RTT
        s.sendto(data_shard(ack_segment(5, ts, sn)), server.address)
        await next_push_of_sn_0()  # the greeting, never acknowledged
        now[0] += 1000
        await next_push_of_sn_0()  # its retransmission
    finally:
        s.close()
        server.close()
        await asyncio.wait_for(server.wait_closed(), 10)
