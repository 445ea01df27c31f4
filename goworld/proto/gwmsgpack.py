"""msgpack with GoWorld's encoding rules (PROTOCOL.md §1.4).

GoWorld encodes with vmihailenco/msgpack v4's default encoder, and its Go bot asserts on the
exact wire width of what it decodes. The rules we must follow when *encoding*:

* every ``int`` is ``0xd3`` + 8 bytes big-endian (int64), or ``0xcf`` (uint64) when it is
  >= 2**63 — never a compact fixint: the bot reads list indices with a hard ``.(int64)``;
* every ``float`` is ``0xcb`` (float64);
* ``str`` is a msgpack str (fixstr/str8/16/32), ``bytes`` is bin, ``None`` is nil;
* lists and tuples are arrays, dicts are maps; an empty container is ``0x90``/``0x80``,
  never nil.

Decoding uses the C ``msgpack`` unpacker with the leniency GoWorld has: bytes after the first
value are ignored (the Unity client sends buffers with trailing zeros). Any malformed input
raises :class:`~goworld.errors.RemoteProtocolError` and nothing else.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import msgpack

from goworld.errors import LocalProtocolError, RemoteProtocolError

__all__ = ["check", "packb", "unpackb", "pack_into"]

_pack_int64 = struct.Struct(">Bq").pack
_pack_uint64 = struct.Struct(">BQ").pack
_pack_float64 = struct.Struct(">Bd").pack
_pack_u8 = struct.Struct(">BB").pack
_pack_u16 = struct.Struct(">BH").pack
_pack_u32 = struct.Struct(">BI").pack

_INT64_MIN = -(1 << 63)
_UINT64_MAX = (1 << 64) - 1
_INT64_LIMIT = 1 << 63


def _pack_int(out: bytearray, value: int) -> None:
    if _INT64_MIN <= value < _INT64_LIMIT:
        out += _pack_int64(0xD3, value)
    elif _INT64_LIMIT <= value <= _UINT64_MAX:
        out += _pack_uint64(0xCF, value)
    else:
        raise LocalProtocolError(f"integer {value} does not fit in 64 bits")


def _pack_str(out: bytearray, value: str) -> None:
    try:
        data = value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise LocalProtocolError(f"string is not encodable as UTF-8: {value!r}") from exc
    n = len(data)
    if n < 32:
        out.append(0xA0 | n)
    elif n < 0x100:
        out += _pack_u8(0xD9, n)
    elif n < 0x10000:
        out += _pack_u16(0xDA, n)
    else:
        out += _pack_u32(0xDB, n)
    out += data


def _pack_bin(out: bytearray, value: bytes | bytearray | memoryview) -> None:
    n = len(value)
    if n < 0x100:
        out += _pack_u8(0xC4, n)
    elif n < 0x10000:
        out += _pack_u16(0xC5, n)
    else:
        out += _pack_u32(0xC6, n)
    out += value


def _pack_array(out: bytearray, value: list[Any] | tuple[Any, ...]) -> None:
    n = len(value)
    if n < 16:
        out.append(0x90 | n)
    elif n < 0x10000:
        out += _pack_u16(0xDC, n)
    else:
        out += _pack_u32(0xDD, n)
    for item in value:
        pack_into(out, item)


def _pack_map(out: bytearray, value: dict[Any, Any]) -> None:
    n = len(value)
    if n < 16:
        out.append(0x80 | n)
    elif n < 0x10000:
        out += _pack_u16(0xDE, n)
    else:
        out += _pack_u32(0xDF, n)
    for k, v in value.items():
        pack_into(out, k)
        pack_into(out, v)


def _pack_bool(out: bytearray, value: bool) -> None:
    out.append(0xC3 if value else 0xC2)


def _pack_none(out: bytearray, value: None) -> None:
    out.append(0xC0)


def _pack_float(out: bytearray, value: float) -> None:
    out += _pack_float64(0xCB, value)


_PACKERS: dict[type, Callable[[bytearray, Any], None]] = {
    int: _pack_int,
    str: _pack_str,
    float: _pack_float,
    bool: _pack_bool,
    type(None): _pack_none,
    bytes: _pack_bin,
    bytearray: _pack_bin,
    memoryview: _pack_bin,
    list: _pack_array,
    tuple: _pack_array,
    dict: _pack_map,
}


def pack_into(out: bytearray, value: Any) -> None:
    """Append the GoWorld msgpack encoding of ``value`` to ``out``."""
    packer = _PACKERS.get(type(value))
    if packer is None:
        packer = _packer_for_subclass(value)
    packer(out, value)


def _packer_for_subclass(value: Any) -> Callable[[bytearray, Any], None]:
    # bool is checked before int because bool is a subclass of int.
    for base in (bool, int, float, str, bytes, bytearray, list, tuple, dict):
        if isinstance(value, base):
            return _PACKERS[base]
    # Mapping-like and sequence-like attribute containers expose ``to_builtin()``.
    to_builtin = getattr(value, "to_builtin", None)
    if to_builtin is not None:
        return lambda out, v: pack_into(out, v.to_builtin())
    raise LocalProtocolError(f"cannot encode {type(value).__name__} as msgpack")


def packb(value: Any) -> bytes:
    """Encode one value with GoWorld's rules (ints as int64, floats as float64)."""
    packer = _PACKERS.get(type(value))
    out = bytearray()
    if packer is None:
        packer = _packer_for_subclass(value)
    packer(out, value)
    return bytes(out)


def check(data: bytes | bytearray | memoryview) -> None:
    """Check that ``data`` starts with one well-formed msgpack value, without building it
    (the C unpacker's skip); trailing bytes are ignored, as by :func:`unpackb`.

    Raises:
        RemoteProtocolError: the bytes are not a valid msgpack value.
    """
    unpacker = msgpack.Unpacker(max_buffer_size=max(len(data), 1))
    try:
        unpacker.feed(data)
        unpacker.skip()
    except Exception as exc:  # OutOfData, FormatError, StackError, BufferFull...
        raise RemoteProtocolError(f"malformed msgpack value: {type(exc).__name__} {exc}".rstrip()) from exc


def unpackb(data: bytes | bytearray | memoryview) -> Any:
    """Decode the first msgpack value of ``data``; trailing bytes are ignored.

    Raises:
        RemoteProtocolError: the bytes are not a valid msgpack value.
    """
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True)
    except msgpack.ExtraData as exc:
        return exc.unpacked
    except Exception as exc:  # the C unpacker raises several unrelated types
        raise RemoteProtocolError(f"malformed msgpack value: {exc}") from exc
