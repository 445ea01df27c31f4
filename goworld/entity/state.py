"""One entity's complete state, as plain data: what a freeze saves and a migration carries.

:class:`EntityState` is the one record both paths use (``game.freeze`` for ``goworld reload``,
``game.migration`` for moving an entity to another game). :meth:`EntityState.capture` takes it
from a live entity; ``game.migration.apply_states`` rebuilds entities from it, for both paths.
:meth:`EntityState.to_plain` / :meth:`EntityState.from_plain` give its plain form: a dict of
str, int, float, bool, None, bytes, lists and dicts, which the freeze file pickles and the
REAL_MIGRATE payload packs with msgpack (as before: the cluster envelope's format).

What is kept: type, id, attributes, position, yaw, space, client binding, the client-syncing
flag, timers (with their wall-clock due times), a space's AOI distance, and the entity's own
Python fields: every instance field that is not one of :data:`ENGINE_FIELDS`, pickled
together (so shared and self references survive) into one ``bytes`` value.

References to entities inside those fields are never copied: they are pickled as the entity's
id and resolved on the receiving game to the entity with that id (after every entity of the
batch exists, so entities restored together may refer to each other). **The rule for a
reference to an entity the receiving game does not have** (on a migration, any entity left
on the source game; on a restore, an entity destroyed before the freeze): it becomes ``None``
and a warning names the entity and the missing ids. Game code that needs such a link across
games keeps the id (``self.friend_id``) and calls by id.

Fields that cannot be pickled: a freeze refuses (:class:`FieldsError`, the freeze is cancelled
and the game keeps running). A migration is lenient (``lenient=True``): it keeps the fields
that pickle on their own, leaves the others out with a warning (the target keeps what
``on_init`` gave them), and carries no fields at all, with an error in the log, when their
pickle is over ``max_fields`` bytes (the payload stays bounded:
``game.migration.MAX_MIGRATED_FIELDS``).
"""

from __future__ import annotations

import io
import logging
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from goworld.entity.entity import Entity
from goworld.entity.space import Space
from goworld.errors import GoWorldError

__all__ = ["ENGINE_FIELDS", "EntityState", "FieldsError", "TimerState", "user_fields"]

logger = logging.getLogger("goworld.game")

#: (method, args, fire_at wall-clock time, interval, repeat)
TimerState = tuple[str, tuple[Any, ...], float, float, bool]

#: Every instance field ``Entity.bind_runtime`` / ``Space.bind_runtime`` create, and where its value goes
#: in an :class:`EntityState` (a field name of the record) or why it needs no place there.
#: Everything else in an entity's ``__dict__`` is the entity's own state (``fields``).
#: A test compares this with a fresh entity and a fresh space: a new engine field must be
#: added here, and carried or rebuilt, or it would silently be saved as a user field.
ENGINE_FIELDS: Mapping[str, str] = {
    "_rt": "not kept: the runtime hosting the rebuilt entity",
    "desc": "type_name",
    "id": "entity_id",
    "attrs": "attrs",
    "space": "space_id",
    "position": "position",
    "yaw": "yaw",
    "client": "client",
    "client_syncing": "client_syncing",
    "timer_records": "timers",
    "interested_in": "not kept: rebuilt by the AOI when the entity enters its space",
    "_sync": "not kept: a rebuilt entity in a space is marked for a full position sync",
    "destroyed": "not kept: only live entities are captured",
    "destroying": "not kept: only live entities are captured",
    "aoi": "aoi_distance",
    "entities": "not kept: a space's members are rebuilt from their own space_id",
    "_type_counts": "not kept: counted again as the members are rebuilt",
    "_seen_body": "not kept: a cache of the create body its neighbours get",
}


class FieldsError(GoWorldError):
    """An entity's own fields cannot be pickled (a freeze is then refused)."""


