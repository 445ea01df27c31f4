"""Gate fan-out: filtered calls (1501) and position syncs (1502) to N clients (not a test).

Starts a 1 dispatcher + 1 game + 1 gate cluster (tests/apps/cluster_app) and N clients that log
in, join one team (a filter prop) and one AOI space. Then, for --seconds each:
1. filtered calls: one client sends TeamChat as fast as the replies come back (at most
   --inflight outstanding); every call goes to all N clients as one 1501 packet each;
2. position syncs: --movers clients move at 10 Hz with client syncing on; the game sends their
   positions to every neighbour, which the gate splits into one 1502 packet per client per batch.
Prints packets delivered to clients per second and the gate's CPU per packet (from /proc);
``--json FILE`` also writes the figures as JSON.

Usage: .venv/bin/python scripts/bench_fanout.py [--clients 500] [--seconds 10] [--movers 50]
       [--inflight 4] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from goworld.bench.procstat import cpu_seconds  # noqa: E402
from goworld.client import GoWorldClient  # noqa: E402
from goworld.proto.msgtypes import MsgType  # noqa: E402
from goworld.testing import ClusterRunner  # noqa: E402

APP = ROOT / "tests" / "apps" / "cluster_app"


class Counter:
    def __init__(self) -> None:
        self.calls = 0
        self.syncs = 0


async def join(port: int, i: int, counter: Counter) -> GoWorldClient:
    c = await GoWorldClient.connect("127.0.0.1", port)
    account = await c.wait_player("Account", timeout=60)
    c.call(account.id, "Login", f"fan{i}")
    await c.wait_player("Avatar", timeout=60)
    c.call_player("JoinTeam", "all")
    c.call_player("EnterSpace", 1)
    await c.wait_call("OnEnteredSpace", timeout=60)
    c.record = False
    c.calls.clear()
    c.log.clear()

    def on_call(call: object) -> None:
        if getattr(call, "method", "") == "OnTeamChat":
            counter.calls += 1

    c.on_call = on_call
    original = c._handle

    def handle(payload: bytes) -> None:
        if payload[0] | (payload[1] << 8) == MsgType.SYNC_POSITION_YAW_ON_CLIENTS:
            counter.syncs += 1
        original(payload)

    c._handle = handle  # type: ignore[method-assign]
    return c


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--movers", type=int, default=50)
    parser.add_argument("--inflight", type=int, default=4)
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        runner = ClusterRunner(Path(tmp), APP, dispatchers=1, games=1, gates=1)
        runner.start()
        clients: list[GoWorldClient] = []
        try:
            runner.wait_for_log("created here", count=5)
            gate = int((Path(tmp) / ".goworld" / "gate1.pid").read_text())
            port = runner.gate(0, "tcp")
            counter = Counter()
            for start in range(0, args.clients, 100):
                clients += await asyncio.gather(
                    *(join(port, i, counter) for i in range(start, min(start + 100, args.clients)))
                )
            await asyncio.sleep(2.0)
            n = len(clients)

            # 1. filtered calls to everyone
            sender = clients[0]
            counter.calls = 0
            c0, t0 = cpu_seconds(gate), time.monotonic()
            sent = 0
            while time.monotonic() - t0 < args.seconds:
                if sent * n - counter.calls < args.inflight * n:
                    sender.call_player("TeamChat", "all", "x")
                    sent += 1
                await asyncio.sleep(0)
            await asyncio.sleep(0.5)
            elapsed, used = time.monotonic() - t0, cpu_seconds(gate) - c0
            figures.update({
                "clients": n, "calls_sent": sent, "filtered_packets": counter.calls,
                "filtered_seconds": elapsed, "filtered_packets_per_s": counter.calls / elapsed,
                "gate_us_per_filtered_packet": used / max(counter.calls, 1) * 1e6,
            })
            print(f"clients                      {n}")
            print(f"filtered packets/s           {figures['filtered_packets_per_s']:,.0f}")
            print(f"gate CPU per filtered packet {figures['gate_us_per_filtered_packet']:.2f} us")

            # 2. position syncs from movers, fanned out to every client in the space
            movers = clients[: args.movers]
            for c in movers:
                c.call_player("EnableSync", True)
            await asyncio.sleep(1.0)
            counter.syncs = 0
            c0, t0 = cpu_seconds(gate), time.monotonic()
            while time.monotonic() - t0 < args.seconds:
                for c in movers:
                    p = c.player
                    if p is not None:
                        c.sync_position(p.id, random.uniform(-40, 40), 0.0, random.uniform(-40, 40), 0.0)
                await asyncio.sleep(0.1)
            elapsed, used = time.monotonic() - t0, cpu_seconds(gate) - c0
            figures.update({
                "movers": len(movers), "sync_packets": counter.syncs, "sync_seconds": elapsed,
                "sync_packets_per_s": counter.syncs / elapsed,
                "gate_us_per_sync_packet": used / max(counter.syncs, 1) * 1e6,
            })
            print(f"movers                       {len(movers)} at 10 Hz")
            print(f"sync packets/s               {figures['sync_packets_per_s']:,.0f}")
            print(f"gate CPU per sync packet     {figures['gate_us_per_sync_packet']:.2f} us")
        finally:
            await asyncio.gather(*(c.aclose() for c in clients), return_exceptions=True)
            runner.stop()
            runner.kill()
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
