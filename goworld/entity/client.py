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

from goworld.address import address_key
from goworld.proto.codec import encode_body, encode_routing_header
from goworld.proto.msgtypes import MsgType

_MT = MsgType

__all__ = [
    "GameClient",
    "create_body",
    "destroy_body",
    "call_body",
    "header",
]

_U16 = struct.Struct("<H")


class GameClient:
    """A client bound to an entity of this game.

    ``address``: where the client connected from, ``"host:port"`` as its gate saw the socket's
    peer (``""`` when unknown, e.g. state frozen by an engine older than this field). It is the
    direct peer: behind a proxy or a load balancer, that is the proxy's address. ``host`` is
    its host part, IPv6 without brackets."""

    __slots__ = ("client_id", "gate_id", "owner_id", "address", "id_bytes", "_route")

    def __init__(
        self, client_id: str, gate_id: int, owner_id: str = "", address: str = ""
    ) -> None:
        self.client_id = client_id
        self.gate_id = gate_id
        self.owner_id = owner_id
        self.address = address
        #: the id as wire bytes, and ``u16 gateid + ClientID``: built once, used per message
        self.id_bytes = client_id.encode("latin-1")
        self._route = encode_routing_header(gate_id, client_id)

    @property
    def host(self) -> str:
        """The host part of :attr:`address` (``""`` when unknown)."""
        host = self.address.rpartition(":")[0]
        return host[1:-1] if host.startswith("[") else host

    @property
    def host_key(self) -> str:
        """:attr:`host` as the engine's per-host bounds count it: an IPv6 host as its /64 (one
        machine usually has a whole /64, so counting single IPv6 addresses counts nothing),
        an IPv4-mapped address as the IPv4 one. What to key a per-host throttle on."""
        return address_key(self.host)

    def state(self) -> tuple[str, int, str, str]:
        """``(client id, gate id, owner id, address)``: what a freeze or a migration keeps."""
        return (self.client_id, self.gate_id, self.owner_id, self.address)

    @classmethod
    def from_state(cls, state: tuple[Any, ...] | list[Any], owner_id: str) -> GameClient:
        """The client of :meth:`state` (three items, without the address, from older
        engines), owned by ``owner_id`` when the state names no owner."""
        address = str(state[3]) if len(state) > 3 else ""
        return cls(str(state[0]), int(state[1]), str(state[2]) or owner_id, address)

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
    return encode_body(_MT.CREATE_ENTITY_ON_CLIENT, is_player, entity_id, type_name, x, y, z, yaw, client_data)


def destroy_body(type_name: str, entity_id: str) -> bytes:
    return encode_body(_MT.DESTROY_ENTITY_ON_CLIENT, type_name, entity_id)


def call_body(entity_id: str, method: str, args: tuple[Any, ...] | list[Any]) -> bytes:
    return encode_body(_MT.CALL_ENTITY_METHOD_ON_CLIENT, entity_id, method, args)


def attr_body(msgtype: int, entity_id: str, path: Any, *rest: Any) -> bytes:
    """Body of 1004-1008 and 1012: ``EntityID + Data path`` then the type's own fields."""
    return encode_body(msgtype, entity_id, list(path) if path is not None else None, *rest)
