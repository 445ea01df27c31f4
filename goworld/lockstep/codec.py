"""Packets of the lockstep client protocol (LOCKSTEP.md §3-§5), without I/O.

A packet is ``[u16 big-endian body length][u8 message id][body]``; the body is the proto2
encoding of the message the id names for its direction (:data:`C2S_BODY`, :data:`S2C_BODY`),
or empty. The same framing runs inside a KCP stream and inside WebSocket binary messages.

* :func:`encode` / :func:`encode_message` build one packet.
* :class:`PacketReader` cuts a byte stream into ``(id, body)`` pairs, refusing bodies over
  ``max_body`` bytes (1024, the limit every lockstepserver peer reads with).
* :func:`decode` turns a body into its message class.

Names of :class:`MsgId` and :class:`ErrorCode` are the .proto's, so logs read like the
reference server's. Errors belong to the project's tree (:mod:`goworld.errors`): we refuse to
encode with :class:`~goworld.errors.LocalProtocolError`; malformed input raises
:class:`LockstepPacketTooLarge` or :class:`LockstepDecodeError`, both
:class:`~goworld.errors.RemoteProtocolError`, after which the connection should be dropped.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from enum import IntEnum

from google.protobuf.message import DecodeError, Message

from goworld.errors import LocalProtocolError, PacketTooLarge, RemoteProtocolError
from goworld.lockstep import lockstep_pb2 as pb

__all__ = [
    "C2S_BODY",
    "HEADER",
    "MAX_BODY",
    "MAX_WIRE_BODY",
    "S2C_BODY",
    "ErrorCode",
    "LockstepDecodeError",
    "LockstepPacketTooLarge",
    "MsgId",
    "PacketReader",
    "check_body",
    "decode",
    "encode",
    "encode_message",
]

#: Largest body a reader accepts (lockstepserver's server and Go client both refuse more).
MAX_BODY = 1024
#: Bytes before the body: the length (2) and the id (1).
HEADER = 3
#: Largest body the u16 length field can describe at all.
MAX_WIRE_BODY = 0xFFFF

_HEAD = struct.Struct(">HB")


class MsgId(IntEnum):
    """Packet ids (the .proto's enum ``ID``)."""

    MSG_BEGIN = 0
    MSG_Connect = 1
    MSG_Heartbeat = 2
    MSG_JoinRoom = 10
    MSG_Progress = 20
    MSG_Ready = 30
    MSG_Start = 40
    MSG_Frame = 50
    MSG_Input = 60
    MSG_Result = 70
    MSG_Close = 100
    MSG_END = 255


class ErrorCode(IntEnum):
    """``S2C_ConnectMsg.errorCode`` values (the .proto's enum ``ERRORCODE``)."""

    ERR_Ok = 0
    ERR_NoPlayer = 1
    ERR_NoRoom = 2
    ERR_RoomState = 3
    ERR_Token = 4


#: Body classes of packets a client sends; ids not listed carry no message (the body of
#: MSG_END is raw bytes, others are ignored).
C2S_BODY: Mapping[int, type[Message]] = {
    MsgId.MSG_Connect: pb.C2S_ConnectMsg,
    MsgId.MSG_Progress: pb.C2S_ProgressMsg,
    MsgId.MSG_Input: pb.C2S_InputMsg,
    MsgId.MSG_Result: pb.C2S_ResultMsg,
}

#: Body classes of packets a server sends (Heartbeat, Ready, Result and Close are empty).
S2C_BODY: Mapping[int, type[Message]] = {
    MsgId.MSG_Connect: pb.S2C_ConnectMsg,
    MsgId.MSG_JoinRoom: pb.S2C_JoinRoomMsg,
    MsgId.MSG_Progress: pb.S2C_ProgressMsg,
    MsgId.MSG_Start: pb.S2C_StartMsg,
    MsgId.MSG_Frame: pb.S2C_FrameMsg,
}


class LockstepPacketTooLarge(PacketTooLarge):
    """A packet header announced a body over the reader's ``max_body``.

    ``packets`` holds the complete ``(id, body)`` packets that came before the bad header in
    the same :meth:`PacketReader.feed` call (``payloads`` has their bodies), so a caller may
    still act on them before closing the connection.
    """

    def __init__(self, message: str, packets: list[tuple[int, bytes]] | None = None) -> None:
        self.packets: list[tuple[int, bytes]] = packets or []
        super().__init__(message, [body for _, body in self.packets])


class LockstepDecodeError(RemoteProtocolError):
    """A packet body is not a valid encoding of the message its id names."""


def check_body(body: bytes, limit: int = MAX_WIRE_BODY) -> None:
    """Raise :class:`LocalProtocolError` if ``body`` is longer than ``limit`` bytes.

    :func:`encode` already enforces the u16 limit; a sender that promises peers at most
    :data:`MAX_BODY` (as our server does) calls this with that limit.
    """
    if len(body) > limit:
        raise LocalProtocolError(f"lockstep packet body of {len(body)} bytes (limit {limit})")


def encode(msg_id: int, body: bytes = b"") -> bytes:
    """One packet: the header, then ``body`` (which must fit the u16 length)."""
    try:
        return _HEAD.pack(len(body), msg_id) + body
    except struct.error:
        check_body(body)
        raise LocalProtocolError(f"lockstep message id {msg_id!r} is not in 0..255") from None


def encode_message(msg_id: int, message: Message | None = None) -> bytes:
    """One packet whose body is ``message`` serialised (empty when ``None``)."""
    return encode(msg_id, b"" if message is None else message.SerializeToString())


def decode(
    msg_id: int, body: bytes, bodies: Mapping[int, type[Message]] = C2S_BODY
) -> Message | None:
    """Parse ``body`` as the message ``bodies`` names for ``msg_id``.

    ``bodies`` is :data:`C2S_BODY` for what a server reads (the default) and :data:`S2C_BODY`
    for what a client reads. Ids without a class (empty messages, unknown ids, MSG_END) give
    ``None`` and their body is left to the caller. A body that does not parse raises
    :class:`LockstepDecodeError`.
    """
    cls = bodies.get(msg_id)
    if cls is None:
        return None
    try:
        return cls.FromString(body)
    except (DecodeError, ValueError, UnicodeDecodeError) as exc:
        raise LockstepDecodeError(f"bad body for lockstep message {msg_id}: {exc}") from None


class PacketReader:
    """Cuts an incoming byte stream into ``(id, body)`` packets.

    :meth:`feed` returns every packet completed by the new bytes and keeps a partial one for
    the next call, so at most ``HEADER + max_body - 1`` bytes are ever buffered. A header
    announcing more than ``max_body`` bytes raises :class:`LockstepPacketTooLarge`; the stream
    cannot be resynchronised after that, so every later :meth:`feed` raises too.
    """

    __slots__ = ("_buffer", "_max_body", "_failed")

    def __init__(self, max_body: int = MAX_BODY) -> None:
        self._buffer = bytearray()
        self._max_body = max_body
        self._failed = False

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete packet held back."""
        return len(self._buffer)

    @property
    def max_body(self) -> int:
        return self._max_body

    def feed(self, data: bytes | bytearray | memoryview) -> list[tuple[int, bytes]]:
        """Add ``data``; return the packets it completes, in order."""
        if self._failed:
            raise LockstepPacketTooLarge("lockstep stream already failed")
        if self._buffer:
            self._buffer += data
            data = bytes(self._buffer)
            self._buffer.clear()
        elif not isinstance(data, bytes):
            data = bytes(data)
        out: list[tuple[int, bytes]] = []
        size = len(data)
        pos = 0
        limit = self._max_body
        while size - pos >= HEADER:
            length = (data[pos] << 8) | data[pos + 1]
            if length > limit:
                self._failed = True
                raise LockstepPacketTooLarge(
                    f"lockstep packet body of {length} bytes (limit {limit})", out
                )
            end = pos + HEADER + length
            if end > size:
                break
            out.append((data[pos + 2], data[pos + HEADER : end]))
            pos = end
        if pos < size:
            self._buffer += memoryview(data)[pos:]
        return out
