"""Encoders and decoders for client-facing packet payloads (PROTOCOL.md §1.3, §2).

A *payload* is what the framer carries: ``u16 msgtype`` (little-endian) followed by the body.
:func:`encode_payload` and :func:`decode_payload` are pure functions driven by each message's
``LAYOUT`` (see :mod:`goworld.proto.messages`); :func:`encode` also adds the 4-byte length
prefix. Decoding malformed bytes raises :class:`~goworld.errors.RemoteProtocolError` and
nothing else. Encoding a value the wire cannot carry raises
:class:`~goworld.errors.LocalProtocolError`.

The primitives (``write_*``/``read_*``) are public because the gate and the cluster layer use
them on their hot paths without building message objects.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from goworld.errors import LocalProtocolError, RemoteProtocolError
from goworld.proto import gwmsgpack, positions
from goworld.proto.dialect import Dialect
from goworld.proto.framing import frame
from goworld.proto.ids import ID_LENGTH
from goworld.proto.messages import (
    MESSAGE_CLASSES,
    ROUTING_HEADER,
    CallFilteredClients,
    Layout,
    Message,
    PositionRecord,
)
from goworld.proto.msgtypes import MsgType

__all__ = [
    "encode",
    "encode_payload",
    "decode_payload",
    "peek_msgtype",
    "encode_args",
    "check_args",
    "decode_args",
    "write_varstr",
    "write_data",
    "read_data",
    "write_args",
    "read_varstr",
    "read_entity_id",
    "write_entity_id",
    "POSITION_RECORD",
    "encode_body",
    "encode_routing_header",
]

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_F32 = struct.Struct("<f")
#: One 1502 record after its EntityID, and the 12-message record: ``x, y, z, yaw`` float32.
POSITION_RECORD = positions.POSITION
_RECORD = positions.RECORD

Reader = Callable[[bytes, int], tuple[Any, int]]
Writer = Callable[[bytearray, Any], None]


def _short(what: str, pos: int) -> RemoteProtocolError:
    return RemoteProtocolError(f"packet truncated while reading {what} at offset {pos}")


# ---- primitives: writers -------------------------------------------------------------------


def _write_u8(out: bytearray, value: int) -> None:
    try:
        out += _U8.pack(value)
    except struct.error as exc:
        raise LocalProtocolError(f"u8 out of range: {value!r}") from exc


def _write_bool(out: bytearray, value: bool) -> None:
    out.append(1 if value else 0)


def _write_u16(out: bytearray, value: int) -> None:
    try:
        out += _U16.pack(value)
    except struct.error as exc:
        raise LocalProtocolError(f"u16 out of range: {value!r}") from exc


def _write_u32(out: bytearray, value: int) -> None:
    try:
        out += _U32.pack(value)
    except struct.error as exc:
        raise LocalProtocolError(f"u32 out of range: {value!r}") from exc


def _write_f32(out: bytearray, value: float) -> None:
    try:
        out += _F32.pack(value)
    except (struct.error, OverflowError) as exc:
        raise LocalProtocolError(f"not a float32: {value!r}") from exc


def write_entity_id(out: bytearray, value: str) -> None:
    """Append an EntityID or ClientID: exactly 16 raw bytes."""
    if len(value) != ID_LENGTH:
        raise LocalProtocolError(f"an id must be {ID_LENGTH} characters, got {value!r}")
    try:
        out += value.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise LocalProtocolError(f"an id must be 16 bytes, got {value!r}") from exc


def write_varstr(out: bytearray, value: str) -> None:
    """Append a VarStr: ``u32`` length + UTF-8 bytes."""
    try:
        data = value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise LocalProtocolError(f"string is not encodable as UTF-8: {value!r}") from exc
    out += _U32.pack(len(data))
    out += data


def write_data(out: bytearray, value: Any) -> None:
    """Append Data: VarBytes holding ``value`` in GoWorld msgpack."""
    data = gwmsgpack.packb(value)
    out += _U32.pack(len(data))
    out += data


def _write_path_never_nil(out: bytearray, value: Any) -> None:
    """G2017's attribute path: a top-level (``None``) path goes out as ``[]``."""
    write_data(out, [] if value is None else value)


