"""Hand-rolled encoding of the frame messages, the only lockstep bytes on the hot path.

A room encodes each closed frame once (:func:`frame_entry`: the ``frames`` field of
``S2C_FrameMsg`` holding one ``FrameData``) and every member's ``S2C_FrameMsg`` body is a
concatenation of such entries, so packing a message for 8 players costs 8 joins, not 8
protobuf serialisations. The bytes are what protobuf produces for the same values with every
field present (LOCKSTEP.md §5 "Presence"): tests compare them with ``lockstep_pb2``.

:func:`pack_frames` cuts the entries into message bodies of at most ``max_frames`` entries and
``max_body`` bytes: lockstepserver cuts at 60 entries only and so can send bodies its own client
refuses (over 1024 bytes).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

__all__ = ["varint", "int32", "input_data", "frame_entry", "pack_frames", "EMPTY_INPUTS"]

#: one input as a room stores it: (player id, sid, x, y, seat)
InputTuple = tuple[int, int, int, int, int]
EMPTY_INPUTS: tuple[InputTuple, ...] = ()


def varint(value: int) -> bytes:
    """Base-128 varint of a non-negative integer below 2**64."""
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def int32(value: int) -> bytes:
    """An int32 field value: negative numbers are sign-extended to 64 bits (10 bytes)."""
    return varint(value & 0xFFFFFFFFFFFFFFFF) if value < 0 else varint(value)


def input_data(player: int, sid: int, x: int, y: int, seat: int) -> bytes:
    """``InputData`` with all five fields present, as lockstepserver sends it."""
    return b"".join(
        (
            b"\x08",
            varint(player),
            b"\x10",
            int32(sid),
            b"\x18",
            int32(x),
            b"\x20",
            int32(y),
            b"\x28",
            int32(seat),
        )
    )


def frame_entry(frame_id: int, inputs: Iterable[InputTuple]) -> bytes:
    """Field 1 of ``S2C_FrameMsg`` holding ``FrameData{frameID, input...}``."""
    parts = [b"\x08", varint(frame_id)]
    for item in inputs:
        encoded = input_data(*item)
        parts += (b"\x12", varint(len(encoded)), encoded)
    body = b"".join(parts)
    return b"\x0a" + varint(len(body)) + body


def pack_frames(entries: Iterable[bytes], max_frames: int, max_body: int) -> Iterator[bytes]:
    """Concatenate entries into bodies of at most ``max_frames`` entries and ``max_body``
    bytes. An entry longer than ``max_body`` alone is a ValueError: rooms are sized so that
    one frame always fits (at most 16 players)."""
    parts: list[bytes] = []
    size = 0
    for entry in entries:
        if len(entry) > max_body:
            raise ValueError(f"one frame is {len(entry)} bytes, over the {max_body}-byte limit")
        if parts and (len(parts) >= max_frames or size + len(entry) > max_body):
            yield b"".join(parts)
            parts, size = [], 0
        parts.append(entry)
        size += len(entry)
    if parts:
        yield b"".join(parts)
