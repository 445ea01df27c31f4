"""Tests for goworld.entity.aoi: the rules by hand on every implementation, then GridAOI
checked against BruteForceAOI and a from-scratch relation over Hypothesis operation sequences,
and against the first GridAOI (legacy_grid_aoi.py) for the order of the events.

GridAOI runs twice when the mypyc extension is built: compiled (``aoi.GridAOI``) and from its
source (``aoi.pure_grid().GridAOI``).
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from goworld.entity import aoi as aoi_module
from goworld.entity.aoi import (
    AOIManager,
    BruteForceAOI,
    GridAOI,
    _add_down,
    _add_up,
    pure_grid,
    within,
)
from goworld.entity.vector import Vector3
from tests.goworld.entity.legacy_grid_aoi import GridAOI as LegacyGridAOI

D = 100.0
MAX = 1.7976931348623157e308
PureGridAOI: type[GridAOI[Any]] = pure_grid().GridAOI
GRIDS = [GridAOI] if PureGridAOI is GridAOI else [GridAOI, PureGridAOI]
IMPLS = [BruteForceAOI, *GRIDS]


def impl_id(cls: type) -> str:
    if cls is BruteForceAOI:
        return "BruteForceAOI"
    return "GridAOI-compiled" if cls is GridAOI and aoi_module.COMPILED else "GridAOI-source"

Event = tuple[str, object, object]


class Rec:
    """Records the events, in order."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def on_enter(self, a: object, b: object) -> None:
        self.events.append(("enter", a, b))

    def on_leave(self, a: object, b: object) -> None:
        self.events.append(("leave", a, b))

    def take(self) -> list[Event]:
        out, self.events = self.events, []
        return out


AnyAOI = GridAOI[Any] | BruteForceAOI[Any]


def make(impl: type[AnyAOI], distance: float = D) -> tuple[AnyAOI, Rec]:
    rec = Rec()
    aoi: AnyAOI = impl(distance, rec.on_enter, rec.on_leave)
    return aoi, rec


def exact_near(a: tuple[float, float], b: tuple[float, float], d: float) -> bool:
    """The definition, on rationals."""
    fd = Fraction(d)
    return abs(Fraction(a[0]) - Fraction(b[0])) <= fd and abs(Fraction(a[1]) - Fraction(b[1])) <= fd


@pytest.fixture(params=IMPLS, ids=impl_id)
def impl(request: pytest.FixtureRequest) -> type[AnyAOI]:
    return request.param  # type: ignore[no-any-return]


# -- the rules, on both implementations ---------------------------------------------------


def test_both_implement_the_protocol() -> None:
    rec = Rec()
    managers: list[AOIManager[str]] = [
        GridAOI(D, rec.on_enter, rec.on_leave),  # mypy checks these against the Protocol
        BruteForceAOI(D, rec.on_enter, rec.on_leave),
    ]
    for aoi in managers:
        aoi.enter("a", 0.0, 0.0)
        assert aoi.distance == D and set(aoi.neighbours("a")) == set()


def test_inclusive_square_boundary(impl: type[AnyAOI]) -> None:
    aoi, rec = make(impl)
    aoi.enter("a", 0.0, 0.0)
    aoi.enter("edge", 100.0, 0.0)
    aoi.enter("corner", -100.0, 100.0)
    aoi.enter("just-out", math.nextafter(100.0, 200.0), 0.0)
    aoi.enter("diagonal", 100.0, -math.nextafter(100.0, 200.0))
    assert set(aoi.neighbours("a")) == {"edge", "corner"}
    assert ("enter", "edge", "a") in rec.events and ("enter", "corner", "a") in rec.events
    # Square, not a circle: (100, 100) is 141 away and still in.
    aoi.moved("corner", 100.0, 100.0)
    assert "corner" in aoi.neighbours("a")


def test_exact_not_rounded(impl: type[AnyAOI]) -> None:
    # 100.0 - (-1e-30) rounds to 100.0, but the real distance is above D.
    aoi, _ = make(impl)
    aoi.enter("a", -1e-30, 0.0)
    aoi.enter("b", 100.0, 0.0)
    aoi.enter("c", 0.0, 100.0 + 1e-30)  # rounds to 100.0 on entry: that is its position
    assert set(aoi.neighbours("a")) == {"c"}
    aoi.moved("a", 1e-30, 0.0)
    assert set(aoi.neighbours("a")) == {"b", "c"}


def test_symmetric_and_never_its_own_neighbour(impl: type[AnyAOI]) -> None:
    aoi, _ = make(impl)
    rng = random.Random(7)
    for i in range(60):
        x = rng.choice([-150.0, -100.0, -50.0, 0.0, 50.0, 100.0, 150.0, rng.uniform(-200, 200)])
        aoi.enter(i, x, rng.uniform(-200, 200))
    for i in range(60):
        assert i not in aoi.neighbours(i)
        for j in aoi.neighbours(i):
            assert i in aoi.neighbours(j)


