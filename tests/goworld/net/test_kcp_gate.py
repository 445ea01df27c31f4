"""A real gate (tests/apps/cluster_app, 1+1+1, started by ``goworld start``) under spoofed KCP
handshakes: what GoWorld's Go bot sends first over KCP, from 300 sockets on 30 loopback
addresses (127.0.0.2...) that never read, as forged source addresses would not.

Outcomes only, nothing timed: no spoofed source reaches the gate (the gate logs exactly one
client: the honest one), each source gets back at most the bytes it sent (one 32-byte cookie
per 38-byte datagram), and an honest client over KCP, started after the flood, logs in. The
flood was sent to the same UDP socket before the honest client's first datagram, so the gate
has read all of it (but what the kernel dropped) by the time the honest client is in.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from goworld.bench.attacks import kcp_first_datagram as first_datagram
from goworld.testing import ClusterRunner, login

ROOT = Path(__file__).resolve().parents[3]
APP = ROOT / "tests" / "apps" / "cluster_app"
SOURCES = 300
ADDRESSES = 30


@pytest.mark.asyncio
async def test_spoofed_kcp_handshakes_reach_no_gate_and_get_back_no_more_than_they_sent(
    tmp_path: Path,
) -> None:
    runner = ClusterRunner(tmp_path, APP)
    runner.start()
    socks: list[socket.socket] = []
    client = None
    try:
        port = runner.gate(0, "kcp")
        for n in range(SOURCES):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            socks.append(s)
            s.bind((f"127.0.0.{2 + n % ADDRESSES}", 0))
            s.sendto(first_datagram(0x10000 + n), ("127.0.0.1", port))
            if n % 50 == 49:
                await asyncio.sleep(0.01)  # spare the gate's socket buffer (no outcome needs it)

        client = await login(runner, "honest", "kcp")

        connected = runner.grep(" connected over kcp")
        assert len(connected) == 1 and "127.0.0.1" in connected[0], connected
        sent = len(first_datagram(0))
        answered = 0
        for s in socks:
            s.setblocking(False)
            back = []
            while True:
                try:
                    back.append(s.recv(65536))
                except BlockingIOError:
                    break
            assert sum(map(len, back)) <= sent
            assert [len(d) for d in back] in ([], [32])  # the cookie, nothing else
            answered += len(back)
        assert answered > SOURCES // 2  # (the kernel may drop a datagram of the flood)
    finally:
        for s in socks:
            s.close()
        if client is not None:
            client.close()
        stop = runner.stop()
        runner.kill()
        assert stop.returncode == 0, stop.stdout + stop.stderr
