"""The grid AOI (:class:`GridAOI`), compiled with mypyc when the build could; see aoi.py.

:mod:`goworld.entity.aoi` documents the semantics and re-exports :class:`GridAOI`; this
module holds its implementation and the exact-rounding helpers it shares with the brute
force. It is plain typed Python that runs as it is, and ``setup.py`` also compiles it with
mypyc into an extension module next to this file (``pip install -e .`` does; set
``GOWORLD_NO_MYPYC=1`` to skip). :mod:`goworld.entity.aoi` imports the extension when it is
there and not older than this file, else this source (``aoi.COMPILED`` says which).

Layout
    A cell lists its objects twice, in the order they came into it (as the dicts of the
    first version did, so the events come in the same order): ``objs`` (for a C-level copy
    of the cell) and ``ents``, their :class:`_Entry` objects, which hold x, z and the bounds
    ``x +- D``, ``z +- D`` of the last position (unboxed floats once compiled). Each entry
    knows its index in those lists (``slot``): a move inside a cell writes the entry only;
    leaving a cell shifts the later slots down.

The move inside a cell (:meth:`GridAOI._step`)
    The neighbour sets are exact before every operation, so whether a ring object was a
    neighbour follows from the mover's *previous* bounds: an object below was in iff
    ``oz >= zlo_before``, and is iff ``oz >= zlo``. Only those between the two bounds change
    side, which one chained comparison finds; no dict is looked up unless a pair changes.
    Compiled, the ring scan is a few C comparisons per object; the time then goes to
    reaching the ~40 entries of the ring (memory, not arithmetic).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Hashable, Iterable, KeysView
from typing import Any, Generic, SupportsFloat, TypeVar

__all__ = ["GridAOI"]

T = TypeVar("T", bound=Hashable)

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


def _coords(x: SupportsFloat, z: SupportsFloat) -> tuple[float, float]:
    """Both coordinates as finite floats, or ValueError."""
    try:
        fx = float(x)
        fz = float(z)
    except OverflowError:
        raise ValueError(f"AOI coordinates must be finite, got ({x!r}, {z!r})") from None
    if not (math.isfinite(fx) and math.isfinite(fz)):
        raise ValueError(f"AOI coordinates must be finite, got ({x!r}, {z!r})")
    return fx, fz


def _bounds(x: float, z: float, d: float) -> tuple[float, float, float, float]:
    """``xlo, xhi, zlo, zhi``: a float v has ``|v - x| <= d`` iff ``xlo <= v <= xhi``."""
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


class _Cell(Generic[T]):
    """One ``D x D`` cell of a :class:`GridAOI`."""

    __slots__ = ("cx", "cz", "exact", "objs", "ents", "ring")

    def __init__(self, cx: float, cz: float, exact: bool) -> None:
        self.cx = cx
        self.cz = cz
        # Not a clamped edge cell: membership proves where the coordinates are.
        self.exact = exact
        # Parallel lists, in the order the objects came into this cell.
        self.objs: list[T] = []
        self.ents: list[_Entry[T]] = []
        # The 8 neighbouring cells: below, above, left, right, then the corners left-below,
        # left-above, right-below, right-above. Built on first use, forgotten by a sweep.
        self.ring: tuple[_Cell[T], _Cell[T], _Cell[T], _Cell[T],
                         _Cell[T], _Cell[T], _Cell[T], _Cell[T]] | None = None


class _Entry(Generic[T]):
    """Where one object of a :class:`GridAOI` is."""

    __slots__ = ("obj", "x", "z", "xlo", "xhi", "zlo", "zhi", "cell", "slot", "nbrs")

    def __init__(self, obj: T, x: float, z: float, cell: _Cell[T], slot: int,
                 nbrs: dict[T, None]) -> None:
        self.obj = obj
        self.x = x
        self.z = z
        # The bounds of (x, z) (see _bounds), once the entry's neighbours are known.
        self.xlo = x
        self.xhi = x
        self.zlo = z
        self.zhi = z
        self.cell = cell
        self.slot = slot  # index in the cell's lists
        self.nbrs = nbrs  # the same dict as GridAOI._nbrs[obj]


_NO_NBRS: dict[Any, None] = {}  # placeholder until the entry's scan


class GridAOI(Generic[T]):
    """A uniform grid of ``D x D`` cells (see the docstring of :mod:`goworld.entity.aoi`)."""

    __slots__ = ("_distance", "_on_enter", "_on_leave", "_nbrs", "_cells", "_entries", "_lim",
                 "sweep_slack")

    def __init__(
        self,
        distance: SupportsFloat,
        on_enter: Callable[[T, T], None],
        on_leave: Callable[[T, T], None],
        *,
        sweep_slack: int = 1024,
    ) -> None:
        d = float(distance)
        if not 0.0 < d < _INF:
            raise ValueError(f"AOI distance must be finite and > 0, got {distance!r}")
        self._distance = d
        self._on_enter = on_enter
        self._on_leave = on_leave
        self._nbrs: dict[T, dict[T, None]] = {}
        self._cells: dict[tuple[float, float], _Cell[T]] = {}
        self._entries: dict[T, _Entry[T]] = {}
        # |x| < _lim keeps x // D exact; inf when D is so large that it always is.
        self._lim = d * _CLAMP
        #: Empty cells are dropped once there are more than ``4 * len(self) + sweep_slack``.
        self.sweep_slack = sweep_slack

    @property
    def distance(self) -> float:
        """The AOI distance D."""
        return self._distance

    def __len__(self) -> int:
        """How many objects are in."""
        return len(self._nbrs)

    def __contains__(self, obj: object) -> bool:
        return obj in self._nbrs

    def neighbours(self, obj: T) -> KeysView[T]:
        """The live, read-only neighbour set of ``obj`` (KeyError if it is not in).

        It is updated in place while ``obj`` stays in, and emptied when it leaves.
        """
        return self._nbrs[obj].keys()

    # -- cells ---------------------------------------------------------------------------

    def _cell_of(self, x: float, z: float) -> tuple[float, float]:
        """The cell indices of finite (x, z), clamped beyond ``_lim``."""
        lim = self._lim
        d = self._distance
        # This clamps the cell index (to -2**48 - 1 .. 2**48), so it never moves two cells
        # apart.
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

    def _link(self, cell: _Cell[T]) -> tuple[_Cell[T], _Cell[T], _Cell[T], _Cell[T],
                                             _Cell[T], _Cell[T], _Cell[T], _Cell[T]]:
        """Build ``cell.ring``. ``cell`` holds an object, so a sweep here keeps it."""
        if len(self._cells) > 4 * len(self._entries) + self.sweep_slack:
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
            if cell.objs:
                kept[key] = cell
        self._cells = kept

    def _unplace(self, e: _Entry[T]) -> None:
        """Take ``e``'s object out of its cell; the later ones move up a slot."""
        cell = e.cell
        i = e.slot
        ents = cell.ents
        del ents[i]
        del cell.objs[i]
        for j in range(i, len(ents)):
            ents[j].slot = j

    def _bounds(self, x: float, z: float) -> tuple[float, float, float, float]:
        """``xlo, xhi, zlo, zhi``: a float v has ``|v - x| <= D`` iff ``xlo <= v <= xhi``."""
        return _bounds(x, z, self._distance)

    def _scan(self, obj: T, e: _Entry[T]) -> dict[T, None]:
        """The neighbours of ``obj``, whose entry ``e`` is in its cell with its bounds."""
        cell = e.cell
        ring = cell.ring
        if ring is None:
            ring = self._link(cell)
        xlo = e.xlo
        xhi = e.xhi
        zlo = e.zlo
        zhi = e.zhi
        new: dict[T, None]
        if not cell.exact:  # a clamped edge cell: test everybody, both sides
            new = {}
            for c in (cell, *ring):
                for m in c.ents:
                    ox = m.x
                    oz = m.z
                    if xlo <= ox <= xhi and zlo <= oz <= zhi:
                        new[m.obj] = None
            del new[obj]
            return new

        new = dict.fromkeys(cell.objs)  # own cell: all in
        del new[obj]
        below, above, left, right, lb, la, rb, ra = ring
        for m in below.ents:
            if m.z >= zlo:
                new[m.obj] = None
        for m in above.ents:
            if m.z <= zhi:
                new[m.obj] = None
        for m in left.ents:
            if m.x >= xlo:
                new[m.obj] = None
        for m in right.ents:
            if m.x <= xhi:
                new[m.obj] = None
        for m in lb.ents:
            if m.x >= xlo and m.z >= zlo:
                new[m.obj] = None
        for m in la.ents:
            if m.x >= xlo and m.z <= zhi:
                new[m.obj] = None
        for m in rb.ents:
            if m.x <= xhi and m.z >= zlo:
                new[m.obj] = None
        for m in ra.ents:
            if m.x <= xhi and m.z <= zhi:
                new[m.obj] = None
        return new

    def _step(self, obj: T, e: _Entry[T], pxlo: float, pxhi: float, pzlo: float,
              pzhi: float) -> None:
        """``obj`` moved inside its own exact cell; its bounds were ``pxlo .. pzhi``.

        Its cell mates stay neighbours; a ring object changes side iff it lies between the
        previous bound and the new one (the set is exact for the previous position). Gone
        and came are listed cell by cell in ring order, as :meth:`_scan` would find them.
        """
        cell = e.cell
        ring = cell.ring
        if ring is None:
            ring = self._link(cell)
        xlo = e.xlo
        xhi = e.xhi
        zlo = e.zlo
        zhi = e.zhi
        below, above, left, right, lb, la, rb, ra = ring
        gone: list[T] = []
        came: list[T] = []
        # Sides: in iff one comparison holds; those between the two bounds change side.
        if zlo > pzlo:
            for m in below.ents:
                if pzlo <= m.z < zlo:
                    gone.append(m.obj)
        elif zlo < pzlo:
            for m in below.ents:
                if zlo <= m.z < pzlo:
                    came.append(m.obj)
        if zhi > pzhi:
            for m in above.ents:
                if pzhi < m.z <= zhi:
                    came.append(m.obj)
        elif zhi < pzhi:
            for m in above.ents:
                if zhi < m.z <= pzhi:
                    gone.append(m.obj)
        if xlo > pxlo:
            for m in left.ents:
                if pxlo <= m.x < xlo:
                    gone.append(m.obj)
        elif xlo < pxlo:
            for m in left.ents:
                if xlo <= m.x < pxlo:
                    came.append(m.obj)
        if xhi > pxhi:
            for m in right.ents:
                if pxhi < m.x <= xhi:
                    came.append(m.obj)
        elif xhi < pxhi:
            for m in right.ents:
                if xhi < m.x <= pxhi:
                    gone.append(m.obj)
        # Corners: in iff two comparisons hold.
        for m in lb.ents:
            ox = m.x
            oz = m.z
            if ox >= xlo and oz >= zlo:
                if not (ox >= pxlo and oz >= pzlo):
                    came.append(m.obj)
            elif ox >= pxlo and oz >= pzlo:
                gone.append(m.obj)
        for m in la.ents:
            ox = m.x
            oz = m.z
            if ox >= xlo and oz <= zhi:
                if not (ox >= pxlo and oz <= pzhi):
                    came.append(m.obj)
            elif ox >= pxlo and oz <= pzhi:
                gone.append(m.obj)
        for m in rb.ents:
            ox = m.x
            oz = m.z
            if ox <= xhi and oz >= zlo:
                if not (ox <= pxhi and oz >= pzlo):
                    came.append(m.obj)
            elif ox <= pxhi and oz >= pzlo:
                gone.append(m.obj)
        for m in ra.ents:
            ox = m.x
            oz = m.z
            if ox <= xhi and oz <= zhi:
                if not (ox <= pxhi and oz <= pzhi):
                    came.append(m.obj)
            elif ox <= pxhi and oz <= pzhi:
                gone.append(m.obj)
        if gone or came:
            self._apply(obj, e.nbrs, gone, came)

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

    def _put(self, obj: T, x: float, z: float) -> _Entry[T]:
        """A new entry for ``obj`` at finite (x, z), in its cell (no neighbours yet)."""
        cx, cz = self._cell_of(x, z)
        cell = self._cell(cx, cz)
        ents = cell.ents
        e = _Entry(obj, x, z, cell, len(ents), _NO_NBRS)
        e.xlo, e.xhi, e.zlo, e.zhi = _bounds(x, z, self._distance)
        ents.append(e)
        cell.objs.append(obj)
        self._entries[obj] = e
        return e

    def enter(self, obj: T, x: SupportsFloat, z: SupportsFloat) -> None:
        """Add ``obj`` at (x, z); ValueError if it is already in or on a bad coordinate."""
        if obj in self._entries:
            raise ValueError(f"{obj!r} is already in this AOI")
        fx, fz = _coords(x, z)
        e = self._put(obj, fx, fz)
        new = self._scan(obj, e)
        e.nbrs = new
        nbrs = self._nbrs
        nbrs[obj] = new
        for b in new:
            nbrs[b][obj] = None
        on_enter = self._on_enter
        for b in new:
            on_enter(obj, b)

    def enter_many(self, items: Iterable[tuple[T, SupportsFloat, SupportsFloat]]) -> None:
        """Add every ``(obj, x, z)``, firing no events (see :mod:`goworld.entity.aoi`).

        Everybody is put in their cell first. Into an empty manager (a restore), the pairs
        are then found cell by cell: everybody in one cell is a neighbour (a C-level copy of
        the cell), and each pair of adjacent cells is visited once, from the left/lower one,
        with the one-sided tests of :meth:`_scan`. Otherwise (or with clamped edge cells)
        each newcomer is scanned and the objects already in learn about it.
        """
        checked: list[tuple[T, float, float]] = []
        seen: set[T] = set()
        entries = self._entries
        for obj, x, z in items:
            if obj in entries or obj in seen:
                raise ValueError(f"{obj!r} is already in this AOI")
            seen.add(obj)
            fx, fz = _coords(x, z)
            checked.append((obj, fx, fz))
        nbrs = self._nbrs
        was_empty = not nbrs
        placed: list[tuple[T, _Entry[T]]] = []
        cells: dict[_Cell[T], None] = {}
        for obj, fx, fz in checked:
            e = self._put(obj, fx, fz)
            placed.append((obj, e))
            cells[e.cell] = None
        if was_empty and all(c.exact for c in cells):
            self._pair_cells(list(cells))
            for obj, e in placed:
                e.nbrs = nbrs[obj]
            return
        for obj, e in placed:
            e.nbrs = nbrs[obj] = self._scan(obj, e)
        if not was_empty:  # the objects already in learn about the newcomers
            for obj, e in placed:
                for b in e.nbrs:
                    theirs = nbrs[b]
                    if obj not in theirs:  # b was in before (a newcomer's scan found obj)
                        theirs[obj] = None

    def _pair_cells(self, cells: list[_Cell[T]]) -> None:
        """Every neighbour set from scratch, for exact cells holding every object."""
        nbrs = self._nbrs
        for cell in cells:  # own cell: everybody
            members = cell.objs
            for obj in members:
                mine = dict.fromkeys(members)
                del mine[obj]
                nbrs[obj] = mine
        get = self._cells.get
        for cell in cells:  # each adjacent pair of cells once: right, above, and both
            cx = cell.cx  # right-hand diagonals
            cz = cell.cz
            right = get((cx + 1.0, cz))
            above = get((cx, cz + 1.0))
            ra = get((cx + 1.0, cz + 1.0))
            rb = get((cx + 1.0, cz - 1.0))
            if right is None and above is None and ra is None and rb is None:
                continue
            for e in cell.ents:
                obj = e.obj
                xhi = e.xhi
                zlo = e.zlo
                zhi = e.zhi
                mine = nbrs[obj]
                if right is not None:
                    for m in right.ents:
                        if m.x <= xhi:
                            mine[m.obj] = None
                            nbrs[m.obj][obj] = None
                if above is not None:
                    for m in above.ents:
                        if m.z <= zhi:
                            mine[m.obj] = None
                            nbrs[m.obj][obj] = None
                if ra is not None:
                    for m in ra.ents:
                        if m.x <= xhi and m.z <= zhi:
                            mine[m.obj] = None
                            nbrs[m.obj][obj] = None
                if rb is not None:
                    for m in rb.ents:
                        if m.x <= xhi and m.z >= zlo:
                            mine[m.obj] = None
                            nbrs[m.obj][obj] = None

    def leave(self, obj: T) -> None:
        """Remove ``obj`` (KeyError if it is not in) and fire a leave per neighbour."""
        e = self._entries[obj]
        self._unplace(e)
        del self._entries[obj]
        nbrs = self._nbrs
        mine = nbrs.pop(obj)
        gone = list(mine)
        mine.clear()
        for b in gone:
            del nbrs[b][obj]
        on_leave = self._on_leave
        for b in gone:
            on_leave(obj, b)

    def moved(self, obj: T, x: SupportsFloat, z: SupportsFloat) -> None:
        """Move ``obj`` (KeyError if it is not in, ValueError on a bad coordinate)."""
        e = self._entries[obj]
        try:
            fx = float(x)
            fz = float(z)
        except OverflowError:
            raise ValueError(f"AOI coordinates must be finite, got ({x!r}, {z!r})") from None
        if fx == e.x and fz == e.z:
            return
        lim = self._lim
        d = self._distance
        if -lim < fx < lim and -lim < fz < lim:  # also false for NaN and infinities
            cx = fx // d
            cz = fz // d
        else:
            fx, fz = _coords(fx, fz)
            cx, cz = self._cell_of(fx, fz)
        e.x = fx
        e.z = fz
        pxlo = e.xlo
        pxhi = e.xhi
        pzlo = e.zlo
        pzhi = e.zhi
        e.xlo, e.xhi, e.zlo, e.zhi = _bounds(fx, fz, d)
        cell = e.cell
        if cx == cell.cx and cz == cell.cz:
            if cell.exact:
                self._step(obj, e, pxlo, pxhi, pzlo, pzhi)
                return
        else:
            self._unplace(e)
            cell = e.cell = self._cell(cx, cz)
            e.obj = obj  # the cell holds the key as last given, as a dict would
            ents = cell.ents
            e.slot = len(ents)
            ents.append(e)
            cell.objs.append(obj)
        new = self._scan(obj, e)
        old = e.nbrs
        if new != old:  # C-level; a different length answers at once
            self._diff(obj, old, new)
