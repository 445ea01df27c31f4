"""Freezing a game to disk and restoring it (``goworld reload``; PROTOCOL.md §6, §7).

Freeze (on SIGHUP): ask every dispatcher to block this game (START_FREEZE_GAME); once all
have acknowledged, nothing more arrives from them, so in one loop callback: run every
entity's ``on_freeze``, snapshot the whole state, stop all timers. Then wait for queued saves,
write ``game<id>_freezed.dat`` atomically (temporary file, fsync, rename) and exit. If a hook
or the snapshot fails, the freeze is cancelled (CANCEL_FREEZE_GAME) and the game keeps
running; the reason goes to the log and to ``.goworld/game<id>.freeze-error`` for the CLI.

The snapshot keeps more than GoWorld's: besides type, attributes, position, yaw, space,
client binding, client syncing and timers (with their wall-clock due times), it keeps each
entity's own Python fields (anything picklable; references to other entities are stored by
id and resolved on restore), the local service shards and the deployment-ready flag.

Restore (``-restore``): rebuild spaces (AOI re-enabled), then entities, with clients detached
so that no 1002/1003 is sent; enter spaces quietly (AOI neighbours rebuilt); re-attach clients;
re-arm timers at their due times; mark every entity for a position re-sync; ``on_restored``.
The file is removed only once every dispatcher has taken the game back.
"""

from __future__ import annotations

import contextlib
import gc
import io
import logging
import os
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from game.migration import restore_timers
from goworld.entity.client import GameClient
from goworld.entity.entity import SYNC_NEIGHBOURS, SYNC_OWN, Entity
from goworld.entity.space import Space, _on_enter_aoi, _on_leave_aoi
from goworld.entity.aoi import GridAOI
from goworld.entity.vector import Vector3
from goworld.errors import GoWorldError

if TYPE_CHECKING:
    from game.runtime import GameRuntime

__all__ = ["FreezeError", "freeze_path", "snapshot", "write_atomically", "restore", "ENGINE_FIELDS"]

logger = logging.getLogger("goworld.game")

FORMAT_VERSION = 1

#: Instance fields the engine owns; everything else in an entity's __dict__ is user state.
ENGINE_FIELDS = frozenset(
    {
        "_rt", "desc", "id", "space", "position", "yaw", "client", "interested_in",
        "destroyed", "client_syncing", "_sync", "_timers", "attrs", "_destroying",
        "aoi", "entities",
    }
)


class FreezeError(GoWorldError):
    """A freeze could not be completed (a hook raised, or state cannot be saved)."""


def freeze_path(game_id: int, directory: Path | None = None) -> Path:
    return (directory or Path.cwd()) / f"game{game_id}_freezed.dat"


class _Pickler(pickle.Pickler):
    """Pickles user fields; other entities are referenced by id, never copied."""

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, Entity):
            return ("entity", obj.id)
        return None


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, entities: dict[str, Entity]) -> None:
        super().__init__(io.BytesIO(data))
        self._entities = entities

    def persistent_load(self, pid: Any) -> Any:
        kind, entity_id = pid
        if kind != "entity":
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        return self._entities.get(entity_id)


def _user_state(entity: Entity) -> bytes:
    fields = {k: v for k, v in entity.__dict__.items() if k not in ENGINE_FIELDS}
    buf = io.BytesIO()
    try:
        _Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(fields)
    except Exception as exc:
        bad = []
        for key, value in fields.items():
            try:
                _Pickler(io.BytesIO(), protocol=pickle.HIGHEST_PROTOCOL).dump(value)
            except Exception:
                bad.append(key)
        raise FreezeError(
            f"{entity!r}: field(s) {', '.join(bad) or '?'} cannot be saved ({exc}); "
            "convert them in on_freeze or keep them in attributes"
        ) from exc
    return buf.getvalue()


def _record(entity: Entity) -> dict[str, Any]:
    client = entity.client
    p = entity.position
    record: dict[str, Any] = {
        "T": entity.desc.name,
        "I": entity.id,
        "A": entity.attrs.to_builtin(),
        "C": [client.client_id, client.gate_id, client.owner_id] if client is not None else None,
        "P": [p.x, p.y, p.z],
        "Y": entity.yaw,
        "S": entity.space.id if entity.space is not None else None,
        "TD": [
            [r.method, list(r.args), r.fire_at, r.interval, r.repeat]
            for r in entity._timers.values()
        ],
        "SFC": entity.client_syncing,
        "U": _user_state(entity),
    }
    if isinstance(entity, Space):
        record["AOI"] = entity.aoi.distance if entity.aoi is not None else 0.0
    return record


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


