"""A plain bucketed histogram of durations: the figures code keeps, read by collectors at scrape time.

The parts of the engine that time something (storage operations, GC pauses, freezes and
restores) keep a :class:`Histogram` of their own: an ``observe`` is a ``bisect`` and four
additions, with no lock, no label lookup and no dependency. :mod:`goworld.metrics` turns
them into Prometheus histograms when ``/metrics`` is scraped.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

__all__ = ["DURATION_BUCKETS", "Histogram"]

#: Upper bounds (seconds) for durations from 100 µs to a minute.
DURATION_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip


class Histogram:
    """Counts of observations per bucket (``value <= bound``), their sum, count and the last."""

    __slots__ = ("bounds", "counts", "sum", "count", "last")

    def __init__(self, bounds: Sequence[float] = DURATION_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        if list(self.bounds) != sorted(set(self.bounds)):
            raise ValueError("histogram bounds must be increasing")
        self.counts = [0] * (len(self.bounds) + 1)  # the last one: above every bound
        self.sum = 0.0
        self.count = 0
        self.last = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1
        self.last = value

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, count of observations <= le)`` per bound, then ``("+Inf", count)``, as
        Prometheus wants its buckets."""
        out: list[tuple[str, int]] = []
        total = 0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            total += n
            out.append((_bound_text(bound), total))
        out.append(("+Inf", total + self.counts[-1]))
        return out


def _bound_text(bound: float) -> str:
    return repr(float(bound))