def test_one_event_per_pair_mover_first(impl: type[AnyAOI]) -> None:
    aoi, rec = make(impl)
    aoi.enter("a", 0.0, 0.0)
    assert rec.take() == []
    aoi.enter("b", 10.0, 10.0)
    assert rec.take() == [("enter", "b", "a")]
    aoi.moved("a", 500.0, 0.0)
    assert rec.take() == [("leave", "a", "b")]
    aoi.moved("b", 450.0, 0.0)
    assert rec.take() == [("enter", "b", "a")]


def test_leaves_then_enters_in_one_move(impl: type[AnyAOI]) -> None:
    aoi, rec = make(impl)
    aoi.enter("a", 0.0, 0.0)
    aoi.enter("west", -100.0, 0.0)
    aoi.enter("east", 150.0, 0.0)
    rec.take()
    aoi.moved("a", 50.0, 0.0)
    assert rec.take() == [("leave", "a", "west"), ("enter", "a", "east")]


def test_leave_fires_a_leave_for_every_neighbour(impl: type[AnyAOI]) -> None:
    aoi, rec = make(impl)
    for name, x in [("a", 0.0), ("b", 30.0), ("c", -90.0), ("d", 100.0), ("far", 300.0)]:
        aoi.enter(name, x, x / 2)
    rec.take()
    view = aoi.neighbours("a")
    aoi.leave("a")
    assert sorted(rec.take()) == [("leave", "a", n) for n in ("b", "c", "d")]
    assert "a" not in aoi and len(aoi) == 4
    assert len(view) == 0
    for n in ("b", "c", "d", "far"):
        assert "a" not in aoi.neighbours(n)
    with pytest.raises(KeyError):
        aoi.neighbours("a")


def test_reenter_after_leave(impl: type[AnyAOI]) -> None:
    aoi, rec = make(impl)
    aoi.enter("a", 0.0, 0.0)
    aoi.enter("b", 50.0, 50.0)
    old_view = aoi.neighbours("a")
    aoi.leave("a")
    rec.take()
    aoi.enter("a", 60.0, 60.0)
    assert rec.take() == [("enter", "a", "b")]
    assert set(aoi.neighbours("a")) == {"b"} and set(aoi.neighbours("b")) == {"a"}
    assert len(old_view) == 0  # a stay's view stays empty; the new stay has its own


def test_moving_far_away_and_back(impl: type[AnyAOI]) -> None:
    aoi, rec = make(impl)
    for i in range(5):
        aoi.enter(i, i * 10.0, -i * 10.0)
    rec.take()
    aoi.moved(0, 1e9, -1e9)
    assert sorted(rec.take()) == [("leave", 0, i) for i in range(1, 5)]
    assert len(aoi.neighbours(0)) == 0
    aoi.moved(0, 0.0, 0.0)
    assert sorted(rec.take()) == [("enter", 0, i) for i in range(1, 5)]


def test_same_position_is_no_move(impl: type[AnyAOI]) -> None:
    aoi, rec = make(impl)
    aoi.enter("a", 1.0, 2.0)
    aoi.enter("b", 3.0, 4.0)
    rec.take()
    aoi.moved("a", 1.0, 2.0)
    aoi.moved("a", 1, 2)  # ints are floats here
    assert rec.take() == []


def test_x_and_z_are_the_axes_y_is_ignored(impl: type[AnyAOI]) -> None:
    # The manager never sees y: the space passes (x, z) of a Vector3(x, y, z).
    aoi, _ = make(impl)
    for name, v in [("a", Vector3(0.0, 0.0, 0.0)), ("high", Vector3(0.0, 1e6, 100.0)),
                    ("deep", Vector3(-100.0, -1e6, 0.0)), ("z-out", Vector3(0.0, 0.0, 101.0))]:
        aoi.enter(name, v.x, v.z)
    assert set(aoi.neighbours("a")) == {"high", "deep"}


def test_negative_coordinates_across_cell_edges(impl: type[AnyAOI]) -> None:
    aoi, _ = make(impl)
    pts = {"o": (-0.0, -0.0), "a": (-100.0, -100.0), "b": (-100.5, 0.0), "c": (-1e-300, -250.0),
           "d": (-200.0, -200.0), "e": (-1e6, -1e6), "f": (-1e6 + 100.0, -1e6 - 100.0)}
    for k, (x, z) in pts.items():
        aoi.enter(k, x, z)
    for k in pts:
        assert set(aoi.neighbours(k)) == {
            o for o in pts if o != k and exact_near(pts[k], pts[o], D)
        }
    assert set(aoi.neighbours("o")) == {"a"}
    assert set(aoi.neighbours("e")) == {"f"}


