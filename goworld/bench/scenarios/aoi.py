"""AOI: one space, ms per tick for 1k / 5k / 10k moves, against brute force (scripts/bench_aoi.py)."""

from __future__ import annotations

from typing import Any

from goworld.bench.result import BenchError, Result
from goworld.bench.scenarios import _script

TITLE = "AOI (one space, ~20 neighbours each)"
TARGET_MS = 3.0  # issue 17 (was 10 ms, issue 8): 10k entities, 1k moves per tick in <= 3 ms


PROCESSES = 3  # full runs: the script runs this many times, the table is the median run


def _walk_1k(data: dict[str, Any]) -> float:
    return next((t["ms_per_tick"] for t in data["grid"]["ticks"]
                 if t["mode"] == "walk" and t["moves_per_tick"] == 1000), float("nan"))


def _walk_1k_cpu(data: dict[str, Any]) -> float:
    return next((t["cpu_ms_per_tick"] for t in data["grid"]["ticks"]
                 if t["mode"] == "walk" and t["moves_per_tick"] == 1000), float("nan"))


def run(quick: bool) -> Result:
    args = ["--quick", "--entities", "2000"] if quick else ["--entities", "10000"]
    # One process's figures can be 2x another's on this shared VM (same code, same seed, no
    # steal time): run it a few times and report the median run, with the spread.
    runs = [_script.run_json("bench_aoi.py", *args, timeout=600)
            for _ in range(1 if quick else PROCESSES)]
    runs.sort(key=lambda r: _walk_1k(r[1]))
    out, data = runs[len(runs) // 2]
    rows, figures, notes = [], {}, []
    grid = data["grid"]
    entities = grid["entities"]
    for t in grid["ticks"]:
        mode, k = t["mode"], t["moves_per_tick"]
        rows.append([t["label"], k, round(t["ms_per_tick"], 2), round(t["us_per_move"], 2),
                     round(t["events_per_s"])])
        figures[f"{mode}.{k}.ms_per_tick"] = t["ms_per_tick"]
        figures[f"{mode}.{k}.events_per_s"] = t["events_per_s"]
    if len(runs) > 1:
        spread = [_walk_1k(r[1]) for r in runs]
        figures["walk.1000.ms_per_tick_min"] = spread[0]
        figures["walk.1000.ms_per_tick_max"] = spread[-1]
        cpu = sorted(_walk_1k_cpu(r[1]) for r in runs)
        notes.append(f"The table is the median of {len(runs)} runs of the script (separate "
                     f"processes) by 1k walking moves per tick: "
                     f"{', '.join(f'{v:.1f}' for v in spread)} ms "
                     f"(CPU time: {', '.join(f'{v:.1f}' for v in cpu)} ms).")
    implementation = data.get("implementation", "pure Python")
    figures["compiled"] = 1.0 if implementation == "mypyc-compiled" else 0.0
    notes.append(f"GridAOI ran {implementation} (goworld.entity.aoi.COMPILED; setup.py builds "
                 "goworld/entity/aoi_grid.py with mypyc, GOWORLD_NO_MYPYC=1 skips it).")
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
    walk = next((t for t in grid["ticks"] if t["mode"] == "walk" and t["moves_per_tick"] == 1000), None)
    if walk is not None:
        figures["walk.1000.cpu_ms_per_tick"] = walk["cpu_ms_per_tick"]
    if not walk_1k <= TARGET_MS and grid.get("profile_walk_1000"):
        hot = "; ".join(f"{r['function']} {r['share']:.0f} %" for r in grid["profile_walk_1000"][:6])
        notes.append(f"Where the time goes (cProfile of 5 ticks of 1k walking moves, self time): "
                     f"{hot}. The move inside a cell (_step) tests the ~40 objects of the 8 "
                     "surrounding cells; it is CPU-bound, so a busy machine stretches it.")
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
