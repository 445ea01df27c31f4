"""Crontab entries checked once a minute (PROTOCOL.md §12.2 ``RegisterCrontab``).

Each field matches when it equals the current value; ``-1`` matches anything and ``-n`` means
"every n" (the value is a multiple of n). Checked 2 s after each minute starts, like GoWorld.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Crontab"]

logger = logging.getLogger("goworld.game")


def _field_matches(spec: int, value: int) -> bool:
    if spec >= 0:
        return spec == value
    return value % -spec == 0


class Crontab:
    def __init__(self, loop: asyncio.AbstractEventLoop, clock: Callable[[], float] = time.time) -> None:
        self._loop = loop
        self._clock = clock
        self._entries: list[tuple[tuple[int, int, int, int, int], Callable[[], Any]]] = []
        self._handle: asyncio.TimerHandle | None = None

    def register(self, minute: int, hour: int, day: int, month: int, dow: int, fn: Callable[[], Any]) -> None:
        self._entries.append(((minute, hour, day, month, dow), fn))
        if self._handle is None:
            self._schedule()

    def _schedule(self) -> None:
        now = self._clock()
        delay = 60.0 - (now % 60.0) + 2.0
        self._handle = self._loop.call_later(delay, self._check)

    def matching(self, when: float) -> list[Callable[[], Any]]:
        t = time.localtime(when)
        values = (t.tm_min, t.tm_hour, t.tm_mday, t.tm_mon, (t.tm_wday + 1) % 7)
        return [
            fn
            for spec, fn in self._entries
            if all(_field_matches(s, v) for s, v in zip(spec, values, strict=True))
        ]

    def _check(self) -> None:
        for fn in self.matching(self._clock()):
            try:
                fn()
            except Exception:
                logger.exception("crontab callback %r raised", fn)
        self._schedule()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