def encode_args(args: Sequence[Any]) -> bytes:
    """Encode Args: ``u16`` count, then each argument as its own msgpack VarBytes."""
    out = bytearray()
    write_args(out, args)
    return bytes(out)


def write_args(out: bytearray, args: Sequence[Any]) -> None:
    """Append Args: ``u16`` count + one Data per argument."""
    if len(args) > 0xFFFF:
        raise LocalProtocolError(f"too many arguments: {len(args)}")
    out += _U16.pack(len(args))
    for arg in args:
        write_data(out, arg)


def _write_records(out: bytearray, records: Iterable[PositionRecord]) -> None:
    for rec in records:
        write_entity_id(out, rec.entity_id)
        try:
            out += POSITION_RECORD.pack(rec.x, rec.y, rec.z, rec.yaw)
        except (struct.error, OverflowError) as exc:
            raise LocalProtocolError(f"bad position record {rec!r}") from exc


# ---- primitives: readers -------------------------------------------------------------------


def _read_u8(buf: bytes, pos: int) -> tuple[int, int]:
    if pos + 1 > len(buf):
        raise _short("u8", pos)
    return buf[pos], pos + 1


def _read_bool(buf: bytes, pos: int) -> tuple[bool, int]:
    if pos + 1 > len(buf):
        raise _short("bool", pos)
    return buf[pos] != 0, pos + 1


def _read_u16(buf: bytes, pos: int) -> tuple[int, int]:
    if pos + 2 > len(buf):
        raise _short("u16", pos)
    return _U16.unpack_from(buf, pos)[0], pos + 2


def _read_u32(buf: bytes, pos: int) -> tuple[int, int]:
    if pos + 4 > len(buf):
        raise _short("u32", pos)
    return _U32.unpack_from(buf, pos)[0], pos + 4


def _read_f32(buf: bytes, pos: int) -> tuple[float, int]:
    if pos + 4 > len(buf):
        raise _short("f32", pos)
    return _F32.unpack_from(buf, pos)[0], pos + 4


def read_entity_id(buf: bytes, pos: int) -> tuple[str, int]:
    """Read 16 raw bytes as an id (latin-1, so any bytes round-trip)."""
    end = pos + ID_LENGTH
    if end > len(buf):
        raise _short("entity id", pos)
    return buf[pos:end].decode("latin-1"), end


def _read_varbytes(buf: bytes, pos: int, what: str) -> tuple[bytes, int]:
    if pos + 4 > len(buf):
        raise _short(f"{what} length", pos)
    (n,) = _U32.unpack_from(buf, pos)
    start = pos + 4
    end = start + n
    if end > len(buf):
        raise RemoteProtocolError(
            f"{what} of {n} bytes at offset {pos} overruns the packet ({len(buf)} bytes)"
        )
    return buf[start:end], end


def read_varstr(buf: bytes, pos: int) -> tuple[str, int]:
    """Read a VarStr; invalid UTF-8 is a protocol error."""
    raw, end = _read_varbytes(buf, pos, "string")
    try:
        return raw.decode("utf-8"), end
    except UnicodeDecodeError as exc:
        raise RemoteProtocolError(f"string at offset {pos} is not valid UTF-8") from exc


def read_data(buf: bytes, pos: int) -> tuple[Any, int]:
    """Read Data: VarBytes holding one msgpack value (trailing bytes inside are ignored)."""
    raw, end = _read_varbytes(buf, pos, "msgpack data")
    return gwmsgpack.unpackb(raw), end


def decode_args(buf: bytes, pos: int = 0) -> tuple[tuple[Any, ...], int]:
    """Read Args starting at ``pos``; return the decoded values and the end offset."""
    count, pos = _read_u16(buf, pos)
    values = []
    for _ in range(count):
        value, pos = read_data(buf, pos)
        values.append(value)
    return tuple(values), pos


#: Data values up to this size are checked by decoding them (cheapest when small); larger ones
#: by the C unpacker's skip, which builds no objects: one byte on the wire can be a whole empty
#: list once decoded (~60 bytes and ~0.3 us), so a big value must never be materialised just
#: to be checked.
CHECK_BY_DECODING = 512


