"""Message type numbers (PROTOCOL.md §2.1), with the routing ranges as named predicates.

Numbers are those of GoWorld at HEAD (the "G2020" generation). The legacy client numbering of
the 2017/2018 demo clients is handled by :mod:`goworld.proto.dialect`.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "MsgType",
    "ENTITIES_LOST_CHUNK",
    "FEATURE_NOTICES",
    "is_redirect_to_client",
    "is_gate_service",
    "CLIENT_TO_GATE",
    "GATE_TO_CLIENT",
]


class MsgType(IntEnum):
    INVALID = 0
    SET_GAME_ID = 1
    SET_GATE_ID = 2
    NOTIFY_CREATE_ENTITY = 3
    NOTIFY_DESTROY_ENTITY = 4
    KVREG_REGISTER = 5
    CALL_ENTITY_METHOD = 6
    CREATE_ENTITY_SOMEWHERE = 7
    LOAD_ENTITY_SOMEWHERE = 8
    NOTIFY_CLIENT_CONNECTED = 9
    NOTIFY_CLIENT_DISCONNECTED = 10
    CALL_ENTITY_METHOD_FROM_CLIENT = 11
    SYNC_POSITION_YAW_FROM_CLIENT = 12
    NOTIFY_GATE_DISCONNECTED = 13
    START_FREEZE_GAME = 14
    START_FREEZE_GAME_ACK = 15
    MIGRATE_REQUEST = 16
    REAL_MIGRATE = 17
    QUERY_SPACE_GAMEID_FOR_MIGRATE = 18
    CANCEL_MIGRATE = 19
    CALL_NIL_SPACES = 20
    SET_GAME_ID_ACK = 21
    NOTIFY_GAME_CONNECTED = 22
    NOTIFY_GAME_DISCONNECTED = 23
    NOTIFY_DEPLOYMENT_READY = 24
    GAME_LBC_INFO = 25
    #: Ours (internal, never sent to clients): a game whose freeze failed asks the
    #: dispatchers to stop queueing its traffic and resume delivery.
    CANCEL_FREEZE_GAME = 26
    #: Ours: a game asks the client's gate to close it (``name``: the reason, logged once);
    #: routed by the dispatcher to ``gate_id``, like client-bound messages.
    KICK_CLIENT = 27
    #: Ours, dispatcher -> gate back-pressure: stop / start reading these clients (payload:
    #: their ClientIDs, 16 bytes each) while the game their traffic goes to is behind.
    PAUSE_CLIENTS = 28
    RESUME_CLIENTS = 29
    #: Ours, dispatcher -> every gate: these entities were lost with their game (``game_id``,
    #: a stream that ended without a freeze); payload: their EntityIDs, 16 bytes each, at most
    #: :data:`ENTITIES_LOST_CHUNK` per envelope. The gate closes each client it owns.
    ENTITIES_LOST = 30
    #: Ours, game -> dispatcher -> the same game: a stopping game's barrier. The dispatcher
    #: sends it back on the game's stream, after everything it had queued for the game
    #: (:mod:`game.shutdown`).
    STOP_BARRIER = 31
    #: Ours, the lockstep process (docs/LOCKSTEP-DESIGN.md): its hello (``game_id`` = its id,
    #: ``name`` = its instance); a game's request for a room (game -> dispatcher -> the least
    #: loaded lockstep process; ``entity_id`` = the owner, ``name`` = its on_created method,
    #: payload msgpack {"members", "seed", "on_result", "game"}); the process's load
    #: (lockstep -> dispatcher; payload msgpack {"players", "rooms"}).
    SET_LOCKSTEP_ID = 32
    LOCKSTEP_CREATE_ROOM = 33
    LOCKSTEP_LOAD = 34
    #: Ours, ``goworld stop --cluster``: a dispatcher asks every gate to drain (as DRAIN_SIGNAL
    #: does); each gate answers once drained, payload msgpack {"clients", "told", "seconds"}.
    DRAIN_GATE = 35
    GATE_DRAINED = 36

    GATE_SERVICE_MSG_TYPE_START = 1000
    REDIRECT_TO_GATEPROXY_MSG_TYPE_START = 1001
    CREATE_ENTITY_ON_CLIENT = 1002
    DESTROY_ENTITY_ON_CLIENT = 1003
    NOTIFY_MAP_ATTR_CHANGE_ON_CLIENT = 1004
    NOTIFY_MAP_ATTR_DEL_ON_CLIENT = 1005
    NOTIFY_LIST_ATTR_CHANGE_ON_CLIENT = 1006
    NOTIFY_LIST_ATTR_POP_ON_CLIENT = 1007
    NOTIFY_LIST_ATTR_APPEND_ON_CLIENT = 1008
    CALL_ENTITY_METHOD_ON_CLIENT = 1009
    SET_CLIENTPROXY_FILTER_PROP = 1010
    CLEAR_CLIENTPROXY_FILTER_PROPS = 1011
    NOTIFY_MAP_ATTR_CLEAR_ON_CLIENT = 1012
    REDIRECT_TO_GATEPROXY_MSG_TYPE_STOP = 1499
    CALL_FILTERED_CLIENTS = 1501
    SYNC_POSITION_YAW_ON_CLIENTS = 1502
    #: Ours, gate -> client, sent only to a client that announced :data:`FEATURE_NOTICES` in a
    #: heartbeat, just before the gate closes it: ``VarStr kind + VarStr text`` (the reason).
    #: GoWorld's clients never announce it and never see it.
    NOTICE_ON_CLIENT = 1901
    GATE_SERVICE_MSG_TYPE_STOP = 1999
    HEARTBEAT_FROM_CLIENT = 2001


#: Entity ids per ENTITIES_LOST envelope (64 KiB of ids).
ENTITIES_LOST_CHUNK = 4096

#: Our clients' heartbeat (2001; 2004 in the legacy dialects) may carry a body, ``u32 LE``
#: feature bits, which GoWorld's gate ignores. Bit 0: the client understands NOTICE_ON_CLIENT.
FEATURE_NOTICES = 1


def is_redirect_to_client(msgtype: int) -> bool:
    """Types 1001..1499 carry ``u16 gateid + ClientID`` and are forwarded to that client."""
    return 1001 <= msgtype <= 1499


def is_gate_service(msgtype: int) -> bool:
    """Types 1501..1999 are handled by the gate itself (filtered calls, position syncs)."""
    return 1501 <= msgtype <= 1999


#: Types a client may send to a gate (HEAD numbering).
CLIENT_TO_GATE = frozenset(
    {
        MsgType.CALL_ENTITY_METHOD_FROM_CLIENT,
        MsgType.SYNC_POSITION_YAW_FROM_CLIENT,
        MsgType.HEARTBEAT_FROM_CLIENT,
    }
)

#: Types a gate sends to a client.
GATE_TO_CLIENT = frozenset(
    {
        MsgType.CREATE_ENTITY_ON_CLIENT,
        MsgType.DESTROY_ENTITY_ON_CLIENT,
        MsgType.NOTIFY_MAP_ATTR_CHANGE_ON_CLIENT,
        MsgType.NOTIFY_MAP_ATTR_DEL_ON_CLIENT,
        MsgType.NOTIFY_LIST_ATTR_CHANGE_ON_CLIENT,
        MsgType.NOTIFY_LIST_ATTR_POP_ON_CLIENT,
        MsgType.NOTIFY_LIST_ATTR_APPEND_ON_CLIENT,
        MsgType.CALL_ENTITY_METHOD_ON_CLIENT,
        MsgType.NOTIFY_MAP_ATTR_CLEAR_ON_CLIENT,
        MsgType.CALL_FILTERED_CLIENTS,
        MsgType.SYNC_POSITION_YAW_ON_CLIENTS,
    }
)
