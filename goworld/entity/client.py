"""The game's handle on a connected client, and the bodies of the messages sent to it.

A :class:`GameClient` names a client connection (client id, gate id) and the entity that
currently **owns** it. Everything a game sends to that client travels through the dispatcher
of the owner's shard, on one ordered stream (PROTOCOL.md §4.13); ``give_client_to`` switches
the owner first, so the handover burst keeps its order.

The ``*_body`` functions build the part of a client-bound packet after the ``H`` routing header
(``u16 gateid + ClientID``): the runtime prefixes ``u16 msgtype + H`` per recipient, so a
message for many clients (an AllClients attribute change, a CallAllClients) is encoded once.
"""

from __future__ import annotations

import struct
from typing import Any

from goworld.proto import codec
from goworld.proto.msgtypes import MsgType

__all__ = [
    "GameClient",
    "create_body",
    "destroy_body",
    "call_body",
    "header",
    "FOUR_F32",
]

FOUR_F32 = struct.Struct("<ffff")
_U16 = struct.Struct("<H")


class GameClient:
    """A client bound to an entity of this game."""

    __slots__ = ("client_id", "gate_id", "owner_id", "id_bytes", "_route")

    def __init__(self, client_id: str, gate_id: int, owner_id: str = "") -> None:
        self.client_id = client_id
        self.gate_id = gate_id
        self.owner_id = owner_id
        #: the id as wire bytes, and ``u16 gateid + ClientID``: built once, used per message
        self.id_bytes = client_id.encode("latin-1")
        self._route = _U16.pack(gate_id) + self.id_bytes

    def __repr__(self) -> str:
        return f"<GameClient {self.client_id} gate{self.gate_id} owner {self.owner_id}>"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, GameClient)
            and other.client_id == self.client_id
            and other.gate_id == self.gate_id
        )

    def __hash__(self) -> int:
        return hash(self.client_id)


def header(msgtype: int, client: GameClient) -> bytes:
    """``u16 msgtype + u16 gateid + ClientID``: the start of every 1002–1012 payload."""
    return _U16.pack(msgtype) + client._route


def create_body(
    is_player: bool,
    entity_id: str,
    type_name: str,
    x: float,
    y: float,
    z: float,
    yaw: float,
    client_data: dict[str, Any],
) -> bytes:
    out = bytearray(b"\x01" if is_player else b"\x00")
    codec.write_entity_id(out, entity_id)
    codec.write_varstr(out, type_name)
    out += FOUR_F32.pack(x, y, z, yaw)
    codec.write_data(out, client_data)
    return bytes(out)


def destroy_body(type_name: str, entity_id: str) -> bytes:
    out = bytearray()
    codec.write_varstr(out, type_name)
    codec.write_entity_id(out, entity_id)
    return bytes(out)


def call_body(entity_id: str, method: str, args: tuple[Any, ...] | list[Any]) -> bytes:
    out = bytearray()
    codec.write_entity_id(out, entity_id)
    codec.write_varstr(out, method)
    codec.write_args(out, args)
    return bytes(out)


def attr_body(msgtype: int, entity_id: str, path: Any, *rest: Any) -> bytes:
    """Body of 1004–1008 and 1012: ``EntityID + Data path`` then the type's own fields."""
    out = bytearray()
    codec.write_entity_id(out, entity_id)
    codec.write_data(out, list(path) if path is not None else None)
    if msgtype in (MsgType.NOTIFY_MAP_ATTR_CHANGE_ON_CLIENT, MsgType.NOTIFY_MAP_ATTR_DEL_ON_CLIENT):
        codec.write_varstr(out, rest[0])
        if msgtype == MsgType.NOTIFY_MAP_ATTR_CHANGE_ON_CLIENT:
            codec.write_data(out, rest[1])
    elif msgtype == MsgType.NOTIFY_LIST_ATTR_CHANGE_ON_CLIENT:
        out += struct.pack("<I", rest[0])
        codec.write_data(out, rest[1])
    elif msgtype == MsgType.NOTIFY_LIST_ATTR_APPEND_ON_CLIENT:
        codec.write_data(out, rest[0])
    return bytes(out)


def u16(value: int) -> bytes:
    return _U16.pack(value)
