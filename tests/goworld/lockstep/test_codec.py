"""goworld.lockstep.codec against hand-written golden packets (tests/goworld/lockstep/vectors.py)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from goworld.errors import (
    GoWorldError,
    LocalProtocolError,
    PacketTooLarge,
    RemoteProtocolError,
)
from goworld.lockstep import codec
from goworld.lockstep import lockstep_pb2 as pb
from goworld.lockstep.codec import (
    C2S_BODY,
    S2C_BODY,
    LockstepDecodeError,
    LockstepPacketTooLarge,
    MsgId,
    PacketReader,
    decode,
    encode,
    encode_message,
)
from tests.goworld.lockstep import vectors as V

WITH_BODY = [v for v in V.VECTORS if v.make is not None]
ids = pytest.mark.parametrize("vector", V.VECTORS, ids=[v.name for v in V.VECTORS])
ids_with_body = pytest.mark.parametrize("vector", WITH_BODY, ids=[v.name for v in WITH_BODY])


def _table(direction: str) -> Any:
    return C2S_BODY if direction == "c2s" else S2C_BODY


# --- golden bytes ---------------------------------------------------------------------------


def test_body_less_packets_are_three_bytes() -> None:
    assert encode(MsgId.MSG_JoinRoom) == b"\x00\x00\x0a"
    assert encode(MsgId.MSG_Heartbeat) == b"\x00\x00\x02"
    assert encode_message(MsgId.MSG_Ready, None) == b"\x00\x00\x1e"
    assert encode(MsgId.MSG_Close, b"") == b"\x00\x00\x64"


@ids
def test_encode_matches_golden(vector: V.Vector) -> None:
    message = vector.make() if vector.make else None
    assert encode_message(vector.msg_id, message) == vector.packet
    assert encode(vector.msg_id, vector.body) == vector.packet


@ids_with_body
def test_decode_matches_golden(vector: V.Vector) -> None:
    assert vector.make is not None
    decoded = decode(vector.msg_id, vector.body, _table(vector.direction))
    assert decoded == vector.make()
    assert type(decoded) is type(vector.make())


def test_decode_defaults_to_client_to_server() -> None:
    msg = decode(MsgId.MSG_Connect, V.CONNECT_RESUME_BODY)
    assert isinstance(msg, pb.C2S_ConnectMsg)
    assert (msg.playerID, msg.battleID, msg.token, msg.resumeFrame) == (1, 7, "ab", 300)
    old = decode(MsgId.MSG_Connect, V.CONNECT_REQUEST_BODY)
    assert isinstance(old, pb.C2S_ConnectMsg)
    assert not old.HasField("resumeFrame") and not old.HasField("token")


def test_connect_reply_carries_error_code_zero() -> None:
    # proto2 keeps presence: an explicitly set 0 is written (LOCKSTEP.md §5, "08 00").
    assert pb.S2C_ConnectMsg(errorCode=0).SerializeToString() == b"\x08\x00"
    assert pb.S2C_ConnectMsg().SerializeToString() == b""


def test_observed_join_room_reply() -> None:
    packet = encode_message(
        MsgId.MSG_JoinRoom, pb.S2C_JoinRoomMsg(roomseatid=1, others=[2], pros=[0], randomSeed=0)
    )
    assert packet == bytes.fromhex("00 08 0a 08 01 10 02 18 00 20 00")


def test_negative_int32_is_a_ten_byte_varint() -> None:
    body = pb.InputData(id=1, sid=-1).SerializeToString()
    assert body == bytes.fromhex("08 01 10 ff ff ff ff ff ff ff ff ff 01")
    assert pb.InputData.FromString(body).sid == -1


def test_repeated_scalars_are_not_packed_but_packed_input_is_read() -> None:
    body = pb.S2C_JoinRoomMsg(others=[1, 2, 3]).SerializeToString()
    assert body == bytes.fromhex("10 01 10 02 10 03")
    # A peer that packs them anyway (proto3 habits): still understood.
    packed = bytes.fromhex("12 03 01 02 03")
    assert list(pb.S2C_JoinRoomMsg.FromString(packed).others) == [1, 2, 3]


def test_body_less_and_unknown_ids_decode_to_none() -> None:
    for msg_id in (MsgId.MSG_Heartbeat, MsgId.MSG_JoinRoom, MsgId.MSG_Ready, 99, MsgId.MSG_END):
        assert decode(msg_id, b"\x01\x02junk") is None
    assert decode(MsgId.MSG_Close, b"", S2C_BODY) is None
    assert decode(MsgId.MSG_Result, b"", S2C_BODY) is None
    assert decode(MsgId.MSG_Input, V.INPUT_BODY, S2C_BODY) is None  # no S2C Input


def test_end_echo_body_is_raw() -> None:
    assert PacketReader().feed(V.END_ECHO) == [(255, b"\x01\x02\x03")]
    assert encode(MsgId.MSG_END, b"\x01\x02\x03") == V.END_ECHO


def test_unknown_fields_are_skipped() -> None:
    # A newer peer's field 99 (varint): skipped, the known fields still read.
    msg = decode(MsgId.MSG_Result, bytes.fromhex("08 02 98 06 05"))
    assert isinstance(msg, pb.C2S_ResultMsg) and msg.winnerID == 2


@pytest.mark.parametrize("body", [b"\x08", b"\x0a\x05", b"\xff\xff\xff", b"\x0b", b"\x10\xff"])
def test_malformed_body_is_a_remote_protocol_error(body: bytes) -> None:
    with pytest.raises(LockstepDecodeError) as info:
        decode(MsgId.MSG_Connect, body)
    assert isinstance(info.value, RemoteProtocolError)


@given(st.sampled_from(sorted(C2S_BODY)), st.binary(max_size=64))
def test_any_bytes_decode_or_raise_our_error(msg_id: int, body: bytes) -> None:
    try:
        decode(msg_id, body)
        decode(msg_id, body, S2C_BODY)
    except LockstepDecodeError:
        pass


# --- encode limits --------------------------------------------------------------------------


def test_encode_refuses_what_the_header_cannot_carry() -> None:
    assert encode(1, b"x" * 0xFFFF)[:3] == b"\xff\xff\x01"
    with pytest.raises(LocalProtocolError):
        encode(1, b"x" * 0x10000)
    with pytest.raises(LocalProtocolError):
        encode(256)
    with pytest.raises(LocalProtocolError):
        encode(-1)


def test_check_body() -> None:
    codec.check_body(b"x" * 1024, codec.MAX_BODY)
    with pytest.raises(LocalProtocolError):
        codec.check_body(b"x" * 1025, codec.MAX_BODY)
    codec.check_body(b"x" * 0xFFFF)
    with pytest.raises(LocalProtocolError):
        codec.check_body(b"x" * 0x10000)


def test_errors_are_in_the_one_tree() -> None:
    assert issubclass(LockstepPacketTooLarge, PacketTooLarge)
    assert issubclass(LockstepDecodeError, RemoteProtocolError)
    assert issubclass(LocalProtocolError, GoWorldError)


# --- PacketReader ---------------------------------------------------------------------------

ALL_PACKETS = [(v.msg_id, v.body) for v in V.VECTORS] + [(255, b"\x01\x02\x03")]


def test_reader_whole_stream_in_one_chunk() -> None:
    reader = PacketReader()
    assert reader.feed(V.STREAM) == ALL_PACKETS
    assert reader.buffered == 0


def test_reader_split_at_every_byte_boundary() -> None:
    for cut in range(len(V.STREAM) + 1):
        reader = PacketReader()
        got = reader.feed(V.STREAM[:cut]) + reader.feed(V.STREAM[cut:])
        assert got == ALL_PACKETS, cut
        assert reader.buffered == 0


def test_reader_one_byte_at_a_time() -> None:
    reader = PacketReader()
    got = []
    for i in range(len(V.STREAM)):
        got += reader.feed(V.STREAM[i : i + 1])
        assert reader.buffered <= codec.HEADER + codec.MAX_BODY
    assert got == ALL_PACKETS


def test_reader_accepts_bytearray_and_memoryview() -> None:
    reader = PacketReader()
    half = len(V.STREAM) // 2
    got = reader.feed(bytearray(V.STREAM[:half])) + reader.feed(memoryview(V.STREAM)[half:])
    assert got == ALL_PACKETS
    assert all(type(body) is bytes for _, body in got)


def test_reader_limit_1024_accepted_1025_refused() -> None:
    reader = PacketReader()
    ok = encode(MsgId.MSG_Input, b"\x00" * 1024)
    assert ok[:2] == b"\x04\x00"
    assert reader.feed(ok) == [(MsgId.MSG_Input, b"\x00" * 1024)]
    with pytest.raises(LockstepPacketTooLarge) as info:
        reader.feed(V.HEARTBEAT_PACKET + b"\x04\x01\x3c" + b"\x00" * 1025)
    assert info.value.packets == [(2, b"")]
    assert info.value.payloads == [b""]
    assert isinstance(info.value, RemoteProtocolError)
    with pytest.raises(LockstepPacketTooLarge):  # the stream is lost for good
        reader.feed(V.HEARTBEAT_PACKET)


def test_reader_refuses_on_the_header_alone() -> None:
    reader = PacketReader()
    assert reader.feed(b"\x04") == []
    assert reader.feed(b"\x01") == []  # no id byte yet
    with pytest.raises(LockstepPacketTooLarge):
        reader.feed(b"\x3c")  # refused once the header is whole, before any body
    reader = PacketReader()
    with pytest.raises(LockstepPacketTooLarge):
        reader.feed(b"\xff\xff\x32")


def test_reader_custom_limit() -> None:
    reader = PacketReader(max_body=4)
    assert reader.max_body == 4
    assert reader.feed(encode(1, b"abcd")) == [(1, b"abcd")]
    with pytest.raises(LockstepPacketTooLarge):
        reader.feed(encode(1, b"abcde"))
    assert PacketReader(max_body=0xFFFF).feed(encode(1, b"x" * 5000)) == [(1, b"x" * 5000)]


# --- round trips ----------------------------------------------------------------------------

int32 = st.integers(-(2**31), 2**31 - 1)
uint32 = st.integers(0, 2**32 - 1)
uint64 = st.integers(0, 2**64 - 1)
inputs = st.builds(pb.InputData, id=uint64, sid=int32, x=int32, y=int32, roomseatid=int32)
frames = st.builds(pb.FrameData, frameID=uint32, input=st.lists(inputs, max_size=4))
frame_msgs = st.builds(pb.S2C_FrameMsg, frames=st.lists(frames, max_size=5))
join_msgs = st.builds(
    pb.S2C_JoinRoomMsg,
    roomseatid=int32,
    others=st.lists(uint64, max_size=8),
    pros=st.lists(int32, max_size=8),
    randomSeed=int32,
)
connect_msgs = st.builds(
    pb.C2S_ConnectMsg,
    playerID=uint64,
    battleID=uint64,
    token=st.text(max_size=20),
    resumeFrame=uint32,
)
input_msgs = st.builds(pb.C2S_InputMsg, sid=int32, x=int32, y=int32, frameID=uint32)


@given(
    st.lists(
        st.one_of(
            st.tuples(st.just(MsgId.MSG_Frame), frame_msgs, st.just(S2C_BODY)),
            st.tuples(st.just(MsgId.MSG_JoinRoom), join_msgs, st.just(S2C_BODY)),
            st.tuples(st.just(MsgId.MSG_Connect), connect_msgs, st.just(C2S_BODY)),
            st.tuples(st.just(MsgId.MSG_Input), input_msgs, st.just(C2S_BODY)),
            st.tuples(st.just(MsgId.MSG_Heartbeat), st.none(), st.just(S2C_BODY)),
        ),
        max_size=10,
    ),
    st.lists(st.integers(0, 4000), max_size=5),
)
def test_round_trip_through_a_chunked_stream(items: list[Any], cuts: list[int]) -> None:
    stream = b"".join(encode_message(msg_id, message) for msg_id, message, _ in items)
    reader = PacketReader(max_body=0xFFFF)
    got: list[tuple[int, bytes]] = []
    start = 0
    for cut in sorted(c for c in cuts if c <= len(stream)) + [len(stream)]:
        got += reader.feed(stream[start:cut])
        start = cut
    assert [msg_id for msg_id, _ in got] == [msg_id for msg_id, _, _ in items]
    for (msg_id, body), (_, message, table) in zip(got, items, strict=True):
        assert decode(msg_id, body, table) == message
