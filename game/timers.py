"""Entity timers (saved by a freeze, carried by a migration) and plain repeating timers.

An entity timer is a :class:`TimerRecord` in ``entity.timer_records`` under an id unique in
this process; it fires ``entity.<method>(*args)``. ``fire_at`` is wall-clock time (the clock is
injected: ``time.time`` in a game, a fake in tests) so that a record keeps its due time across a
reload or a migration to another process; a repeating timer that fell behind skips the missed
periods and keeps its phase. Scheduling goes through the event loop's ``call_later``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from goworld.entity.entity import Entity
from goworld.errors import EntityError

__all__ = ["MIN_TIMER_INTERVAL", "EntityTimers", "GlobalTimer", "TimerRecord", "run_logged"]

logger = logging.getLogger("goworld.game")

MIN_TIMER_INTERVAL = 0.01


@dataclass(slots=True)
class TimerRecord:
    """An entity timer: fires ``entity.<method>(*args)``; ``fire_at`` is wall-clock time."""

    method: str
    args: tuple[Any, ...]
    fire_at: float
    interval: float
    repeat: bool
    handle: asyncio.TimerHandle | None = None


class EntityTimers:
    """Arms, fires and cancels the timers of every entity of one game."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        clock: Callable[[], float] = time.time,
        *,
        halted: Callable[[], bool] = lambda: False,
    ) -> None:
        self._loop = loop
        self._clock = clock
        self._halted = halted
        self._seq = 0

    def add(
        self, entity: Entity, interval: float, method: str, args: tuple[Any, ...], *, repeat: bool
    ) -> int:
        if not callable(getattr(entity, method, None)):
            raise EntityError(f"{entity!r} has no method {method!r} for a timer")
        interval = max(float(interval), MIN_TIMER_INTERVAL if repeat else 0.0)
        record = TimerRecord(method, tuple(args), self._clock() + interval, interval, repeat)
        return self._keep(entity, record)

    def restore(self, entity: Entity, saved: Iterable[Any]) -> None:
        """Re-arm saved ``(method, args, fire_at, interval, repeat)`` timers at their original
        due times (one already due fires at once)."""
        for method, args, fire_at, interval, repeat in saved:
            self._keep(
                entity,
                TimerRecord(method, tuple(args), float(fire_at), float(interval), bool(repeat)),
            )

    def cancel(self, entity: Entity, timer_id: int) -> None:
        record = entity.timer_records.pop(timer_id, None)
        if record is not None and record.handle is not None:
            record.handle.cancel()

    def cancel_all(self, entity: Entity) -> None:
        self.stop_all(entity)
        entity.timer_records.clear()

    @staticmethod
    def stop_all(entity: Entity) -> None:
        """Disarm ``entity``'s timers but keep their records (a freeze saves them)."""
        for record in entity.timer_records.values():
            if record.handle is not None:
                record.handle.cancel()

    def _keep(self, entity: Entity, record: TimerRecord) -> int:
        self._seq += 1
        entity.timer_records[self._seq] = record
        self._arm(entity, self._seq, record)
        return self._seq

    def _arm(self, entity: Entity, tid: int, record: TimerRecord) -> None:
        delay = max(0.0, record.fire_at - self._clock())
        record.handle = self._loop.call_later(delay, self._fire, entity, tid)

    def _fire(self, entity: Entity, tid: int) -> None:
        record: TimerRecord | None = entity.timer_records.get(tid)
        if record is None or entity.destroyed or self._halted():
            return
        if record.repeat:
            record.fire_at += record.interval
            now = self._clock()
            if record.fire_at < now:  # fell behind: skip missed periods, keep the phase
                missed = int((now - record.fire_at) // record.interval) + 1
                record.fire_at += missed * record.interval
            self._arm(entity, tid, record)
        else:
            del entity.timer_records[tid]
        try:
            getattr(entity, record.method)(*record.args)
        except Exception:
            logger.exception("%r timer %s raised", entity, record.method)


def run_logged(fn: Callable[[], Any]) -> None:
    """Call ``fn``; an exception is logged, never raised into the loop."""
    try:
        fn()
    except Exception:
        logger.exception("callback %r raised", fn)


class GlobalTimer:
    """A repeating timer for a plain function (not saved by freeze: use entity timers)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float, fn: Callable[[], Any]) -> None:
        self._loop = loop
        self._interval = max(interval, MIN_TIMER_INTERVAL)
        self._fn = fn
        self._handle: asyncio.TimerHandle | None = loop.call_later(self._interval, self._fire)

    def _fire(self) -> None:
        self._handle = self._loop.call_later(self._interval, self._fire)
        run_logged(self._fn)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
