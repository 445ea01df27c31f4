"""Everything a game sends, as envelopes routed to the right dispatcher.

:class:`Outbox` never awaits: ``send(dispatcher_id, envelope)`` puts the envelope in that
dispatcher link's batch queue. Routing rules (DESIGN.md):

- a message about an entity goes to the dispatcher of the entity's id (``dispatcher_shard``);
- a message for a client goes through the dispatcher of the client's *owner* entity, so the
  messages of both games during a migration or a handover arrive in order;
- a filtered-client call and a nil-space call go to dispatcher 1 only, which broadcasts them
  (every client or game gets it exactly once);
- position syncs for the clients of gate ``g``, and a request to close one of them
  (KICK_CLIENT), go to dispatcher ``(g - 1) % D + 1``;
- a kvreg key goes to the dispatcher of its CRC32.

Client-visible bytes come from :mod:`goworld.entity.client` (message bodies) and
:mod:`goworld.proto.positions` (position records).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable
from typing import Any

from goworld.cluster.envelopes import Envelope, pack
from goworld.entity.client import GameClient, header
from goworld.entity.entity import SYNC_NEIGHBOURS, SYNC_OWN, Entity
from goworld.errors import EntityError
from goworld.proto import codec, positions
from goworld.proto.ids import dispatcher_shard, new_entity_id
from goworld.proto.messages import CallFilteredClients, FilterOp
from goworld.proto.msgtypes import MsgType

__all__ = ["Outbox"]

_OPS = {"=": FilterOp.EQ, "!=": FilterOp.NE, ">": FilterOp.GT, "<": FilterOp.LT, ">=": FilterOp.GE, "<=": FilterOp.LE}


class Outbox:
    def __init__(self, game_id: int, num_dispatchers: int, send: Callable[[int, Envelope], None]) -> None:
        self.game_id = game_id
        self.num_dispatchers = num_dispatchers
        self._send = send

    # ---- routing -------------------------------------------------------------------------

    def shard(self, entity_id: str) -> int:
        return dispatcher_shard(entity_id, self.num_dispatchers)

    def to_entity(self, entity_id: str, env: Envelope) -> None:
        """To the dispatcher that routes ``entity_id``."""
        self._send(dispatcher_shard(entity_id, self.num_dispatchers), env)

    def to_dispatcher(self, dispatcher_id: int, env: Envelope) -> None:
        self._send(dispatcher_id, env)

    def to_all(self, env: Envelope) -> None:
        for did in range(1, self.num_dispatchers + 1):
            self._send(did, env)

    # ---- entities ------------------------------------------------------------------------

    def entity_created(self, entity_id: str) -> None:
        self.to_entity(entity_id, Envelope(msgtype=MsgType.NOTIFY_CREATE_ENTITY, entity_id=entity_id))

    def entity_destroyed(self, entity_id: str) -> None:
        """Also sent for an entity that failed to load: the dispatcher drops its queued calls."""
        self.to_entity(entity_id, Envelope(msgtype=MsgType.NOTIFY_DESTROY_ENTITY, entity_id=entity_id))

    def create_somewhere(self, game_id: int, type_name: str, attrs: dict[str, Any] | None) -> str:
        """Ask for an entity on ``game_id`` (0: the least loaded game); its id at once."""
        entity_id = new_entity_id()
        self.to_entity(
            entity_id,
            Envelope(
                msgtype=MsgType.CREATE_ENTITY_SOMEWHERE,
                game_id=game_id,
                entity_id=entity_id,
                name=type_name,
                payload=pack(attrs or {}),
            ),
        )
        return entity_id

    def load_somewhere(self, type_name: str, entity_id: str, game_id: int) -> None:
        self.to_entity(
            entity_id,
            Envelope(
                msgtype=MsgType.LOAD_ENTITY_SOMEWHERE, game_id=game_id, entity_id=entity_id, name=type_name
            ),
        )

    def call(self, entity_id: str, method: str, args: tuple[Any, ...]) -> None:
        self.to_entity(
            entity_id,
            Envelope(
                msgtype=MsgType.CALL_ENTITY_METHOD,
                entity_id=entity_id,
                name=method,
                payload=codec.encode_args(args),
            ),
        )

    def lockstep_create_room(
        self, owner_id: str, members: list[int], *, on_created: str, on_result: str, seed: int
    ) -> None:
        """Ask the least loaded lockstep process for a room (through the owner's dispatcher:
        the answers are calls to the owner, docs/LOCKSTEP-DESIGN.md)."""
        self.to_entity(
            owner_id,
            Envelope(
                msgtype=MsgType.LOCKSTEP_CREATE_ROOM,
                entity_id=owner_id,
                game_id=self.game_id,
                name=on_created,
                payload=pack({"members": members, "seed": seed, "on_result": on_result}),
            ),
        )

    def call_nil_spaces(self, method: str, args: tuple[Any, ...]) -> None:
        """Dispatcher 1 sends it to every other game's nil space."""
        self.to_dispatcher(
            1,
            Envelope(
                msgtype=MsgType.CALL_NIL_SPACES,
                game_id=self.game_id,
                name=method,
                payload=codec.encode_args(args),
            ),
        )

    def kvreg_shard(self, key: str) -> int:
        """The dispatcher that keeps ``key`` of the kvreg."""
        return zlib.crc32(key.encode("utf-8")) % self.num_dispatchers + 1

    def kvreg_register(
        self, key: str, value: str, *, force: bool, expected: str | None = None
    ) -> None:
        """``key = value`` at the key's dispatcher: first writer wins unless ``force``; with
        ``expected``, only while the key holds that value (a takeover from a dead owner)."""
        payload = pack([value, force] if expected is None else [value, force, expected])
        self._send(
            self.kvreg_shard(key),
            Envelope(msgtype=MsgType.KVREG_REGISTER, name=key, payload=payload),
        )

    # ---- clients -------------------------------------------------------------------------

    def send_client(self, client: GameClient, msgtype: int, body: bytes) -> None:
        self._send(
            dispatcher_shard(client.owner_id, self.num_dispatchers),
            Envelope(
                msgtype=msgtype,
                gate_id=client.gate_id,
                client_id=client.client_id,
                payload=header(msgtype, client) + body,
            ),
        )

    def send_clients(self, clients: Iterable[GameClient], msgtype: int, body: bytes) -> None:
        for client in clients:
            self.send_client(client, msgtype, body)

    def set_filter_prop(self, client: GameClient, key: str, value: str) -> None:
        self._send(
            dispatcher_shard(client.owner_id, self.num_dispatchers),
            Envelope(
                msgtype=MsgType.SET_CLIENTPROXY_FILTER_PROP,
                gate_id=client.gate_id,
                client_id=client.client_id,
                name=key,
                payload=value.encode("utf-8"),
            ),
        )

    def clear_filter_props(self, client: GameClient) -> None:
        self._send(
            dispatcher_shard(client.owner_id, self.num_dispatchers),
            Envelope(
                msgtype=MsgType.CLEAR_CLIENTPROXY_FILTER_PROPS,
                gate_id=client.gate_id,
                client_id=client.client_id,
            ),
        )

    def kick_client(self, client_id: str, gate_id: int, reason: str, code: str = "") -> None:
        """Ask gate ``gate_id`` to close a client (``reason`` is logged there and told to a
        client that understands notices, with ``code``: default ``kicked``), through the
        dispatcher that carries that gate's position syncs."""
        self._send(
            (gate_id - 1) % self.num_dispatchers + 1,
            Envelope(
                msgtype=MsgType.KICK_CLIENT, gate_id=gate_id, client_id=client_id, name=reason,
                payload=code.encode("utf-8"),
            ),
        )

    def call_filtered_clients(
        self, key: str, op: str, value: str, method: str, args: tuple[Any, ...]
    ) -> None:
        code = _OPS.get(op)
        if code is None:
            raise EntityError(f"call_filtered_clients: unknown operator {op!r}")
        payload = codec.encode_payload(CallFilteredClients(code, key, value, method, args))
        self._send(1, Envelope(msgtype=MsgType.CALL_FILTERED_CLIENTS, payload=payload))

    def position_syncs(self, dirty: Iterable[Entity]) -> None:
        """Send the pending position/yaw changes of ``dirty`` to the clients that see them
        (PROTOCOL.md §4.6), one batch of addressed records per gate."""
        per_gate: dict[int, bytearray] = {}
        pack_record = positions.pack_record
        for entity in dirty:
            flags = entity.take_sync_flags()
            if not flags or entity.destroyed:
                continue
            p = entity.position
            record = pack_record(entity.id.encode("latin-1"), p.x, p.y, p.z, entity.yaw)
            if flags & SYNC_OWN and entity.client is not None:
                c = entity.client
                buf = per_gate.get(c.gate_id)
                if buf is None:
                    buf = per_gate[c.gate_id] = bytearray()
                buf += c.id_bytes
                buf += record
            if flags & SYNC_NEIGHBOURS:
                for other in entity.interested_in:
                    oc = other.client
                    if oc is None:
                        continue
                    buf = per_gate.get(oc.gate_id)
                    if buf is None:
                        buf = per_gate[oc.gate_id] = bytearray()
                    buf += oc.id_bytes
                    buf += record
        for gate_id, buf in per_gate.items():
            self._send(
                (gate_id - 1) % self.num_dispatchers + 1,
                Envelope(msgtype=MsgType.SYNC_POSITION_YAW_ON_CLIENTS, gate_id=gate_id, payload=bytes(buf)),
            )