def check_args(buf: bytes, pos: int = 0) -> int:
    """Check the structure of Args at ``pos`` (a u16 count, then each value's VarBytes holding
    one msgpack value) without keeping the values; returns the end offset. The gate's check of
    a client's call: framing errors, truncated or malformed msgpack raise
    :class:`RemoteProtocolError` as :func:`decode_args` does. A big value is skipped, not
    decoded, so what only decoding finds (a string that is not UTF-8, a map key that cannot be
    hashed) passes here and is refused by the game, which decodes the arguments anyway and
    counts the call as ``bad_arguments``."""
    count, pos = _read_u16(buf, pos)
    for _ in range(count):
        raw, pos = _read_varbytes(buf, pos, "msgpack data")
        if len(raw) <= CHECK_BY_DECODING:
            gwmsgpack.unpackb(raw)
        else:
            gwmsgpack.check(raw)
    return pos


def _read_records(buf: bytes, pos: int) -> tuple[tuple[PositionRecord, ...], int]:
    size = _RECORD.size
    remaining = len(buf) - pos
    if remaining % size:
        raise RemoteProtocolError(
            f"position sync payload of {remaining} bytes is not a multiple of {size}"
        )
    records = tuple(
        PositionRecord(eid.decode("latin-1"), x, y, z, yaw)
        for eid, x, y, z, yaw in _RECORD.iter_unpack(memoryview(buf)[pos:])
    )
    return records, len(buf)


_WRITERS: dict[str, Writer] = {
    "u8": _write_u8,
    "bool": _write_bool,
    "u16": _write_u16,
    "u32": _write_u32,
    "f32": _write_f32,
    "eid": write_entity_id,
    "str": write_varstr,
    "data": write_data,
    "args": write_args,
    "records": _write_records,
}
_READERS: dict[str, Reader] = {
    "u8": _read_u8,
    "bool": _read_bool,
    "u16": _read_u16,
    "u32": _read_u32,
    "f32": _read_f32,
    "eid": read_entity_id,
    "str": read_varstr,
    "data": read_data,
    "args": decode_args,
    "records": _read_records,
}


# ---- per-dialect message tables ------------------------------------------------------------

_Codec = tuple[type[Message], tuple[tuple[str, Writer], ...], tuple[Reader, ...]]


def _layout(cls: type[Message], dialect: Dialect) -> tuple[tuple[str, str], ...]:
    if cls is CallFilteredClients and not dialect.has_filter_op:
        return tuple(f for f in cls.LAYOUT if f[0] != "op")
    return cls.LAYOUT


def _writer(name: str, kind: str, dialect: Dialect) -> Writer:
    if name == "path" and dialect.empty_root_path:
        return _write_path_never_nil
    return _WRITERS[kind]


def _build_tables(dialect: Dialect) -> tuple[dict[MsgType, tuple[int, _Codec]], dict[int, _Codec]]:
    by_type: dict[MsgType, tuple[int, _Codec]] = {}
    by_wire: dict[int, _Codec] = {}
    for msgtype, cls in MESSAGE_CLASSES.items():
        layout = _layout(cls, dialect)
        codec: _Codec = (
            cls,
            tuple((name, _writer(name, kind, dialect)) for name, kind in layout),
            tuple(_READERS[kind] for _, kind in layout),
        )
        wire = dialect.type_to_wire.get(msgtype, int(msgtype))
        by_type[msgtype] = (wire, codec)
        by_wire[wire] = codec
    return by_type, by_wire


_TABLES = {dialect: _build_tables(dialect) for dialect in Dialect}


# ---- public API ----------------------------------------------------------------------------


def encode_payload(msg: Message, dialect: Dialect = Dialect.HEAD) -> bytes:
    """Encode ``msg`` as a payload: ``u16 msgtype`` + body (no length prefix)."""
    wire, (_, writers, _) = _TABLES[dialect][0][msg.MSGTYPE]
    out = bytearray(_U16.pack(wire))
    for name, write in writers:
        write(out, getattr(msg, name))
    return bytes(out)


