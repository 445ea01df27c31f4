"""EntityTimers with an injected clock and a recording scheduler (no event loop runs)."""

from __future__ import annotations

from typing import Any

import pytest

from game.timers import MIN_TIMER_INTERVAL, EntityTimers
from goworld.entity.entity import Entity
from goworld.errors import EntityError


class FakeHandle:
    def __init__(self, delay: float, fn: Any, args: tuple[Any, ...]) -> None:
        self.delay, self.fn, self.args, self.cancelled = delay, fn, args, False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    def __init__(self) -> None:
        self.scheduled: list[FakeHandle] = []

    def call_later(self, delay: float, fn: Any, *args: Any) -> FakeHandle:
        handle = FakeHandle(delay, fn, args)
        self.scheduled.append(handle)
        return handle

    def run_last(self) -> None:
        handle = self.scheduled[-1]
        assert not handle.cancelled
        handle.fn(*handle.args)


class Ticker(Entity):
    def __init__(self) -> None:
        self.timer_records = {}
        self.destroyed = False
        self.ticks: list[str] = []

    def tick(self, label: str) -> None:
        self.ticks.append(label)


@pytest.fixture
def setup() -> tuple[EntityTimers, FakeLoop, list[float], Ticker]:
    now = [1000.0]
    loop = FakeLoop()
    timers = EntityTimers(loop, lambda: now[0])  # type: ignore[arg-type]
    return timers, loop, now, Ticker()


def test_a_late_repeating_timer_skips_missed_periods_and_keeps_its_phase(setup: Any) -> None:
    timers, loop, now, entity = setup
    tid = timers.add(entity, 2.0, "tick", ("t",), repeat=True)
    assert loop.scheduled[-1].delay == pytest.approx(2.0)
    now[0] = 1007.5  # due at 1002; periods at 1004 and 1006 were missed
    loop.run_last()
    assert entity.ticks == ["t"]
    record = entity.timer_records[tid]
    assert record.fire_at == pytest.approx(1008.0)  # still on the 1000 + 2k grid
    assert loop.scheduled[-1].delay == pytest.approx(0.5)


def test_a_callback_fires_once_and_is_forgotten(setup: Any) -> None:
    timers, loop, now, entity = setup
    tid = timers.add(entity, 0.0, "tick", ("once",), repeat=False)
    loop.run_last()
    assert entity.ticks == ["once"]
    assert tid not in entity.timer_records
    assert len(loop.scheduled) == 1


def test_restore_keeps_due_times_and_an_overdue_timer_fires_at_once(setup: Any) -> None:
    timers, loop, now, entity = setup
    timers.restore(entity, [("tick", ("a",), 1003.0, 5.0, True), ("tick", ("b",), 990.0, 0.0, False)])
    assert [h.delay for h in loop.scheduled] == [pytest.approx(3.0), 0.0]
    assert len(entity.timer_records) == 2


def test_cancel_disarms_and_repeat_interval_has_a_floor(setup: Any) -> None:
    timers, loop, now, entity = setup
    tid = timers.add(entity, 0.0, "tick", ("x",), repeat=True)
    assert entity.timer_records[tid].interval == MIN_TIMER_INTERVAL
    timers.cancel(entity, tid)
    assert loop.scheduled[-1].cancelled and not entity.timer_records
    with pytest.raises(EntityError):
        timers.add(entity, 1.0, "no_such_method", (), repeat=False)


def test_a_halted_game_fires_nothing() -> None:
    loop = FakeLoop()
    timers = EntityTimers(loop, lambda: 0.0, halted=lambda: True)  # type: ignore[arg-type]
    entity = Ticker()
    timers.add(entity, 1.0, "tick", ("x",), repeat=True)
    loop.run_last()
    assert entity.ticks == []