@pytest.mark.parametrize("bad", [0, 0.0, -1.0, -math.inf, math.inf, math.nan])
def test_distance_must_be_finite_and_positive(impl: type[AnyAOI], bad: float) -> None:
    with pytest.raises(ValueError, match="distance"):
        impl(bad, print, print)


def test_distance_is_a_float(impl: type[AnyAOI]) -> None:
    aoi, _ = make(impl, 100)
    assert aoi.distance == 100.0 and type(aoi.distance) is float


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 10**400])
def test_bad_coordinates_change_nothing(impl: type[AnyAOI], bad: float) -> None:
    aoi, rec = make(impl)
    aoi.enter("a", 0.0, 0.0)
    aoi.enter("b", 10.0, 0.0)
    rec.take()
    for x, z in [(bad, 0.0), (0.0, bad)]:
        with pytest.raises(ValueError, match="finite"):
            aoi.enter("c", x, z)
        with pytest.raises(ValueError, match="finite"):
            aoi.moved("a", x, z)
    assert "c" not in aoi and rec.take() == []
    assert set(aoi.neighbours("a")) == {"b"}
    aoi.moved("a", 500.0, 0.0)  # and "a" still works
    assert rec.take() == [("leave", "a", "b")]


def test_misuse_errors(impl: type[AnyAOI]) -> None:
    aoi, _ = make(impl)
    aoi.enter("a", 0.0, 0.0)
    with pytest.raises(ValueError, match="already"):
        aoi.enter("a", 5.0, 5.0)
    with pytest.raises(KeyError):
        aoi.moved("nobody", 0.0, 0.0)
    with pytest.raises(KeyError):
        aoi.leave("nobody")
    with pytest.raises(KeyError):
        aoi.neighbours("nobody")
    aoi.leave("a")
    with pytest.raises(KeyError):
        aoi.leave("a")


def test_views_are_live_and_read_only(impl: type[AnyAOI]) -> None:
    aoi, _ = make(impl)
    aoi.enter("a", 0.0, 0.0)
    view = aoi.neighbours("a")
    aoi.enter("b", 1.0, 1.0)
    assert set(view) == {"b"} and "b" in view and len(view) == 1
    aoi.moved("b", 1000.0, 1.0)
    assert set(view) == set()
    assert not hasattr(view, "add") and not hasattr(view, "discard")


def test_callbacks_see_the_final_sets(impl: type[AnyAOI]) -> None:
    seen: list[tuple[str, object, object]] = []
    aoi: AnyAOI

    def has(a: str, b: str) -> object:
        return b in aoi.neighbours(a) if a in aoi else "gone"

    def on_enter(a: str, b: str) -> None:
        seen.append(("enter", has(a, b), has(b, a)))

    def on_leave(a: str, b: str) -> None:
        seen.append(("leave", has(a, b), has(b, a)))

    aoi = impl(D, on_enter, on_leave)
    aoi.enter("a", 0.0, 0.0)
    aoi.enter("b", 0.0, 0.0)
    aoi.moved("b", 0.0, 999.0)
    aoi.moved("b", 0.0, 0.0)
    aoi.leave("a")
    assert seen == [("enter", True, True), ("leave", False, False), ("enter", True, True),
                    ("leave", "gone", False)]


def test_reentrant_callbacks_keep_the_state_consistent(impl: type[AnyAOI]) -> None:
    # A hook moves someone else and removes a third object while events are delivered.
    aoi: AnyAOI
    pos: dict[int, tuple[float, float]] = {}
    armed = False

    def on_enter(a: int, b: int) -> None:
        nonlocal armed
        if armed:
            armed = False
            pos[3] = (5.0, 5.0)
            aoi.moved(3, 5.0, 5.0)
            del pos[4]
            aoi.leave(4)

    aoi = impl(D, on_enter, lambda a, b: None)
    for i, p in enumerate([(0.0, 0.0), (50.0, 0.0), (1200.0, 0.0), (800.0, 0.0), (-50.0, 0.0)]):
        pos[i] = p
        aoi.enter(i, *p)
    armed = True
    pos[2] = (850.0, 0.0)
    aoi.moved(2, 850.0, 0.0)  # meets 3, whose hook moves 3 next to 0 and removes 4
    assert not armed
    for i in pos:
        assert set(aoi.neighbours(i)) == {
            j for j in pos if j != i and exact_near(pos[i], pos[j], D)
        }


def test_event_order_is_deterministic_whatever_the_hashes(impl: type[AnyAOI]) -> None:
    class Tok:
        def __init__(self, label: int, h: int) -> None:
            self.label = label
            self.h = h

        def __hash__(self) -> int:
            return self.h

    def run(seed: int) -> list[tuple[str, int, int]]:
        hashes = random.Random(seed)
        toks = [Tok(i, hashes.getrandbits(60)) for i in range(40)]
        aoi, rec = make(impl)
        ops = random.Random(3)  # the same operations each time
        inside: set[int] = set()
        for _ in range(400):
            i = ops.randrange(40)
            x, z = ops.uniform(-300, 300), ops.uniform(-300, 300)
            if i not in inside:
                aoi.enter(toks[i], x, z)
                inside.add(i)
            elif ops.random() < 0.1:
                aoi.leave(toks[i])
                inside.discard(i)
            else:
                aoi.moved(toks[i], x, z)
        return [(k, a.label, b.label) for k, a, b in rec.events]  # type: ignore[attr-defined]

    first = run(1)
    assert len(first) > 1000
    assert run(2) == first


