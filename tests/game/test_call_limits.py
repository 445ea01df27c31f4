"""Tests for game.call_limits: the per-client, per-method token buckets, argument sizes, strikes,
kicks, the summary of refusals and the bounded client table, with an injected clock and
scheduler (no event loop, no sleeping)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from game.call_limits import CallPolicy, ClientCallLimiter
from goworld.config import GameConfig
from goworld.entity.entity import Entity
from goworld.entity.registry import Registry, RpcMethod, rpc


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Types(Entity):
    @rpc(client=True)
    def Default(self) -> None: ...

    @rpc(client=True, rate=2, burst=3, max_arg_bytes=100)
    def Slow(self) -> None: ...

    @rpc(client=True, rate=0, max_arg_bytes=0)
    def Free(self) -> None: ...

    @rpc(client=True, burst=2)
    def SmallBurst(self) -> None: ...


METHODS: dict[str, RpcMethod] = Registry().register_entity(Types).rpcs


class Rig:
    def __init__(self, policy: CallPolicy | None = None) -> None:
        self.clock = Clock()
        self.kicks: list[tuple[str, int, str]] = []
        self.scheduled: list[tuple[float, Callable[[], None]]] = []
        self.limiter = ClientCallLimiter(
            policy or CallPolicy(rate=10, burst=20, max_arg_bytes=1000, max_strikes=1000, strike_window=10),
            kick=lambda cid, gate, why: self.kicks.append((cid, gate, why)),
            schedule=lambda delay, fn: self.scheduled.append((delay, fn)),
            clock=self.clock,
        )

    def calls(self, n: int, method: str = "Default", client: str = "c1", size: int = 10) -> int:
        """How many of ``n`` calls made at this instant are admitted."""
        return sum(self.limiter.admit(client, 1, METHODS[method], size) for _ in range(n))


def test_the_games_default_rate_and_burst_apply_to_methods_without_their_own() -> None:
    rig = Rig()
    assert rig.calls(25) == 20  # burst 20 at once
    rig.clock.now += 0.5
    assert rig.calls(10) == 5  # 10 calls/s refill
    rig.clock.now += 100
    assert rig.calls(25) == 20  # the bucket holds no more than the burst


def test_a_methods_own_limits_win() -> None:
    rig = Rig()
    assert rig.calls(5, "Slow") == 3
    rig.clock.now += 1.0
    assert rig.calls(5, "Slow") == 2
    assert rig.calls(3, "SmallBurst") == 2  # the game's rate with its own burst
    assert rig.calls(1000, "Free", size=10**6) == 1000  # rate 0, max_arg_bytes 0: unlimited


def test_an_honest_rate_always_passes() -> None:
    rig = Rig()
    for _ in range(1000):  # exactly the rate, for 100 s
        assert rig.calls(1)
        rig.clock.now += 0.1
    assert rig.limiter.refused_total == 0 and rig.kicks == []


def test_buckets_are_per_client_and_per_method() -> None:
    rig = Rig()
    assert rig.calls(30, client="a") == 20
    assert rig.calls(30, client="b") == 20  # another client has its own bucket
    assert rig.calls(5, "Slow", client="a") == 3  # and so has another method


def test_arguments_over_the_size_are_refused_before_the_rate_is_charged() -> None:
    rig = Rig()
    assert rig.calls(1, size=1001) == 0  # the game's max_arg_bytes
    assert rig.calls(1, size=1000) == 1
    assert rig.calls(1, "Slow", size=101) == 0  # the method's own
    assert rig.calls(3, "Slow", size=100) == 3  # the refused ones took no token
    assert rig.limiter.refused_total == 2


def test_no_game_default_means_unlimited() -> None:
    rig = Rig(CallPolicy(rate=0, max_arg_bytes=0))
    assert rig.calls(10_000, size=10**7) == 10_000
    assert len(rig.limiter) == 0  # nothing to remember
    assert rig.calls(5, "Slow") == 3  # a method's own limit still applies


STRICT = CallPolicy(rate=10, burst=20, max_arg_bytes=1000, max_strikes=5, strike_window=10)


def test_strikes_past_the_limit_kick_once_with_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    rig = Rig(STRICT)
    with caplog.at_level(logging.WARNING, "goworld.game"):
        assert rig.calls(20) == 20
        assert rig.calls(5) == 0  # 5 strikes: not yet
        assert rig.kicks == []
        assert rig.calls(1000) == 0
        rig.clock.now += 5
        assert rig.calls(10) == 0  # refilled, but a kicked client is refused
    assert len(rig.kicks) == 1
    cid, gate, why = rig.kicks[0]
    assert (cid, gate) == ("c1", 1) and why.startswith("6 refused calls in 10 s (last: Default: over 10 calls/s)")
    assert [r.getMessage() for r in caplog.records] == [f"kicking client c1 of gate1: {why}"]
    assert rig.limiter.refused_total == 1015 and rig.limiter.kicked_total == 1


def test_strikes_expire_with_their_window() -> None:
    rig = Rig(STRICT)
    for _ in range(10):
        for _ in range(5):
            rig.limiter.refuse("c1", 1, "X", "not client-callable")
        rig.clock.now += 10  # a new window each time
    assert rig.kicks == []
    for _ in range(6):
        rig.limiter.refuse("c1", 1, "X", "not client-callable")
    assert [k[0] for k in rig.kicks] == ["c1"]


def test_refusals_are_summarised_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    rig = Rig(CallPolicy(max_strikes=0, summary_interval=30))  # never kicks
    with caplog.at_level(logging.WARNING, "goworld.game"):
        for i in range(7):
            for _ in range(100 * (i + 1)):
                rig.limiter.refuse(f"client{i}", 2, "Nope", f"no RPC {i}")
        assert len(rig.scheduled) == 1 and rig.scheduled[0][0] == 30  # one summary pending
        assert caplog.records == []
        rig.clock.now += 30
        rig.scheduled.pop()[1]()
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith("2800 calls from 7 client(s) refused in 30.0 s (client client6 of gate2: 700")
    assert "last Nope: no RPC 6" in line and "client client2" in line and "client1 " not in line
    assert line.endswith("; and 2 more client(s))")
    rig.limiter.summarise()  # nothing new: no line
    assert len(caplog.records) == 1 and rig.scheduled == []
    rig.limiter.refuse("c", 1, "X", "y")
    assert len(rig.scheduled) == 1  # the next interval's summary


def test_what_a_client_chose_is_bounded_in_logs_and_kicks() -> None:
    rig = Rig(STRICT)
    for _ in range(6):
        rig.limiter.refuse("c1", 1, "M" * 100_000, "R" * 100_000)
    [(_, _, why)] = rig.kicks
    assert len(why) < 400


def test_state_is_dropped_when_the_client_or_its_gate_goes() -> None:
    rig = Rig()
    for cid, gate in (("a", 1), ("b", 1), ("c", 2)):
        rig.limiter.admit(cid, gate, METHODS["Default"], 1)
    assert len(rig.limiter) == 3
    rig.limiter.forget("a")
    rig.limiter.forget("never-seen")
    assert "a" not in rig.limiter and len(rig.limiter) == 2
    rig.limiter.forget_gate(1)
    assert list(rig.limiter._clients) == ["c"]
    assert rig.calls(30, client="a") == 20  # a new client id would start afresh anyway


def test_the_table_is_bounded_and_evicts_the_least_recently_seen() -> None:
    rig = Rig(CallPolicy(max_clients=100, strike_window=10))
    for i in range(100):
        rig.calls(1, client=f"old{i}")
    rig.clock.now += 60  # all idle now ...
    for i in range(0, 100, 2):
        rig.calls(1, client=f"old{i}")  # ... but the even ones
    for i in range(50):
        rig.calls(1, client=f"new{i}")
    assert len(rig.limiter) == 100
    tracked = set(rig.limiter._clients)
    assert {f"old{i}" for i in range(0, 100, 2)} <= tracked  # recently seen: kept
    assert not {f"old{i}" for i in range(1, 100, 2)} & tracked
    for i in range(1000):  # everybody active: the table still holds 100
        rig.calls(1, client=f"flood{i}")
    assert len(rig.limiter) == 100


def test_policy_from_the_game_config() -> None:
    base: dict[str, Any] = {
        "id": 1, "boot_entity": "Boot", "save_interval": 300, "log_file": "g.log", "log_stderr": True,
        "http_addr": None, "log_level": "info", "gomaxprocs": 0, "position_sync_interval_ms": 100,
        "ban_boot_entity": False,
    }
    assert CallPolicy.from_config(GameConfig(**base)) == CallPolicy()  # the same defaults
    gcfg = GameConfig(
        **base, client_rpc_rate=5, client_rpc_burst=9, client_rpc_max_arg_bytes=10, client_rpc_max_strikes=3,
        client_rpc_strike_window=7, client_rpc_max_clients=11, log_repeat_interval=60,
    )
    assert CallPolicy.from_config(gcfg) == CallPolicy(5, 9, 10, 3, 7, 11, 60)
