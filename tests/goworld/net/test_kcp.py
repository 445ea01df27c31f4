"""Tests for goworld.net.kcp and goworld.net.fec: Python<->Python, interop with kcp-go, hostile
input, clock wraparound.

The kcp-go peer (tests/goworld/net/kcp_peer, a test tool) is built with ``go build`` through the
Go module proxy and cached in ~/.cache/goworld-test/ under a hash of its sources and the Go
version. What happens when it cannot be built is decided by :func:`require_kcp_peer` alone.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import random
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path

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
from goworld.net.kcp import KCPConfig, KCPServer, open_kcp_connection, start_kcp_server

KCP_PEER_DIR = Path(__file__).parent / "kcp_peer"
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "goworld-test"


# -- the Go peer ---------------------------------------------------------------------------------


#: Debian's golang-github-xtaci-kcp-dev (kcp-go v5.6.1, same FEC framing as GoWorld's
#: v5.4.19) installs the sources here; scripts/install-test-deps installs it.
DEBIAN_GOCODE = Path("/usr/share/gocode")
DEBIAN_KCP_GO = DEBIAN_GOCODE / "src/github.com/xtaci/kcp-go"


def _build_with_debian_sources(go: str, tmp: Path) -> tuple[bool, str]:
    """GOPATH build against Debian's packaged kcp-go (its import path gets its /v5 alias)."""
    gopath = tmp / "gopath"
    alias = gopath / "src/github.com/xtaci/kcp-go/v5"
    alias.parent.mkdir(parents=True)
    alias.symlink_to(DEBIAN_KCP_GO)
    src = gopath / "src/kcp_peer"
    src.mkdir(parents=True)
    shutil.copy2(KCP_PEER_DIR / "main.go", src / "main.go")
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": f"{gopath}:{DEBIAN_GOCODE}", "GOFLAGS": ""}
    return _go_build(go, src, tmp / "kcp_peer", env, "Debian's golang-github-xtaci-kcp-dev")


def _build_with_modules(go: str, tmp: Path) -> tuple[bool, str]:
    src = tmp / "src"
    shutil.copytree(KCP_PEER_DIR, src)
    env = {**os.environ, "GOFLAGS": "-mod=mod -buildvcs=false"}
    return _go_build(go, src, tmp / "kcp_peer", env, "github.com/xtaci/kcp-go/v5 v5.4.19 (Go modules)")


def _go_build(go: str, src: Path, out: Path, env: dict[str, str], origin: str) -> tuple[bool, str]:
    try:
        proc = subprocess.run(
            [go, "build", "-o", str(out), "."],
            cwd=src, env=env, capture_output=True, text=True, timeout=600, check=False,
        )
    except subprocess.TimeoutExpired:
        return False, f"building the kcp-go test peer from {origin} timed out"
    if proc.returncode != 0:
        return False, (
            f"could not build the kcp-go test peer from {origin}; `go build` said:\n"
            f"{proc.stderr.strip()[-3000:]}"
        )
    return True, ""


@functools.cache
def _build_kcp_peer() -> tuple[Path | None, str]:
    """Build (or find in the cache) the kcp-go peer: (path, "") or (None, why not)."""
    go = shutil.which("go")
    if go is None:
        return None, "the Go toolchain is not on PATH; it is needed to build the kcp-go test peer"
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "main.go"):
        path = KCP_PEER_DIR / name
        if path.exists():
            digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    version = subprocess.run([go, "version"], capture_output=True, text=True, check=False).stdout
    digest.update(version.encode())
    digest.update(str(DEBIAN_KCP_GO.is_dir()).encode())
    target = CACHE_DIR / f"kcp_peer-{digest.hexdigest()[:16]}"
    if target.exists():
        return target, ""
    with tempfile.TemporaryDirectory() as tmp:
        if DEBIAN_KCP_GO.is_dir():
            ok, why = _build_with_debian_sources(go, Path(tmp))
        else:
            ok, why = _build_with_modules(go, Path(tmp))
        if not ok:
            return None, why
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".{os.getpid()}.tmp")
        shutil.copy2(Path(tmp) / "kcp_peer", partial)
        os.replace(partial, target)
    return target, ""


def require_kcp_peer() -> Path:
    """The kcp-go peer, or a FAILED test saying why it could not be built.

    scripts/install-test-deps installs Debian's kcp-go sources, so a missing peer is a broken
    setup, not a reason to skip. (The Go module proxy here refuses github.com/xtaci/kcp-go/v5,
    so the module build is only a fallback for machines without Debian's package.)
    """
    path, reason = _build_kcp_peer()
    if path is None:
        pytest.fail(reason, pytrace=False)
    return path


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

    # the session cap holds against a flood of valid first segments from new addresses
    flood = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(20)]
    for n, s in enumerate(flood):
        s.sendto(data_shard(kcp_segment(1000 + n)), server.address)
    await asyncio.sleep(0.2)
    assert len(server.sessions) == 5
    assert server.statistics().dropped_session_cap == 15

    # a new conv from a known address replaces its session (sn 0), a straggler (sn > 0) does not
    first = Echo.instances[0]
    flood[0].sendto(data_shard(kcp_segment(77, sn=5)), server.address)
    await asyncio.sleep(0.05)
    assert not first.lost.done()
    flood[0].sendto(data_shard(kcp_segment(77)), server.address)
    assert isinstance(await asyncio.wait_for(first.lost, 2), ConnectionResetError)
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
