"""goworld.lockstep.frames: hand-rolled frame bytes against lockstep_pb2, and message packing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from goworld.lockstep import lockstep_pb2 as pb
from goworld.lockstep.frames import (
    EMPTY_INPUTS,
    frame_entry,
    input_data,
    int32,
    pack_frames,
    varint,
)
from tests.goworld.lockstep import vectors as V

U64 = st.integers(0, 2**64 - 1)
U32 = st.integers(0, 2**32 - 1)
I32 = st.integers(-(2**31), 2**31 - 1)
INPUT = st.tuples(U64, I32, I32, I32, I32)


def _pb_input(item: tuple[int, int, int, int, int]) -> pb.InputData:
    pid, sid, x, y, seat = item
    return pb.InputData(id=pid, sid=sid, x=x, y=y, roomseatid=seat)


def _pb_entry(frame_id: int, inputs: list[tuple[int, int, int, int, int]]) -> bytes:
    """S2C_FrameMsg{frames=[FrameData{frameID, input...}]} as protobuf writes it."""
    frame = pb.FrameData(frameID=frame_id, input=[_pb_input(i) for i in inputs])
    body: bytes = pb.S2C_FrameMsg(frames=[frame]).SerializeToString()
    return body


# ---- scalar encodings ----------------------------------------------------------------------


@given(U64)
def test_varint_is_protobufs_uint64(value: int) -> None:
    assert b"\x08" + varint(value) == pb.InputData(id=value).SerializeToString()


@given(I32)
def test_int32_is_protobufs_int32(value: int) -> None:
    encoded = int32(value)
    assert b"\x10" + encoded == pb.InputData(sid=value).SerializeToString()
    assert len(encoded) == (10 if value < 0 else len(varint(value)))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "00"),
        (1, "01"),
        (127, "7f"),
        (128, "80 01"),
        (300, "ac 02"),
        (2**64 - 1, "ff ff ff ff ff ff ff ff ff 01"),
    ],
)
def test_varint_literals(value: int, expected: str) -> None:
    assert varint(value) == bytes.fromhex(expected)


def test_int32_negative_literals() -> None:
    assert int32(-1) == bytes.fromhex("ff ff ff ff ff ff ff ff ff 01")
    assert int32(-2) == bytes.fromhex("fe ff ff ff ff ff ff ff ff 01")
    assert int32(-(2**31)) == bytes.fromhex("80 80 80 80 f8 ff ff ff ff 01")


# ---- messages ------------------------------------------------------------------------------


@given(INPUT)
def test_input_data_is_protobufs_with_every_field(item: tuple[int, int, int, int, int]) -> None:
    assert input_data(*item) == _pb_input(item).SerializeToString()


@given(U32, st.lists(INPUT, max_size=20))
def test_frame_entry_is_protobufs(
    frame_id: int, inputs: list[tuple[int, int, int, int, int]]
) -> None:
    encoded = frame_entry(frame_id, inputs)
    assert encoded == _pb_entry(frame_id, inputs)
    # and it reads back to the same values
    msg = pb.S2C_FrameMsg.FromString(encoded)
    assert [f.frameID for f in msg.frames] == [frame_id]
    got = [(i.id, i.sid, i.x, i.y, i.roomseatid) for i in msg.frames[0].input]
    assert got == inputs


@given(st.lists(st.tuples(U32, st.lists(INPUT, max_size=4)), max_size=8))
def test_concatenated_entries_are_one_frame_message(
    frames: list[tuple[int, list[tuple[int, int, int, int, int]]]],
) -> None:
    body = b"".join(frame_entry(f, inputs) for f, inputs in frames)
    expected = pb.S2C_FrameMsg(
        frames=[
            pb.FrameData(frameID=f, input=[_pb_input(i) for i in inputs]) for f, inputs in frames
        ]
    )
    assert body == expected.SerializeToString()


def test_golden_frames() -> None:
    assert frame_entry(2, EMPTY_INPUTS) == V.EMPTY_FRAME_BODY
    assert frame_entry(0, []) == V.FRAME_ZERO_BODY  # frame 0 still carries its id: 08 00
    assert input_data(1, -2, 0, 0, 0) == V.INPUT_DATA_BODY  # zeros are written
    assert frame_entry(7, [(1, -2, 0, 0, 0)]) == V.FRAME_WITH_INPUT_BODY
    two = frame_entry(5, ()) + frame_entry(6, [(11, 1, 2, 3, 1), (12, 0, 127, 128, 2)])
    assert two == V.TWO_FRAMES_BODY


def test_a_frame_of_sixteen_longest_inputs_fits_one_message() -> None:
    worst = [(2**64 - 1, -(2**31), -(2**31), -(2**31), -(2**31))] * 16
    entry = frame_entry(2**32 - 1, worst)
    assert entry == _pb_entry(2**32 - 1, worst)
    assert len(entry) <= 1024
    assert list(pack_frames([entry], 60, 1024)) == [entry]


# ---- packing -------------------------------------------------------------------------------

ENTRY = st.builds(
    frame_entry,
    U32,
    st.lists(
        st.tuples(U64, I32, st.integers(0, 200), st.integers(0, 200), st.integers(1, 16)),
        max_size=3,
    ),
)


def _frames_of(body: bytes) -> list[bytes]:
    """The entries of a body, re-encoded one by one (each FrameData as its own entry)."""
    msg = pb.S2C_FrameMsg.FromString(body)
    return [pb.S2C_FrameMsg(frames=[f]).SerializeToString() for f in msg.frames]


@given(
    st.lists(ENTRY, max_size=150),
    st.integers(1, 70),
    st.integers(0, 900),
)
def test_pack_frames_limits_order_and_greed(
    entries: list[bytes], max_frames: int, extra: int
) -> None:
    max_body = max((len(e) for e in entries), default=1) + extra
    bodies = list(pack_frames(iter(entries), max_frames, max_body))
    # nothing lost, nothing duplicated, order kept
    assert b"".join(bodies) == b"".join(entries)
    unpacked = [entry for body in bodies for entry in _frames_of(body)]
    assert unpacked == entries
    counts = [len(_frames_of(body)) for body in bodies]
    assert all(0 < c <= max_frames for c in counts)
    assert all(len(body) <= max_body for body in bodies)
    assert (bodies == []) == (entries == [])
    # a message is cut only when the next entry would pass a limit
    pos = 0
    for body, count in zip(bodies[:-1], counts[:-1], strict=True):
        pos += count
        following = entries[pos]
        assert count == max_frames or len(body) + len(following) > max_body


def test_pack_frames_cuts_at_max_frames() -> None:
    entries = [frame_entry(i, ()) for i in range(130)]
    bodies = list(pack_frames(entries, 60, 1024))
    assert [len(_frames_of(b)) for b in bodies] == [60, 60, 10]


def test_pack_frames_cuts_before_max_body() -> None:
    entry = frame_entry(9, [(1, 2, 3, 4, 1)])
    size = len(entry)
    bodies = list(pack_frames([entry] * 10, 60, 3 * size + size - 1))
    assert [len(b) for b in bodies] == [3 * size, 3 * size, 3 * size, size]


def test_pack_frames_entry_exactly_max_body_is_alone() -> None:
    small = frame_entry(1, ())
    big = frame_entry(2, [(2**64 - 1, -1, -1, -1, 16)] * 3)
    bodies = list(pack_frames([small, big, small], 60, len(big)))
    assert bodies == [small, big, small]


def test_pack_frames_refuses_an_entry_over_max_body() -> None:
    big = frame_entry(2, [(2**64 - 1, -1, -1, -1, 16)] * 3)
    with pytest.raises(ValueError, match="limit"):
        list(pack_frames([big], 60, len(big) - 1))
    with pytest.raises(ValueError):
        list(pack_frames([frame_entry(1, ()), big], 60, len(big) - 1))


def test_pack_frames_of_nothing_is_nothing() -> None:
    assert list(pack_frames([], 60, 1024)) == []
