"""AOI: one space, ms per tick for 1k / 5k / 10k moves, against brute force (scripts/bench_aoi.py)."""

from __future__ import annotations

from goworld.bench.result import BenchError, Result
from goworld.bench.scenarios import _script

TITLE = "AOI (one space, ~20 neighbours each)"
TARGET_MS = 10.0  # issue 8: 10k entities, 1k moves per tick in <= 10 ms


def run(quick: bool) -> Result:
    args = ["--quick", "--entities", "2000"] if quick else ["--entities", "10000"]
    out, data = _script.run_json("bench_aoi.py", *args, timeout=600)
    rows, figures, notes = [], {}, []
    grid = data["grid"]
    entities = grid["entities"]
    for t in grid["ticks"]:
        mode, k = t["mode"], t["moves_per_tick"]
        rows.append([t["label"], k, round(t["ms_per_tick"], 2), round(t["us_per_move"], 2),
                     round(t["events_per_s"])])
        figures[f"{mode}.{k}.ms_per_tick"] = t["ms_per_tick"]
        figures[f"{mode}.{k}.events_per_s"] = t["events_per_s"]
    for r in data["reference"]["runs"]:
        figures[f"reference.{r['mode']}.speedup"] = r["speedup"]
        notes.append(
            f"Brute-force reference ({data['reference']['entities'] / 1000:g}k entities, "
            f"{r['moves']} {r['label']} moves, identical events): {r['brute_us_per_move']:.0f} "
            f"µs/move against {r['grid_us_per_move']:.2f} µs/move for the grid, "
            f"{r['speedup']:.0f}x."
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
