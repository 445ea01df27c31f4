"""AOI: one space, ms per tick for 1k / 5k / 10k moves, against brute force (scripts/bench_aoi.py)."""

from __future__ import annotations

import statistics
from typing import Any

from goworld.bench.result import BenchError, Result
from goworld.bench.scenarios import _script

TITLE = "AOI (one space, ~20 neighbours each)"
TARGET_MS = 3.0  # issue 17 (was 10 ms, issue 8): 10k entities, 1k moves per tick in <= 3 ms


PROCESSES = 5  # full runs: the script runs this many times, the table is the median run


def _tick(data: dict[str, Any], mode: str, key: str = "ms_per_tick") -> float:
    return next((t[key] for t in data["grid"]["ticks"]
                 if t["mode"] == mode and t["moves_per_tick"] == 1000), float("nan"))


def _walk_1k(data: dict[str, Any]) -> float:
    return _tick(data, "walk")


def _spread(values: list[float]) -> str:
    """``median (min-max)`` of per-process figures, in ms."""
    v = sorted(values)
    return f"{statistics.median(v):.2f} ms ({v[0]:.2f}-{v[-1]:.2f})"


def _cpu_note(label: str, datas: list[dict[str, Any]]) -> str:
    walk = [_tick(d, "walk", "cpu_ms_per_tick") for d in datas]
    tele = [_tick(d, "teleport", "cpu_ms_per_tick") for d in datas]
    return (f"{label}, CPU time per tick (time.process_time; median and range of {len(datas)} "
            f"processes, each the median of its ticks): 1k walking moves {_spread(walk)}, "
            f"1k teleports {_spread(tele)}.")


def run(quick: bool) -> Result:
    args = ["--quick", "--entities", "2000"] if quick else ["--entities", "10000"]
    # One process's figures can be 2x another's on this shared VM (same code, same seed, no
    # steal time): run it a few times and report the median run, with the spread.
    runs = [_script.run_json("bench_aoi.py", *args, timeout=600)
            for _ in range(1 if quick else PROCESSES)]
    runs.sort(key=lambda r: _walk_1k(r[1]))
    out, data = runs[len(runs) // 2]
    rows, figures, notes = [], {}, []
    commands = [_script.command("bench_aoi.py", *args)]
    grid = data["grid"]
    entities = grid["entities"]
    for t in grid["ticks"]:
        mode, k = t["mode"], t["moves_per_tick"]
        rows.append([t["label"], k, round(t["ms_per_tick"], 2), round(t["us_per_move"], 2),
                     round(t["events_per_s"])])
        figures[f"{mode}.{k}.ms_per_tick"] = t["ms_per_tick"]
        figures[f"{mode}.{k}.events_per_s"] = t["events_per_s"]
    implementation = data.get("implementation", "pure Python")
    figures["compiled"] = 1.0 if implementation == "mypyc-compiled" else 0.0
    notes.append(f"GridAOI ran {implementation} (goworld.entity.aoi.COMPILED; setup.py builds "
                 "goworld/entity/aoi_grid.py with mypyc, GOWORLD_NO_MYPYC=1 skips it).")
    if len(runs) > 1:
        spread = [_walk_1k(r[1]) for r in runs]
        figures["walk.1000.ms_per_tick_min"] = spread[0]
        figures["walk.1000.ms_per_tick_max"] = spread[-1]
        notes.append(f"The table is the median of {len(runs)} runs of the script (separate "
                     f"processes) by 1k walking moves per tick: "
                     f"{', '.join(f'{v:.1f}' for v in spread)} ms (wall).")
        datas = [r[1] for r in runs]
        cpu = sorted(_tick(d, "walk", "cpu_ms_per_tick") for d in datas)
        figures["walk.1000.cpu_ms_median"] = statistics.median(cpu)
        figures["walk.1000.cpu_ms_min"] = cpu[0]
        figures["walk.1000.cpu_ms_max"] = cpu[-1]
        notes.append(_cpu_note(f"GridAOI ({implementation})", datas))
    if not quick and implementation == "mypyc-compiled":  # and the fallback, for comparison
        pure = [_script.run_json("bench_aoi.py", *args, "--pure", timeout=600)[1]
                for _ in range(PROCESSES)]
        cpu = sorted(_tick(d, "walk", "cpu_ms_per_tick") for d in pure)
        figures["pure.walk.1000.cpu_ms_median"] = statistics.median(cpu)
        figures["pure.teleport.1000.cpu_ms_median"] = statistics.median(
            _tick(d, "teleport", "cpu_ms_per_tick") for d in pure)
        notes.append(_cpu_note("The same source uncompiled (the fallback; `--pure`)", pure))
        commands.append(_script.command("bench_aoi.py", *args, "--pure"))
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
        commands=commands,
        columns=["moves", "moves/tick", "ms/tick", "µs/move", "enter+leave events/s"],
        rows=rows,
        figures=figures,
        summary=summary,
        notes=notes,
    )