def snapshot(rt: GameRuntime) -> dict[str, Any]:
    """The whole state of ``rt`` as plain data; raises :class:`FreezeError`."""
    for entity in list(rt.entities.values()):
        try:
            entity.on_freeze()
        except Exception as exc:
            raise FreezeError(f"{entity!r}.on_freeze raised {type(exc).__name__}: {exc}") from exc
    spaces = [e for e in rt.entities.values() if isinstance(e, Space)]
    spaces.sort(key=lambda s: 0 if s.is_nil else 1)
    others = [e for e in rt.entities.values() if not isinstance(e, Space)]
    return {
        "version": FORMAT_VERSION,
        "game_id": rt.game_id,
        "entities": [_record(e) for e in [*spaces, *others]],
        "services": [[name, shard, eid] for (name, shard), eid in rt.services.local.items()],
        "service_calls": rt.services.pending_state(),
        "ready": rt.deployment_ready,
    }


def stop_timers(rt: GameRuntime) -> None:
    for entity in rt.entities.values():
        for record in entity._timers.values():
            if record.handle is not None:
                record.handle.cancel()


def write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def dumps(state: dict[str, Any]) -> bytes:
    return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)


def load(path: Path) -> dict[str, Any]:
    try:
        with gc_paused():
            state = pickle.loads(path.read_bytes())
    except Exception as exc:
        raise FreezeError(f"{path}: not a readable freeze file ({exc})") from exc
    if not isinstance(state, dict) or state.get("version") != FORMAT_VERSION:
        raise FreezeError(f"{path}: unknown freeze format")
    return state


def restore(rt: GameRuntime, state: dict[str, Any]) -> None:
    """Rebuild ``rt`` from a snapshot without sending anything to clients."""
    with gc_paused():
        _restore(rt, state)


def _restore(rt: GameRuntime, state: dict[str, Any]) -> None:
    if state["game_id"] != rt.game_id:
        raise FreezeError(f"the freeze file is game{state['game_id']}'s, not game{rt.game_id}'s")
    records = state["entities"]
    built: dict[str, Entity] = {}
    clients: dict[Entity, GameClient] = {}
    for rec in records:  # 1. instances, attributes, plain fields; clients kept aside
        if rec["T"] == "__space__" and rt.registry.space_desc is None:
            rt.registry.register_space(Space)
        entity = rt._instantiate(rec["T"], rec["I"], rec["A"], trusted=True)
        entity.yaw = float(rec["Y"])
        entity.client_syncing = bool(rec["SFC"])
        if rec["C"]:
            client_id, gate_id, owner_id = rec["C"]
            clients[entity] = GameClient(client_id, gate_id, owner_id)
        if isinstance(entity, Space):
            rt.spaces[entity.id] = entity
            if entity.is_nil:
                rt.nil_space = entity
            if rec.get("AOI"):
                entity.aoi = GridAOI(rec["AOI"], _on_enter_aoi, _on_leave_aoi)
        built[entity.id] = entity
    for rec in records:  # 2. user fields (may refer to any entity)
        fields = _Unpickler(rec["U"], built).load()
        built[rec["I"]].__dict__.update(fields)
    members: dict[Space, list[tuple[Entity, Vector3]]] = {}
    for rec in records:  # 3. spaces: membership and AOI rebuilt in bulk, no client attached yet
        entity = built[rec["I"]]
        space = built.get(rec["S"]) if rec["S"] else None
        if isinstance(space, Space) and not isinstance(entity, Space):
            members.setdefault(space, []).append((entity, Vector3(*rec["P"])))
        else:
            entity.position = Vector3(*rec["P"])
    for space, entered in members.items():
        space._restore_members(entered)
    for entity, client in clients.items():  # 4. clients back, silently
        entity.client = client
    for rec in records:
        entity = built[rec["I"]]
        restore_timers(rt, entity, rec["TD"])
        if entity.space is not None:
            entity._mark_sync(SYNC_OWN | SYNC_NEIGHBOURS)
    rt.services.local = {(name, shard): eid for name, shard, eid in state["services"]}
    rt.services.restore_pending(state.get("service_calls", []))
    rt.deployment_ready = bool(state.get("ready"))
    for rec in records:  # 5. hooks last, with everything in place
        built[rec["I"]]._safe_hook("on_restored")
    logger.info("game%d restored %d entities", rt.game_id, len(records))


def run_freeze(
    rt: GameRuntime, on_failed: Callable[[str], None]
) -> bytes | None:
    """Snapshot and stop; returns the file bytes, or None (after ``on_failed``) on failure."""
    try:
        with gc_paused():
            state = snapshot(rt)
            data = dumps(state)
    except FreezeError as exc:
        on_failed(str(exc))
        return None
    except Exception as exc:  # anything unexpected: never crash mid-freeze
        on_failed(f"snapshot failed: {type(exc).__name__}: {exc}")
        return None
    stop_timers(rt)
    return data
