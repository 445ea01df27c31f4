"""Client-facing messages (PROTOCOL.md §2.2, §2.3) as frozen dataclasses.

Each class carries ``MSGTYPE`` and ``LAYOUT``: the ordered wire fields of its body (after the
``u16`` msgtype), as ``(attribute, kind)`` pairs. :mod:`goworld.proto.codec` interprets the
layout, so this table is the single description of every body. Field kinds:

``header``  ``u16 gateid + ClientID(16)`` (the "H" routing header of 1002–1012)
``u8``/``bool``/``u16``/``u32``  fixed-width little-endian integers
``f32``     IEEE binary32, little-endian
``eid``     an EntityID: exactly 16 raw bytes
``str``     VarStr: ``u32`` length + UTF-8 bytes
``data``    VarBytes holding one msgpack value
``args``    ``u16`` count + that many ``data``
``records`` 1502 records (``EntityID + 4 × f32``) up to the end of the payload

Attribute paths (``path``) are leaf-first lists of keys and list indices, or ``None`` for the
root attribute map (§4.3). The G2017 dialect writes that ``None`` as ``[]``, as GoWorld did in
2017 (see :mod:`goworld.proto.dialect`); decoding returns what is on the wire.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, ClassVar

from goworld.proto.msgtypes import MsgType

__all__ = [
    "FilterOp",
    "Message",
    "CallEntityMethodFromClient",
    "SyncPositionYawFromClient",
    "HeartbeatFromClient",
    "CreateEntityOnClient",
    "DestroyEntityOnClient",
    "NotifyMapAttrChangeOnClient",
    "NotifyMapAttrDelOnClient",
    "NotifyListAttrChangeOnClient",
    "NotifyListAttrPopOnClient",
    "NotifyListAttrAppendOnClient",
    "CallEntityMethodOnClient",
    "SetClientProxyFilterProp",
    "ClearClientProxyFilterProps",
    "NotifyMapAttrClearOnClient",
    "CallFilteredClients",
    "SyncPositionYawOnClients",
    "PositionRecord",
    "MESSAGE_CLASSES",
    "ROUTING_HEADER",
]

Layout = tuple[tuple[str, str], ...]
#: The "H" routing header of every client-bound message (1002-1012): the gate reads it.
ROUTING_HEADER: Layout = (("gate_id", "u16"), ("client_id", "eid"))
_H = ROUTING_HEADER


class FilterOp(IntEnum):
    """Comparison operators of filtered calls (1501), compared byte-wise as strings."""

    EQ = 0
    NE = 1
    GT = 2
    LT = 3
    GE = 4
    LE = 5


class Message:
    """Base of the message dataclasses."""

    __slots__ = ()
    MSGTYPE: ClassVar[MsgType]
    LAYOUT: ClassVar[Layout]


# ---- client -> gate ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallEntityMethodFromClient(Message):
    """11: a client calls ``method`` on entity ``entity_id`` (any entity, not only its own)."""

    MSGTYPE: ClassVar[MsgType] = MsgType.CALL_ENTITY_METHOD_FROM_CLIENT
    LAYOUT: ClassVar[Layout] = (("entity_id", "eid"), ("method", "str"), ("args", "args"))
    entity_id: str
    method: str
    args: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class SyncPositionYawFromClient(Message):
    """12: a client moves a client-synced entity. Bytes after the one record are ignored."""

    MSGTYPE: ClassVar[MsgType] = MsgType.SYNC_POSITION_YAW_FROM_CLIENT
    LAYOUT: ClassVar[Layout] = (
        ("entity_id", "eid"),
        ("x", "f32"),
        ("y", "f32"),
        ("z", "f32"),
        ("yaw", "f32"),
    )
    entity_id: str
    x: float
    y: float
    z: float
    yaw: float


@dataclass(frozen=True, slots=True)
class HeartbeatFromClient(Message):
    """2001: no body; refreshes the connection's heartbeat timestamp."""

    MSGTYPE: ClassVar[MsgType] = MsgType.HEARTBEAT_FROM_CLIENT
    LAYOUT: ClassVar[Layout] = ()


