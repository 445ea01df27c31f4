"""A closed client that does not read is cut, not kept: real sockets on 127.0.0.1 against the
real TCP and WebSocket listeners (the dispatcher side is played by handle_dispatcher_message).

Before: a transport's close waits for its output to drain, so a peer that stopped reading
kept its ClientProxy, its address slot and up to 32 MiB of output for as long as it kept the
socket open (the "not reading" close and the idle-timeout close alike)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import struct
import time
from collections.abc import AsyncIterator

import pytest

import gate.client_proxy as client_proxy
from gate.client_proxy import ClientProxy
from gate.limits import GateLimits
from gate.listeners import start_tcp, start_websocket
from gate.service import GateService
from goworld.cluster.envelopes import Envelope
from goworld.proto.msgtypes import MsgType

HEARTBEAT = struct.pack("<I", 2) + struct.pack("<H", int(MsgType.HEARTBEAT_FROM_CLIENT))
CHUNK = struct.pack("<H", int(MsgType.CALL_ENTITY_METHOD_ON_CLIENT)) + b"x" * (256 * 1024)


def _silent_client(kind: str, port: int) -> socket.socket:
    """Connects, sends one heartbeat, then never reads (a small receive buffer)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    if kind == "tcp":
        s.sendall(HEARTBEAT)
        return s
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(HEARTBEAT))
    s.sendall(bytes([0x82, 0x80 | len(body)]) + mask + body)
    return s


def _reset(s: socket.socket) -> bool:
    """The gate reset the connection (what was unsent is dropped, nothing lingers)."""
    s.setblocking(False)
    try:
        while s.recv(1 << 20):
            pass
    except ConnectionResetError:
        return True
    except BlockingIOError:
        return False
    return True  # an orderly end after everything: not what is tested, but not kept either


async def _until(check: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.05)
    return False


@contextlib.asynccontextmanager
async def _silent(kind: str) -> AsyncIterator[tuple[GateService, ClientProxy, socket.socket]]:
    """A gate with the real ``kind`` listener and one client that never reads: (gate, its
    proxy, the client's socket); everything closed afterwards."""
    gate = GateService(1, num_dispatchers=1, send=lambda d, e: None, limits=GateLimits())
    server = await (start_tcp(gate, "127.0.0.1", 0) if kind == "tcp" else start_websocket(gate, "127.0.0.1", 0))
    port = next(iter(server.sockets)).getsockname()[1]
    sock = await asyncio.to_thread(_silent_client, kind, port)
    try:
        assert await _until(lambda: len(gate.clients) == 1, 5)
        (proxy,) = gate.clients.values()
        yield gate, proxy, sock
    finally:
        sock.close()
        server.close()


def _send(gate: GateService, proxy: ClientProxy, chunks: int) -> None:
    """``chunks`` client-bound packets of 256 KiB, as a game's traffic would come."""
    for _ in range(chunks):
        gate.handle_dispatcher_message(1, Envelope(
            msgtype=MsgType.CALL_ENTITY_METHOD_ON_CLIENT, client_id=proxy.client_id, payload=CHUNK))


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["tcp", "ws"])
async def test_a_client_closed_with_output_it_does_not_read_is_cut_after_the_linger(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_proxy, "CLOSE_LINGER", 0.3)
    async with _silent(kind) as (gate, proxy, sock):
        _send(gate, proxy, 16)  # 4 MiB: far more than the socket buffers take
        await asyncio.sleep(0.2)
        assert proxy.transport.get_write_buffer_size() > 0
        proxy.tell_and_close("idle", "no packet for 120 s", kind="idle timeout")  # as the sweep does
        assert await _until(lambda: not gate.clients and gate.addresses.total == 0, 5), gate.clients
        assert _reset(sock)


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["tcp", "ws"])
async def test_a_client_that_does_not_read_is_cut_at_once_past_the_output_bound(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_proxy, "MAX_PENDING_OUTPUT", 2 * 1024 * 1024)
    monkeypatch.setattr(client_proxy, "CLOSE_LINGER", 60.0)  # not this one's way out
    async with _silent(kind) as (gate, proxy, sock):
        for _ in range(40):  # 10 MiB
            if proxy.closed:
                break
            _send(gate, proxy, 1)
            await asyncio.sleep(0.02)
        assert proxy.closed and gate.summary.totals.get("not reading") == 1, gate.summary.totals
        assert await _until(lambda: not gate.clients and gate.addresses.total == 0, 5), gate.clients
        assert _reset(sock)


def _bad_packet(kind: str) -> bytes:
    packet = struct.pack("<I", 2) + struct.pack("<H", 999)  # an unknown message type
    if kind == "tcp":
        return packet
    mask = os.urandom(4)
    return bytes([0x82, 0x80 | len(packet)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(packet))


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["tcp", "ws"])
async def test_a_client_closed_for_a_bad_packet_while_not_reading_is_cut_and_counted_till_then(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The close comes from inside the read (a bad packet): the WebSocket handler's loop ends
    at once, yet the connection (and its address slot) lasts until the socket is really gone."""
    monkeypatch.setattr(client_proxy, "CLOSE_LINGER", 1.0)
    async with _silent(kind) as (gate, proxy, sock):
        _send(gate, proxy, 16)
        await asyncio.sleep(0.2)
        sock.sendall(_bad_packet(kind))
        assert await _until(lambda: proxy.closed, 5)
        await asyncio.sleep(0.3)
        assert gate.addresses.total == 1  # its socket still holds a place while it lingers
        assert await _until(lambda: not gate.clients and gate.addresses.total == 0, 5), gate.clients
        assert _reset(sock)
