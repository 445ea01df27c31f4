"""Freezing a game to disk and restoring it (``goworld reload``; PROTOCOL.md §6, §7).

Freeze (on SIGHUP): ask every dispatcher to block this game (START_FREEZE_GAME); once all
have acknowledged, nothing more arrives from them, so in one loop callback: run every
entity's ``on_freeze``, snapshot the whole state, stop all timers. Then wait for queued saves,
write ``game<id>_freezed.dat`` atomically (temporary file, fsync, rename) and exit. If a hook
or the snapshot fails, the freeze is cancelled (CANCEL_FREEZE_GAME) and the game keeps
running; the reason goes to the log and to ``.goworld/game<id>.freeze-error`` for the CLI.

The snapshot keeps more than GoWorld's: one :class:`~goworld.entity.state.EntityState` per
entity, the record a migration carries too (type, attributes, position, yaw, space, client
binding, client syncing, timers with their wall-clock due times, and each entity's own Python
fields: anything picklable, references to other entities stored by id and resolved on
restore), the local service shards, the service calls waiting for a shard, the
deployment-ready flag, and the migrations under way (``enter_space`` to a space of another game
whose answer has not come: it is held by the dispatchers and taken up after the restore; GoWorld
drops them). The file is a pickled dict
with a ``version``; a file of another version (an older layout) is refused with an error. Each
entity is one tuple of the EntityState's fields in order (:data:`LAYOUT`, stored in the file
and checked): ``EntityState(*record)``. Tuples pickle and unpickle in half the time of dicts,
and need no conversion on the way back (the file is our own output).

Restore (``-restore``): rebuild spaces (AOI re-enabled), then entities, with clients detached
so that no 1002/1003 is sent; enter spaces quietly (AOI neighbours rebuilt); re-attach clients;
re-arm timers at their due times; mark every entity for a position re-sync; ``on_restored``.
The file is removed only once every dispatcher has taken the game back.

A head start for the standby: right after the hooks, before its snapshot, the freezing game
writes its AOI layout (:func:`aoi_layout`: each space with AOI, who is in it and where, in
restore order; ``game<id>_freezed.aoi``). The standby makes those entities' bare objects and
fills the AOIs from it (:func:`prebuild`, the largest part of a restore: ~65 ms of ~120 at 10k
entities) while the snapshot is taken and written, on another core. The restore uses those
objects and takes a space's AOI only if its members are exactly the snapshot's, in order
(else it rebuilds that one): the layout is never trusted, at worst it saves nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import pickle
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from game.migration import apply_states
from goworld.entity.aoi import GridAOI
from goworld.entity.entity import SYNC_NEIGHBOURS, SYNC_OWN, Entity
from goworld.entity.registry import SPACE_TYPE_NAME
from goworld.entity.space import Space
from goworld.entity.state import ENGINE_FIELDS, EntityState, FieldsError
from goworld.entity.vector import Vector3
from goworld.errors import GoWorldError

if TYPE_CHECKING:
    from game.runtime import GameRuntime

__all__ = [
    "FORMAT_VERSION", "LAYOUT", "READABLE", "FreezeError", "Prebuilt", "aoi_layout", "prebuild", "record_of",
    "restore", "snapshot",
]

logger = logging.getLogger("goworld.game")

#: The freeze file's layout. 2: entities as ``EntityState.to_plain()`` dicts; 3: as tuples of
#: the EntityState's fields in :data:`LAYOUT` order.
FORMAT_VERSION = 3
#: What a restore reads: a reload freezes with the running (older) code and restores with the
#: new code, so the first reload onto this release gets a version 2 file.
READABLE = (2, 3)
#: The order of a record's items: EntityState's fields (the file names them; a restore checks).
LAYOUT = tuple(f.name for f in dataclasses.fields(EntityState))
_ENGINE = frozenset(ENGINE_FIELDS)


class FreezeError(GoWorldError):
    """A freeze could not be completed (a hook raised, or state cannot be saved)."""


def record_of(entity: Entity) -> tuple[Any, ...]:
    """``EntityState.capture(entity)`` as a :data:`LAYOUT` tuple; raises :class:`FreezeError`.

    An entity with none of its own fields, not a space (almost all of them), is read here
    directly, at half the cost: the same values as ``capture`` (a test compares them)."""
    if isinstance(entity, Space) or not entity.__dict__.keys() <= _ENGINE:
        try:
            state = EntityState.capture(entity)
        except FieldsError as exc:
            raise FreezeError(str(exc)) from exc
        return tuple(getattr(state, name) for name in LAYOUT)
    p = entity.position
    c = entity.client
    space = entity.space
    timers = entity.timer_records
    return (
        entity.desc.name,
        entity.id,
        entity.attrs.to_builtin(),
        (p.x, p.y, p.z),
        entity.yaw,
        space.id if space is not None else None,
        c.state() if c is not None else None,
        entity.client_syncing,
        [(r.method, r.args, r.fire_at, r.interval, r.repeat) for r in timers.values()],
        b"",
        None,
    )


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside: snapshot and restore allocate hundreds of
    thousands of long-lived objects in one go, and the collector would rescan the growing
    heap again and again (it doubled the restore time of 10k entities, unpredictably).

    On the way out everything is moved to the oldest generation (``gc.freeze()`` then
    ``gc.unfreeze()``, no traversal): otherwise the first young collection after a restore
    walks all of it, ~27 ms for 10k entities, right when the game starts serving. Cycles
    among these objects are still found, by the next full collection."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.freeze()
            gc.unfreeze()
            gc.enable()


def snapshot(rt: GameRuntime, early: Callable[[bytes], None] | None = None) -> dict[str, Any]:
    """The whole state of ``rt`` as plain data; raises :class:`FreezeError`. ``early`` gets
    the pickled :func:`aoi_layout` first, after the hooks, when a space has an AOI (a
    failure there is only logged)."""
    for entity in list(rt.entities.values()):
        try:
            entity.on_freeze()
        except Exception as exc:
            raise FreezeError(f"{entity!r}.on_freeze raised {type(exc).__name__}: {exc}") from exc
    spaces = [e for e in rt.entities.values() if isinstance(e, Space)]
    spaces.sort(key=lambda s: 0 if s.is_nil else 1)
    others = [e for e in rt.entities.values() if not isinstance(e, Space)]
    if early is not None:
        try:
            layout = aoi_layout(spaces, others)
            if layout["spaces"]:
                early(dumps(layout))
        except Exception:
            logger.warning("game%d: the AOI layout was not written", rt.game_id, exc_info=True)
    return {
        "version": FORMAT_VERSION,
        "game_id": rt.game_id,
        "layout": LAYOUT,
        "entities": [record_of(e) for e in [*spaces, *others]],
        "services": [[name, shard, eid] for (name, shard), eid in rt.services.local.items()],
        "service_calls": rt.services.pending_state(),
        "ready": rt.deployment_ready,
        # enter_space calls to another game under way: their answers are held for the restore
        "migrations": [[eid, space_id, list(pos)] for eid, (space_id, pos) in rt.migration.pending.items()],
    }


def aoi_layout(spaces: list[Space], others: list[Entity]) -> dict[str, Any]:
    """Each space with AOI and what a restore will put into that AOI, in the same order:
    ``(space type, space id, distance, [(type, entity id, x, z), ...])``. The freezing game
    writes it before its snapshot; a standby fills the AOIs from it (:func:`prebuild`)
    while the snapshot is being taken and written."""
    entries: dict[Space, list[tuple[str, str, float, float]]] = {}
    for e in others:
        space = e.space
        if space is not None and space.aoi is not None and e.desc.use_aoi:
            p = e.position
            entries.setdefault(space, []).append((e.desc.name, e.id, p.x, p.z))
    layout = []
    for space in spaces:
        if space in entries and space.aoi is not None:
            layout.append((space.desc.name, space.id, space.aoi.distance, entries[space]))
    return {"version": FORMAT_VERSION, "spaces": layout}


@dataclasses.dataclass
class Prebuilt:
    """What a standby made from an :func:`aoi_layout` before the freeze file came: bare
    entities (``cls.__new__``) by id, and per space id its AOI filled with them plus the
    ``(entity, x, z)`` items given. A restore uses the objects for those entities and takes
    a space's AOI only if its members turn out to be exactly those items."""

    made: dict[str, Entity] = dataclasses.field(default_factory=dict)
    aois: dict[str, tuple[GridAOI[Entity], list[tuple[Entity, float, float]]]] = (
        dataclasses.field(default_factory=dict)
    )

    @property
    def entities(self) -> int:
        return sum(len(items) for _, items in self.aois.values())


