"""Runs the chosen scenarios, appends each result to the JSON-lines file, writes the report."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from goworld.bench import report
from goworld.bench.procstat import busy_fraction
from goworld.bench.result import BenchError, Result
from goworld.bench.scenarios import SCENARIOS

RESULTS_FILE = "bench-results.jsonl"
#: Before each scenario, wait up to SETTLE_TIMEOUT seconds for the CPUs to be at most this busy.
SETTLE_BUSY = 0.15
SETTLE_TIMEOUT = 20.0


def parse_only(only: str | None) -> list[str]:
    if not only:
        return list(SCENARIOS)
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise BenchError(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    return names


def check_options(names: list[str], options: dict[str, Any]) -> None:
    """BenchError when an option is given that none of the chosen scenarios takes."""
    for key, value in options.items():
        if value is None:
            continue
        takers = [n for n in names if key in getattr(SCENARIOS[n], "OPTIONS", ())]
        if not takers:
            known = [n for n in SCENARIOS if key in getattr(SCENARIOS[n], "OPTIONS", ())]
            raise BenchError(f"--{key} applies to {', '.join(known)}, none of which is chosen")


def settle(threshold: float = SETTLE_BUSY, timeout: float = SETTLE_TIMEOUT) -> float:
    """Wait (up to ``timeout``) until the machine is at most ``threshold`` busy, so one
    scenario's leftovers (a cluster shutting down) do not weigh on the next; returns the
    last busy fraction seen."""
    deadline = time.monotonic() + timeout
    busy = busy_fraction()
    while busy > threshold and time.monotonic() < deadline:
        busy = busy_fraction()
    return busy


def run(names: list[str], *, quick: bool, out: Path,
        options: dict[str, Any] | None = None) -> tuple[list[Result], list[str]]:
    """Run ``names``; return the results and the errors (a failed scenario does not stop the rest).

    ``options`` (e.g. ``steps``, ``window``) go to the scenarios that declare them in
    ``OPTIONS``; None values are left out.
    """
    out.mkdir(parents=True, exist_ok=True)
    options = {k: v for k, v in (options or {}).items() if v is not None}
    results, errors = [], []
    for name in names:
        module = SCENARIOS[name]
        print(f"== {name}: {module.TITLE}{' (quick)' if quick else ''}", flush=True)
        busy = settle() if not quick else 0.0
        t0 = time.monotonic()
        takes = getattr(module, "OPTIONS", ())
        try:
            result = module.run(quick, **{k: v for k, v in options.items() if k in takes})
        except BenchError as exc:
            errors.append(f"{name}: {exc}")
            print(f"   FAILED: {exc}", flush=True)
            continue
        except Exception as exc:  # a bug in one scenario must not lose the others' figures
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
            print(f"   FAILED ({type(exc).__name__}): {exc}", flush=True)
            continue
        result.quick = quick
        result.seconds = round(time.monotonic() - t0, 1)
        if busy > SETTLE_BUSY:
            result.notes.append(
                f"The machine was still {100 * busy:.0f} % busy with other work when this "
                "scenario started: its figures are pessimistic."
            )
        print(report.text_table(result), flush=True)
        print(f"   {result.summary}\n   ({result.seconds} s)", flush=True)
        with (out / RESULTS_FILE).open("a") as f:
            f.write(json.dumps(result.to_json(), sort_keys=True) + "\n")
        results.append(result)
    return results, errors


def latest(out: Path) -> list[Result]:
    """The newest record of each scenario in ``out``'s results file, in scenario order."""
    found: dict[str, Result] = {}
    path = out / RESULTS_FILE
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                r = Result.from_json(json.loads(line))
                found[r.scenario] = r
    return [found[n] for n in SCENARIOS if n in found]