# -- the exact test and the rounded bounds ------------------------------------------------

finite = st.floats(allow_nan=False, allow_infinity=False)
distances = st.one_of(
    st.sampled_from([100.0, 1.0, 0.1, 3.0, 1e-300, 5e-324, 1e300, MAX]),
    st.floats(min_value=5e-324, max_value=MAX),
)


@st.composite
def close_pairs(draw: st.DrawFn) -> tuple[float, float, float]:
    """(a, b, d) with b near a +- d: the boundary cases."""
    d = draw(distances)
    a = draw(st.one_of(finite, st.floats(-1e3, 1e3)))
    b = a + draw(st.sampled_from([d, -d])) + draw(st.sampled_from([0.0, 1e-30, -1e-30, 1e-300]))
    for _ in range(draw(st.integers(0, 2))):  # and a few ulps off
        b = math.nextafter(b, draw(st.sampled_from([math.inf, -math.inf])))
    if not math.isfinite(b):
        b = a
    return a, b, d


@settings(max_examples=1500, deadline=None)
@given(st.one_of(st.tuples(finite, finite, distances), close_pairs()))
# Near the largest float the TwoSum of the boundary check overflowed (found by Hypothesis).
@example((-1.7976931348623157e308, -8.988465674311575e307, 8.988465674311584e307))
def test_within_is_the_real_number_test(abd: tuple[float, float, float]) -> None:
    a, b, d = abd
    expected = abs(Fraction(a) - Fraction(b)) <= Fraction(d)
    assert within(a, b, d) is expected
    assert within(b, a, d) is expected


@settings(max_examples=1500, deadline=None)
@given(st.one_of(st.tuples(finite, distances), close_pairs().map(lambda t: (t[0], t[2]))))
def test_bounds_are_rounded_inwards(ad: tuple[float, float]) -> None:
    a, d = ad
    hi = _add_down(a, d)
    real = Fraction(a) + Fraction(d)
    assert Fraction(hi) <= real
    above = math.nextafter(hi, math.inf)
    assert above == math.inf or Fraction(above) > real
    lo = _add_up(a, -d)
    real = Fraction(a) - Fraction(d)
    assert Fraction(lo) >= real
    below = math.nextafter(lo, -math.inf)
    assert below == -math.inf or Fraction(below) < real


def test_bounds_corner_cases() -> None:
    assert _add_down(MAX, 1e300) == MAX  # overflows: the largest float is below the sum
    assert _add_up(-MAX, -1e300) == -MAX
    assert _add_down(1.0, 2.0**-60) == 1.0  # inexact, and the nearest float is below
    assert _add_down(1.0 - 2.0**-53, 2.0**-54) == 1.0 - 2.0**-53  # the nearest is above: step down
    assert _add_up(1.0, -(2.0**-60)) == 1.0
    hi = _add_down(0.1, 100.0)  # the everyday inexact case
    assert Fraction(hi) <= Fraction(0.1) + 100 < Fraction(math.nextafter(hi, math.inf))


# -- GridAOI against the oracle -----------------------------------------------------------


def relation(pos: dict[int, tuple[float, float]], d: float) -> dict[int, set[int]]:
    """Neighbour sets from scratch."""
    return {
        i: {j for j in pos if j != i and within(p[0], pos[j][0], d) and within(p[1], pos[j][1], d)}
        for i, p in pos.items()
    }


Op = tuple[str, int] | tuple[str, int, float, float]


BUCKETS = [(1, "0"), (5, "1-4"), (20, "5-19"), (100, "20-99"), (math.inf, "100+")]


