"""The scenarios, by name, in the order ``goworld bench`` runs them.

Each scenario has ``TITLE`` and ``run(quick: bool, **options) -> Result``; ``quick`` shrinks
it to seconds. ``OPTIONS`` (optional) names the command-line options it takes
(``steps``, ``window``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from goworld.bench.result import Result
from goworld.bench.scenarios import (
    aoi,
    capacity,
    codec,
    fanout,
    faults,
    hostile,
    lockstep,
    memory,
    reload,
    routing,
    sidebyside,
)


class Scenario(Protocol):
    """A scenario module or object (see above)."""

    @property
    def TITLE(self) -> str: ...

    @property
    def run(self) -> Callable[..., Result]: ...


SCENARIOS: dict[str, Scenario] = {
    "capacity": capacity.CAPACITY,
    "capacity-222": capacity.CAPACITY_222,
    "routing": routing,
    "fanout": fanout,
    "memory": memory,
    "aoi": aoi,
    "reload": reload,
    "codec": codec,
    "hostile": hostile,
    "faults": faults,
    "sidebyside": sidebyside,
    "lockstep": lockstep,
}
#: In the issue, not measured yet (listed in the report).
NOT_YET: dict[str, str] = {}
