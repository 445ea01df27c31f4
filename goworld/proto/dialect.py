"""Protocol generations (PROTOCOL.md §2.5).

GoWorld's clients speak three generations. They differ in the client→gate numbers, the layout
of 1501, and how a top-level attribute path is written; server→client numbers 1002–1012 and the
framing are the same (compression must be off for legacy clients, which never understood it).

======== =========== =========== ============= =============== ===================
dialect  CALL        SYNC        heartbeat     1501 op byte    top-level attr path
======== =========== =========== ============= =============== ===================
HEAD     11          12          2001          yes             nil (``0xc0``)
G2018    12          13          2004          yes             nil (``0xc0``)
G2017    12          13          2004 [#]_     no              ``[]`` (``0x90``) [#]_
======== =========== =========== ============= =============== ===================

.. [#] The 2017 JS client never sends a heartbeat; 2004 is accepted for symmetry.
.. [#] The ``Data path`` of 1004–1008 and 1012 (:data:`ATTR_PATH_TYPES`) when the change is
   on the root attribute map. Until 2017-08-08 GoWorld built that path as an empty, non-nil
   slice, which msgpack writes as an empty array; later servers send nil. The 2017 JS chatroom
   client reads the path as an array, so nil makes it throw (a TypeError on every ``/join``,
   whose ``chatroom`` change is top-level). The gate rewrites that one byte for G2017 clients
   (:func:`root_path_as_array`, same length); nested paths are arrays in every generation.
   G2018 keeps nil: it is what GoWorld sent in 2018, and the Unity client (like the Go bot)
   reads both forms. In the 2017 numbering 1012 meant SET_CLIENTPROXY_FILTER_PROP
   (gate-internal): the map-clear message did not exist yet, and the 2017 JS client has no
   handler for 1012.
"""

from __future__ import annotations

from enum import Enum

from goworld.proto.msgtypes import MsgType

__all__ = ["Dialect", "ATTR_PATH_TYPES", "PATH_OFFSET", "root_path_as_array"]


class Dialect(Enum):
    """A client protocol generation; the value is the goworld.ini spelling."""

    HEAD = ""
    G2018 = "2018"
    G2017 = "2017"

    @property
    def has_filter_op(self) -> bool:
        """Whether 1501 carries the ``u8 op`` byte."""
        return self is not Dialect.G2017

    @property
    def empty_root_path(self) -> bool:
        """Whether a top-level attribute path goes out as ``[]`` (``0x90``) instead of nil."""
        return self is Dialect.G2017

    @property
    def wire_to_type(self) -> dict[int, MsgType]:
        """Wire number -> message type, for numbers this dialect renumbers."""
        return _WIRE_TO_TYPE[self]

    @property
    def type_to_wire(self) -> dict[MsgType, int]:
        """Message type -> wire number, for types this dialect renumbers."""
        return _TYPE_TO_WIRE[self]

    @classmethod
    def from_config(cls, value: str | int | None) -> Dialect:
        """Parse goworld.ini's ``legacy_client_protocol`` ("" / 2017 / 2018)."""
        text = "" if value is None else str(value).strip()
        for dialect in cls:
            if dialect.value == text:
                return dialect
        raise ValueError(f"unknown client protocol generation {value!r} (expected '', 2017 or 2018)")


_LEGACY = {
    MsgType.CALL_ENTITY_METHOD_FROM_CLIENT: 12,
    MsgType.SYNC_POSITION_YAW_FROM_CLIENT: 13,
    MsgType.HEARTBEAT_FROM_CLIENT: 2004,
}
_TYPE_TO_WIRE: dict[Dialect, dict[MsgType, int]] = {
    Dialect.HEAD: {},
    Dialect.G2018: _LEGACY,
    Dialect.G2017: _LEGACY,
}
_WIRE_TO_TYPE: dict[Dialect, dict[int, MsgType]] = {
    Dialect.HEAD: {},
    Dialect.G2018: {v: k for k, v in _LEGACY.items()},
    Dialect.G2017: {v: k for k, v in _LEGACY.items()},
}


#: Client-bound types whose body starts ``H + EntityID + Data path`` (§2.3, §4.3).
ATTR_PATH_TYPES = frozenset(
    {
        MsgType.NOTIFY_MAP_ATTR_CHANGE_ON_CLIENT,
        MsgType.NOTIFY_MAP_ATTR_DEL_ON_CLIENT,
        MsgType.NOTIFY_LIST_ATTR_CHANGE_ON_CLIENT,
        MsgType.NOTIFY_LIST_ATTR_POP_ON_CLIENT,
        MsgType.NOTIFY_LIST_ATTR_APPEND_ON_CLIENT,
        MsgType.NOTIFY_MAP_ATTR_CLEAR_ON_CLIENT,
    }
)
#: Where the path's ``Data`` starts in their payloads: ``u16`` msgtype + H (18) + EntityID (16).
PATH_OFFSET = 36
_NIL_PATH = b"\x01\x00\x00\x00\xc0"  # Data: u32 length 1, msgpack nil
_NIL_END = PATH_OFFSET + len(_NIL_PATH)


def root_path_as_array(payload: bytes) -> bytes:
    """``payload`` (one of :data:`ATTR_PATH_TYPES`) with a nil path sent as ``[]`` (G2017).

    nil and ``[]`` are both one msgpack byte, so only that byte changes; any other path (a
    nested one, or one that is already an array) is returned as is.
    """
    if payload[PATH_OFFSET:_NIL_END] != _NIL_PATH:
        return payload
    return b"".join((payload[: _NIL_END - 1], b"\x90", payload[_NIL_END:]))