class Differential:
    """Runs the same operations on a GridAOI, a BruteForceAOI and the first GridAOI.

    The grid must agree with the brute force on every set and event (as sets), and with the
    first grid on the exact sequence of events and the order of every neighbour set.
    """

    def __init__(self, d: float, grid_cls: Callable[..., AnyAOI] = GridAOI) -> None:
        self.d = d
        self.grid, self.grec = make(grid_cls, d)  # type: ignore[arg-type]
        self.brute, self.brec = make(BruteForceAOI, d)
        self.legacy, self.lrec = make(LegacyGridAOI, d)  # type: ignore[arg-type]
        self.pos: dict[int, tuple[float, float]] = {}
        self.replayed: dict[object, set[object]] = {}  # neighbour sets rebuilt from the events
        self.counts = {"ops": 0, "errors": 0, "events": 0, "max neighbours": 0}

    def both(self, call: Callable[[AnyAOI], None]) -> type[BaseException] | None:
        errors: list[type[BaseException] | None] = []
        for aoi in (self.grid, self.brute, self.legacy):
            try:
                call(aoi)
                errors.append(None)
            except (KeyError, ValueError) as exc:
                errors.append(type(exc))
        assert errors[0] == errors[1] == errors[2]
        return errors[0]

    def run(self, op: Op) -> None:
        kind, i = op[0], op[1]
        # Mostly enter someone absent and act on someone present; 27..29 keep the errors.
        if i < 27 and kind == "enter" and i in self.pos and len(self.pos) < 30:
            i = min(set(range(30)) - set(self.pos))
            op = (kind, i, *op[2:])
        elif i < 27 and kind != "enter" and i not in self.pos and self.pos:
            i = sorted(self.pos)[i % len(self.pos)]
            op = (kind, i, *op[2:])
        if kind == "leave":
            err = self.both(lambda a: a.leave(i))
            assert (err is KeyError) == (i not in self.pos)
            if err is None:
                del self.pos[i]
        else:
            x, z = op[2], op[3]  # type: ignore[misc]
            if kind == "nudge" and i in self.pos:  # a small step from where it is
                x, z = self.pos[i][0] + x, self.pos[i][1] + z
                kind = "move"
            if kind == "enter":
                err = self.both(lambda a: a.enter(i, x, z))
                bad = not (math.isfinite(x) and math.isfinite(z))
                assert (err is ValueError) == (i in self.pos or bad)
            else:
                err = self.both(lambda a: a.moved(i, x, z))
                if i not in self.pos:
                    assert err is KeyError
                else:
                    assert (err is ValueError) == (not (math.isfinite(x) and math.isfinite(z)))
            if err is None:
                self.pos[i] = (x, z)
        self.counts["errors" if err else "ops"] += 1
        self.check(op)

    def check(self, op: Op) -> None:
        g, b = self.grec.take(), self.brec.take()
        assert g == self.lrec.take(), op  # the same events in the same order
        self.counts["events"] += len(g)
        assert len(g) == len(set(g)) and len(b) == len(set(b)), "an event fired twice"
        assert set(g) == set(b), op
        # Leaves before enters, and the mover first.
        kinds = [k for k, _, _ in g]
        assert kinds == sorted(kinds, key=lambda k: k == "enter")
        assert all(a == op[1] for _, a, _ in g)
        for k, a, c in g:
            if k == "enter":
                assert c not in self.replayed.setdefault(a, set())
                self.replayed[a].add(c)
                self.replayed.setdefault(c, set()).add(a)
            else:
                self.replayed[a].remove(c)
                self.replayed[c].remove(a)
        for i in self.pos:
            assert list(self.grid.neighbours(i)) == list(self.legacy.neighbours(i)), (op, i)
            mine = set(self.grid.neighbours(i))
            assert mine == set(self.brute.neighbours(i)), (op, i)
            assert mine == self.replayed.get(i, set()), (op, i)
            self.counts["max neighbours"] = max(self.counts["max neighbours"], len(mine))
        assert len(self.grid) == len(self.brute) == len(self.pos)
        i = op[1]
        if i in self.pos:  # the mover's row from scratch (the whole relation: see finish)
            p, d = self.pos[i], self.d
            assert set(self.grid.neighbours(i)) == {
                j
                for j, q in self.pos.items()
                if j != i and within(p[0], q[0], d) and within(p[1], q[1], d)
            }

    def finish(self) -> None:
        """The whole relation from scratch; and the per-example statistics."""
        truth = relation(self.pos, self.d)
        for i in self.pos:
            assert set(self.grid.neighbours(i)) == truth[i], i
        for k, v in self.counts.items():
            size = next(name for top, name in BUCKETS if v < top)
            event(f"{k}: {size}")


LIM = 2.0**48 * D  # where GridAOI starts clamping, for D = 100
BAD = st.sampled_from([math.nan, math.inf, -math.inf])