def prebuild(rt: GameRuntime, data: bytes) -> Prebuilt:
    """Fill the AOIs of a pickled :func:`aoi_layout` with bare entities (raises on a bad
    layout: the restore then rebuilds everything itself)."""
    pre = Prebuilt()
    with gc_paused():
        layout = pickle.loads(data)
        if layout.get("version") != FORMAT_VERSION:
            raise FreezeError(f"AOI layout version {layout.get('version')!r}")
        _register_space_type(rt, (space_type for space_type, *_ in layout["spaces"]))
        get = rt.registry.get
        for space_type, space_id, distance, entries in layout["spaces"]:
            space_cls = get(space_type).cls
            space = space_cls.__new__(space_cls)
            assert isinstance(space, Space)
            space.restore_aoi(distance)  # a bare space, only to make its kind of AOI
            aoi = space.aoi
            assert aoi is not None
            items = []
            for type_name, eid, x, z in entries:
                cls = get(type_name).cls
                obj = pre.made[eid] = cls.__new__(cls)
                items.append((obj, x, z))
            aoi.enter_many(items)
            pre.aois[space_id] = (aoi, items)
    return pre


def _register_space_type(rt: GameRuntime, type_names: Iterable[str]) -> None:
    """The base space type, if the game registers none and the snapshot has spaces."""
    if rt.registry.space_desc is None and SPACE_TYPE_NAME in type_names:
        rt.registry.register_space(Space)


def stop_timers(rt: GameRuntime) -> None:
    stop_all = rt.timers.stop_all
    for entity in rt.entities.values():
        if entity.timer_records:
            stop_all(entity)


