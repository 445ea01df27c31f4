"""What a scenario hands back: a table, numeric figures and how to reproduce them."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from goworld.errors import GoWorldError


class BenchError(GoWorldError):
    """A scenario could not measure (a script failed, a cluster did not start...)."""


@dataclass
class Result:
    scenario: str
    title: str
    commands: list[str]  # the exact command(s) that give these figures
    columns: list[str]
    rows: list[list[Any]]
    figures: dict[str, float]  # flat, numeric: what tools compare between runs
    summary: str  # one or two sentences: the headline figure and the target
    notes: list[str] = field(default_factory=list)
    series: dict[str, Any] = field(default_factory=dict)  # for plots
    quick: bool = False
    seconds: float = 0.0
    when: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Result:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in names})
