"""Token buckets for game code: throttles that answer with how long to wait.

The engine limits every client-callable method itself (``@goworld.rpc(rate=..., burst=...)``):
a call over that limit is refused silently and counts as a strike, and too many strikes close
the client. That is the hard limit against abuse. A game that wants to *tell* a player to slow
down keeps a :class:`RateLimiter` below it::

    SAY = goworld.RateLimiter(rate=2, burst=8)      # 2 messages/s, 8 at once

    @goworld.rpc(client=True, name="Say", rate=10, burst=40)
    def say(self, text: str) -> None:
        wait = SAY.take(self.id)
        if wait:
            self.call_client("ShowError", f"slow down: you can send again in {wait:.1f} s")
            return
        ...

One limiter holds a bucket per key (a player, a user name, an address), at most ``max_keys``
of them: past it the least recently used goes (it comes back full). Times are Unix seconds, so
a limiter kept in an entity field means the same after a reload restarts the process. It is
plain data: it pickles with the entity.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Hashable

__all__ = ["RateLimiter"]


class RateLimiter:
    """``burst`` actions at once per key, refilled at ``rate`` per second."""

    def __init__(self, rate: float, burst: float, *, max_keys: int = 10_000) -> None:
        if not rate > 0 or not burst >= 1:
            raise ValueError("a RateLimiter needs rate > 0 and burst >= 1")
        self.rate = float(rate)
        self.burst = float(burst)
        self.max_keys = max_keys
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()

    def take(self, key: Hashable = None, cost: float = 1.0, *, now: float | None = None) -> float:
        """Spend ``cost`` from ``key``'s bucket: 0.0 if it could (allowed), else the seconds
        until it can (nothing is spent)."""
        now = time.time() if now is None else now
        buckets = self._buckets
        entry = buckets.get(key)
        if entry is None:
            tokens = self.burst
            if len(buckets) >= self.max_keys:
                buckets.popitem(last=False)
        else:
            buckets.move_to_end(key)
            tokens = min(self.burst, entry[0] + max(0.0, now - entry[1]) * self.rate)
        if tokens >= cost:
            buckets[key] = (tokens - cost, now)
            return 0.0
        buckets[key] = (tokens, now)
        return (cost - tokens) / self.rate

    def reset(self, key: Hashable = None) -> None:
        """Forget ``key`` (its bucket is full again)."""
        self._buckets.pop(key, None)

    def __len__(self) -> int:
        return len(self._buckets)