def dumps(state: dict[str, Any]) -> bytes:
    return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)


def load(path: Path) -> dict[str, Any]:
    try:
        with gc_paused():
            state = pickle.loads(path.read_bytes())
    except Exception as exc:
        raise FreezeError(f"{path}: not a readable freeze file ({exc})") from exc
    if not isinstance(state, dict) or "version" not in state:
        raise FreezeError(f"{path}: unknown freeze format")
    _check_format(state, f"{path}: ")
    return state


def _check_format(state: dict[str, Any], where: str = "") -> None:
    version = state.get("version")
    if version not in READABLE:
        raise FreezeError(
            f"{where}freeze format version {version!r}, this code reads versions "
            f"{' and '.join(map(str, READABLE))} (written by another release: restart the game "
            "instead)"
        )
    if version == FORMAT_VERSION and tuple(state.get("layout", ())) != LAYOUT:
        raise FreezeError(
            f"{where}entity records of {state.get('layout')}, this code reads {LAYOUT} "
            "(written by another release: restart the game instead)"
        )


def restore(rt: GameRuntime, state: dict[str, Any], prebuilt: Prebuilt | None = None) -> None:
    """Rebuild ``rt`` from a snapshot without sending anything to clients (``prebuilt``:
    what :func:`prebuild` made meanwhile, checked against the snapshot)."""
    started = time.perf_counter()
    with gc_paused():
        _restore(rt, state, prebuilt or Prebuilt())
    rt.stats.restore.observe(time.perf_counter() - started)


def _restore(rt: GameRuntime, state: dict[str, Any], prebuilt: Prebuilt) -> None:
    _check_format(state)
    if state["game_id"] != rt.game_id:
        raise FreezeError(f"the freeze file is game{state['game_id']}'s, not game{rt.game_id}'s")
    t0 = time.perf_counter()
    if state["version"] == FORMAT_VERSION:
        states = [EntityState(*rec) for rec in state["entities"]]
    else:  # version 2: written by the release before, frozen by it for this reload
        states = [EntityState.from_plain(rec) for rec in state["entities"]]
    _register_space_type(rt, (st.type_name for st in states))
    # 1. instances, attributes, clients (nothing is sent), timers, then the fields
    entities = apply_states(rt, states, trusted=True, made=prebuilt.made)
    t1 = time.perf_counter()
    taken = _enter_spaces(rt, states, entities, prebuilt)  # 2. spaces: AOI rebuilt in bulk
    t2 = time.perf_counter()
    rt.services.local = {(name, shard): eid for name, shard, eid in state["services"]}
    rt.services.restore_pending(state.get("service_calls", []))
    rt.deployment_ready = bool(state.get("ready"))
    rt.migration.pending = {  # absent in files of the release before: none carried then
        eid: (space_id, Vector3(*pos)) for eid, space_id, pos in state.get("migrations", [])
        if eid in rt.entities
    }
    for entity in entities:  # 3. hooks last, with everything in place
        entity.run_hook("on_restored")
    logger.info(
        "game%d restored %d entities: instances %.0f ms, spaces and AOI %.0f ms (%d of %d "
        "AOIs built beforehand), hooks %.0f ms", rt.game_id, len(entities), (t1 - t0) * 1000,
        (t2 - t1) * 1000, taken, len(prebuilt.aois), (time.perf_counter() - t2) * 1000,
    )


def _enter_spaces(
    rt: GameRuntime, states: list[EntityState], entities: list[Entity], prebuilt: Prebuilt
) -> int:
    """Every entity back into its space, quietly, each space's AOI rebuilt in one go (or
    taken from ``prebuilt``: returns how many were); all marked for a full position sync."""
    members: dict[Space, list[tuple[Entity, Vector3]]] = {}
    get = rt.entities.get
    for st, entity in zip(states, entities, strict=True):
        space = get(st.space_id) if st.space_id else None
        if isinstance(space, Space) and not isinstance(entity, Space):
            members.setdefault(space, []).append((entity, entity.position))
    taken = 0
    for space, entered in members.items():
        taken += space.restore_members(entered, prebuilt.aois.get(space.id))
    for entity in entities:
        if entity.space is not None:
            entity.mark_sync_flags(SYNC_OWN | SYNC_NEIGHBOURS)
    return taken


def run_freeze(
    rt: GameRuntime,
    on_failed: Callable[[str], None],
    early: Callable[[bytes], None] | None = None,
) -> bytes | None:
    """Snapshot and stop; returns the file bytes, or None (after ``on_failed``) on failure.
    ``early``: see :func:`snapshot`."""
    started = time.perf_counter()
    try:
        with gc_paused():
            state = snapshot(rt, early)
            data = dumps(state)
    except FreezeError as exc:
        on_failed(str(exc))
        return None
    except Exception as exc:  # anything unexpected: never crash mid-freeze
        on_failed(f"snapshot failed: {type(exc).__name__}: {exc}")
        return None
    stop_timers(rt)
    rt.stats.freeze.observe(time.perf_counter() - started)
    return data
