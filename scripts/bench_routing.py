"""Routing throughput of one dispatcher process (not a test; prints figures).

Starts a real dispatcher (`python -m dispatcher`) and connects two synthetic games to it over
gRPC from this process (the same DispatcherLink real games use). Each game owns a set of
entities and floods CALL_ENTITY_METHOD envelopes at the other game's entities, keeping at most
--window calls in flight. Prints delivered messages/s, the dispatcher's CPU per message
(from /proc), and this process's CPU (the senders are Python too, on the same 2 cores).

Usage: .venv/bin/python scripts/bench_routing.py [--seconds 10] [--window 20000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from goworld.cluster.envelopes import Envelope, pack  # noqa: E402
from goworld.cluster.link import DispatcherLink  # noqa: E402
from goworld.proto import codec  # noqa: E402
from goworld.proto.ids import new_entity_id  # noqa: E402
from goworld.proto.msgtypes import MsgType  # noqa: E402
from goworld.testing import write_ini  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")
ARGS = codec.encode_args(("hello", 42))


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


class Game:
    def __init__(self, game_id: int, address: str, n_entities: int) -> None:
        self.game_id = game_id
        self.entities = [new_entity_id() for _ in range(n_entities)]
        self.received = 0
        self.link = DispatcherLink(
            1, address, hello=self.hello, on_message=self.on_message, reconnect=False
        )

    def hello(self) -> Envelope:
        info = {"reconnect": False, "restore": False, "ban_boot": True, "eids": self.entities}
        return Envelope(msgtype=MsgType.SET_GAME_ID, game_id=self.game_id, payload=pack(info))

    def on_message(self, dispatcher_id: int, env: Envelope) -> None:
        if env.msgtype == MsgType.CALL_ENTITY_METHOD:
            self.received += 1


async def flood(a: Game, b: Game, seconds: float, window: int) -> tuple[int, float]:
    """a and b call each other's entities for ``seconds``; returns (delivered, elapsed)."""
    sent = {a: 0, b: 0}
    stop = time.monotonic() + seconds
    burst = 256

    async def pump(src: Game, dst: Game) -> None:
        targets = dst.entities
        i = 0
        while time.monotonic() < stop:
            if sent[src] - dst.received >= window:
                await asyncio.sleep(0.001)
                continue
            send = src.link.send
            for _ in range(burst):
                send(Envelope(msgtype=MsgType.CALL_ENTITY_METHOD, entity_id=targets[i % len(targets)],
                              name="Hit", payload=ARGS))
                i += 1
            sent[src] += burst
            await asyncio.sleep(0)

    before = a.received + b.received
    t0 = time.monotonic()
    await asyncio.gather(pump(a, b), pump(b, a))
    elapsed = time.monotonic() - t0
    return a.received + b.received - before, elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--window", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ports = write_ini(Path(tmp), dispatchers=1, games=2, gates=1)
        ini = Path(tmp) / "goworld.ini"
        log = Path(tmp) / "dispatcher1.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "dispatcher", "-dispid", "1", "-configfile", str(ini)],
            cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(200):
                if log.exists() and "DISPATCHER STARTED" in log.read_text():
                    break
                await asyncio.sleep(0.05)
            address = f"127.0.0.1:{ports['dispatcher'][0]}"
            g1, g2 = Game(1, address, 1000), Game(2, address, 1000)
            for g in (g1, g2):
                g.link.start()
            await asyncio.gather(g1.link.connected.wait(), g2.link.connected.wait())
            await flood(g1, g2, 1.0, args.window)  # warm-up
            rates, disp_us, self_us = [], [], []
            for _ in range(args.repeat):
                d0, s0 = cpu_seconds(proc.pid), time.process_time()
                delivered, elapsed = await flood(g1, g2, args.seconds, args.window)
                d1, s1 = cpu_seconds(proc.pid), time.process_time()
                rates.append(delivered / elapsed)
                disp_us.append((d1 - d0) / delivered * 1e6)
                self_us.append((s1 - s0) / delivered * 1e6)
            print(f"# 1 dispatcher, 2 synthetic games in this process, {os.cpu_count()} cores, "
                  f"{args.seconds:g} s x {args.repeat}, window {args.window}")
            print(f"routed messages/s        {statistics.median(rates):,.0f}  "
                  f"({min(rates):,.0f}..{max(rates):,.0f})")
            print(f"dispatcher CPU per msg   {statistics.median(disp_us):.2f} us  "
                  f"(=> {1e6 / statistics.median(disp_us):,.0f} msgs/s per dispatcher core)")
            print(f"senders CPU per msg      {statistics.median(self_us):.2f} us (this process)")
            for g in (g1, g2):
                await g.link.close(flush_timeout=1.0)
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
