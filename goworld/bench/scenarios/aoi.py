"""AOI: one space, ms per tick for 1k / 5k / 10k moves, against brute force (scripts/bench_aoi.py)."""

from __future__ import annotations

import re

from goworld.bench.result import BenchError, Result
from goworld.bench.scenarios import _script

TITLE = "AOI (one space, ~20 neighbours each)"
TARGET_MS = 10.0  # issue 8: 10k entities, 1k moves per tick in <= 10 ms
_TICK = re.compile(
    r"^\s+(?P<mode>walk \+-\d+|teleport):\s+(?P<k>\d+) moves/tick:\s+(?P<ms>[\d.]+) ms/tick"
    r".*?, (?P<us>[\d.]+) us/move, .*?, (?P<epm>[\d.]+) events/move, (?P<eps>\d+)k events/s"
)
_REF = re.compile(
    r"^\s+(?P<mode>walk \+-\d+|teleport): (?P<k>\d+) moves agree .*?brute force (?P<brute>\d+) "
    r"us/move, grid (?P<grid>[\d.]+) us/move: (?P<x>\d+)x"
)
_GRID = re.compile(r"^GridAOI: (?P<n>\d+) entities")


def run(quick: bool) -> Result:
    args = ["--quick", "--entities", "2000"] if quick else ["--entities", "10000"]
    out = _script.run("bench_aoi.py", *args, timeout=600)
    rows, figures, notes = [], {}, []
    entities = 0
    for line in out.splitlines():
        if m := _GRID.match(line):
            entities = int(m["n"])
        elif m := _TICK.match(line):
            mode = "walk" if m["mode"].startswith("walk") else "teleport"
            ms, eps = float(m["ms"]), float(m["eps"]) * 1000
            rows.append([m["mode"], int(m["k"]), ms, float(m["us"]), round(eps)])
            figures[f"{mode}.{m['k']}.ms_per_tick"] = ms
            figures[f"{mode}.{m['k']}.events_per_s"] = eps
        elif m := _REF.match(line):
            mode = "walk" if m["mode"].startswith("walk") else "teleport"
            figures[f"reference.{mode}.speedup"] = float(m["x"])
            notes.append(
                f"Brute-force reference (1k entities, {m['k']} {m['mode']} moves, identical events):"
                f" {m['brute']} µs/move against {m['grid']} µs/move for the grid, {m['x']}x."
            )
    if not rows:
        raise BenchError(f"no figures in bench_aoi.py output:\n{out}")
    figures["entities"] = float(entities)
    walk_1k = figures.get("walk.1000.ms_per_tick", float("nan"))
    verdict = "met" if walk_1k <= TARGET_MS else f"missed by {walk_1k - TARGET_MS:.1f} ms"
    summary = (f"{entities} entities, 1k walking moves per tick: {walk_1k:.1f} ms per tick "
               f"(target ≤ {TARGET_MS:g} ms with 10k entities: {verdict}).")
    return Result(
        scenario="aoi",
        title=TITLE,
        commands=[_script.command("bench_aoi.py", *args)],
        columns=["moves", "moves/tick", "ms/tick", "µs/move", "enter+leave events/s"],
        rows=rows,
        figures=figures,
        summary=summary,
        notes=notes,
    )
