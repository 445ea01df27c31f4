"""Moving an entity to a space on another game (PROTOCOL.md §4.9), and rebuilding entities.

Source game: QUERY_SPACE_GAMEID (to the space's dispatcher) -> MIGRATE_REQUEST (to the
entity's dispatcher, which blocks calls to it and echoes the request back) -> leave the space
(the client sees neighbour and space destroys), capture the entity, drop it silently ->
REAL_MIGRATE (the dispatcher re-routes the entity and releases its queued calls to the target).

Target game: rebuild the entity (client bound silently), ``on_init`` and ``on_attrs_ready``,
then its own Python fields from the source (they win over what ``on_init`` set), then
``on_migrate_in`` and entering the space (the client sees the space and neighbour creates).

The payload is an :class:`~goworld.entity.state.EntityState` in its plain form, packed with
msgpack like every structured envelope payload; the entity's own fields travel inside it as
one pickled ``bytes`` value (see :mod:`goworld.entity.state` for the rule on references to
entities the target does not have, on unpicklable fields, and the :data:`MAX_MIGRATED_FIELDS`
bound). :func:`apply_states` is the one function that rebuilds entities from such records,
for a migration and for a restore (:mod:`game.freeze`) alike.

The client's messages from both games travel through the dispatcher of the entity's own id, so
they arrive in order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from goworld.cluster.envelopes import Envelope, pack, unpack
from goworld.entity.client import GameClient
from goworld.entity.entity import Entity
from goworld.entity.space import Space
from goworld.entity.state import EntityState
from goworld.entity.vector import Vector3
from goworld.proto.msgtypes import MsgType

if TYPE_CHECKING:
    from game.runtime import GameRuntime

__all__ = ["MAX_MIGRATED_FIELDS", "Migration", "apply_states"]

logger = logging.getLogger("goworld.game")

#: Upper bound of a migrating entity's pickled own fields; over it none are carried.
MAX_MIGRATED_FIELDS = 1 << 20


def apply_states(
    rt: GameRuntime,
    states: Sequence[EntityState],
    *,
    trusted: bool,
    before_fields: Callable[[Entity], None] | None = None,
    made: Mapping[str, Entity] | None = None,
) -> list[Entity]:
    """Rebuild entities from ``states`` on ``rt``, in order, sending nothing to anyone.

    Done here, for a restore and a migration alike: the instance in the entity table with its
    attributes (``trusted``: our own snapshot, rebuilt without re-checking), yaw, position,
    client-syncing flag, client (bound silently), timers re-armed at their due times, a
    space's table entry and AOI; then ``before_fields`` for each entity (a migration runs
    ``on_init`` and ``on_attrs_ready`` there); then every entity's own fields, once all
    entities exist so that references among them resolve (:meth:`EntityState.load_fields`).

    Left to the caller: space membership (``state.space_id`` and ``state.position``) and
    the remaining hooks. ``made``: bare objects by entity id, used for those entities (see
    :meth:`~game.entity_table.EntityTable.instantiate`).
    """
    built: list[Entity] = []
    instantiate = rt.table.instantiate
    restore_timers = rt.timers.restore
    made_for = (made or {}).get
    for st in states:  # a restore runs this for every entity of the game: kept lean
        entity = instantiate(
            rt, st.type_name, st.entity_id, st.attrs, trusted=trusted, made=made_for(st.entity_id)
        )
        entity.yaw = st.yaw
        entity.position = Vector3._make(st.position)
        entity.client_syncing = st.client_syncing
        if st.client is not None:
            entity.client = GameClient.from_state(st.client, st.entity_id)
        if st.aoi_distance and isinstance(entity, Space):
            entity.restore_aoi(st.aoi_distance)
        if st.timers:
            restore_timers(entity, st.timers)
        built.append(entity)
    if before_fields is not None:
        for entity in built:
            before_fields(entity)
    lookup = rt.entities.get
    for st, entity in zip(states, built, strict=True):
        if st.fields:
            st.load_fields(entity, lookup)
    return built


class Migration:
    def __init__(self, rt: GameRuntime) -> None:
        self.rt = rt
        #: entity id -> (target space id, position) while a migration is under way
        self.pending: dict[str, tuple[str, Vector3]] = {}

    def start(self, entity: Entity, space_id: str, pos: Vector3) -> None:
        if entity.id in self.pending:
            logger.warning("%r is already migrating: enter_space(%s) ignored", entity, space_id)
            return
        self.pending[entity.id] = (space_id, pos)
        self.rt.outbox.to_entity(
            space_id,
            Envelope(
                msgtype=MsgType.QUERY_SPACE_GAMEID_FOR_MIGRATE, entity_id=space_id, name=entity.id
            ),
        )

    def on_query_reply(self, env: Envelope) -> None:
        rt = self.rt
        entity = rt.entities.get(env.name)
        target = self.pending.get(env.name)
        if entity is None or target is None:
            self.pending.pop(env.name, None)
            return
        space_id, pos = target
        if env.game_id == rt.game_id:
            del self.pending[entity.id]
            space = rt.spaces.get(space_id)
            if space is not None:
                rt.switch_space(entity, space, pos)
                return
        if env.game_id == 0 or env.game_id == rt.game_id:  # no such space (any more)
            logger.error("%r: space %s not found, enter_space cancelled", entity, space_id)
            self.pending.pop(entity.id, None)
            entity.run_hook("on_enter_space_failed", space_id)
            return
        rt.outbox.to_entity(
            entity.id,
            Envelope(
                msgtype=MsgType.MIGRATE_REQUEST,
                entity_id=entity.id,
                name=space_id,
                game_id=env.game_id,
            ),
        )

    def on_migrate_ack(self, env: Envelope) -> None:
        rt = self.rt
        entity = rt.entities.get(env.entity_id)
        target = self.pending.pop(env.entity_id, None)
        if entity is None or target is None or entity.destroyed:
            rt.outbox.to_entity(
                env.entity_id, Envelope(msgtype=MsgType.CANCEL_MIGRATE, entity_id=env.entity_id)
            )
            return
        space_id, pos = target
        entity.run_hook("on_migrate_out")
        if entity.space is not None:
            entity.space.remove_member(entity)
        state = EntityState.capture(
            entity, space_id=space_id, position=pos, lenient=True, max_fields=MAX_MIGRATED_FIELDS
        )
        entity.client = None  # dropped silently: the target binds it again
        rt.retire(entity)  # this copy is gone; the entity lives on at the target
        rt.outbox.to_entity(
            entity.id,
            Envelope(
                msgtype=MsgType.REAL_MIGRATE,
                entity_id=entity.id,
                game_id=env.game_id,
                payload=pack(state.to_plain()),
            ),
        )

    def on_real_migrate(self, env: Envelope) -> None:
        rt = self.rt
        eid = env.entity_id
        if eid in rt.entities:
            logger.error("migration of %s into game%d: already here, ignored", eid, rt.game_id)
            return
        state = EntityState.from_plain(unpack(env.payload))
        state.entity_id = eid
        if state.client is not None:
            state.client = (state.client[0], state.client[1], eid, *state.client[3:])
        # GoWorld's order for a migrated entity: OnInit, OnAttrsReady, OnMigrateIn, then enter;
        # the entity's own fields from the source go in after OnAttrsReady and win.
        (entity,) = apply_states(rt, [state], trusted=False, before_fields=_init_hooks)
        entity.run_hook("on_migrate_in")
        if entity.destroyed:
            return
        space = (rt.spaces.get(state.space_id) if state.space_id else None) or rt.nil_space
        if space is not None:
            space.add_member(entity, Vector3(*state.position))


def _init_hooks(entity: Entity) -> None:
    entity.run_hook("on_init")
    entity.run_hook("on_attrs_ready")
