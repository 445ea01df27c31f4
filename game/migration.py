"""Moving an entity to a space on another game (PROTOCOL.md §4.9).

Source game: QUERY_SPACE_GAMEID (to the space's dispatcher) -> MIGRATE_REQUEST (to the
entity's dispatcher, which blocks calls to it and echoes the request back) -> leave the space
(the client sees neighbour and space destroys), pack the entity, drop it silently ->
REAL_MIGRATE (the dispatcher re-routes the entity and releases its queued calls to the target).

Target game: rebuild the entity from the migration data, bind its client silently, enter the
space (the client sees the space and neighbour creates), ``on_migrate_in``.

The client's messages from both games travel through the dispatcher of the entity's own id, so
they arrive in order. The same data (:func:`pack_entity`) is what freeze/restore will use.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from goworld.cluster.envelopes import Envelope, pack, unpack
from goworld.entity.client import GameClient
from goworld.entity.entity import Entity
from goworld.entity.vector import Vector3
from goworld.proto.msgtypes import MsgType

if TYPE_CHECKING:
    from game.runtime import GameRuntime

__all__ = ["Migration", "pack_entity"]

logger = logging.getLogger("goworld.game")


def pack_entity(entity: Entity, space_id: str, pos: Vector3) -> dict[str, Any]:
    """Everything needed to rebuild ``entity`` elsewhere (GoWorld's migrateData, §7)."""
    client = entity.client
    return {
        "T": entity.desc.name,
        "A": entity.attrs.to_builtin(),
        "C": [client.client_id, client.gate_id] if client is not None else None,
        "Pos": [pos.x, pos.y, pos.z],
        "Yaw": entity.yaw,
        "SP": space_id,
        "TD": [
            [r.method, list(r.args), r.fire_at, r.interval, r.repeat]
            for r in entity._timers.values()
        ],
        "SFC": entity.client_syncing,
    }


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
        self.rt.send_to_entity_dispatcher(
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
        if env.game_id == 0:
            logger.error("%r: space %s not found, enter_space cancelled", entity, space_id)
            del self.pending[entity.id]
            return
        if env.game_id == rt.game_id:
            del self.pending[entity.id]
            space = rt.spaces.get(space_id)
            if space is not None:
                rt.switch_space(entity, space, pos)
            return
        rt.send_to_entity_dispatcher(
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
            rt.send_to_entity_dispatcher(
                env.entity_id, Envelope(msgtype=MsgType.CANCEL_MIGRATE, entity_id=env.entity_id)
            )
            return
        space_id, pos = target
        entity._safe_hook("on_migrate_out")
        if entity.space is not None:
            entity.space._leave(entity)
        data = pack_entity(entity, space_id, pos)
        entity.client = None  # dropped silently: the target binds it again
        rt.retire(entity)  # this copy is gone; the entity lives on at the target
        rt.send_to_entity_dispatcher(
            entity.id,
            Envelope(
                msgtype=MsgType.REAL_MIGRATE,
                entity_id=entity.id,
                game_id=env.game_id,
                payload=pack(data),
            ),
        )

    def on_real_migrate(self, env: Envelope) -> None:
        data = unpack(env.payload)
        rt = self.rt
        eid = env.entity_id
        if eid in rt.entities:
            logger.error("migration of %s into game%d: already here, ignored", eid, rt.game_id)
            return
        entity = rt._instantiate(data["T"], eid, data["A"])
        entity.yaw = float(data.get("Yaw", 0.0))
        entity.client_syncing = bool(data.get("SFC", False))
        if data.get("C"):
            client_id, gate_id = data["C"]
            entity.client = GameClient(client_id, gate_id, eid)
        restore_timers(rt, entity, data.get("TD") or ())
        # GoWorld's order for a migrated entity: OnInit, OnAttrsReady, OnMigrateIn, then enter.
        entity._safe_hook("on_init")
        entity._safe_hook("on_attrs_ready")
        entity._safe_hook("on_migrate_in")
        if entity.destroyed:
            return
        space = rt.spaces.get(data["SP"]) or rt.nil_space
        if space is not None:
            space._enter(entity, Vector3(*data["Pos"]))


def restore_timers(rt: GameRuntime, entity: Entity, timers: Any) -> None:
    """Re-arm saved timers at their original due times (a missed one fires at once)."""
    from game.runtime import TimerRecord

    for method, args, fire_at, interval, repeat in timers:
        rt._timer_seq += 1
        record = TimerRecord(method, tuple(args), float(fire_at), float(interval), bool(repeat))
        entity._timers[rt._timer_seq] = record
        rt._arm(entity, rt._timer_seq, record)

