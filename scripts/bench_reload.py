"""Client-visible pause of `goworld reload` (not a test; prints figures).

Starts a 1 dispatcher + 1 game + 1 gate cluster (tests/apps/cluster_app), puts N extra AOI
entities into a space next to a probe client's avatar, then runs `goworld reload` while the
probe calls an echo RPC every 2 ms. Prints, per N: the freeze file size, how long the CLI took,
and the client-visible pause (the longest gap between two consecutive echo replies, i.e. last
reply before the reload to first reply after), median of --repeat reloads; then the median
(min..max) of each step the game logs during a reload (:data:`STEPS`). ``--json FILE`` also
writes the figures as JSON.

Usage: .venv/bin/python scripts/bench_reload.py [--sizes 1000,10000] [--repeat 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from goworld.client import GoWorldClient  # noqa: E402
from goworld.testing import ClusterRunner  # noqa: E402

APP = ROOT / "tests" / "apps" / "cluster_app"

#: step -> the game log line (game/__main__.py, game/freeze.py) that gives its milliseconds
STEPS = {
    "snapshot": r"snapshot of \d+ entities took (\d+) ms",  # hooks, AOI layout, records, pickle
    "write": r"frozen: .* \(written in (\d+) ms\)",
    "aoi_head_start": r"filled \d+ AOIs with \d+ entities in (\d+) ms",  # standby, meanwhile
    "read": r"read game\d+_freezed\.dat in (\d+) ms",
    "restore": r"restore took (\d+) ms",  # instances + spaces/AOI + hooks + gc
    "instances": r"restored \d+ entities: instances (\d+) ms",
    "spaces_aoi": r"spaces and AOI (\d+) ms",
    "reconnect": r"back on every dispatcher \((\d+) ms after the restore\)",
}


class LogSteps:
    """The step timings a reload adds to the game's log (read from where the last one ended)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size

    def take(self) -> dict[str, float]:
        with self.path.open("rb") as f:
            f.seek(self.offset)
            text = f.read().decode(errors="replace")
            self.offset = f.tell()
        found = {}
        for step, pattern in STEPS.items():
            m = re.search(pattern, text)
            if m:
                found[step] = float(m.group(1))
        return found


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} ({min(values):.0f}..{max(values):.0f})"


async def measure(runner: ClusterRunner, client: GoWorldClient) -> tuple[float, float]:
    replies: list[float] = []
    client.on_call = lambda call: replies.append(time.perf_counter()) if call.method == "OnEcho" else None
    stop = False

    async def pump() -> None:
        seq = 0
        while not stop:
            client.call_player("Echo", seq)
            seq += 1
            await asyncio.sleep(0.002)

    task = asyncio.create_task(pump())
    await asyncio.sleep(0.5)
    t0 = time.perf_counter()
    result = await asyncio.to_thread(runner.cli, "reload")
    cli_time = time.perf_counter() - t0
    if result.returncode != 0:
        raise SystemExit(f"reload failed:\n{result.stdout}\n{result.stderr}")
    await asyncio.sleep(1.0)
    stop = True
    await task
    client.on_call = None
    gaps = [b - a for a, b in zip(replies, replies[1:], strict=False)]
    return max(gaps), cli_time


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()
    sizes: list[dict[str, Any]] = []
    print("entities  freeze_file_KB  reload_cli_s  client_pause_ms (median, min..max)")
    for n in (int(x) for x in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            runner = ClusterRunner(Path(tmp), APP, dispatchers=1, games=1, gates=1)
            runner.start()
            try:
                runner.wait_for_log("created here", count=5)
                client = await GoWorldClient.connect("127.0.0.1", runner.gate(0, "tcp"), record=False)
                account = await client.wait_player("Account")
                client.call(account.id, "Login", "probe")
                await client.wait_player("Avatar")
                client.record = True
                client.call_player("EnterSpace", 1)
                await client.wait_call("OnEnteredSpace")
                client.call_player("Move", 5000.0, 5000.0)  # away from the crowd: no AOI traffic
                client.call_player("SpawnCrowd", n)
                await client.wait_call("OnSpawned", timeout=120)
                client.record = False
                pauses, clis = [], []
                log = LogSteps(Path(tmp) / "game1.log")
                steps: dict[str, list[float]] = {}
                for _ in range(args.repeat):
                    pause, cli = await measure(runner, client)
                    pauses.append(pause * 1000)
                    clis.append(cli)
                    for step, ms in log.take().items():
                        steps.setdefault(step, []).append(ms)
                size = (Path(tmp) / "game1_freezed.restored").stat().st_size / 1024
                print(
                    f"{n:8d}  {size:14.0f}  {statistics.median(clis):12.2f}  "
                    f"{statistics.median(pauses):8.0f} ({min(pauses):.0f}..{max(pauses):.0f})"
                )
                print("    steps, ms:", ", ".join(f"{k} {spread(v)}" for k, v in steps.items()))
                sizes.append({
                    "entities": n, "freeze_file_kb": size,
                    "reload_cli_s": statistics.median(clis), "reload_cli_s_all": clis,
                    "pause_ms": statistics.median(pauses), "pause_ms_min": min(pauses),
                    "pause_ms_max": max(pauses), "pause_ms_all": pauses, "steps_ms": steps,
                })
                sys.stdout.flush()
                await client.aclose()
            finally:
                runner.stop()
                runner.kill()
    if args.json:
        Path(args.json).write_text(json.dumps({"repeat": args.repeat, "sizes": sizes}, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
