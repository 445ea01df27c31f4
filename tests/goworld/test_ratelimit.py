"""goworld.RateLimiter: token buckets per key that say how long to wait."""

from __future__ import annotations

import pickle

import pytest

from goworld import RateLimiter


def test_burst_then_the_rate_and_the_wait_it_names() -> None:
    limiter = RateLimiter(rate=2, burst=3)
    assert [limiter.take("a", now=100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a", now=100.0) == pytest.approx(0.5)  # one token every 0.5 s
    assert limiter.take("a", now=100.25) == pytest.approx(0.25)  # refused: nothing spent
    assert limiter.take("a", now=100.5) == 0.0
    assert limiter.take("b", now=100.5) == 0.0  # keys are independent
    assert limiter.take("a", now=200.0) == 0.0  # refilled, capped at the burst
    assert limiter.take("a", now=200.0) == 0.0
    assert limiter.take("a", now=200.0) == 0.0
    assert limiter.take("a", now=200.0) > 0


def test_costs_reset_and_a_clock_going_back() -> None:
    limiter = RateLimiter(rate=1, burst=5)
    assert limiter.take(None, cost=5, now=10.0) == 0.0
    assert limiter.take(None, cost=2, now=10.0) == pytest.approx(2.0)
    assert limiter.take(None, now=9.0) == pytest.approx(1.0)  # no refill from a clock jump back
    limiter.reset(None)
    assert limiter.take(None, cost=5, now=9.0) == 0.0


def test_keys_are_bounded_and_the_least_recent_goes() -> None:
    limiter = RateLimiter(rate=1, burst=1, max_keys=3)
    for key in "abc":
        limiter.take(key, now=0.0)
    limiter.take("a", now=0.0)  # a is now the most recent
    limiter.take("d", now=0.0)  # b goes
    assert len(limiter) == 3
    assert limiter.take("b", now=0.0) == 0.0  # b came back full
    assert limiter.take("a", now=0.0) > 0  # a was kept, still empty


def test_it_pickles_with_an_entity_and_refuses_nonsense() -> None:
    limiter = RateLimiter(rate=1, burst=1)
    limiter.take("x", now=50.0)
    copy = pickle.loads(pickle.dumps(limiter))
    assert copy.take("x", now=50.0) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        RateLimiter(rate=0, burst=1)
    with pytest.raises(ValueError):
        RateLimiter(rate=1, burst=0.5)