# ---- gate -> client, with the H header -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreateEntityOnClient(Message):
    """1002: the client learns an entity (its player when ``is_player``; spaces are ``__space__``)."""

    MSGTYPE: ClassVar[MsgType] = MsgType.CREATE_ENTITY_ON_CLIENT
    LAYOUT: ClassVar[Layout] = _H + (
        ("is_player", "bool"),
        ("entity_id", "eid"),
        ("type_name", "str"),
        ("x", "f32"),
        ("y", "f32"),
        ("z", "f32"),
        ("yaw", "f32"),
        ("client_data", "data"),
    )
    gate_id: int
    client_id: str
    is_player: bool
    entity_id: str
    type_name: str
    x: float = 0.0
    y: float = 0.0
    z: float = 0.0
    yaw: float = 0.0
    client_data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DestroyEntityOnClient(Message):
    """1003: the client forgets an entity (type name comes before the id on the wire)."""

    MSGTYPE: ClassVar[MsgType] = MsgType.DESTROY_ENTITY_ON_CLIENT
    LAYOUT: ClassVar[Layout] = _H + (("type_name", "str"), ("entity_id", "eid"))
    gate_id: int
    client_id: str
    type_name: str
    entity_id: str


@dataclass(frozen=True, slots=True)
class NotifyMapAttrChangeOnClient(Message):
    """1004: ``map[key] = value`` in the map found by walking ``path``."""

    MSGTYPE: ClassVar[MsgType] = MsgType.NOTIFY_MAP_ATTR_CHANGE_ON_CLIENT
    LAYOUT: ClassVar[Layout] = _H + (
        ("entity_id", "eid"),
        ("path", "data"),
        ("key", "str"),
        ("value", "data"),
    )
    gate_id: int
    client_id: str
    entity_id: str
    path: list[Any] | None
    key: str
    value: Any


@dataclass(frozen=True, slots=True)
class NotifyMapAttrDelOnClient(Message):
    """1005: ``del map[key]``."""

    MSGTYPE: ClassVar[MsgType] = MsgType.NOTIFY_MAP_ATTR_DEL_ON_CLIENT
    LAYOUT: ClassVar[Layout] = _H + (("entity_id", "eid"), ("path", "data"), ("key", "str"))
    gate_id: int
    client_id: str
    entity_id: str
    path: list[Any] | None
    key: str


@dataclass(frozen=True, slots=True)
class NotifyListAttrChangeOnClient(Message):
    """1006: ``list[index] = value``."""

    MSGTYPE: ClassVar[MsgType] = MsgType.NOTIFY_LIST_ATTR_CHANGE_ON_CLIENT
    LAYOUT: ClassVar[Layout] = _H + (
        ("entity_id", "eid"),
        ("path", "data"),
        ("index", "u32"),
        ("value", "data"),
    )
    gate_id: int
    client_id: str
    entity_id: str
    path: list[Any] | None
    index: int
    value: Any


@dataclass(frozen=True, slots=True)
class NotifyListAttrPopOnClient(Message):
    """1007: remove the last item of the list."""

    MSGTYPE: ClassVar[MsgType] = MsgType.NOTIFY_LIST_ATTR_POP_ON_CLIENT
    LAYOUT: ClassVar[Layout] = _H + (("entity_id", "eid"), ("path", "data"))
    gate_id: int
    client_id: str
    entity_id: str
    path: list[Any] | None


@dataclass(frozen=True, slots=True)
class NotifyListAttrAppendOnClient(Message):
    """1008: append ``value`` to the list."""

    MSGTYPE: ClassVar[MsgType] = MsgType.NOTIFY_LIST_ATTR_APPEND_ON_CLIENT
    LAYOUT: ClassVar[Layout] = _H + (("entity_id", "eid"), ("path", "data"), ("value", "data"))
    gate_id: int
    client_id: str
    entity_id: str
    path: list[Any] | None
    value: Any


