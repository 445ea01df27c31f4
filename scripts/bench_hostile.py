"""Hostile clients against examples/chatroom_demo, honest players measured (issue 14; not a test).

For each attack of goworld.bench.attacks: a fresh 1 dispatcher + 1 game + 1 gate cluster of
examples/chatroom_demo (SQLite, the shipped defaults for every limit) started by ``goworld
start``; four honest players from 127.0.0.1 chat every 0.5 s for --before seconds (the
baseline), then one attacker process from 127.0.0.2 attacks for --seconds while they go on;
a newcomer logs in half-way through. Reports, per attack: the honest round trips (p50/p99
before, during and after), honest lines lost, the RSS of each process before and at its peak,
how much the logs grew, and what the attacker saw (sent, processed, closed). ``stalled_game_*``
hold the game with SIGSTOP for the attack window (and always send SIGCONT).

Usage: .venv/bin/python scripts/bench_hostile.py [--quick] [--only a,b] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from goworld.bench import attacks  # noqa: E402
from goworld.testing import ClusterRunner  # noqa: E402

APP = ROOT / "examples" / "chatroom_demo"

#: seconds of attack and options, (quick, full)
PLANS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "chat_flood": ({"seconds": 5}, {"seconds": 20}),
    "refused_method_flood": ({"seconds": 5}, {"seconds": 15}),
    "partial_frames_tcp": ({"seconds": 8}, {"seconds": 20}),
    "partial_frames_ws": ({"seconds": 8}, {"seconds": 20}),
    "idle_connections": ({"seconds": 10, "conns": 2000}, {"seconds": 30, "conns": 19_990}),
    "big_args_unknown_entity": ({"seconds": 6, "calls": 400}, {"seconds": 15, "calls": 400}),
    "login_flood": ({"seconds": 5}, {"seconds": 10}),
    "kcp_spoof": ({"seconds": 8, "sessions": 1000}, {"seconds": 20, "sessions": 1000}),
    "sync_other_entity": ({"seconds": 5}, {"seconds": 10}),
    "stalled_game_calls": ({"seconds": 5}, {"seconds": 10}),
    "stalled_game_many_clients": ({"seconds": 5, "clients": 50}, {"seconds": 10, "clients": 50}),
}


async def one(name: str, quick: bool) -> dict[str, Any]:
    plan = dict(PLANS[name][0 if quick else 1])
    seconds = float(plan.pop("seconds"))
    with tempfile.TemporaryDirectory(prefix="goworld-hostile-") as tmp:
        runner = ClusterRunner(Path(tmp), APP, dispatchers=1, games=1, gates=1)
        os.environ.update(attacks.CLUSTER_ENV)  # the processes goworld start makes inherit it
        runner.start()
        try:
            outcome = await attacks.run_attack(
                name, cluster_dir=Path(tmp), host="127.0.0.1", tcp_port=runner.gate(0, "tcp"),
                ws_port=runner.gate(0, "ws"), seconds=seconds, before=3.0 if quick else 5.0,
                after=2.0 if quick else 5.0, drain=30.0 if quick else 60.0, options=plan,
                stall="game1" if name.startswith("stalled_game") else None,
            )
            summary = outcome.summary()
            summary["kcp_clients_on_gate"] = len(runner.grep(" connected over kcp"))
            summary["warning_lines"] = len(runner.grep("WARNING"))
            summary["sync_refused_lines"] = len(runner.grep("position sync refused"))
            summary["options"] = plan
            return summary
        finally:
            runner.stop()
            runner.kill()


def _line(s: dict[str, Any]) -> str:
    growth = " ".join(f"{k} +{v:g}" for k, v in s["rss_growth_mb"].items())
    return (f"{s['attack']:24s} p50/p99 before {s['p50_before_ms']:.1f}/{s['p99_before_ms']:.1f} ms "
            f"during {s['p50_during_ms']:.1f}/{s['p99_during_ms']:.1f} ms, lost {s['honest_lost']}/"
            f"{s['honest_sent']}, RSS MB {growth}, logs +{s['log_growth_mb']:g} MB, newcomer "
            f"{s['newcomer']}\n    attacker: {json.dumps(s['attacker'])}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="", help="comma-separated attack names")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n] or list(PLANS)
    unknown = [n for n in names if n not in PLANS]
    if unknown:
        parser.error(f"unknown attacks {unknown}; known: {', '.join(PLANS)}")
    results = []
    for name in names:
        t0 = time.monotonic()
        try:
            s = await one(name, args.quick)
        except Exception as exc:  # one attack that cannot run must not lose the others' figures
            s = {"attack": name, "error": f"{type(exc).__name__}: {exc}"[:1000]}
            print(f"{name:24s} FAILED: {s['error']}", flush=True)
        else:
            print(_line(s), flush=True)
        s["wall_s"] = round(time.monotonic() - t0, 1)
        results.append(s)
    if args.json:
        Path(args.json).write_text(json.dumps({"quick": args.quick, "attacks": results}, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
