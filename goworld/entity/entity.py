"""The ``Entity`` base class: identity, attributes, position, client binding, timers, calls.

Game code subclasses :class:`Entity` and overrides the ``on_*`` hooks (PROTOCOL.md §12.2 in
snake_case). Entities never touch the network or storage: they go through ``self._rt``, the
game runtime (see :mod:`goworld.entity.runtime`), which batches what they emit per tick.

Client-visible behaviour follows GoWorld: attribute changes are sent synchronously on every
mutation to the own client (CLIENT) and to neighbours' clients (ALL_CLIENTS); ``set_client``
and ``give_client_to`` produce the create/destroy bursts of §4.10; ``destroy`` the sequence of
§4.12. Spaces and AOI live in :mod:`goworld.entity.space`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar

from goworld.entity.attrs import ListAttr, MapAttr
from goworld.entity.client import GameClient, attr_body, call_body, create_body, destroy_body
from goworld.entity.registry import AttrFlag, EntityTypeDesc
from goworld.entity.vector import ORIGIN, Vector3, dir_to_yaw
from goworld.errors import EntityError
from goworld.proto.msgtypes import MsgType

if TYPE_CHECKING:
    from goworld.entity.runtime import Runtime
    from goworld.entity.space import Space

__all__ = ["Entity", "SYNC_OWN", "SYNC_NEIGHBOURS"]

logger = logging.getLogger("goworld.game")

SYNC_OWN = 1
SYNC_NEIGHBOURS = 2
_MT = MsgType


class Entity:
    """Base class of every entity type."""

    #: Declarations read by ``register_entity`` (see :mod:`goworld.entity.registry`).
    persistent: ClassVar[bool] = False
    aoi_distance: ClassVar[float] = 0
    attributes: ClassVar[dict[str, int]] = {}

    id: str
    desc: EntityTypeDesc
    attrs: MapAttr
    space: Space | None
    position: Vector3
    yaw: float
    client: GameClient | None
    interested_in: set[Entity]
    destroyed: bool
    destroying: bool
    client_syncing: bool
    _rt: Runtime
    _sync: int
    timer_records: dict[int, Any]
    _seen_body: tuple[Vector3, float, MapAttr, bytes] | None  # _create_body(own=False)'s cache

    def bind_runtime(self, rt: Runtime, desc: EntityTypeDesc, entity_id: str) -> None:
        self._rt = rt
        self.desc = desc
        self.id = entity_id
        self.space = None
        self.position = Vector3()
        self.yaw = 0.0
        self.client = None
        self.interested_in = set()
        self.destroyed = False
        self.destroying = False  # set by the runtime's destroy sequence
        self.client_syncing = False
        self._sync = 0
        self.timer_records = {}
        self.attrs = MapAttr()
        self._seen_body = None

    def __repr__(self) -> str:
        desc = getattr(self, "desc", None)
        return f"<{desc.name if desc else type(self).__name__} {getattr(self, 'id', '?')}>"

    # ---- hooks (override in subclasses) ----------------------------------------------------

    def on_init(self) -> None: ...
    def on_attrs_ready(self) -> None: ...
    def on_created(self) -> None: ...
    def on_destroy(self) -> None: ...
    def on_migrate_out(self) -> None: ...
    def on_migrate_in(self) -> None: ...
    def on_freeze(self) -> None: ...
    def on_restored(self) -> None: ...
    def on_enter_space(self) -> None: ...
    def on_enter_space_failed(self, space_id: str) -> None: ...  # ours: no such space
    def on_leave_space(self, space: Space) -> None: ...
    def on_client_connected(self) -> None: ...
    def on_client_disconnected(self) -> None: ...

    # ---- identity and lookups --------------------------------------------------------------

    @property
    def type_name(self) -> str:
        return self.desc.name

    @property
    def game_id(self) -> int:
        return self._rt.game_id

    def is_space(self) -> bool:
        return False

    def get_int(self, key: str, default: int = 0) -> int:
        return self.attrs.get_int(key, default)

    def get_str(self, key: str, default: str = "") -> str:
        return self.attrs.get_str(key, default)

    def get_float(self, key: str, default: float = 0.0) -> float:
        return self.attrs.get_float(key, default)

    def get_bool(self, key: str, default: bool = False) -> bool:
        return self.attrs.get_bool(key, default)

    def get_map(self, key: str) -> MapAttr:
        return self.attrs.get_map(key)

    def get_list(self, key: str) -> ListAttr:
        return self.attrs.get_list(key)

    # ---- attribute change listener (called by the root MapAttr) ----------------------------

    def _attr_targets(self, root_key: str) -> list[GameClient]:
        flag = self.desc.attr_flags.get(root_key, AttrFlag.NONE)
        targets: list[GameClient] = []
        if flag & AttrFlag.CLIENT and self.client is not None:
            targets.append(self.client)
        if flag & AttrFlag.ALL_CLIENTS:
            for other in self.interested_in:
                if other.client is not None:
                    targets.append(other.client)
        return targets

    def _emit_attr(self, msgtype: int, root_key: str, path: Any, *rest: Any) -> None:
        self._seen_body = None  # what neighbours are sent when they meet it has changed
        targets = self._attr_targets(root_key)
        if targets:
            self._rt.send_clients(targets, msgtype, attr_body(msgtype, self.id, path, *rest))

    def on_map_attr_change(self, root_key: str, path: Any, key: str, value: Any) -> None:
        self._emit_attr(_MT.NOTIFY_MAP_ATTR_CHANGE_ON_CLIENT, root_key, path, key, value)

    def on_map_attr_del(self, root_key: str, path: Any, key: str) -> None:
        self._emit_attr(_MT.NOTIFY_MAP_ATTR_DEL_ON_CLIENT, root_key, path, key)

    def on_map_attr_clear(self, root_key: str, path: Any) -> None:
        self._emit_attr(_MT.NOTIFY_MAP_ATTR_CLEAR_ON_CLIENT, root_key, path)

    def on_list_attr_change(self, root_key: str, path: Any, index: int, value: Any) -> None:
        self._emit_attr(_MT.NOTIFY_LIST_ATTR_CHANGE_ON_CLIENT, root_key, path, index, value)

    def on_list_attr_pop(self, root_key: str, path: Any) -> None:
        self._emit_attr(_MT.NOTIFY_LIST_ATTR_POP_ON_CLIENT, root_key, path)

    def on_list_attr_append(self, root_key: str, path: Any, value: Any) -> None:
        self._emit_attr(_MT.NOTIFY_LIST_ATTR_APPEND_ON_CLIENT, root_key, path, value)

    # ---- client data ---------------------------------------------------------------------

    def client_data(self, *, own: bool) -> dict[str, Any]:
        """The attributes a client sees in a 1002: Client+AllClients for the own client."""
        keys = self.desc.client_keys if own else self.desc.all_client_keys
        return self.attrs.to_builtin(keys=keys) if keys else {}

    def _create_body(self, *, own: bool) -> bytes:
        p = self.position
        if own:
            return create_body(True, self.id, self.desc.name, p.x, p.y, p.z, self.yaw,
                               self.client_data(own=True))
        # What its neighbours' clients get when they meet it: the same for all of them until
        # it moves, turns or changes an attribute (an AOI enter sends it to ~20 at once).
        seen = self._seen_body
        if seen is not None and seen[0] is p and seen[1] == self.yaw and seen[2] is self.attrs:
            return seen[3]
        body = create_body(False, self.id, self.desc.name, p.x, p.y, p.z, self.yaw,
                           self.client_data(own=False))
        self._seen_body = (p, self.yaw, self.attrs, body)
        return body

    def _destroy_body(self) -> bytes:
        return destroy_body(self.desc.name, self.id)

    # ---- position ------------------------------------------------------------------------

    def set_position(self, pos: Vector3 | tuple[float, float, float]) -> None:
        """Move the entity (AOI updated); clients learn it with the next position sync."""
        pos = Vector3(*pos)
        space = self.space
        if space is not None and space.aoi is not None and self.desc.use_aoi:
            self.position = pos
            space.aoi.moved(self, pos.x, pos.z)
        else:
            self.position = pos
        self.mark_sync_flags(SYNC_OWN | SYNC_NEIGHBOURS)

    def set_yaw(self, yaw: float) -> None:
        self.yaw = float(yaw)
        self.mark_sync_flags(SYNC_OWN | SYNC_NEIGHBOURS)

    def face_to(self, other: Entity) -> None:
        self.face_to_pos(other.position)

    def face_to_pos(self, pos: Vector3) -> None:
        d = Vector3(*pos) - self.position
        if d.x or d.z:
            self.set_yaw(dir_to_yaw(d))

    def distance_to(self, other: Entity) -> float:
        return self.position.distance_to(other.position)

    def is_interested_in(self, other: Entity) -> bool:
        return other in self.interested_in

    def set_client_syncing(self, syncing: bool) -> None:
        """Accept position/yaw updates from the own client (SYNC messages)."""
        self.client_syncing = bool(syncing)

    def mark_sync_flags(self, flags: int) -> None:
        if self.space is not None and not self.destroyed:
            if not self._sync:
                self._rt.mark_sync(self)
            self._sync |= flags

    @property
    def sync_flags(self) -> int:
        """The position/yaw changes waiting for the next sync (SYNC_OWN | SYNC_NEIGHBOURS)."""
        return self._sync

    def take_sync_flags(self) -> int:
        """The waiting position/yaw changes, cleared (the runtime's sync sends them)."""
        flags, self._sync = self._sync, 0
        return flags

    def move_from_client(self, x: float, y: float, z: float, yaw: float) -> None:
        """A SYNC from the own client: move without echoing back to it."""
        pos = Vector3(x, y, z)
        space = self.space
        self.position = pos
        self.yaw = yaw
        if space is not None and space.aoi is not None and self.desc.use_aoi:
            space.aoi.moved(self, x, z)
        self.mark_sync_flags(SYNC_NEIGHBOURS)

    # ---- spaces --------------------------------------------------------------------------

    def enter_space(self, space_id: str, pos: Vector3 | tuple[float, float, float] = ORIGIN) -> None:
        """Enter a space on this game or, through migration, on another one (§4.8, §4.9)."""
        self._rt.enter_space(self, space_id, Vector3(*pos))

    # ---- clients -------------------------------------------------------------------------

    def set_client(self, client: GameClient | None) -> None:
        """Bind ``client`` (or unbind with None), sending the §4.10 create/destroy burst.

        ``on_client_disconnected`` runs only when the client is removed; when another client
        replaces it (a second login of the same player), the old client just sees its view go.
        """
        old = self.client
        if old is not None:
            rt = self._rt
            rt.clear_filter_props(old)
            for other in self.interested_in:
                rt.send_client(old, _MT.DESTROY_ENTITY_ON_CLIENT, other._destroy_body())
            if self.space is not None and not self.space.is_nil:
                rt.send_client(old, _MT.DESTROY_ENTITY_ON_CLIENT, self.space._destroy_body())
            rt.send_client(old, _MT.DESTROY_ENTITY_ON_CLIENT, self._destroy_body())
            self.client = None
            self._rt.client_unbound(self, old)
            if client is None:  # removed, not replaced (a second login taking over)
                self.run_hook("on_client_disconnected")
        if client is not None:
            client.owner_id = self.id
            self.client = client
            self._rt.client_bound(self, client)
            self._send_initial_view(client)
            self.run_hook("on_client_connected")

    def _send_initial_view(self, client: GameClient) -> None:
        rt = self._rt
        rt.clear_filter_props(client)
        rt.send_client(client, _MT.CREATE_ENTITY_ON_CLIENT, self._create_body(own=True))
        if self.space is not None and not self.space.is_nil:
            rt.send_client(client, _MT.CREATE_ENTITY_ON_CLIENT, self.space._create_body(own=False))
        for other in self.interested_in:
            rt.send_client(client, _MT.CREATE_ENTITY_ON_CLIENT, other._create_body(own=False))

    def give_client_to(self, other: Entity) -> None:
        """Hand this entity's client to ``other`` (a login handover, §4.10)."""
        client = self.client
        if client is None:
            logger.warning("%r.give_client_to(%r): no client to give", self, other)
            return
        client.owner_id = other.id  # the burst below already travels on other's path
        self.set_client(None)
        other.set_client(GameClient(client.client_id, client.gate_id, other.id, client.address))

    def call_client(self, method: str, *args: Any) -> None:
        if self.client is not None:
            self._rt.send_client(
                self.client, _MT.CALL_ENTITY_METHOD_ON_CLIENT, call_body(self.id, method, args)
            )

    def call_all_clients(self, method: str, *args: Any) -> None:
        """Call ``method`` on every client that sees this entity (own client included)."""
        targets = [o.client for o in self.interested_in if o.client is not None]
        if self.client is not None:
            targets.append(self.client)
        if targets:
            self._rt.send_clients(
                targets, _MT.CALL_ENTITY_METHOD_ON_CLIENT, call_body(self.id, method, args)
            )

    def for_all_clients(self) -> list[GameClient]:
        targets = [o.client for o in self.interested_in if o.client is not None]
        if self.client is not None:
            targets.append(self.client)
        return targets

    def call_filtered_clients(self, key: str, op: str, value: str, method: str, *args: Any) -> None:
        """Call ``method`` on the player entity of every client whose filter prop matches."""
        self._rt.call_filtered_clients(key, op, value, method, args)

    def set_client_filter_prop(self, key: str, value: str) -> None:
        if not key:
            raise EntityError("set_client_filter_prop: the key must not be empty")
        if self.client is not None:
            self._rt.set_filter_prop(self.client, key, str(value))

    # ---- calls, timers, lifecycle ------------------------------------------------------------

    def call(self, entity_id: str, method: str, *args: Any) -> None:
        self._rt.call(entity_id, method, args)

    def post(self, fn: Any) -> None:
        self._rt.post(fn)

    def add_timer(self, interval: float, method: str, *args: Any) -> int:
        """Call ``self.<method>(*args)`` every ``interval`` seconds (min 10 ms). Survives freeze."""
        return self._rt.add_entity_timer(self, interval, method, args, repeat=True)

    def add_callback(self, delay: float, method: str, *args: Any) -> int:
        """Call ``self.<method>(*args)`` once after ``delay`` seconds. Survives freeze."""
        return self._rt.add_entity_timer(self, delay, method, args, repeat=False)

    def cancel_timer(self, timer_id: int) -> None:
        self._rt.cancel_entity_timer(self, timer_id)

    def save(self) -> None:
        """Write the persistent attributes to storage (asynchronously)."""
        if self.desc.persistent and not self.destroyed:
            self._rt.save_entity(self)

    def persistent_data(self) -> dict[str, Any]:
        keys = self.desc.persistent_keys
        return self.attrs.to_builtin(keys=keys) if keys else {}

    def destroy(self) -> None:
        """Leave the space, run on_destroy, drop the client, save, forget (§4.12)."""
        if self.destroyed:
            return
        self._rt.destroy_entity(self)

    def is_destroyed(self) -> bool:
        return self.destroyed

    def run_hook(self, name: str, *args: Any) -> None:
        try:
            getattr(self, name)(*args)
        except Exception:
            logger.exception("%r.%s raised", self, name)
