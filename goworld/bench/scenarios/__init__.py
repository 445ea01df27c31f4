"""The scenarios, by name, in the order ``goworld bench`` runs them.

Each module has ``TITLE`` and ``run(quick: bool) -> Result``; ``quick`` shrinks it to seconds.
"""

from __future__ import annotations

from goworld.bench.scenarios import aoi, capacity, codec, fanout, memory, reload, routing

SCENARIOS = {
    "capacity": capacity,
    "routing": routing,
    "fanout": fanout,
    "memory": memory,
    "aoi": aoi,
    "reload": reload,
    "codec": codec,
}
#: In the issue, not measured yet (listed in the report).
NOT_YET = {
    "capacity 2+2+2": "the capacity ramp on 2 dispatchers + 2 games + 2 gates",
}
