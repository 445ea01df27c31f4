"""How each cluster message fills an :class:`Envelope` (``goworld/rpc/cluster.proto``).

The dispatcher routes on the header fields only. ``payload`` is opaque to it: either a client
packet payload (client-bound types 1002–1012, 1501, 1502 records), GoWorld ``Args`` bytes
(calls), or a msgpack value (structured internal messages; plain msgpack, since clients never
see these bytes).

=============================  ==========================================================
message                        fields used
=============================  ==========================================================
SET_GAME_ID (game→disp)        game_id; payload {"reconnect","restore","ban_boot","eids"}
SET_GATE_ID (gate→disp)        gate_id
SET_GAME_ID_ACK (disp→game)    payload {"disp","ready","games","rejected","kvreg"[,"clients_lost"]}
NOTIFY_CREATE_ENTITY           entity_id
NOTIFY_DESTROY_ENTITY          entity_id
KVREG_REGISTER                 name=key; payload [value, force]
CALL_ENTITY_METHOD             entity_id, name=method, payload=Args
CALL_ENTITY_METHOD_FROM_CLIENT entity_id, name=method, payload=Args, client_id, gate_id
CREATE_ENTITY_SOMEWHERE        game_id (0 = anywhere), entity_id, name=type, payload=attrs
LOAD_ENTITY_SOMEWHERE          game_id (0 = anywhere), entity_id, name=type
NOTIFY_CLIENT_CONNECTED        client_id, entity_id=boot entity, gate_id, payload=address
NOTIFY_CLIENT_DISCONNECTED     entity_id=owner, client_id, gate_id
SYNC_POSITION_YAW_FROM_CLIENT  payload = (EntityID + 4×f32) records
NOTIFY_GATE_DISCONNECTED       gate_id
MIGRATE_REQUEST                entity_id, name=space id, game_id=space game
REAL_MIGRATE                   entity_id, game_id=target game, payload=migration data
QUERY_SPACE_GAMEID_FOR_MIGRATE entity_id=space id, name=migrating entity id; reply game_id
CANCEL_MIGRATE                 entity_id
CALL_NIL_SPACES                game_id=except game, name=method, payload=Args
NOTIFY_GAME_(DIS)CONNECTED     game_id
NOTIFY_DEPLOYMENT_READY        –
GAME_LBC_INFO                  payload msgpack float (CPU %)
START_FREEZE_GAME(_ACK)        game_id (ack: payload = dispatcher id)
DRAIN_GATE (disp→gate)         –
GATE_DRAINED (gate→disp)       gate_id; payload {"clients","told","seconds"}
1002–1012 (client-bound)       gate_id, client_id, payload = the client packet payload
1501 CALL_FILTERED_CLIENTS     payload = the client packet payload
1502 (game→disp→gate)          gate_id, payload = (ClientID + EntityID + 4×f32) records
=============================  ==========================================================
"""

from __future__ import annotations

from typing import Any

import msgpack

from goworld.rpc.cluster_pb2 import Batch, Envelope

__all__ = ["Envelope", "Batch", "pack", "unpack"]


def pack(value: Any) -> bytes:
    """Encode an internal structured payload."""
    data: bytes = msgpack.packb(value, use_bin_type=True)
    return data


def unpack(data: bytes) -> Any:
    """Decode an internal structured payload."""
    return msgpack.unpackb(data, raw=False, strict_map_key=False)
