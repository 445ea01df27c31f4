"""Memory per connected client (gate) and per entity (game) (not a test; prints figures).

Starts a 1 dispatcher + 1 game + 1 gate cluster (tests/apps/cluster_app), then
1. opens --clients idle TCP connections (each gets its boot Account, then does nothing) and
   reports the gate's RSS growth per client (and the game's, which holds the Account entities);
2. spawns --entities simple AOI entities in one space (cluster_app's Dummy: three attributes,
   one of them a small nested map) and reports the game's RSS growth per entity.
RSS is read from /proc after a short settle; per-item figures are (after - before) / count.
``--json FILE`` also writes the figures as JSON.

Usage: .venv/bin/python scripts/bench_memory.py [--clients 2000] [--entities 10000] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from goworld.bench.procstat import rss_bytes as rss  # noqa: E402
from goworld.client import GoWorldClient  # noqa: E402
from goworld.testing import ClusterRunner  # noqa: E402

APP = ROOT / "tests" / "apps" / "cluster_app"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--entities", type=int, default=10000)
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        runner = ClusterRunner(Path(tmp), APP, dispatchers=1, games=1, gates=1)
        runner.start()
        clients: list[GoWorldClient] = []
        try:
            runner.wait_for_log("created here", count=5)
            pids = {p.stem: int(p.read_text()) for p in (Path(tmp) / ".goworld").glob("*.pid")}
            gate, game = pids["gate1"], pids["game1"]
            port = runner.gate(0, "tcp")
            probe = await GoWorldClient.connect("127.0.0.1", port, record=False)
            await probe.wait_player("Account")
            await asyncio.sleep(1.0)
            gate0, game0 = rss(gate), rss(game)
            for start in range(0, args.clients, 200):
                batch = await asyncio.gather(
                    *(GoWorldClient.connect("127.0.0.1", port, record=False)
                      for _ in range(min(200, args.clients - start)))
                )
                await asyncio.gather(*(c.wait_player("Account", timeout=60) for c in batch))
                clients += batch
            await asyncio.sleep(2.0)
            gate1, game1 = rss(gate), rss(game)
            n = len(clients)
            figures.update({
                "idle_clients": n,
                "gate_rss_before_clients": gate0, "gate_rss_after_clients": gate1,
                "game_rss_before_clients": game0, "game_rss_after_clients": game1,
                "gate_bytes_per_client": (gate1 - gate0) / n,
                "game_bytes_per_client": (game1 - game0) / n,
            })
            print(f"idle clients            {n}")
            print(f"gate bytes per client   {figures['gate_bytes_per_client']:,.0f}")
            print(f"game bytes per client   {figures['game_bytes_per_client']:,.0f} "
                  "(its boot Account entity)")

            account = probe.player
            assert account is not None
            probe.call(account.id, "Login", "memory-probe")
            await probe.wait_player("Avatar")
            probe.record = True
            probe.call_player("EnterSpace", 1)
            await probe.wait_call("OnEnteredSpace")
            probe.call_player("Move", 1e6, 1e6)  # far from the crowd: no AOI traffic to the probe
            await asyncio.sleep(1.0)
            before = rss(game)
            probe.call_player("SpawnCrowd", args.entities)
            await probe.wait_call("OnSpawned", timeout=300)
            await asyncio.sleep(2.0)
            after = rss(game)
            figures.update({
                "entities": args.entities,
                "game_rss_before_entities": before, "game_rss_after_entities": after,
                "game_bytes_per_entity": (after - before) / args.entities,
            })
            print(f"entities                {args.entities}")
            print(f"game bytes per entity   {figures['game_bytes_per_entity']:,.0f}")
        finally:
            await asyncio.gather(*(c.aclose() for c in clients), return_exceptions=True)
            runner.stop()
            runner.kill()
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