@dataclass(slots=True)
class EntityState:
    """Everything needed to rebuild one entity on a game (see the module docstring)."""

    type_name: str
    entity_id: str
    attrs: dict[str, Any]
    position: tuple[float, float, float]
    yaw: float
    #: the space the entity is (freeze) or goes (migration) in; None: no space
    space_id: str | None
    #: (client id, gate id, owner id, address) of the bound client
    #: (:meth:`GameClient.state <goworld.entity.client.GameClient.state>`), or None
    client: tuple[str, int, str, str] | None
    client_syncing: bool
    timers: list[TimerState] = field(default_factory=list)
    #: the entity's own fields, pickled (entities referenced by id); b"" for none
    fields: bytes = b""
    #: spaces only: the AOI distance, 0.0 without AOI; None for other entities
    aoi_distance: float | None = None

    # ---- from a live entity ------------------------------------------------------------------

    @classmethod
    def capture(
        cls,
        entity: Entity,
        *,
        space_id: str | None = None,
        position: Any = None,
        lenient: bool = False,
        max_fields: int | None = None,
    ) -> EntityState:
        """The state of ``entity``. ``space_id``/``position`` override where it is (a
        migration captures the target space and position). ``lenient``: unpicklable fields
        are left out with a warning instead of raising :class:`FieldsError`; ``max_fields``:
        the pickled fields are dropped (error logged) when larger."""
        client = entity.client
        p = entity.position if position is None else position
        if space_id is None and entity.space is not None:
            space_id = entity.space.id
        aoi = None
        if isinstance(entity, Space):
            aoi = entity.aoi.distance if entity.aoi is not None else 0.0
        fields = _pickle_fields(entity, lenient=lenient)
        if max_fields is not None and len(fields) > max_fields:
            logger.error(
                "%r: its own fields pickle to %d bytes, over the limit of %d: not carried "
                "(they keep what on_init gives them)", entity, len(fields), max_fields,
            )
            fields = b""
        return cls(
            type_name=entity.desc.name,
            entity_id=entity.id,
            attrs=entity.attrs.to_builtin(),
            position=(p.x, p.y, p.z),
            yaw=entity.yaw,
            space_id=space_id,
            client=client.state() if client is not None else None,
            client_syncing=entity.client_syncing,
            timers=[
                (r.method, r.args, r.fire_at, r.interval, r.repeat) for r in entity.timer_records.values()
            ],
            fields=fields,
            aoi_distance=aoi,
        )

    # ---- plain form ----------------------------------------------------------------------------

    def to_plain(self) -> dict[str, Any]:
        """Plain data for pickle or msgpack (short keys: a freeze file holds thousands)."""
        plain = {
            "T": self.type_name,
            "I": self.entity_id,
            "A": self.attrs,
            "P": list(self.position),
            "Y": self.yaw,
            "S": self.space_id,
            "C": list(self.client) if self.client is not None else None,
            "SFC": self.client_syncing,
            "TD": [[m, list(args), fa, iv, rp] for m, args, fa, iv, rp in self.timers],
            "U": self.fields,
        }
        if self.aoi_distance is not None:
            plain["AOI"] = self.aoi_distance
        return plain

    @classmethod
    def from_plain(cls, data: Mapping[str, Any]) -> EntityState:
        c = data["C"]
        x, y, z = data["P"]
        return cls(
            type_name=str(data["T"]),
            entity_id=str(data["I"]),
            attrs=data["A"],
            position=(float(x), float(y), float(z)),
            yaw=float(data["Y"]),
            space_id=data["S"] or None,
            client=(str(c[0]), int(c[1]), str(c[2]), str(c[3]) if len(c) > 3 else "") if c else None,
            client_syncing=bool(data["SFC"]),
            timers=[
                (str(m), tuple(args), float(fa), float(iv), bool(rp))
                for m, args, fa, iv, rp in data["TD"]
            ],
            fields=bytes(data["U"]),
            aoi_distance=None if data.get("AOI") is None else float(data["AOI"]),
        )

    # ---- the entity's own fields ---------------------------------------------------------------

    def load_fields(self, entity: Entity, lookup: Callable[[str], Entity | None]) -> None:
        """Set the saved fields on ``entity``; entity references resolved with ``lookup``
        (a missing one becomes None, with a warning)."""
        if not self.fields:
            return
        unpickler = _Unpickler(self.fields, lookup)
        entity.__dict__.update(unpickler.load())
        if unpickler.missing:
            logger.warning(
                "%r: fields referred to entities not on this game, now None: %s",
                entity, ", ".join(sorted(unpickler.missing)),
            )


def user_fields(entity: Entity) -> dict[str, Any]:
    """The entity's own instance fields: its ``__dict__`` without :data:`ENGINE_FIELDS`."""
    return {k: v for k, v in entity.__dict__.items() if k not in ENGINE_FIELDS}


class _Pickler(pickle.Pickler):
    """Pickles user fields; other entities are referenced by id, never copied."""

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, Entity):
            return ("entity", obj.id)
        return None


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, lookup: Callable[[str], Entity | None]) -> None:
        super().__init__(io.BytesIO(data))
        self._lookup = lookup
        self.missing: set[str] = set()

    def persistent_load(self, pid: Any) -> Any:
        kind, entity_id = pid
        if kind != "entity":
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        entity = self._lookup(entity_id)
        if entity is None:
            self.missing.add(entity_id)
        return entity


def _dumps(value: Any) -> bytes:
    buf = io.BytesIO()
    _Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    return buf.getvalue()


def _unpicklable(fields: Mapping[str, Any]) -> list[str]:
    bad = []
    for key, value in fields.items():
        try:
            _dumps(value)
        except Exception:
            bad.append(key)
    return bad


def _pickle_fields(entity: Entity, *, lenient: bool) -> bytes:
    fields = user_fields(entity)
    if not fields:
        return b""
    try:
        return _dumps(fields)
    except Exception as exc:
        bad = _unpicklable(fields)
        if not lenient:
            raise FieldsError(
                f"{entity!r}: field(s) {', '.join(bad) or '?'} cannot be saved ({exc}); "
                "convert them in on_freeze or keep them in attributes"
            ) from exc
        logger.warning(
            "%r: field(s) %s cannot be pickled (%s): left out", entity, ", ".join(bad) or "?", exc
        )
        kept = {k: v for k, v in fields.items() if k not in bad}
        try:
            return _dumps(kept) if kept else b""
        except Exception:  # only together (a shared object): carry none
            logger.warning("%r: its fields cannot be pickled together: none carried", entity)
            return b""

