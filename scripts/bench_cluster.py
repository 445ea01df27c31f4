"""Cluster load benchmark (not a test; prints figures).

Starts a cluster with the CLI (tests/apps/cluster_app on SQLite) and ramps N Python bots. Every
bot connects over TCP, logs in, enters one of a few AOI spaces (about --per-space bots each),
turns on client syncing, moves at 10 Hz (SYNC packets, fanned out to neighbours as 1502) and
calls an echo RPC once a second. For each step it prints: bots connected, echo round-trip
p50/p99, messages/s through each dispatcher (from its stats log), CPU% and RSS of every process
(cluster processes and the bot process), over a measuring window.

Usage: .venv/bin/python scripts/bench_cluster.py [--steps 50,100,200] [--window 10]
       [--layout 1,1,1] [--per-space 50]

The bots share this machine's 2 cores with the cluster, so the figures are a floor.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from goworld.bench.procstat import cpu_rss  # noqa: E402
from goworld.client import GoWorldClient  # noqa: E402
from goworld.testing import ClusterRunner  # noqa: E402

APP = ROOT / "tests" / "apps" / "cluster_app"


class Bot:
    def __init__(self, index: int, port: int, kind: int) -> None:
        self.index = index
        self.port = port
        self.kind = kind
        self.client: GoWorldClient | None = None
        self.rtts: list[float] = []
        self.sent: dict[int, float] = {}
        self.failed = False

    async def run(self, stop: asyncio.Event, ready: asyncio.Event) -> None:
        try:
            c = self.client = await GoWorldClient.connect("127.0.0.1", self.port)
            account = await c.wait_player("Account", timeout=60)
            c.call(account.id, "Login", f"bench{self.index}")
            player = await c.wait_player("Avatar", timeout=60)
            c.call_player("EnterSpace", self.kind)
            await c.wait_call("OnEnteredSpace", timeout=60)
            c.call_player("EnableSync", True)
            c.record = False  # no history from here on: a bot runs for minutes
            c.calls.clear()
            c.log.clear()
            c.on_call = self._on_call
            ready.set()
            x, z = random.uniform(-50, 50), random.uniform(-50, 50)
            tick, seq = 0, 0
            while not stop.is_set() and not c.is_closed:
                await asyncio.sleep(0.1)
                tick += 1
                x += random.uniform(-1, 1)
                z += random.uniform(-1, 1)
                c.sync_position(player.id, x, 0.0, z, random.uniform(0, 360))
                if tick % 10 == self.index % 10:
                    seq += 1
                    self.sent[seq] = time.perf_counter()
                    c.call_player("Echo", seq)
        except Exception:
            self.failed = True
            ready.set()

    def _on_call(self, call: object) -> None:
        if getattr(call, "method", None) == "OnEcho":
            t0 = self.sent.pop(call.args[0], None)  # type: ignore[attr-defined]
            if t0 is not None:
                self.rtts.append(time.perf_counter() - t0)


def dispatcher_rates(runner: ClusterRunner) -> list[str]:
    rates = []
    for path in sorted(runner.dir.glob("dispatcher*.log")):
        found = re.findall(r"\(([0-9]+)/s\)", path.read_text())
        rates.append(f"{path.stem}={found[-1] if found else '0'}/s")
    return rates


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="50,100,200")
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--layout", default="1,1,1", help="dispatchers,games,gates")
    parser.add_argument("--per-space", type=int, default=50)
    args = parser.parse_args()
    d, g, t = (int(v) for v in args.layout.split(","))
    steps = [int(s) for s in args.steps.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        runner = ClusterRunner(Path(tmp), APP, dispatchers=d, games=g, gates=t)
        runner.start()
        try:
            runner.wait_for_log("created here", count=5)
            pids = {
                p.stem: int(p.read_text()) for p in sorted((Path(tmp) / ".goworld").glob("*.pid"))
            }
            pids["bots"] = os.getpid()
            print(f"# cluster {d}+{g}+{t}, {os.cpu_count()} cores; window {args.window:.0f} s per step")
            print("bots  ok  rtt_p50_ms rtt_p99_ms  dispatcher msgs/s           " +
                  "  ".join(f"{n}:cpu%/rssMB" for n in pids))
            bots: list[Bot] = []
            stop = asyncio.Event()
            tasks = []
            for n in steps:
                while len(bots) < n:
                    i = len(bots)
                    bot = Bot(i, runner.gate(i % t, "tcp"), 1 + i // args.per_space)
                    ready = asyncio.Event()
                    bots.append(bot)
                    tasks.append(asyncio.create_task(bot.run(stop, ready)))
                    await ready.wait()
                await asyncio.sleep(2.0)
                for b in bots:
                    b.rtts.clear()
                before = {k: cpu_rss(pid) for k, pid in pids.items()}
                t0 = time.monotonic()
                await asyncio.sleep(args.window)
                elapsed = time.monotonic() - t0
                after = {k: cpu_rss(pid) for k, pid in pids.items()}
                rtts = sorted(r for b in bots for r in b.rtts)
                ok = sum(1 for b in bots if not b.failed and b.client and not b.client.is_closed)
                p50 = statistics.median(rtts) * 1000 if rtts else float("nan")
                p99 = rtts[int(len(rtts) * 0.99) - 1] * 1000 if rtts else float("nan")
                usage = "  ".join(
                    f"{100 * (after[k][0] - before[k][0]) / elapsed:5.1f}/{after[k][1] / 2**20:5.1f}"
                    for k in pids
                )
                print(f"{n:4d} {ok:4d} {p50:10.2f} {p99:10.2f}  {' '.join(dispatcher_rates(runner)):26} {usage}")
                sys.stdout.flush()
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.gather(*(b.client.aclose() for b in bots if b.client), return_exceptions=True)
        finally:
            runner.stop()
            runner.kill()


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
