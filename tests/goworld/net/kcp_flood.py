"""A test tool: spoofable one-datagram KCP handshakes against a gate, and what came back.

Each "session" is a UDP socket bound to one of ``--addresses`` loopback addresses
(127.0.0.2, 127.0.0.3, ...) that sends exactly what GoWorld's Go bot sends first over KCP (an
FEC data shard holding a KCP PUSH, sn 0, random conv, of the 2001 heartbeat: 38 bytes) and then
never reads nor answers, as a forged source address would not. After ``--wait`` seconds every
socket's queue is read: the bytes that came back are what a victim owning that address would
have received. Each socket asks for a large receive buffer so nothing is dropped at our end.

    .venv/bin/python tests/goworld/net/kcp_flood.py 127.0.0.1 14001 --sessions 1000 --wait 25

prints one JSON object (totals, the worst ratio per socket and per address, how many sockets
got anything back). ``--cluster APP`` instead starts a 1+1+1 cluster of that app in a temporary
directory (``goworld start``, as the tests do), floods its gate's KCP port, adds how many
clients the gate saw connect (each one is a boot entity on the game) and stops it:

    .venv/bin/python tests/goworld/net/kcp_flood.py --cluster examples/chatroom_demo

Linux only (any 127.0.0.0/8 address is local).
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from goworld.bench.attacks import bytes_waiting
from goworld.bench.attacks import kcp_first_datagram as first_datagram


def flood(host: str, port: int, sessions: int, addresses: int, wait: float) -> dict[str, Any]:
    rng = random.Random()
    socks: list[socket.socket] = []
    sent: dict[tuple[str, int], int] = {}
    try:
        for n in range(sessions):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            socks.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            s.bind((f"127.0.0.{2 + n % addresses}", 0))
            datagram = first_datagram(rng.getrandbits(32))
            s.sendto(datagram, (host, port))
            sent[s.getsockname()] = len(datagram)
            if n % 50 == 49:
                time.sleep(0.01)  # do not overflow the server's socket buffer
        time.sleep(wait)
        back = bytes_waiting(socks)
    finally:
        for s in socks:
            s.close()
    per_ip_sent: dict[str, int] = {}
    per_ip_back: dict[str, int] = {}
    for address, n in sent.items():
        per_ip_sent[address[0]] = per_ip_sent.get(address[0], 0) + n
        per_ip_back[address[0]] = per_ip_back.get(address[0], 0) + back[address]
    return {
        "sessions": sessions,
        "addresses": addresses,
        "wait_s": wait,
        "bytes_sent": sum(sent.values()),
        "bytes_back": sum(back.values()),
        "sockets_answered": sum(1 for v in back.values() if v),
        "worst_ratio_per_socket": max(back[a] / sent[a] for a in sent),
        "worst_ratio_per_address": max(per_ip_back[h] / per_ip_sent[h] for h in per_ip_sent),
    }


ROLES = ("dispatcher", "game", "gate")


def _rss_kib(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().split()[0])
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def flood_cluster(app: Path, sessions: int, addresses: int, wait: float) -> dict[str, Any]:
    from goworld.testing import ClusterRunner

    with tempfile.TemporaryDirectory() as tmp:
        runner = ClusterRunner(Path(tmp), app.resolve())
        runner.start()
        try:
            rss = {role: _rss_kib(Path(tmp) / ".goworld" / f"{role}1.pid") for role in ROLES}
            result = flood("127.0.0.1", runner.gate(0, "kcp"), sessions, addresses, wait)
            result["gate_clients_connected"] = len(runner.grep(" connected over kcp"))
            for role in ROLES:
                result[f"{role}_rss_kib_before_after"] = [
                    rss[role],
                    _rss_kib(Path(tmp) / ".goworld" / f"{role}1.pid"),
                ]
        finally:
            runner.stop()
            runner.kill()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("host", nargs="?", default="127.0.0.1")
    parser.add_argument("port", type=int, nargs="?")
    parser.add_argument("--cluster", type=Path, help="start this app and flood its gate")
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--addresses", type=int, default=50)
    parser.add_argument("--wait", type=float, default=25.0)
    args = parser.parse_args()
    if args.cluster is not None:
        result = flood_cluster(args.cluster, args.sessions, args.addresses, args.wait)
    elif args.port is None:
        parser.error("give HOST PORT, or --cluster APP")
    else:
        result = flood(args.host, args.port, args.sessions, args.addresses, args.wait)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