@st.composite
def scenarios(draw: st.DrawFn, d: float = D) -> list[Op]:
    """Operations on up to 30 objects, crowded around one origin.

    Most coordinates are the origin plus a multiple of D/4 (many pairs exactly D apart), or
    plus a float in +-3D; a few are anything finite, a special value, or not finite at all.
    Small steps ("nudge") exercise the move-inside-a-cell path.
    """
    origins = [-0.0, 0.1 * d, -1e3 * d, 1e17, -(2.0**52), 1e300, LIM * d / D, -LIM * d / D,
               LIM * d / D - d / 2]
    origin = draw(st.sampled_from([0.0] * 6 + [o for o in origins if math.isfinite(o)]))
    grid = st.integers(-8, 8).map(lambda k: origin + k * d / 4)
    near = st.floats(-3 * d, 3 * d).map(lambda v: origin + v)
    special = st.sampled_from([d, -d, math.nextafter(d, 0.0), math.nextafter(d, math.inf), -1e-300,
                               1e-300, -0.0, LIM, -LIM, LIM - 50.0, 1e300, -1e300, MAX, -MAX])
    coord = st.one_of(grid, grid, grid, grid, near, near, special, finite, BAD)
    step = st.one_of(st.sampled_from([0.0, 0.5, -0.5, d / 4, -d / 4, 1e-12]),
                     st.floats(-d / 16, d / 16), st.floats(-d / 16, d / 16))
    ids = st.integers(0, 29)
    op = st.one_of(
        st.tuples(st.just("enter"), ids, coord, coord),
        st.tuples(st.just("enter"), ids, grid, grid),
        st.tuples(st.just("move"), ids, coord, coord),
        st.tuples(st.just("move"), ids, near, near),
        st.tuples(st.just("nudge"), ids, step, step),
        st.tuples(st.just("nudge"), ids, step, step),
        st.tuples(st.just("nudge"), ids, step, step),
        st.tuples(st.just("leave"), ids),
    )
    first = draw(st.lists(st.tuples(st.just("enter"), ids, grid, grid), min_size=4, max_size=30))
    return first + draw(st.lists(op, min_size=10, max_size=150))


@pytest.mark.parametrize("grid", GRIDS, ids=impl_id)
@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenarios())
def test_grid_agrees_with_brute_force(grid: type[AnyAOI], op_list: list[Op]) -> None:
    diff = Differential(D, grid)
    for op in op_list:
        diff.run(op)
    diff.finish()


@pytest.mark.parametrize("grid", GRIDS, ids=impl_id)
@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    st.sampled_from([1.0, 0.1, 37.5, 1e-300, 1e300]).flatmap(
        lambda d: st.tuples(st.just(d), scenarios(d))
    )
)
def test_grid_agrees_with_brute_force_other_distances(
    grid: type[AnyAOI], d_ops: tuple[float, list[Op]]
) -> None:
    d, op_list = d_ops
    diff = Differential(d, grid)
    for op in op_list:
        diff.run(op)
    diff.finish()


@pytest.mark.parametrize("grid", GRIDS, ids=impl_id)
def test_walkers_and_teleports_agree_and_cells_are_swept(grid: type[AnyAOI]) -> None:
    rng = random.Random(11)
    diff = Differential(D, functools.partial(grid, sweep_slack=0))
    for i in range(30):
        diff.run(("enter", i, rng.uniform(-500, 500), rng.uniform(-500, 500)))
    for _ in range(1500):
        i = rng.randrange(30)
        r = rng.random()
        if r < 0.7:
            diff.run(("nudge", i, rng.uniform(-20, 20), rng.uniform(-20, 20)))
        elif r < 0.9:
            diff.run(("move", i, rng.uniform(-5e3, 5e3), rng.uniform(-5e3, 5e3)))
        elif r < 0.95:
            diff.run(("leave", i))
        else:
            diff.run(("enter", i, rng.uniform(-500, 500), rng.uniform(-500, 500)))
    assert isinstance(diff.grid, grid) and diff.grid.sweep_slack == 0
    cells = diff.grid._cells
    assert len(cells) <= 4 * len(diff.grid) + 9


@pytest.mark.parametrize("grid", GRIDS, ids=impl_id)
def test_huge_coordinates_are_clamped_but_correct(grid: type[AnyAOI]) -> None:
    lim = 2.0**48 * D
    diff = Differential(D, grid)
    pts = [
        (lim - 50.0, 0.0), (lim + 50.0, 0.0), (lim, lim), (lim - 100.0, lim - 100.0),
        (1e300, 0.0), (1e300 + 2.0**948, 0.0), (-lim - 40.0, -lim + 40.0), (-lim, -lim),
        (-MAX, MAX), (-MAX, MAX), (MAX, 0.0), (0.0, -1e300),
    ]
    for i, (x, z) in enumerate(pts):
        diff.run(("enter", i, x, z))
    for i, (x, z) in enumerate(pts):
        diff.run(("nudge", i, 1.0, -1.0))
        diff.run(("move", i, x, z))
        diff.run(("move", i, 0.0, 0.0))
        diff.run(("move", i, x, z))
    assert set(diff.grid.neighbours(0)) == {1}
    assert set(diff.grid.neighbours(2)) == {3}
    assert set(diff.grid.neighbours(8)) == {9}