#: fixed-width kinds as struct codes: a run of them is packed by one Struct
_FIXED_CODES = {"u8": "B", "bool": "?", "u16": "H", "u32": "I", "f32": "f"}
# One step of a compiled layout: (struct pack, first value, end) for a run of fixed-width
# values, or (writer, index, 0) for one value.
_Step = tuple[Callable[..., Any], int, int]


def _compile(layout: Layout) -> tuple[_Step, ...]:
    """A layout as steps, consecutive fixed-width fields merged into one ``struct`` pack."""
    steps: list[_Step] = []
    run, start = "", 0
    for index, (_, kind) in enumerate(layout):
        if kind in _FIXED_CODES:
            if not run:
                start = index
            run += _FIXED_CODES[kind]
            continue
        if run:
            steps.append((struct.Struct("<" + run).pack, start, index))
            run = ""
        steps.append((_WRITERS[kind], index, 0))
    if run:
        steps.append((struct.Struct("<" + run).pack, start, len(layout)))
    return tuple(steps)


#: client-bound types -> their compiled body after the routing header (HEAD layouts)
_BODY_STEPS: dict[int, tuple[tuple[_Step, ...], int]] = {
    msgtype: (_compile(cls.LAYOUT[len(ROUTING_HEADER) :]), len(cls.LAYOUT) - len(ROUTING_HEADER))
    for msgtype, cls in MESSAGE_CLASSES.items()
    if cls.LAYOUT[: len(ROUTING_HEADER)] == ROUTING_HEADER
}
_HEADER_STEPS = (_compile(ROUTING_HEADER), len(ROUTING_HEADER))


def _write_values(compiled: tuple[tuple[_Step, ...], int], values: tuple[Any, ...], what: object) -> bytes:
    steps, count = compiled
    if len(values) != count:
        raise LocalProtocolError(f"{what}: {len(values)} values for {count} fields")
    out = bytearray()
    try:
        for fn, first, end in steps:
            if end:
                out += fn(*values[first:end])
            else:
                fn(out, values[first])
    except (struct.error, OverflowError) as exc:
        raise LocalProtocolError(f"{what}: {exc}") from exc
    return bytes(out)


def encode_routing_header(gate_id: int, client_id: str) -> bytes:
    """``u16 gateid + ClientID``: what a game puts before each client-bound body."""
    return _write_values(_HEADER_STEPS, (gate_id, client_id), "routing header")


def encode_body(msgtype: int, *values: Any) -> bytes:
    """The body of a client-bound message after its routing header, field by field as its
    class's ``LAYOUT`` says (HEAD dialect: the gate adapts it for older clients). A game
    encodes a body once and sends it to many clients, each with its own header."""
    return _write_values(_BODY_STEPS[msgtype], values, msgtype)


def encode(msg: Message, dialect: Dialect = Dialect.HEAD) -> bytes:
    """Encode ``msg`` as a complete frame: ``u32 length`` + payload."""
    return frame(encode_payload(msg, dialect))


def peek_msgtype(payload: bytes) -> int:
    """The raw ``u16`` message type of a payload, without decoding the body."""
    if len(payload) < 2:
        raise RemoteProtocolError(f"payload of {len(payload)} bytes has no message type")
    return payload[0] | (payload[1] << 8)


def decode_payload(payload: bytes | bytearray | memoryview, dialect: Dialect = Dialect.HEAD) -> Message:
    """Decode one payload into its message dataclass.

    Raises:
        RemoteProtocolError: unknown type, truncated or overlong body, bad msgpack or UTF-8.
    """
    if not isinstance(payload, bytes):
        payload = bytes(payload)
    wire = peek_msgtype(payload)
    codec = _TABLES[dialect][1].get(wire)
    if codec is None:
        raise RemoteProtocolError(f"unknown message type {wire}")
    cls, _, readers = codec
    pos = 2
    values = []
    for read in readers:
        value, pos = read(payload, pos)
        values.append(value)
    if pos != len(payload) and cls.MSGTYPE != MsgType.SYNC_POSITION_YAW_FROM_CLIENT:
        raise RemoteProtocolError(
            f"{len(payload) - pos} unexpected trailing bytes after message type {wire}"
        )
    if cls is CallFilteredClients and not dialect.has_filter_op:
        values.insert(0, 0)
    return cls(*values)
