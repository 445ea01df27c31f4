"""Area of interest (AOI): who is near whom inside one space (PROTOCOL.md §9).

Semantics (GoWorld's)
    One manager per space, with one distance ``D > 0`` (finite) for everybody. Two objects
    are *neighbours* iff ``|ax - bx| <= D`` and ``|az - bz| <= D``: an axis-aligned square,
    inclusive (exactly ``D`` apart is in), ``y`` ignored. The relation is symmetric and
    nobody is their own neighbour. The comparison is exact, as on real numbers, so it is
    symmetric and order-free: ``x = -1e-30`` and ``x = 100.0`` are *not* neighbours for
    ``D = 100`` even though ``100.0 - (-1e-30)`` rounds to ``100.0``. Coordinates go through
    :func:`float`; NaN, infinities and ints too large for a float raise :class:`ValueError`
    and leave the manager unchanged.

Interface (:class:`AOIManager`)
    ``enter(obj, x, z)``, ``moved(obj, x, z)``, ``leave(obj)``, ``neighbours(obj)``.
    ``obj`` is any hashable (the entity itself, or its id). The manager takes two callables,
    ``on_enter(a, b)`` and ``on_leave(a, b)``, and calls each **once per pair**, ``a`` being
    the object that entered, moved or left. The space does the symmetric part: GoWorld fires
    ``A.OnEnterAOI(B)`` then ``B.OnEnterAOI(A)``, and the same for leaves.
    ``enter`` of an object already in raises ValueError; ``moved``/``leave``/``neighbours``
    of an object not in raise KeyError. Moving to the same (x, z) does nothing.
    ``enter_many(items)`` adds many objects at once and fires no events: the neighbour sets
    come out as if each had entered in turn (restoring a frozen game rebuilds its spaces this
    way, with nobody to tell). A bad coordinate or a duplicate raises before anything changes.

Events of one operation
    The manager first updates every neighbour set for the whole operation, then fires its
    events: all ``on_leave`` first, then all ``on_enter`` (go-aoi's order). So a callback
    already sees the final :meth:`~AOIManager.neighbours` of both objects. ``leave(obj)``
    fires ``on_leave(obj, b)`` for every neighbour ``b``. The order is deterministic: it
    follows the insertion order of dicts, never hash order, so it depends neither on
    ``PYTHONHASHSEED`` nor on ``id()``. (The two implementations may order differently.)
    A callback may call back into the manager, whose state stays consistent, but the
    events still pending from the outer operation are delivered afterwards as computed:
    a space that destroys or moves entities from an AOI hook should post that work.

Neighbour sets
    :meth:`~AOIManager.neighbours` returns a **live, read-only view** (``dict.keys()``, a
    :class:`collections.abc.Set`) of the set the manager maintains, updated in place. The
    relation being symmetric, it serves as both ``InterestedIn`` and ``InterestedBy``: the
    entity layer keeps the view and stores no copy. A view belongs to one stay: ``leave``
    empties it and a later ``enter`` makes a new one.

Implementations
    :class:`BruteForceAOI`
        Compares the mover with everybody using :func:`within` (the exact test by
        difference); O(n) per operation, self-contained, obviously right: the oracle.
    :class:`GridAOI` (module :mod:`goworld.entity.aoi_grid`)
        A uniform grid of ``D x D`` cells, ``dict`` from ``(x // D, z // D)`` to a cell that
        lists its objects' entries (object, x, z and the bounds ``x +- D``, ``z +- D``) in
        the order they came into the cell. Every neighbour lies in the 3x3 block of cells
        around an object. ``enter`` and a move to another cell rebuild the set from that
        block and diff it (one C-level dict comparison says "unchanged"); a move inside the
        same cell (most walking moves) only looks at the 8 surrounding cells, and since the
        set was exact for the previous position, an object there changes side iff it lies
        between the previous bound and the new one: no dict is touched unless a pair
        changes.

Compiled or not
    ``aoi_grid.py`` is plain typed Python; the build (``setup.py``, run by ``pip install -e``
    and so by ``scripts/setup``) also compiles it with mypyc into an extension next to it,
    unless ``GOWORLD_NO_MYPYC=1`` or there is no C compiler. This module imports the
    extension when it is there and not older than the source (else the source, with a
    warning on the ``goworld.game`` logger if it was stale): :data:`COMPILED` says which.
    Both give the same events in the same order (tests/goworld/entity/test_aoi.py runs
    both, and checks the order against the first version of the grid). Compiled, a walking
    move costs ~2 us instead of ~7 us (docs/bench/BENCHMARKS.md "AOI").

Why the cell size is exactly ``D``
    * Each cell is the half-open ``[i*D, (i+1)*D)`` and ``x // D`` is the exact floor, so
      membership proves most of the test: everybody in our own cell is a neighbour, the
      cells above and below need only the ``z`` test, left and right only the ``x`` test,
      and each test is one-sided (the cell below can only fail ``oz >= z - D``). A
      candidate costs one float comparison, two in a corner cell; a move inside a cell does
      not look at its own cell at all.
    * The bounds ``x - D`` and ``x + D`` are computed once per operation and rounded
      inwards (exact for usual coordinates, corrected otherwise), so the float comparison is
      the exact real-number test.
    * Each cell caches its 8 neighbouring cells (``ring``), so a move does no dict lookup
      for them. Cells are therefore kept when they empty; once there are more than
      ``4 * len(self) + sweep_slack`` cells, the empty ones are dropped and the rings
      rebuilt lazily, so memory follows the objects and not where they have been.
    * Measured (``scripts/bench_aoi.py --cells``: 10k objects, ~20 neighbours each, the same
      walking moves interleaved) with the first, dict-based version of this grid: a plain
      grid testing every candidate on both axes costs ~17 us per move with cells of ``D``,
      ~22 us with ``D/2`` and ~26 us with ``2D``; this grid ~9 us on the same (loaded) run.
      A ``D/2`` version of this grid (5x5 cells, the inner 3x3 free, 16 outer cells tested)
      was 15-30% slower than ``D``: the extra loops cost more than the candidates they save.
    * Sorted per-cell coordinates, so that ``bisect`` finds the objects between the two
      bounds of a move, were measured too (pure Python, 10k objects, 1k walking moves):
      ~9.5 ms per tick against ~7 ms for the scan they replace. With ~5 objects per cell,
      two C calls per cell edge and keeping the lists sorted cost more than the scan.
    * Around ``|x| = 2**48 * D`` float floor division stops being exact, so coordinates
      beyond are clamped into one edge cell per side (clamping the cell index never puts two
      neighbours more than one cell apart), where everything is tested on both axes:
      correct, and slow only out there.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import logging
import math
import sys
from collections.abc import Callable, Hashable, Iterable, KeysView
from collections.abc import Set as AbstractSet
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from goworld.entity import aoi_grid as _loaded_grid

__all__ = ["AOICallback", "AOIManager", "BruteForceAOI", "COMPILED", "GridAOI", "pure_grid",
           "within"]

T = TypeVar("T", bound=Hashable)

AOICallback = Callable[[T, T], None]
"""``on_enter(a, b)`` / ``on_leave(a, b)``: ``a`` is the object that entered, moved or left."""


def _is_extension(module: ModuleType) -> bool:
    return str(getattr(module, "__file__", "")).endswith(
        tuple(importlib.machinery.EXTENSION_SUFFIXES)
    )


_pure: ModuleType | None = None


def pure_grid() -> ModuleType:
    """:mod:`goworld.entity.aoi_grid` run from its source, never compiled (tests, benches).

    When the extension is not in use this is the module :class:`GridAOI` comes from;
    otherwise the source is loaded once more under the name ``goworld.entity.aoi_grid_py``.
    """
    global _pure
    if _pure is None:
        if not _is_extension(_loaded_grid):
            _pure = _loaded_grid
        else:
            name = "goworld.entity.aoi_grid_py"
            spec = importlib.util.spec_from_file_location(
                name, Path(__file__).with_name("aoi_grid.py")
            )
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
            _pure = module
    return _pure


def _choose(loaded: ModuleType) -> ModuleType:
    """``loaded`` if it is source, or an extension not older than its source; else the source."""
    if not _is_extension(loaded):
        return loaded
    built = Path(str(loaded.__file__))
    source = built.with_name("aoi_grid.py")
    try:
        stale = source.stat().st_mtime > built.stat().st_mtime
    except OSError:  # no source next to it (an installed wheel): the build is the code
        return loaded
    if not stale:
        return loaded
    logging.getLogger("goworld.game").warning(
        "%s is older than %s: using the source, uncompiled (pip install -e . rebuilds it)",
        built.name, source.name,
    )
    return pure_grid()


if TYPE_CHECKING:
    from goworld.entity.aoi_grid import GridAOI, _add_down, _add_up, _coords
else:
    _grid = _choose(_loaded_grid)
    GridAOI = _grid.GridAOI
    _add_down = _grid._add_down
    _add_up = _grid._add_up
    _coords = _grid._coords

COMPILED: bool = _is_extension(sys.modules[GridAOI.__module__])
"""Whether :class:`GridAOI` is the mypyc-compiled one."""


class AOIManager(Protocol[T]):
    """What a space needs from an AOI implementation (STYLE.md practice 12)."""

    @property
    def distance(self) -> float:
        """The AOI distance D."""
        ...

    def enter(self, obj: T, x: float, z: float) -> None:
        """Add ``obj`` at (x, z) and fire ``on_enter`` for each neighbour."""

    def enter_many(self, items: Iterable[tuple[T, float, float]]) -> None:
        """Add every ``(obj, x, z)`` at once, firing **no** events (restoring a snapshot)."""

    def leave(self, obj: T) -> None:
        """Remove ``obj`` and fire ``on_leave`` for each of its neighbours."""

    def moved(self, obj: T, x: float, z: float) -> None:
        """Move ``obj`` to (x, z): ``on_leave`` for lost pairs, then ``on_enter`` for new ones."""

    def neighbours(self, obj: T) -> AbstractSet[T]:
        """The live, read-only neighbour set of ``obj``."""
        ...


def within(a: float, b: float, distance: float) -> bool:
    """``|a - b| <= distance`` on real numbers, for finite floats (the reference test)."""
    diff = b - a
    if -distance < diff < distance:  # the rounded difference is inside: so is the real one
        return True
    if diff == distance or diff == -distance:  # rounded onto the boundary: look closer
        # Knuth's TwoSum of b and -a: the real difference is exactly diff + err, unless an
        # intermediate overflowed (operands near the largest float): then compare exactly.
        na = -a
        nv = diff - b  # the part of -a that diff holds
        bv = diff - nv  # the part of b
        err = (b - bv) + (na - nv)
        if err != err:  # NaN: inf - inf somewhere above
            return abs(Fraction(b) - Fraction(a)) <= Fraction(distance)
        return err <= 0.0 if diff > 0.0 else err >= 0.0
    return False  # outside, or overflowed to an infinity (the real one is outside too)


class _AOIBase(Generic[T]):
    """The distance, the callbacks and the neighbour sets (obj -> dict used as a set)."""

    __slots__ = ("_distance", "_on_enter", "_on_leave", "_nbrs")

    def __init__(
        self, distance: float, on_enter: AOICallback[T], on_leave: AOICallback[T]
    ) -> None:
        d = float(distance)
        if not 0.0 < d < math.inf:
            raise ValueError(f"AOI distance must be finite and > 0, got {distance!r}")
        self._distance = d
        self._on_enter = on_enter
        self._on_leave = on_leave
        self._nbrs: dict[T, dict[T, None]] = {}

    @property
    def distance(self) -> float:
        """The AOI distance D."""
        return self._distance

    def __len__(self) -> int:
        """How many objects are in."""
        return len(self._nbrs)

    def __contains__(self, obj: object) -> bool:
        return obj in self._nbrs

    def _checked(self, items: Iterable[tuple[T, float, float]]) -> list[tuple[T, float, float]]:
        """``items`` with float coordinates; ValueError (nothing changed) on a bad one."""
        out = []
        seen: set[T] = set()
        nbrs = self._nbrs
        for obj, x, z in items:
            if obj in nbrs or obj in seen:
                raise ValueError(f"{obj!r} is already in this AOI")
            seen.add(obj)
            fx, fz = _coords(x, z)
            out.append((obj, fx, fz))
        return out

    def neighbours(self, obj: T) -> KeysView[T]:
        """The live, read-only neighbour set of ``obj`` (KeyError if it is not in).

        It is updated in place while ``obj`` stays in, and emptied when it leaves.
        """
        return self._nbrs[obj].keys()


class BruteForceAOI(_AOIBase[T]):
    """The reference: O(n) per operation, compares the mover with everybody."""

    __slots__ = ("_pos",)

    def __init__(
        self, distance: float, on_enter: AOICallback[T], on_leave: AOICallback[T]
    ) -> None:
        super().__init__(distance, on_enter, on_leave)
        self._pos: dict[T, tuple[float, float]] = {}

    def _near(self, obj: T, x: float, z: float) -> list[T]:
        d = self._distance
        return [
            b
            for b, (bx, bz) in self._pos.items()
            if b != obj and within(x, bx, d) and within(z, bz, d)
        ]

    def enter(self, obj: T, x: float, z: float) -> None:
        """Add ``obj`` at (x, z); ValueError if it is already in or on a bad coordinate."""
        if obj in self._pos:
            raise ValueError(f"{obj!r} is already in this AOI")
        x, z = _coords(x, z)
        near = self._near(obj, x, z)
        self._pos[obj] = (x, z)
        self._nbrs[obj] = dict.fromkeys(near)
        for b in near:
            self._nbrs[b][obj] = None
        for b in near:
            self._on_enter(obj, b)

    def enter_many(self, items: Iterable[tuple[T, float, float]]) -> None:
        """Add every ``(obj, x, z)``, firing no events (see the module docstring)."""
        checked = self._checked(items)
        pos = self._pos
        nbrs = self._nbrs
        for obj, x, z in checked:
            near = self._near(obj, x, z)
            pos[obj] = (x, z)
            nbrs[obj] = dict.fromkeys(near)
            for b in near:
                nbrs[b][obj] = None

    def leave(self, obj: T) -> None:
        """Remove ``obj`` (KeyError if it is not in) and fire a leave per neighbour."""
        del self._pos[obj]
        mine = self._nbrs.pop(obj)
        gone = list(mine)
        mine.clear()
        for b in gone:
            del self._nbrs[b][obj]
        for b in gone:
            self._on_leave(obj, b)

    def moved(self, obj: T, x: float, z: float) -> None:
        """Move ``obj`` (KeyError if it is not in, ValueError on a bad coordinate)."""
        if obj not in self._pos:
            raise KeyError(obj)
        x, z = _coords(x, z)
        self._pos[obj] = (x, z)
        near = dict.fromkeys(self._near(obj, x, z))
        mine = self._nbrs[obj]
        gone = [b for b in mine if b not in near]
        came = [b for b in near if b not in mine]
        for b in gone:
            del mine[b]
            del self._nbrs[b][obj]
        for b in came:
            mine[b] = None
            self._nbrs[b][obj] = None
        for b in gone:
            self._on_leave(obj, b)
        for b in came:
            self._on_enter(obj, b)