@pytest.mark.parametrize("grid", GRIDS, ids=impl_id)
def test_extreme_distances(grid: type[AnyAOI]) -> None:
    for d, pts in [(MAX, [(MAX, -MAX), (-MAX, MAX), (0.0, 0.0), (MAX, MAX)]),
                   (1e300, [(MAX, 0.0), (-MAX, 0.0), (MAX - 1e300, 0.0)]),
                   (5e-324, [(0.0, 0.0), (5e-324, 0.0), (1e-323, 5e-324), (1.0, 1.0)])]:
        diff = Differential(d, grid)
        for i, (x, z) in enumerate(pts):
            diff.run(("enter", i, x, z))
        for i in range(len(pts)):
            diff.run(("move", i, 0.0, 0.0))


def iter_ops(n: int, seed: int) -> Iterator[Op]:
    rng = random.Random(seed)
    for _ in range(n):
        yield ("nudge", rng.randrange(30), rng.uniform(-3, 3), rng.uniform(-3, 3))


@pytest.mark.parametrize("grid", GRIDS, ids=impl_id)
def test_a_long_walk_in_a_crowd(grid: type[AnyAOI]) -> None:
    # Dense (~all within reach) and long: exercises the same-cell path thoroughly.
    rng = random.Random(5)
    diff = Differential(D, grid)
    for i in range(30):
        diff.run(("enter", i, rng.uniform(-150, 150), rng.uniform(-150, 150)))
    for op in iter_ops(1500, 6):
        diff.run(op)


@st.composite
def walks(draw: st.DrawFn) -> tuple[float, list[Op]]:
    """A crowd that walks, and now and then teleports, leaves or comes back.

    Up to 40 objects over a square of 1 to 8 cells a side, steps from a hair to more than a
    cell (so moves inside a cell, to the next cell and farther), positions sometimes on the
    cell edges and exactly D apart.
    """
    d = draw(st.sampled_from([D, 1.0, 37.5]))
    side = draw(st.sampled_from([1.0, 2.5, 4.0, 8.0])) * d
    n = draw(st.integers(2, 40))
    edge = st.integers(0, int(side / d) * 4).map(lambda k: k * d / 4)
    coord = st.one_of(st.floats(0.0, side), st.floats(0.0, side), edge)
    reach = draw(st.sampled_from([0.01, 0.1, 0.5, 1.5])) * d
    step = st.one_of(st.floats(-reach, reach), st.sampled_from([0.0, d / 4, -d / 4, d, -d]))
    first: list[Op] = [("enter", i, draw(coord), draw(coord)) for i in range(n)]
    op = st.one_of(
        *[st.tuples(st.just("nudge"), st.integers(0, n - 1), step, step)] * 8,
        st.tuples(st.just("move"), st.integers(0, n - 1), coord, coord),  # a teleport
        st.tuples(st.just("leave"), st.integers(0, n - 1)),
        st.tuples(st.just("enter"), st.integers(0, n - 1), coord, coord),
    )
    return d, first + draw(st.lists(op, min_size=1, max_size=200))


@pytest.mark.parametrize("grid", GRIDS, ids=impl_id)
@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(walks())
def test_random_walks_and_teleports_agree_with_brute_force_and_the_first_grid(
    grid: type[AnyAOI], d_ops: tuple[float, list[Op]]
) -> None:
    d, op_list = d_ops
    diff = Differential(d, grid)
    for op in op_list:
        diff.run(op)
    diff.finish()


@pytest.mark.parametrize("grid", GRIDS, ids=impl_id)
def test_a_long_random_walk_in_a_big_crowd_keeps_the_order_of_the_first_grid(
    grid: type[AnyAOI],
) -> None:
    """400 objects (~20 neighbours each), 6000 moves: 90 % walking, 10 % teleports."""
    rng = random.Random(17)
    side = math.sqrt(400 * (2 * D) ** 2 / 20)
    rec, lrec = Rec(), Rec()
    new = grid(D, rec.on_enter, rec.on_leave)
    old = LegacyGridAOI(D, lrec.on_enter, lrec.on_leave)
    pos = [[rng.uniform(0, side), rng.uniform(0, side)] for _ in range(400)]
    for i, (x, z) in enumerate(pos):
        new.enter(i, x, z)
        old.enter(i, x, z)
    for _ in range(6000):
        i = rng.randrange(400)
        if rng.random() < 0.1:
            pos[i] = [rng.uniform(0, side), rng.uniform(0, side)]
        else:
            pos[i] = [p + rng.uniform(-5.0, 5.0) for p in pos[i]]
        new.moved(i, *pos[i])
        old.moved(i, *pos[i])
        assert rec.take() == lrec.take()
    assert all(list(new.neighbours(i)) == list(old.neighbours(i)) for i in range(400))


# -- compiled or not -----------------------------------------------------------------------


def test_the_source_module_is_never_the_extension() -> None:
    module = pure_grid()
    assert str(module.__file__).endswith("aoi_grid.py")
    assert PureGridAOI.__module__ == module.__name__
    assert (GridAOI is not PureGridAOI) == aoi_module.COMPILED


