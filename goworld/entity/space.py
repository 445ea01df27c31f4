"""Spaces: entities that contain entities, with optional AOI (PROTOCOL.md §4.7, §4.8, §9).

A space is an entity of the registered space type (type name ``__space__`` on the wire, its
kind in attribute ``_K``). Each game has one *nil space* (kind 0, a fixed id per game) where
entities live until they enter a real space; clients never see it.

``enable_aoi(distance)`` gives the space a :class:`~goworld.entity.aoi.GridAOI`; entities whose
type has ``aoi_distance > 0`` then join it on entering. AOI enter/leave pairs become 1002/1003
messages to the clients of both entities, and the manager's live neighbour views are the
entities' ``interested_in``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from goworld.entity.aoi import GridAOI
from goworld.entity.entity import SYNC_NEIGHBOURS, SYNC_OWN, Entity
from goworld.entity.vector import ORIGIN, Vector3
from goworld.errors import EntityError
from goworld.proto.msgtypes import MsgType

__all__ = ["Space"]

_CREATE = MsgType.CREATE_ENTITY_ON_CLIENT
_DESTROY = MsgType.DESTROY_ENTITY_ON_CLIENT
_EMPTY: frozenset[Entity] = frozenset()


class Space(Entity):
    """Base class of the game's space type."""

    aoi: GridAOI[Entity] | None
    entities: dict[Entity, None]
    _type_counts: dict[str, int]  # members per type name, for count_entities

    def bind_runtime(self, rt: Any, desc: Any, entity_id: str) -> None:
        super().bind_runtime(rt, desc, entity_id)
        self.aoi = None
        self.entities = {}
        self._type_counts = {}

    # ---- hooks ---------------------------------------------------------------------------

    def on_space_init(self) -> None: ...
    def on_space_created(self) -> None: ...
    def on_space_destroy(self) -> None: ...
    def on_entity_enter_space(self, entity: Entity) -> None: ...
    def on_entity_leave_space(self, entity: Entity) -> None: ...
    def on_game_ready(self) -> None:
        """Called on the nil space once the deployment is ready."""

    # ---- queries -------------------------------------------------------------------------

    def is_space(self) -> bool:
        return True

    @property
    def kind(self) -> int:
        return self.attrs.get_int("_K")

    @property
    def is_nil(self) -> bool:
        return self.kind == 0

    def client_data(self, *, own: bool) -> dict[str, Any]:
        return {"_K": self.kind}

    def get_entity_count(self) -> int:
        return len(self.entities)

    def count_entities(self, type_name: str) -> int:
        return self._type_counts.get(type_name, 0)

    def for_each_entity(self, fn: Callable[[Entity], Any]) -> None:
        for e in list(self.entities):
            fn(e)

    def iter_entities(self) -> Iterator[Entity]:
        return iter(list(self.entities))

    def get_entity(self, entity_id: str) -> Entity | None:
        e = self._rt.get_entity(entity_id)
        return e if e is not None and e.space is self else None

    # ---- AOI -----------------------------------------------------------------------------

    def enable_aoi(self, distance: float) -> None:
        """Turn AOI on with ``distance``; only before any entity entered, and only once."""
        if self.aoi is not None:
            raise EntityError(f"{self!r}: AOI is already enabled")
        if self.entities:
            raise EntityError(f"{self!r}: enable_aoi after entities entered")
        if distance <= 0:
            raise EntityError(f"{self!r}: AOI distance must be > 0, got {distance!r}")
        self.aoi = GridAOI(distance, _on_enter_aoi, _on_leave_aoi)
        self.attrs["_EnableAOI"] = float(distance)

    def restore_aoi(self, distance: float) -> None:
        """Give a rebuilt space (migration, restore) its AOI back, before members return;
        ``_EnableAOI`` is already among its attributes."""
        self.aoi = GridAOI(distance, _on_enter_aoi, _on_leave_aoi)

    # ---- creating entities in this space --------------------------------------------------

    def create_entity(self, type_name: str, pos: Vector3 | tuple[float, float, float] = ORIGIN) -> Entity:
        return self._rt.create_entity_locally(type_name, space=self, pos=Vector3(*pos))

    def load_entity(self, type_name: str, entity_id: str, pos: Vector3 | tuple[float, float, float] = ORIGIN) -> None:
        self._rt.load_entity_locally(type_name, entity_id, space=self, pos=Vector3(*pos))

    # ---- enter / leave (called by the runtime) ---------------------------------------------

    def add_member(self, entity: Entity, pos: Vector3, *, quiet: bool = False) -> None:
        """Add ``entity`` at ``pos``. ``quiet`` (restore, migration-in) skips the hooks."""
        entity.space = self
        entity.position = pos
        self._join(entity)
        rt = self._rt
        client = entity.client
        if client is not None and not self.is_nil:
            rt.send_client(client, _CREATE, self._create_body(own=False))
        aoi = self.aoi
        if aoi is not None and entity.desc.use_aoi:
            aoi.enter(entity, pos.x, pos.z)
            entity.interested_in = aoi.neighbours(entity)  # type: ignore[assignment]
        entity.mark_sync_flags(SYNC_OWN | SYNC_NEIGHBOURS)
        if not quiet:
            entity.run_hook("on_enter_space")
            self.run_hook("on_entity_enter_space", entity)

    def restore_members(
        self,
        members: list[tuple[Entity, Vector3]],
        built: tuple[GridAOI[Entity], list[tuple[Entity, float, float]]] | None = None,
    ) -> bool:
        """Put restored entities back, in order, with no hook, event or client message.

        Their clients are not attached yet, so entering one by one would only run AOI
        callbacks with nobody to tell; the AOI is rebuilt in one :meth:`GridAOI.enter_many`.
        ``built``: an AOI of this distance already filled by ``enter_many(items)`` (a restore
        does it while the freeze file is written), taken instead when ``items`` are exactly
        the ``(entity, x, z)`` entering here, in order. Returns whether it was taken.
        """
        aoi = self.aoi
        in_aoi = []
        for entity, pos in members:
            entity.space = self
            entity.position = pos
            self._join(entity)
            if aoi is not None and entity.desc.use_aoi:
                in_aoi.append((entity, pos.x, pos.z))
        taken = False
        if in_aoi:
            assert aoi is not None
            if built is not None and built[0].distance == aoi.distance and built[1] == in_aoi:
                self.aoi = aoi = built[0]
                taken = True
            else:
                aoi.enter_many(in_aoi)
            for entity, _, _ in in_aoi:
                entity.interested_in = aoi.neighbours(entity)  # type: ignore[assignment]
        return taken

    def _join(self, entity: Entity) -> None:
        if entity not in self.entities:
            self.entities[entity] = None
            counts = self._type_counts
            name = entity.desc.name
            counts[name] = counts.get(name, 0) + 1

    def remove_member(self, entity: Entity, *, quiet: bool = False) -> None:
        """Remove ``entity``: neighbours' destroys first, then the space's destroy."""
        aoi = self.aoi
        if aoi is not None and entity in aoi:
            aoi.leave(entity)
        entity.interested_in = _EMPTY  # type: ignore[assignment]
        client = entity.client
        if client is not None and not self.is_nil:
            self._rt.send_client(client, _DESTROY, self._destroy_body())
        if entity in self.entities:
            del self.entities[entity]
            counts = self._type_counts
            counts[entity.desc.name] -= 1
        entity.space = None
        if not quiet:
            entity.run_hook("on_leave_space", self)
            self.run_hook("on_entity_leave_space", entity)


def _on_enter_aoi(a: Entity, b: Entity) -> None:
    rt = a._rt
    if a.client is not None:
        rt.send_client(a.client, _CREATE, b._create_body(own=False))
    if b.client is not None:
        rt.send_client(b.client, _CREATE, a._create_body(own=False))


def _on_leave_aoi(a: Entity, b: Entity) -> None:
    rt = a._rt
    if a.client is not None:
        rt.send_client(a.client, _DESTROY, b._destroy_body())
    if b.client is not None:
        rt.send_client(b.client, _DESTROY, a._destroy_body())
