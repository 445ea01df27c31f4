"""Plain counters the game keeps as it runs, read by :mod:`game.metrics` when scraped.

Nothing here is exported on its own: the hot paths only bump a dict entry or observe a
:class:`~goworld.histogram.Histogram`, and the collector turns them into Prometheus families.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from goworld.histogram import Histogram

__all__ = ["GameStats", "RELOAD_BUCKETS"]

#: Freeze, restore and in-place reload durations (seconds): from 1 ms to 5 minutes.
RELOAD_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


@dataclass(slots=True)
class GameStats:
    #: (entity type, method, called by a client) -> calls run (arguments bound)
    rpcs: dict[tuple[str, str, bool], int] = field(default_factory=dict)
    #: (entity type, method) -> calls whose method raised
    rpc_errors: dict[tuple[str, str], int] = field(default_factory=dict)
    #: snapshots taken for a reload (``game.freeze.run_freeze``)
    freeze: Histogram = field(default_factory=lambda: Histogram(RELOAD_BUCKETS))
    #: restores from a freeze file (``game.freeze.restore``)
    restore: Histogram = field(default_factory=lambda: Histogram(RELOAD_BUCKETS))
    #: in-place code reloads that succeeded (``game.hotswap.reload_in_place``)
    reload: Histogram = field(default_factory=lambda: Histogram(RELOAD_BUCKETS))
