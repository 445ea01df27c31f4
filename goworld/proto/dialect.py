"""Protocol generations (PROTOCOL.md §2.5).

GoWorld's clients speak three generations. Only the client→gate numbers and the layout of
1501 differ; server→client numbers 1002–1012 and the framing are the same (compression must be
off for legacy clients, which never understood it).

======== =========== =========== ============= ===============
dialect  CALL        SYNC        heartbeat     1501 op byte
======== =========== =========== ============= ===============
HEAD     11          12          2001          yes
G2018    12          13          2004          yes
G2017    12          13          2004 [#]_     no
======== =========== =========== ============= ===============

.. [#] The 2017 JS client never sends a heartbeat; 2004 is accepted for symmetry.
"""

from __future__ import annotations

from enum import Enum

from goworld.proto.msgtypes import MsgType

__all__ = ["Dialect"]


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
    def wire_to_type(self) -> dict[int, MsgType]:
        """Wire number -> message type, for numbers this dialect renumbers."""
        return _WIRE_TO_TYPE[self]

    @property
    def type_to_wire(self) -> dict[MsgType, int]:
        """Message type -> wire number, for types this dialect renumbers."""
        return _TYPE_TO_WIRE[self]

    @classmethod
    def from_config(cls, value: str | int | None) -> "Dialect":
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
