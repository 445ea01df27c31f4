"""AOI figures for goworld.entity.aoi (not a test; prints figures).

Usage: .venv/bin/python scripts/bench_aoi.py [--entities 10000] [--neighbours 20] [--seed 1]
                                              [--quick] [--cells] [--pure] [--json FILE]

One space with D = 100 and N entities spread uniformly over a square whose side gives
about ``--neighbours`` neighbours each (the mean is measured and printed). Then ticks of
1k / 5k / 10k moves of random entities, either walking (each axis +-5 units, reflected at
the border) or teleporting (a uniform new position). Each tick's moves are generated
before the clock starts; the figure is the median over several ticks of the time spent in
``moved`` (with callbacks that count events), as ms per tick, and the events (enter +
leave, one per pair) per second of that time.

Then the brute-force reference on a smaller space (1k entities, same density): both see
the same moves, and the script checks that every move gives the same (enter, leave) sets
and the same neighbour sets, and prints both costs. ``--cells`` also times a plain grid
(two-sided tests everywhere, any cell size) at D/2, D and 2D, to justify cell size = D.
``--pure`` times GridAOI run from its source even when the mypyc extension is built (the
first line says which one runs). ``--json FILE`` also writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import math
import os
import platform
import pstats
import random
import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from goworld.entity import aoi as aoi_module
from goworld.entity.aoi import AOIManager, BruteForceAOI, GridAOI, pure_grid

D = 100.0
STEP = 5.0
Grid: type[GridAOI[Any]] = GridAOI  # --pure: pure_grid().GridAOI


def grid_kind() -> str:
    return "mypyc-compiled" if Grid is GridAOI and aoi_module.COMPILED else "pure Python"


class Ent:
    """Stands for an entity: hashed by identity, as entity objects are."""

    __slots__ = ("i",)

    def __init__(self, i: int) -> None:
        self.i = i

    def __repr__(self) -> str:
        return f"E{self.i}"


class Counter:
    def __init__(self) -> None:
        self.events = 0

    def on_event(self, a: object, b: object) -> None:
        self.events += 1


Move = tuple[Ent, float, float]
Callback = Callable[[Ent, Ent], None]
Factory = Callable[[Callback, Callback], AOIManager[Ent]]


def side_for(n: int, neighbours: float) -> float:
    # Expected neighbours = (n - 1) * (2D)^2 / side^2 (ignoring the border).
    return math.sqrt(n * (2 * D) ** 2 / neighbours)


def populate(
    make: Factory,
    n: int,
    side: float,
    rng: random.Random,
) -> tuple[AOIManager[Ent], Counter, list[Ent], list[list[float]]]:
    counter = Counter()
    aoi = make(counter.on_event, counter.on_event)
    ents = [Ent(i) for i in range(n)]
    pos = [[rng.uniform(0, side), rng.uniform(0, side)] for _ in range(n)]
    for e, (x, z) in zip(ents, pos, strict=True):
        aoi.enter(e, x, z)
    return aoi, counter, ents, pos


def gen_moves(
    ents: list[Ent], pos: list[list[float]], k: int, side: float, rng: random.Random, teleport: bool
) -> list[Move]:
    moves: list[Move] = []
    n = len(ents)
    for _ in range(k):
        i = rng.randrange(n)
        p = pos[i]
        if teleport:
            p[0] = rng.uniform(0, side)
            p[1] = rng.uniform(0, side)
        else:
            for a in (0, 1):
                v = p[a] + rng.uniform(-STEP, STEP)
                if v < 0.0 or v > side:  # reflect at the border
                    v = p[a] - (v - p[a])
                p[a] = v
        moves.append((ents[i], p[0], p[1]))
    return moves


def run_tick(aoi: AOIManager[Ent], moves: list[Move]) -> float:
    """Wall time of one tick; see run_tick_cpu."""
    return run_tick_cpu(aoi, moves)[0]


def run_tick_cpu(aoi: AOIManager[Ent], moves: list[Move]) -> tuple[float, float]:
    """(wall, CPU) seconds spent in ``moved`` for one tick, with the GC paused."""
    moved = aoi.moved
    gc_was = gc.isenabled()
    gc.disable()
    c0 = time.process_time()
    t0 = time.perf_counter()
    for e, x, z in moves:
        moved(e, x, z)
    t = time.perf_counter() - t0
    c = time.process_time() - c0
    if gc_was:
        gc.enable()
    return t, c


def mean_neighbours(aoi: AOIManager[Ent], ents: list[Ent]) -> float:
    return sum(len(aoi.neighbours(e)) for e in ents) / len(ents)


def bench_grid(n: int, neighbours: float, seed: int, quick: bool) -> dict[str, Any]:
    rng = random.Random(seed)
    side = side_for(n, neighbours)
    t0 = time.perf_counter()
    aoi, counter, ents, pos = populate(lambda a, b: Grid(D, a, b), n, side, rng)
    t_enter = time.perf_counter() - t0
    mean = mean_neighbours(aoi, ents)
    print(f"GridAOI ({grid_kind()}): {n} entities, D={D:g}, square {side:.0f} x {side:.0f}")
    print(
        f"  enter all: {t_enter * 1e3:.1f} ms ({t_enter / n * 1e6:.2f} us/enter), "
        f"mean neighbours {mean:.1f}"
    )
    ticks: list[dict[str, Any]] = []
    rounds = {1000: 31, 5000: 11, 10000: 7}
    for teleport in (False, True):
        label = "teleport" if teleport else f"walk +-{STEP:g}"
        for k, r in rounds.items():
            if quick:
                r = 3
            times: list[float] = []
            cpu: list[float] = []
            events = 0
            for _ in range(r):
                moves = gen_moves(ents, pos, k, side, rng, teleport)
                before = counter.events
                wall, c = run_tick_cpu(aoi, moves)
                times.append(wall)
                cpu.append(c)
                events += counter.events - before
            med = statistics.median(times)
            print(
                f"  {label:>9}: {k:>5} moves/tick: {med * 1e3:7.2f} ms/tick (median of {r}; "
                f"min {min(times) * 1e3:.2f}; CPU median {statistics.median(cpu) * 1e3:.2f}), "
                f"{med / k * 1e6:.2f} us/move, {k / med / 1e3:.0f}k moves/s, "
                f"{events / r / k:.2f} events/move, {events / sum(times) / 1e3:.0f}k events/s"
            )
            ticks.append({
                "mode": "teleport" if teleport else "walk", "label": label,
                "moves_per_tick": k, "ticks": r,
                "ms_per_tick": med * 1e3, "ms_per_tick_min": min(times) * 1e3,
                "cpu_ms_per_tick": statistics.median(cpu) * 1e3,
                "us_per_move": med / k * 1e6, "moves_per_s": k / med,
                "events_per_move": events / r / k, "events_per_s": events / sum(times),
            })
    profile = profile_walk(aoi, ents, pos, side, rng)
    print("  where 1k walking moves spend their time (cProfile, self time):")
    for row in profile[:6]:
        print(f"    {row['share']:5.1f} %  {row['function']}")
    t0 = time.perf_counter()
    for e in ents:
        aoi.leave(e)
    t_leave = time.perf_counter() - t0
    print(f"  leave all: {t_leave * 1e3:.1f} ms ({t_leave / n * 1e6:.2f} us/leave)")
    return {
        "entities": n, "distance": D, "side": side, "mean_neighbours": mean,
        "us_per_enter": t_enter / n * 1e6, "us_per_leave": t_leave / n * 1e6, "ticks": ticks,
        "profile_walk_1000": profile,
    }


def profile_walk(aoi: AOIManager[Ent], ents: list[Ent], pos: list[list[float]], side: float,
                 rng: random.Random, ticks: int = 5) -> list[dict[str, Any]]:
    """cProfile over ``ticks`` ticks of 1k walking moves: functions by self time."""
    prof = cProfile.Profile()
    for _ in range(ticks):
        moves = gen_moves(ents, pos, 1000, side, rng, False)
        prof.enable()
        run_tick(aoi, moves)
        prof.disable()
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in stats.values()) or 1.0
    rows = []
    for (file, line, name), (_, calls, tottime, _, _) in stats.items():
        label = name if file == "~" else f"{name} ({Path(file).name}:{line})"
        rows.append({"function": label, "calls_per_tick": calls / ticks,
                     "share": 100 * tottime / total})
    rows.sort(key=lambda r: -r["share"])
    return rows[:12]


class Recorder:
    """Keeps the events of the current operation, as sets."""

    def __init__(self) -> None:
        self.enters: set[tuple[Ent, Ent]] = set()
        self.leaves: set[tuple[Ent, Ent]] = set()

    def on_enter(self, a: Ent, b: Ent) -> None:
        self.enters.add((a, b))

    def on_leave(self, a: Ent, b: Ent) -> None:
        self.leaves.add((a, b))

    def take(self) -> tuple[set[tuple[Ent, Ent]], set[tuple[Ent, Ent]]]:
        out = (self.enters, self.leaves)
        self.enters, self.leaves = set(), set()
        return out


def bench_reference(n: int, neighbours: float, seed: int, quick: bool) -> dict[str, Any]:
    rng = random.Random(seed)
    side = side_for(n, neighbours)
    ents = [Ent(i) for i in range(n)]
    pos = [[rng.uniform(0, side), rng.uniform(0, side)] for _ in range(n)]
    rec_g, rec_b = Recorder(), Recorder()
    grid: GridAOI[Ent] = Grid(D, rec_g.on_enter, rec_g.on_leave)
    brute: BruteForceAOI[Ent] = BruteForceAOI(D, rec_b.on_enter, rec_b.on_leave)
    for e, (x, z) in zip(ents, pos, strict=True):
        grid.enter(e, x, z)
        brute.enter(e, x, z)
        assert rec_g.take() == rec_b.take()
    mean = mean_neighbours(grid, ents)
    print(f"Reference: {n} entities, square {side:.0f}, mean neighbours {mean:.1f}")
    k = 200 if quick else 1000
    runs: list[dict[str, Any]] = []
    for teleport in (False, True):
        moves = gen_moves(ents, pos, k, side, rng, teleport)
        # Agreement, move by move.
        events = 0
        for e, x, z in moves:
            grid.moved(e, x, z)
            brute.moved(e, x, z)
            g, b = rec_g.take(), rec_b.take()
            assert g == b, (e, x, z)
            events += len(g[0]) + len(g[1])
        assert all(grid.neighbours(e) == brute.neighbours(e) for e in ents)
        # Costs, on a fresh batch of moves each (callbacks as above).
        moves = gen_moves(ents, pos, k, side, rng, teleport)
        t_grid = run_tick(grid, moves)
        t_brute = run_tick(brute, moves)
        rec_g.take()
        rec_b.take()
        label = "teleport" if teleport else f"walk +-{STEP:g}"
        print(
            f"  {label:>9}: {k} moves agree ({events} events); brute force "
            f"{t_brute / k * 1e6:.0f} us/move, grid {t_grid / k * 1e6:.2f} us/move: "
            f"{t_brute / t_grid:.0f}x"
        )
        runs.append({
            "mode": "teleport" if teleport else "walk", "label": label, "moves": k,
            "events": events, "brute_us_per_move": t_brute / k * 1e6,
            "grid_us_per_move": t_grid / k * 1e6, "speedup": t_brute / t_grid,
        })
    return {"entities": n, "side": side, "mean_neighbours": mean, "runs": runs}


class PlainGrid:
    """A textbook grid with any cell size: every candidate tested on both axes (bench only)."""

    def __init__(
        self, distance: float, cell: float, on_enter: Callback, on_leave: Callback
    ) -> None:
        self.d = distance
        self.cs = cell
        self.r = math.ceil(distance / cell)  # rings of cells to look at
        self.cells: dict[tuple[int, int], dict[Ent, tuple[float, float]]] = {}
        self.pos: dict[Ent, tuple[float, float, tuple[int, int]]] = {}
        self.nbrs: dict[Ent, set[Ent]] = {}
        self.on_enter = on_enter
        self.on_leave = on_leave

    def _scan(self, obj: Ent, x: float, z: float, key: tuple[int, int]) -> set[Ent]:
        d, r, get = self.d, self.r, self.cells.get
        cx, cz = key
        return {
            o
            for i in range(cx - r, cx + r + 1)
            for j in range(cz - r, cz + r + 1)
            for o, (ox, oz) in get((i, j), {}).items()
            if -d <= ox - x <= d and -d <= oz - z <= d and o is not obj
        }

    def enter(self, obj: Ent, x: float, z: float) -> None:
        key = (int(x // self.cs), int(z // self.cs))
        new = self._scan(obj, x, z, key)
        self.cells.setdefault(key, {})[obj] = (x, z)
        self.pos[obj] = (x, z, key)
        self.nbrs[obj] = new
        for b in new:
            self.nbrs[b].add(obj)
            self.on_enter(obj, b)

    def leave(self, obj: Ent) -> None:
        raise NotImplementedError

    def enter_many(self, items: Iterable[tuple[Ent, float, float]]) -> None:
        raise NotImplementedError

    def moved(self, obj: Ent, x: float, z: float) -> None:
        _, _, old_key = self.pos[obj]
        key = (int(x // self.cs), int(z // self.cs))
        if key != old_key:
            del self.cells[old_key][obj]
        self.cells.setdefault(key, {})[obj] = (x, z)
        self.pos[obj] = (x, z, key)
        new = self._scan(obj, x, z, key)
        old = self.nbrs[obj]
        if new != old:
            for b in old - new:
                old.discard(b)
                self.nbrs[b].discard(obj)
                self.on_leave(obj, b)
            for b in new - old:
                old.add(b)
                self.nbrs[b].add(obj)
                self.on_enter(obj, b)

    def neighbours(self, obj: Ent) -> set[Ent]:
        return self.nbrs[obj]

    @property
    def distance(self) -> float:
        return self.d


def plain_grid(cell: float) -> Factory:
    return lambda a, b: PlainGrid(D, cell, a, b)


def bench_cells(n: int, neighbours: float, seed: int, quick: bool) -> list[dict[str, Any]]:
    side = side_for(n, neighbours)
    ticks = 5 if quick else 21
    print(f"Cell size ({n} entities, 1000 walking moves per tick, the same moves for each "
          f"variant, interleaved; median of {ticks} ticks):")
    variants: list[tuple[str, Factory]] = [
        ("GridAOI (cell D, one-sided tests)", lambda a, b: Grid(D, a, b)),
    ]
    for f in (0.5, 1.0, 2.0):
        variants.append((f"plain grid, cell {f:g}D", plain_grid(f * D)))
    rng = random.Random(seed)
    ents = [Ent(i) for i in range(n)]
    pos = [[rng.uniform(0, side), rng.uniform(0, side)] for _ in range(n)]
    managers = []
    for _, make in variants:
        counter = Counter()
        aoi = make(counter.on_event, counter.on_event)
        for e, (x, z) in zip(ents, pos, strict=True):
            aoi.enter(e, x, z)
        managers.append(aoi)
    rng = random.Random(seed + 1)
    times: list[list[float]] = [[] for _ in variants]
    for _ in range(ticks):
        moves = gen_moves(ents, pos, 1000, side, rng, False)
        order = list(range(len(variants)))
        rng.shuffle(order)
        for i in order:
            times[i].append(run_tick(managers[i], moves))
    out = []
    for (name, _), ts in zip(variants, times, strict=True):
        med = statistics.median(ts)
        print(f"  {name:<36} {med * 1e3:6.2f} ms/tick, {med / 1000 * 1e6:.2f} us/move")
        out.append({"variant": name, "ms_per_tick": med * 1e3, "us_per_move": med / 1000 * 1e6})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--entities", type=int, default=10_000)
    ap.add_argument("--neighbours", type=float, default=20.0, help="target mean neighbour count")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="fewer ticks (a smoke run)")
    ap.add_argument("--cells", action="store_true", help="also compare cell sizes")
    ap.add_argument("--pure", action="store_true",
                    help="time GridAOI from its source even if the extension is built")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    args = ap.parse_args()
    global Grid
    if args.pure:
        Grid = pure_grid().GridAOI
    load_start = os.getloadavg()[0]
    print(f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {load_start:.2f} (other processes skew the figures)")
    figures: dict[str, Any] = {
        "python": platform.python_version(), "cores": os.cpu_count(), "quick": args.quick,
        "implementation": grid_kind(),
        "grid": bench_grid(args.entities, args.neighbours, args.seed, args.quick),
        "reference": bench_reference(1000, args.neighbours, args.seed, args.quick),
    }
    if args.cells:
        figures["cells"] = bench_cells(args.entities, args.neighbours, args.seed, args.quick)
    figures["load_average"] = [load_start, os.getloadavg()[0]]
    print(f"load average at the end {figures['load_average'][1]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
