"""The first GridAOI (commit 5f72858), kept verbatim as the oracle of event *order*.

The grid now lives in goworld/entity/aoi_grid.py with another layout (and may be compiled);
test_aoi.py checks that it fires the same events in the same order as this one, and leaves
the neighbour sets in the same order, for every operation. Not used by the product.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Hashable, Iterable, KeysView
from typing import Any, Generic, TypeVar

T = TypeVar("T", bound=Hashable)

AOICallback = Callable[[T, T], None]

_INF = math.inf
_MAX = sys.float_info.max
# Cell indices stay exact for -2**48 * D <= x < 2**48 * D (float floor division is exact
# below 2**50): cells -2**48 .. 2**48 - 1. Beyond, coordinates go to cell 2**48 or
# -2**48 - 1, which only they reach.
_CLAMP = 2.0**48


def _add_down(a: float, b: float) -> float:
    """The largest float <= a + b (the real sum), for finite a and b > 0."""
    s = a + b
    if s == _INF:  # the real sum is above the largest float
        return _MAX
    # TwoSum: the real sum is exactly s + err.
    bv = s - a
    av = s - bv
    err = (a - av) + (b - bv)
    return math.nextafter(s, -_INF) if err < 0.0 else s


def _add_up(a: float, b: float) -> float:
    """The smallest float >= a + b (the real sum), for finite a and b < 0."""
    return -_add_down(-a, -b)


def _coords(x: float, z: float) -> tuple[float, float]:
    """Both coordinates as finite floats, or ValueError."""
    try:
        fx = float(x)
        fz = float(z)
    except OverflowError:
        raise ValueError(f"AOI coordinates must be finite, got ({x!r}, {z!r})") from None
    if not (math.isfinite(fx) and math.isfinite(fz)):
        raise ValueError(f"AOI coordinates must be finite, got ({x!r}, {z!r})")
    return fx, fz


class _AOIBase(Generic[T]):
    """The distance, the callbacks and the neighbour sets (obj -> dict used as a set)."""

    __slots__ = ("_distance", "_on_enter", "_on_leave", "_nbrs")

    def __init__(
        self, distance: float, on_enter: AOICallback[T], on_leave: AOICallback[T]
    ) -> None:
        d = float(distance)
        if not 0.0 < d < _INF:
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


class _Cell(Generic[T]):
    """One ``D x D`` cell of a :class:`GridAOI`."""

    __slots__ = ("cx", "cz", "exact", "xs", "zs", "ring")

    def __init__(self, cx: float, cz: float, exact: bool) -> None:
        self.cx = cx
        self.cz = cz
        # Not a clamped edge cell: membership proves where the coordinates are.
        self.exact = exact
        self.xs: dict[T, float] = {}  # obj -> x
        self.zs: dict[T, float] = {}  # obj -> z, same keys
        # The 8 neighbouring cells: below, above, left, right, then the corners left-below,
        # left-above, right-below, right-above. Built on first use, forgotten by a sweep.
        self.ring: tuple[_Cell[T], ...] | None = None


_NO_NBRS: dict[Any, None] = {}  # placeholder while GridAOI.enter_many places everybody


class _Entry(Generic[T]):
    """Where one object of a :class:`GridAOI` is."""

    __slots__ = ("x", "z", "cell", "nbrs")

    def __init__(self, x: float, z: float, cell: _Cell[T], nbrs: dict[T, None]) -> None:
        self.x = x
        self.z = z
        self.cell = cell
        self.nbrs = nbrs  # the same dict as GridAOI._nbrs[obj]


class GridAOI(_AOIBase[T]):
    """A uniform grid of ``D x D`` cells (see the module docstring)."""

    __slots__ = ("_cells", "_entries", "_lim")

    #: Empty cells are dropped once there are more than ``4 * len(self) + SWEEP_SLACK``.
    SWEEP_SLACK = 1024

    def __init__(
        self, distance: float, on_enter: AOICallback[T], on_leave: AOICallback[T]
    ) -> None:
        super().__init__(distance, on_enter, on_leave)
        self._cells: dict[tuple[float, float], _Cell[T]] = {}
        self._entries: dict[T, _Entry[T]] = {}
        # |x| < _lim keeps x // D exact; inf when D is so large that it always is.
        self._lim = self._distance * _CLAMP

    # -- cells ---------------------------------------------------------------------------

    def _clamped(self, x: float, z: float) -> tuple[float, float]:
        """The cell of (x, z) when one is beyond the clamp (or not finite: ValueError)."""
        x, z = _coords(x, z)
        d = self._distance
        lim = self._lim
        # This clamps the cell index (to -2**48 - 1 .. 2**48), so it never moves two cells
        # apart. The fast paths test -lim < x < lim: also false for NaN and infinities.
        cx = x // d if -lim <= x < lim else (_CLAMP if x > 0.0 else -_CLAMP - 1.0)
        cz = z // d if -lim <= z < lim else (_CLAMP if z > 0.0 else -_CLAMP - 1.0)
        return cx, cz

    def _cell(self, cx: float, cz: float) -> _Cell[T]:
        """The cell (cx, cz), created if needed."""
        cell = self._cells.get((cx, cz))
        if cell is None:
            cell = _Cell(cx, cz, -_CLAMP <= cx < _CLAMP and -_CLAMP <= cz < _CLAMP)
            self._cells[(cx, cz)] = cell
        return cell

    def _place(self, obj: T, x: float, z: float) -> _Cell[T]:
        """Put ``obj`` (finite x, z) into its cell; returns the cell."""
        lim = self._lim
        if -lim < x < lim and -lim < z < lim:
            d = self._distance
            cell = self._cell(x // d, z // d)
        else:
            cell = self._cell(*self._clamped(x, z))
        cell.xs[obj] = x
        cell.zs[obj] = z
        return cell

    def _link(self, cell: _Cell[T]) -> tuple[_Cell[T], ...]:
        """Build ``cell.ring``. ``cell`` holds an object, so a sweep here keeps it."""
        if len(self._cells) > 4 * len(self._entries) + self.SWEEP_SLACK:
            self._sweep()
        cx = cell.cx
        cz = cell.cz
        get = self._cell
        ring = (
            get(cx, cz - 1.0),
            get(cx, cz + 1.0),
            get(cx - 1.0, cz),
            get(cx + 1.0, cz),
            get(cx - 1.0, cz - 1.0),
            get(cx - 1.0, cz + 1.0),
            get(cx + 1.0, cz - 1.0),
            get(cx + 1.0, cz + 1.0),
        )
        cell.ring = ring
        return ring

    def _sweep(self) -> None:
        """Drop the empty cells; forget every ring (it may point at a dropped cell)."""
        kept = {}
        for key, cell in self._cells.items():
            cell.ring = None
            if cell.xs:
                kept[key] = cell
        self._cells = kept

    def _bounds(self, x: float, z: float) -> tuple[float, float, float, float]:
        """``xlo, xhi, zlo, zhi``: a float v has ``|v - x| <= D`` iff ``xlo <= v <= xhi``."""
        d = self._distance
        nd = -d
        xhi = x + d
        if xhi - x != d or xhi - d != x:  # inexact (one of the two is exact: Fast2Sum)
            xhi = _add_down(x, d)
        xlo = x + nd
        if xlo - x != nd or xlo - nd != x:
            xlo = _add_up(x, nd)
        zhi = z + d
        if zhi - z != d or zhi - d != z:
            zhi = _add_down(z, d)
        zlo = z + nd
        if zlo - z != nd or zlo - nd != z:
            zlo = _add_up(z, nd)
        return xlo, xhi, zlo, zhi

    def _scan(self, obj: T, x: float, z: float, cell: _Cell[T]) -> dict[T, None]:
        """The neighbours of ``obj``, which is already in ``cell`` at (x, z)."""
        ring = cell.ring
        if ring is None:
            ring = self._link(cell)
        xlo, xhi, zlo, zhi = self._bounds(x, z)
        new: dict[T, None]
        if not cell.exact:  # a clamped edge cell: test everybody, both sides
            new = {}
            for c in (cell, *ring):
                zs = c.zs
                for o, ox in c.xs.items():
                    if xlo <= ox <= xhi and zlo <= zs[o] <= zhi:
                        new[o] = None
            del new[obj]
            return new

        new = dict.fromkeys(cell.xs)  # own cell: all in
        del new[obj]
        below, above, left, right, lb, la, rb, ra = ring
        for o, oz in below.zs.items():
            if oz >= zlo:
                new[o] = None
        for o, oz in above.zs.items():
            if oz <= zhi:
                new[o] = None
        for o, ox in left.xs.items():
            if ox >= xlo:
                new[o] = None
        for o, ox in right.xs.items():
            if ox <= xhi:
                new[o] = None
        zs = lb.zs
        for o, ox in lb.xs.items():
            if ox >= xlo and zs[o] >= zlo:
                new[o] = None
        zs = la.zs
        for o, ox in la.xs.items():
            if ox >= xlo and zs[o] <= zhi:
                new[o] = None
        zs = rb.zs
        for o, ox in rb.xs.items():
            if ox <= xhi and zs[o] >= zlo:
                new[o] = None
        zs = ra.zs
        for o, ox in ra.xs.items():
            if ox <= xhi and zs[o] <= zhi:
                new[o] = None
        return new

    def _step(self, obj: T, x: float, z: float, cell: _Cell[T], old: dict[T, None]) -> None:
        """``obj`` moved inside its own exact ``cell``, whose members all stay neighbours.

        Only the objects of the 8 ring cells can change side: test them against ``old``
        (the current set) directly, building nothing unless a pair changes.
        """
        ring = cell.ring
        if ring is None:
            ring = self._link(cell)
        xlo, xhi, zlo, zhi = self._bounds(x, z)
        below, above, left, right, lb, la, rb, ra = ring
        gone: list[T] = []
        came: list[T] = []
        for o, oz in below.zs.items():
            if oz >= zlo:
                if o not in old:
                    came.append(o)
            elif o in old:
                gone.append(o)
        for o, oz in above.zs.items():
            if oz <= zhi:
                if o not in old:
                    came.append(o)
            elif o in old:
                gone.append(o)
        for o, ox in left.xs.items():
            if ox >= xlo:
                if o not in old:
                    came.append(o)
            elif o in old:
                gone.append(o)
        for o, ox in right.xs.items():
            if ox <= xhi:
                if o not in old:
                    came.append(o)
            elif o in old:
                gone.append(o)
        zs = lb.zs
        for o, ox in lb.xs.items():
            if ox >= xlo and zs[o] >= zlo:
                if o not in old:
                    came.append(o)
            elif o in old:
                gone.append(o)
        zs = la.zs
        for o, ox in la.xs.items():
            if ox >= xlo and zs[o] <= zhi:
                if o not in old:
                    came.append(o)
            elif o in old:
                gone.append(o)
        zs = rb.zs
        for o, ox in rb.xs.items():
            if ox <= xhi and zs[o] >= zlo:
                if o not in old:
                    came.append(o)
            elif o in old:
                gone.append(o)
        zs = ra.zs
        for o, ox in ra.xs.items():
            if ox <= xhi and zs[o] <= zhi:
                if o not in old:
                    came.append(o)
            elif o in old:
                gone.append(o)
        if gone or came:
            self._apply(obj, old, gone, came)

    # -- events --------------------------------------------------------------------------

    def _diff(self, obj: T, old: dict[T, None], new: dict[T, None]) -> None:
        """``obj``'s set goes from ``old`` (live) to ``new`` (scratch, known to differ)."""
        # Usually one pair changes: find the likely side first, the other only if needed.
        gone: list[T]
        came: list[T]
        if len(new) > len(old):
            came = [b for b in new if b not in old]
            kept = len(new) - len(came)
            gone = [b for b in old if b not in new] if kept != len(old) else []
        else:
            gone = [b for b in old if b not in new]
            kept = len(old) - len(gone)
            came = [b for b in new if b not in old] if kept != len(new) else []
        self._apply(obj, old, gone, came)

    def _apply(self, obj: T, old: dict[T, None], gone: list[T], came: list[T]) -> None:
        """Update both sides of every changed pair, then fire leaves, then enters."""
        nbrs = self._nbrs
        for b in gone:
            del old[b]
            del nbrs[b][obj]
        for b in came:
            old[b] = None
            nbrs[b][obj] = None
        on_leave = self._on_leave
        for b in gone:
            on_leave(obj, b)
        on_enter = self._on_enter
        for b in came:
            on_enter(obj, b)

    # -- the interface -------------------------------------------------------------------

    def enter(self, obj: T, x: float, z: float) -> None:
        """Add ``obj`` at (x, z); ValueError if it is already in or on a bad coordinate."""
        if obj in self._entries:
            raise ValueError(f"{obj!r} is already in this AOI")
        x, z = _coords(x, z)
        cell = self._place(obj, x, z)
        new = self._scan(obj, x, z, cell)
        self._entries[obj] = _Entry(x, z, cell, new)
        nbrs = self._nbrs
        nbrs[obj] = new
        for b in new:
            nbrs[b][obj] = None
        on_enter = self._on_enter
        for b in new:
            on_enter(obj, b)

    def enter_many(self, items: Iterable[tuple[T, float, float]]) -> None:
        """Add every ``(obj, x, z)``, firing no events (see the module docstring).

        Everybody is put in their cell first. Into an empty manager (a restore), the pairs
        are then found cell by cell: everybody in one cell is a neighbour (a C-level copy of
        the cell), and each pair of adjacent cells is visited once, from the left/lower one,
        with the one-sided tests of :meth:`_scan`. Otherwise (or with clamped edge cells)
        each newcomer is scanned and the objects already in learn about it.
        """
        checked = self._checked(items)
        entries = self._entries
        nbrs = self._nbrs
        was_empty = not nbrs
        placed: list[tuple[T, _Entry[T]]] = []
        cells: dict[_Cell[T], None] = {}
        for obj, x, z in checked:
            cell = self._place(obj, x, z)
            e = _Entry(x, z, cell, _NO_NBRS)
            entries[obj] = e
            placed.append((obj, e))
            cells[cell] = None
        if was_empty and all(c.exact for c in cells):
            self._pair_cells(cells)
            for obj, e in placed:
                e.nbrs = nbrs[obj]
            return
        for obj, e in placed:
            e.nbrs = nbrs[obj] = self._scan(obj, e.x, e.z, e.cell)
        if not was_empty:  # the objects already in learn about the newcomers
            for obj, e in placed:
                for b in e.nbrs:
                    theirs = nbrs[b]
                    if obj not in theirs:  # b was in before (a newcomer's scan found obj)
                        theirs[obj] = None

    def _pair_cells(self, cells: Iterable[_Cell[T]]) -> None:
        """Every neighbour set from scratch, for exact cells holding every object."""
        nbrs = self._nbrs
        for cell in cells:  # own cell: everybody
            members = cell.xs
            for obj in members:
                mine = nbrs[obj] = dict.fromkeys(members)
                del mine[obj]
        get = self._cells.get
        bounds = self._bounds
        for cell in cells:  # each adjacent pair of cells once: right, above, and both
            cx = cell.cx  # right-hand diagonals
            cz = cell.cz
            right = get((cx + 1.0, cz))
            above = get((cx, cz + 1.0))
            ra = get((cx + 1.0, cz + 1.0))
            rb = get((cx + 1.0, cz - 1.0))
            if not (right or above or ra or rb):
                continue
            for obj, x in cell.xs.items():
                _, xhi, zlo, zhi = bounds(x, cell.zs[obj])
                mine = nbrs[obj]
                if right is not None:
                    for o, ox in right.xs.items():
                        if ox <= xhi:
                            mine[o] = None
                            nbrs[o][obj] = None
                if above is not None:
                    for o, oz in above.zs.items():
                        if oz <= zhi:
                            mine[o] = None
                            nbrs[o][obj] = None
                if ra is not None:
                    zs = ra.zs
                    for o, ox in ra.xs.items():
                        if ox <= xhi and zs[o] <= zhi:
                            mine[o] = None
                            nbrs[o][obj] = None
                if rb is not None:
                    zs = rb.zs
                    for o, ox in rb.xs.items():
                        if ox <= xhi and zs[o] >= zlo:
                            mine[o] = None
                            nbrs[o][obj] = None

    def leave(self, obj: T) -> None:
        """Remove ``obj`` (KeyError if it is not in) and fire a leave per neighbour."""
        e = self._entries.pop(obj)
        del e.cell.xs[obj]
        del e.cell.zs[obj]
        nbrs = self._nbrs
        mine = nbrs.pop(obj)
        gone = list(mine)
        mine.clear()
        for b in gone:
            del nbrs[b][obj]
        on_leave = self._on_leave
        for b in gone:
            on_leave(obj, b)

    def moved(self, obj: T, x: float, z: float) -> None:
        """Move ``obj`` (KeyError if it is not in, ValueError on a bad coordinate)."""
        e = self._entries[obj]
        try:
            x = float(x)
            z = float(z)
        except OverflowError:
            raise ValueError(f"AOI coordinates must be finite, got ({x!r}, {z!r})") from None
        if x == e.x and z == e.z:
            return
        lim = self._lim
        if -lim < x < lim and -lim < z < lim:  # also false for NaN and infinities
            d = self._distance
            cx = x // d
            cz = z // d
        else:
            cx, cz = self._clamped(x, z)
        e.x = x
        e.z = z
        cell = e.cell
        if cx == cell.cx and cz == cell.cz:
            cell.xs[obj] = x
            cell.zs[obj] = z
            if cell.exact:
                self._step(obj, x, z, cell, e.nbrs)
                return
        else:
            del cell.xs[obj]
            del cell.zs[obj]
            cell = e.cell = self._cell(cx, cz)
            cell.xs[obj] = x
            cell.zs[obj] = z
        new = self._scan(obj, x, z, cell)
        old = e.nbrs
        if new != old:  # C-level; a different length answers at once
            self._diff(obj, old, new)
