"""The entities and spaces of one game, by id, and how an entity object comes to exist.

:meth:`EntityTable.instantiate` makes the object (``cls.__new__``, no ``__init__``: game code
initialises in ``on_init``), binds it to the runtime and its type, gives it its attributes and
files it; it runs no hook and sends nothing. The runtime's create/load/migrate/restore paths
all start there, and :meth:`forget` is where every ending (destroy, migration away, a stale
copy) finishes.
"""

from __future__ import annotations

from typing import Any

from goworld.entity.attrs import MapAttr
from goworld.entity.entity import Entity
from goworld.entity.registry import Registry
from goworld.entity.runtime import Runtime
from goworld.entity.space import Space

__all__ = ["EntityTable"]


class EntityTable:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.entities: dict[str, Entity] = {}
        self.spaces: dict[str, Space] = {}
        #: this game's kind-0 space, where entities live until they enter a real space
        self.nil_space: Space | None = None

    def get(self, entity_id: str) -> Entity | None:
        return self.entities.get(entity_id)

    def __contains__(self, entity_id: object) -> bool:
        return entity_id in self.entities

    def __len__(self) -> int:
        return len(self.entities)

    def instantiate(
        self,
        rt: Runtime,
        type_name: str,
        entity_id: str,
        attrs: dict[str, Any] | None,
        *,
        trusted: bool = False,
        made: Entity | None = None,
    ) -> Entity:
        """A new entity in the table, no hook run. ``trusted``: ``attrs`` is our own
        ``to_builtin()`` output (a freeze snapshot) and is rebuilt without re-checking.
        ``made``: the object to use if it is a bare ``cls.__new__`` of this type (a restore
        makes them early, to build the AOI while the freeze file is written)."""
        desc = self.registry.get(type_name)
        entity: Entity = made if type(made) is desc.cls else desc.cls.__new__(desc.cls)
        entity.bind_runtime(rt, desc, entity_id)
        if trusted:
            entity.attrs = MapAttr.from_trusted(attrs or {}, entity)
        else:
            if attrs:
                entity.attrs = MapAttr(attrs)
            entity.attrs.bind(entity)
        self.entities[entity_id] = entity
        if isinstance(entity, Space):
            self.spaces[entity_id] = entity
            if entity.is_nil:
                self.nil_space = entity
        return entity

    def forget(self, entity: Entity) -> None:
        self.entities.pop(entity.id, None)
        if isinstance(entity, Space):
            self.spaces.pop(entity.id, None)
            if self.nil_space is entity:
                self.nil_space = None
