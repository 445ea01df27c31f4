"""Messages a game receives from dispatchers, one handler per type (PROTOCOL.md §2.4, §4, §8).

:class:`GameHandlers` is the table-driven dispatch: ``handle(dispatcher_id, env)`` looks the
type up in a dict. Every handler is wrapped so that a failure is logged with the message type
and never breaks the dispatcher link.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from goworld.cluster.envelopes import Envelope, unpack
from goworld.entity.client import GameClient
from goworld.errors import RemoteProtocolError
from goworld.proto import codec, positions
from goworld.proto.msgtypes import MsgType

if TYPE_CHECKING:
    from game.runtime import GameRuntime
    from goworld.entity.entity import Entity

__all__ = ["GameHandlers"]

logger = logging.getLogger("goworld.game")


class GameHandlers:
    def __init__(
        self,
        rt: GameRuntime,
        on_ready: Callable[[], None],
        on_freeze_ack: Callable[[int], None] | None = None,
        on_stop_barrier: Callable[[int], None] | None = None,
    ) -> None:
        self.rt = rt
        self._on_ready = on_ready
        self._on_freeze_ack = on_freeze_ack
        self._on_stop_barrier = on_stop_barrier
        m = MsgType
        self._table: dict[int, Callable[[int, Envelope], None]] = {
            m.SET_GAME_ID_ACK: self._set_game_id_ack,
            m.NOTIFY_CLIENT_CONNECTED: self._client_connected,
            m.NOTIFY_CLIENT_DISCONNECTED: self._client_disconnected,
            m.CALL_ENTITY_METHOD: self._call,
            m.CALL_ENTITY_METHOD_FROM_CLIENT: self._call_from_client,
            m.SYNC_POSITION_YAW_FROM_CLIENT: self._sync_from_client,
            m.CREATE_ENTITY_SOMEWHERE: self._create_somewhere,
            m.LOAD_ENTITY_SOMEWHERE: self._load_somewhere,
            m.KVREG_REGISTER: self._kvreg,
            m.NOTIFY_GATE_DISCONNECTED: self._gate_disconnected,
            m.NOTIFY_GAME_CONNECTED: self._game_connected,
            m.NOTIFY_GAME_DISCONNECTED: self._game_disconnected,
            m.NOTIFY_DEPLOYMENT_READY: self._deployment_ready,
            m.CALL_NIL_SPACES: self._call_nil_spaces,
            m.QUERY_SPACE_GAMEID_FOR_MIGRATE: lambda d, e: rt.migration.on_query_reply(e),
            m.MIGRATE_REQUEST: lambda d, e: rt.migration.on_migrate_ack(e),
            m.REAL_MIGRATE: lambda d, e: rt.migration.on_real_migrate(e),
            m.START_FREEZE_GAME_ACK: self._freeze_ack,
            m.STOP_BARRIER: self._stop_barrier,
        }

    def handle(self, dispatcher_id: int, env: Envelope) -> None:
        handler = self._table.get(env.msgtype)
        if handler is None:
            logger.error("dispatcher%d sent unexpected message type %d", dispatcher_id, env.msgtype)
            return
        try:
            handler(dispatcher_id, env)
        except Exception:
            logger.exception("handling message type %d from dispatcher%d failed", env.msgtype, dispatcher_id)

    # ---- cluster state -------------------------------------------------------------------

    def _set_game_id_ack(self, did: int, env: Envelope) -> None:
        info = unpack(env.payload)
        rt = self.rt
        rt.online_games.update(info.get("games", ()))
        rt.online_games.add(rt.game_id)
        for key, value in info.get("kvreg", {}).items():
            self._apply_kvreg(key, value)
        for eid in info.get("rejected", ()):
            entity = rt.entities.get(eid)
            if entity is not None:
                logger.warning("%r is owned by another game: dropping our copy", entity)
                rt.discard_entity(entity)
        if info.get("clients_lost"):
            self._clients_lost(did)
        if info.get("ready"):
            if rt.deployment_ready and rt.services is not None:
                rt.services.start()  # a restored game: ready before it froze
            self._deployment_ready(did, env)

    def _freeze_ack(self, did: int, env: Envelope) -> None:
        if self._on_freeze_ack is not None:
            self._on_freeze_ack(did)

    def _stop_barrier(self, did: int, env: Envelope) -> None:
        if self._on_stop_barrier is not None:
            self._on_stop_barrier(did)

    def _deployment_ready(self, did: int, env: Envelope) -> None:
        if not self.rt.deployment_ready:
            self.rt.deployment_ready = True
            self._on_ready()

    def _game_connected(self, did: int, env: Envelope) -> None:
        self.rt.online_games.add(env.game_id)
        if self.rt.services is not None:
            self.rt.services.game_back(env.game_id)

    def _game_disconnected(self, did: int, env: Envelope) -> None:
        self.rt.online_games.discard(env.game_id)
        if self.rt.services is not None:
            self.rt.services.game_lost(env.game_id)

    def _kvreg(self, did: int, env: Envelope) -> None:
        value = unpack(env.payload)[0]
        self._apply_kvreg(env.name, value)

    def _apply_kvreg(self, key: str, value: str) -> None:
        rt = self.rt
        if rt.kvreg.get(key) == value:
            return
        rt.kvreg[key] = value
        if rt.services is not None:
            rt.services.kvreg_changed(key)

    # ---- clients -------------------------------------------------------------------------

    def _client_connected(self, did: int, env: Envelope) -> None:
        rt = self.rt
        address = env.payload.decode("utf-8", "replace") if env.payload else ""
        client = GameClient(env.client_id, env.gate_id, env.entity_id, address)
        rt.create_entity_locally(rt.boot_entity, entity_id=env.entity_id, client=client)

    def _client_disconnected(self, did: int, env: Envelope) -> None:
        self.rt.client_calls.forget(env.client_id)
        entity = self.rt.entities.get(env.entity_id)
        if entity is None or entity.client is None or entity.client.client_id != env.client_id:
            return
        client = entity.client
        entity.client = None
        self.rt.client_unbound(entity, client)
        entity.run_hook("on_client_disconnected")

    def _gate_disconnected(self, did: int, env: Envelope) -> None:
        self.rt.client_calls.forget_gate(env.gate_id)
        self._drop_clients(lambda entity, client: client.gate_id == env.gate_id)

    def _clients_lost(self, did: int) -> None:
        """Dispatcher ``did`` took this game for dead while its stream was down (longer than
        its game_reconnect_grace) and had the gates close the clients of the entities of its
        shard: those entities lose their clients here too (their hooks run, as for a
        disconnect), instead of keeping clients that no longer exist."""
        shard = self.rt.outbox.shard
        dropped = self._drop_clients(lambda entity, client: shard(entity.id) == did)
        logger.warning(
            "dispatcher%d had taken this game for dead (its stream was down too long): "
            "%d entities lost their clients", did, dropped,
        )

    def _drop_clients(self, which: Callable[[Entity, GameClient], bool]) -> int:
        dropped = 0
        for entity in list(self.rt.entities.values()):
            client = entity.client
            if client is not None and which(entity, client):
                entity.client = None
                self.rt.client_unbound(entity, client)
                entity.run_hook("on_client_disconnected")
                dropped += 1
        return dropped

    def _sync_from_client(self, did: int, env: Envelope) -> None:
        if self.rt.halted:  # frozen: the snapshot is taken, the world must not move any more
            return
        entities = self.rt.entities
        for eid, x, y, z, yaw in positions.iter_records(env.payload):
            entity = entities.get(eid)
            if entity is not None and entity.client_syncing and not entity.destroyed:
                entity.move_from_client(x, y, z, yaw)

    # ---- calls ---------------------------------------------------------------------------

    def _decode_args(self, env: Envelope) -> list[object] | None:
        try:
            args, end = codec.decode_args(env.payload)
        except RemoteProtocolError as exc:
            logger.warning("call %s on %s: bad arguments (%s): dropped", env.name, env.entity_id, exc)
            return None
        return list(args)

    def _call(self, did: int, env: Envelope) -> None:
        entity = self.rt.entities.get(env.entity_id)
        if entity is None:
            logger.warning("call %s: entity %s is not on this game: dropped", env.name, env.entity_id)
            return
        args = self._decode_args(env)
        if args is not None:
            self.rt.invoke(entity, env.name, args, None)

    def _call_from_client(self, did: int, env: Envelope) -> None:
        """Checked before the arguments are decoded: the target, its exposure, the size of the
        arguments and the method's rate (:mod:`game.call_limits`); every refusal is a strike
        against the client, none is logged on its own."""
        rt = self.rt
        limiter = rt.client_calls
        client_id, name = env.client_id, env.name  # protobuf fields: read once
        entity = rt.entities.get(env.entity_id)
        if entity is None:
            limiter.refuse(
                client_id, env.gate_id, name, f"no entity {env.entity_id} here", kind="no_entity"
            )
            return
        method = rt.client_rpc(entity, name, client_id)
        if isinstance(method, str):
            limiter.refuse(client_id, env.gate_id, name, method, kind="not_allowed")
            return
        payload = env.payload
        if not limiter.admit(client_id, env.gate_id, method, len(payload)):
            return
        try:
            args, _end = codec.decode_args(payload)
        except RemoteProtocolError as exc:
            limiter.refuse(
                client_id, env.gate_id, name, f"bad arguments ({exc})", kind="bad_arguments"
            )
            return
        refused = rt.run_rpc(entity, method, args, client_id)
        if refused is not None:
            limiter.refuse(client_id, env.gate_id, name, refused, kind="bad_arguments")

    def _call_nil_spaces(self, did: int, env: Envelope) -> None:
        space = self.rt.nil_space
        args = self._decode_args(env)
        if space is not None and args is not None:
            self.rt.invoke(space, env.name, args, None)

    def _create_somewhere(self, did: int, env: Envelope) -> None:
        attrs = unpack(env.payload) if env.payload else None
        self.rt.create_entity_locally(env.name, entity_id=env.entity_id, attrs=attrs)

    def _load_somewhere(self, did: int, env: Envelope) -> None:
        self.rt.load_entity_locally(env.name, env.entity_id)