def test_a_built_extension_is_in_use() -> None:
    """When the build made the extension (setup.py), the module imports it: not stale."""
    here = Path(aoi_module.__file__).parent
    built = [p for p in here.glob("aoi_grid.*") if p.suffix in (".so", ".pyd")]
    if not built:
        pytest.skip("no compiled aoi_grid here (GOWORLD_NO_MYPYC=1, or no C compiler)")
    assert aoi_module.COMPILED, (
        f"{built[0].name} is older than aoi_grid.py: run scripts/setup (pip install -e .)"
    )


def test_a_stale_extension_gives_way_to_the_source(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import os
    import types

    fake = types.ModuleType("goworld.entity.aoi_grid")
    built = tmp_path / "aoi_grid.cpython-311-x86_64-linux-gnu.so"
    fake.__file__ = str(built)
    built.write_bytes(b"")
    assert aoi_module._choose(fake) is fake  # no source next to it: an installed wheel
    source = tmp_path / "aoi_grid.py"
    source.write_text("")
    os.utime(source, (1000.0, 1000.0))
    os.utime(built, (2000.0, 2000.0))
    assert aoi_module._choose(fake) is fake  # built after the last edit
    os.utime(source, (3000.0, 3000.0))
    with caplog.at_level("WARNING", logger="goworld.game"):
        assert aoi_module._choose(fake) is pure_grid()  # edited since: the source
    assert "older than aoi_grid.py" in caplog.text
    plain = pure_grid()
    assert aoi_module._choose(plain) is plain


# -- enter_many: a restore's bulk load ----------------------------------------------------


@st.composite
def bulk_scenarios(draw: st.DrawFn) -> tuple[list[Op], list[tuple[int, float, float]], list[Op]]:
    """Some objects entered one by one, a batch entered at once, then more operations."""
    ops = draw(scenarios())
    # Half the time into an empty manager (a restore), else after some operations.
    before = [] if draw(st.booleans()) else ops[: draw(st.integers(0, len(ops) // 2))]
    grid = st.integers(-12, 12).map(lambda k: k * D / 4)
    near = st.floats(-3 * D, 3 * D)
    coord = st.one_of(grid, grid, near, st.sampled_from([D, -D, math.nextafter(D, 0.0), -0.0]))
    batch = draw(st.lists(st.tuples(st.integers(30, 59), coord, coord), max_size=30,
                          unique_by=lambda t: t[0]))
    after = draw(st.lists(st.tuples(st.just("nudge"), st.integers(0, 59),
                                    st.floats(-D / 8, D / 8), st.floats(-D / 8, D / 8)),
                          max_size=40))
    return before, batch, after


@pytest.mark.parametrize("grid", GRIDS, ids=impl_id)
@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(bulk_scenarios())
def test_enter_many_equals_entering_one_by_one_without_events(
    grid: type[AnyAOI], scenario: tuple[list[Op], list[tuple[int, float, float]], list[Op]],
) -> None:
    before, batch, after = scenario
    diff = Differential(D, grid)
    for op in before:
        diff.run(op)
    for aoi in (diff.grid, diff.brute, diff.legacy):
        aoi.enter_many(batch)
    assert diff.grec.take() == [] and diff.brec.take() == [] and diff.lrec.take() == []
    for i, _, _ in batch:  # the sets come out in the same order as the first grid's
        assert list(diff.grid.neighbours(i)) == list(diff.legacy.neighbours(i))
    for i, x, z in batch:
        diff.pos[i] = (x, z)
    truth = relation(diff.pos, D)
    for i in diff.pos:
        assert set(diff.grid.neighbours(i)) == truth[i], i
        assert set(diff.brute.neighbours(i)) == truth[i], i
        diff.replayed[i] = set(truth[i])
    for op in after:  # and the manager goes on from there like any other
        if op[1] in diff.pos:
            diff.run(op)
    diff.finish()


def test_enter_many_refuses_bad_input_and_changes_nothing(impl: type[AnyAOI]) -> None:
    aoi, rec = make(impl)
    aoi.enter("a", 0.0, 0.0)
    for bad in ([("b", 1.0, 1.0), ("c", math.nan, 0.0)],  # a bad coordinate
                [("b", 1.0, 1.0), ("b", 2.0, 2.0)],       # twice in the batch
                [("b", 1.0, 1.0), ("a", 2.0, 2.0)]):      # already in
        with pytest.raises(ValueError):
            aoi.enter_many(bad)
        assert len(aoi) == 1 and "b" not in aoi and set(aoi.neighbours("a")) == set()
    aoi.enter_many([("b", 1.0, 1.0), ("c", 500.0, 0.0)])
    assert set(aoi.neighbours("a")) == {"b"} and set(aoi.neighbours("c")) == set()
    assert rec.take() == []  # enter_many fired nothing
    aoi.moved("c", 50.0, 0.0)
    assert sorted(rec.take()) == [("enter", "c", "a"), ("enter", "c", "b")]