@dataclass(frozen=True, slots=True)
class CallEntityMethodOnClient(Message):
    """1009: call ``method`` on the client's replica of ``entity_id``."""

    MSGTYPE: ClassVar[MsgType] = MsgType.CALL_ENTITY_METHOD_ON_CLIENT
    LAYOUT: ClassVar[Layout] = _H + (("entity_id", "eid"), ("method", "str"), ("args", "args"))
    gate_id: int
    client_id: str
    entity_id: str
    method: str
    args: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class SetClientProxyFilterProp(Message):
    """1010: consumed by the gate: set the client's filter property ``key`` to ``value``."""

    MSGTYPE: ClassVar[MsgType] = MsgType.SET_CLIENTPROXY_FILTER_PROP
    LAYOUT: ClassVar[Layout] = _H + (("key", "str"), ("value", "str"))
    gate_id: int
    client_id: str
    key: str
    value: str


@dataclass(frozen=True, slots=True)
class ClearClientProxyFilterProps(Message):
    """1011: consumed by the gate: drop all of the client's filter properties."""

    MSGTYPE: ClassVar[MsgType] = MsgType.CLEAR_CLIENTPROXY_FILTER_PROPS
    LAYOUT: ClassVar[Layout] = _H
    gate_id: int
    client_id: str


@dataclass(frozen=True, slots=True)
class NotifyMapAttrClearOnClient(Message):
    """1012: clear the (nested) map found by walking ``path``."""

    MSGTYPE: ClassVar[MsgType] = MsgType.NOTIFY_MAP_ATTR_CLEAR_ON_CLIENT
    LAYOUT: ClassVar[Layout] = _H + (("entity_id", "eid"), ("path", "data"))
    gate_id: int
    client_id: str
    entity_id: str
    path: list[Any] | None


# ---- gate -> client, without header --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallFilteredClients(Message):
    """1501: call ``method`` on the player entity of every client whose prop ``key`` matches.

    ``key == ""`` means every client. The G2017 dialect has no ``op`` byte on the wire.
    """

    MSGTYPE: ClassVar[MsgType] = MsgType.CALL_FILTERED_CLIENTS
    LAYOUT: ClassVar[Layout] = (
        ("op", "u8"),
        ("key", "str"),
        ("value", "str"),
        ("method", "str"),
        ("args", "args"),
    )
    op: int
    key: str
    value: str
    method: str
    args: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class PositionRecord:
    """One 1502 record: an entity's position and yaw (float32 on the wire)."""

    entity_id: str
    x: float
    y: float
    z: float
    yaw: float


@dataclass(frozen=True, slots=True)
class SyncPositionYawOnClients(Message):
    """1502: positions of entities the client knows (unknown ids are ignored by clients)."""

    MSGTYPE: ClassVar[MsgType] = MsgType.SYNC_POSITION_YAW_ON_CLIENTS
    LAYOUT: ClassVar[Layout] = (("records", "records"),)
    records: tuple[PositionRecord, ...] = ()


MESSAGE_CLASSES: dict[MsgType, type[Message]] = {
    cls.MSGTYPE: cls
    for cls in (
        CallEntityMethodFromClient,
        SyncPositionYawFromClient,
        HeartbeatFromClient,
        CreateEntityOnClient,
        DestroyEntityOnClient,
        NotifyMapAttrChangeOnClient,
        NotifyMapAttrDelOnClient,
        NotifyListAttrChangeOnClient,
        NotifyListAttrPopOnClient,
        NotifyListAttrAppendOnClient,
        CallEntityMethodOnClient,
        SetClientProxyFilterProp,
        ClearClientProxyFilterProps,
        NotifyMapAttrClearOnClient,
        CallFilteredClients,
        SyncPositionYawOnClients,
    )
}
