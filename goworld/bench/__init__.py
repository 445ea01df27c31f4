"""``goworld bench``: the engine's published figures, measured by one command (issue 8).

Each scenario (``scenarios/``) runs, prints its table and returns a :class:`Result`; the
runner appends every result as one JSON line to ``bench-results.jsonl`` and the report writes
``BENCHMARKS.md`` (machine, one table per scenario, plots, the exact command for each figure)
from the newest record of each scenario in that file. Most scenarios run the scripts under
``scripts/`` as subprocesses, so a source checkout is needed.
"""

from __future__ import annotations

from goworld.bench.result import BenchError, Result

__all__ = ["BenchError", "Result"]
