"""Golden bytes: the exact wire images of PROTOCOL.md §1.2–§1.5 and §2.2–§2.5.

Expected bytes are written as literals or built by hand with :mod:`struct` here, never with
the codec under test, so a codec bug cannot hide behind a round trip.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from goworld.errors import LocalProtocolError, RemoteProtocolError
from goworld.proto import (
    MAX_PAYLOAD,
    Dialect,
    Framer,
    MsgType,
    decode_payload,
    dispatcher_shard,
    encode,
    encode_payload,
    frame,
    gwmsgpack,
    new_client_id,
    new_entity_id,
    nil_space_id,
)
from goworld.proto.dialect import ATTR_PATH_TYPES, PATH_OFFSET, root_path_as_array
from goworld.proto.ids import IdGenerator, is_valid_id
from goworld.proto.messages import (
    MESSAGE_CLASSES,
    CallEntityMethodFromClient,
    CallEntityMethodOnClient,
    CallFilteredClients,
    ClearClientProxyFilterProps,
    CreateEntityOnClient,
    DestroyEntityOnClient,
    FilterOp,
    HeartbeatFromClient,
    NotifyListAttrAppendOnClient,
    NotifyListAttrChangeOnClient,
    NotifyListAttrPopOnClient,
    NotifyMapAttrChangeOnClient,
    NotifyMapAttrClearOnClient,
    NotifyMapAttrDelOnClient,
    PositionRecord,
    SetClientProxyFilterProp,
    SyncPositionYawFromClient,
    SyncPositionYawOnClients,
)
from goworld.proto.msgtypes import GATE_TO_CLIENT

ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_."

ACCOUNT_ID = "WVGqXdDanMdkjkd6"  # hex: 57 56 47 71 58 64 44 61 6e 4d 64 6b 6a 6b 64 36
CLIENT_ID = "cLiEnTiD0123456_"
ENTITY_ID = "EnTiTy.ID_abcdef"
OTHER_ID = "0ther1D.________"
GATE_ID = 7


# ---- hand-built primitives (independent of goworld.proto.codec) ---------------------------


def u16(n: int) -> bytes:
    return struct.pack("<H", n)


def u32(n: int) -> bytes:
    return struct.pack("<I", n)


def f32(x: float) -> bytes:
    return struct.pack("<f", x)


def varstr(s: str) -> bytes:
    raw = s.encode("utf-8")
    return struct.pack("<I", len(raw)) + raw


def data(raw_msgpack: bytes) -> bytes:
    return struct.pack("<I", len(raw_msgpack)) + raw_msgpack


def header(gate_id: int = GATE_ID, client_id: str = CLIENT_ID) -> bytes:
    return struct.pack("<H", gate_id) + client_id.encode("ascii")


def mp_int64(n: int) -> bytes:
    return b"\xd3" + struct.pack(">q", n)


def mp_fixstr(s: str) -> bytes:
    raw = s.encode("utf-8")
    assert len(raw) < 32
    return bytes([0xA0 | len(raw)]) + raw


# ---- §2.2: the Login frame and the heartbeat ------------------------------------------------

LOGIN_FRAME_HEX = (
    "32 00 00 00"  # frame length 50
    " 0b 00"  # msgtype 11
    " 57 56 47 71 58 64 44 61 6e 4d 64 6b 6a 6b 64 36"  # Account id, 16 raw bytes
    " 05 00 00 00 4c 6f 67 69 6e"  # VarStr "Login"
    " 02 00"  # 2 args
    " 06 00 00 00 a5 74 65 73 74 31"  # Data: fixstr "test1"
    " 07 00 00 00 a6 31 32 33 34 35 36"  # Data: fixstr "123456"
)


def test_login_frame_matches_protocol_example() -> None:
    msg = CallEntityMethodFromClient(ACCOUNT_ID, "Login", ("test1", "123456"))
    expected = bytes.fromhex(LOGIN_FRAME_HEX)
    assert len(expected) == 4 + 50
    assert encode(msg) == expected
    assert encode_payload(msg) == expected[4:]


def test_login_frame_decodes_to_the_call() -> None:
    framer = Framer()
    (payload,) = framer.feed(bytes.fromhex(LOGIN_FRAME_HEX))
    assert framer.buffered == 0
    assert decode_payload(payload) == CallEntityMethodFromClient(
        ACCOUNT_ID, "Login", ("test1", "123456")
    )


def test_heartbeat_frame() -> None:
    expected = bytes.fromhex("02 00 00 00 d1 07")
    assert encode(HeartbeatFromClient()) == expected
    (payload,) = Framer().feed(expected)
    assert payload == b"\xd1\x07"
    assert decode_payload(payload) == HeartbeatFromClient()


def test_sync_position_from_client_layout() -> None:
    msg = SyncPositionYawFromClient(ENTITY_ID, 1.5, -2.0, 3.25, 90.0)
    expected = u16(12) + ENTITY_ID.encode() + f32(1.5) + f32(-2.0) + f32(3.25) + f32(90.0)
    assert len(expected) == 34
    assert encode_payload(msg) == expected
    assert decode_payload(expected) == msg


def test_frame_is_u32_le_length_prefix() -> None:
    assert frame(b"") == b"\x00\x00\x00\x00"
    assert frame(b"\xab" * 0x1234) == b"\x34\x12\x00\x00" + b"\xab" * 0x1234
    assert MAX_PAYLOAD == 32 * 1024 * 1024 == 33_554_432


# ---- §1.5: ids ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("game_id", "expected"),
    [
        (1, "AAAAAAAAAAAAAAAx"),
        (2, "AAAAAAAAAAAAAAAy"),
        (3, "AAAAAAAAAAAAAAAz"),
        (10, "AAAAAAAAAAAAADEw"),
    ],
)
def test_nil_space_ids(game_id: int, expected: str) -> None:
    assert nil_space_id(game_id) == expected


@pytest.mark.parametrize("game_id", [1, 7, 99, 12345, 999_999_999_999])
def test_nil_space_id_is_zero_padded_decimal(game_id: int) -> None:
    nid = nil_space_id(game_id)
    assert len(nid) == 16 and is_valid_id(nid)
    raw = base64.b64decode(nid.translate(str.maketrans("_.", "+/")))
    assert raw == str(game_id).encode().rjust(12, b"\x00")


@pytest.mark.parametrize("bad", [0, -1, 10**12])
def test_nil_space_id_rejects_out_of_range(bad: int) -> None:
    with pytest.raises(ValueError):
        nil_space_id(bad)


@pytest.mark.parametrize(
    ("entity_id", "num", "expected"),
    [
        # 'x' = 120, 'A' = 65: 65*256 + 120 = 16760
        ("AAAAAAAAAAAAAAAx", 1, 1),
        ("AAAAAAAAAAAAAAAx", 3, 3),  # 16760 % 3 = 2
        ("AAAAAAAAAAAAAAAx", 7, 3),  # 16760 % 7 = 2
        ("AAAAAAAAAAAAAAAx", 65536, 16761),
        # '0' = 48, '1' = 49: 48*256 + 49 = 12337; only the last two chars count
        ("zzzzzzzzzzzzzz01", 10, 8),  # 12337 % 10 = 7
        ("AAAAAAAAAAAAAA01", 10, 8),
    ],
)
def test_dispatcher_shard_examples(entity_id: str, num: int, expected: int) -> None:
    assert dispatcher_shard(entity_id, num) == expected


@given(
    entity_id=st.text(st.characters(max_codepoint=255), min_size=16, max_size=16),
    num=st.integers(1, 64),
)
def test_dispatcher_shard_formula(entity_id: str, num: int) -> None:
    raw = entity_id.encode("latin-1")
    shard = dispatcher_shard(entity_id, num)
    assert shard == (raw[14] * 256 + raw[15]) % num + 1
    assert 1 <= shard <= num


def test_new_entity_ids_are_well_formed_and_unique() -> None:
    ids = [new_entity_id() for _ in range(100_000)]
    assert len(set(ids)) == len(ids)
    alphabet = set(ID_ALPHABET)
    for eid in ids[:: 997] + ids[-5:]:
        assert len(eid) == 16
        assert set(eid) <= alphabet
    assert all(len(eid) == 16 and is_valid_id(eid) for eid in ids)


def test_new_client_id_shares_the_alphabet() -> None:
    cid = new_client_id()
    assert len(cid) == 16 and set(cid) <= set(ID_ALPHABET)
    assert cid != new_client_id()


def _gw_b64decode(text: str) -> bytes:
    assert len(text) == 16
    return base64.b64decode(text.translate(str.maketrans("_.", "+/")), validate=True)


def test_id_generator_is_deterministic_with_fixed_inputs() -> None:
    gen = IdGenerator(hostname="gw-host", pid=0x1234, clock=lambda: 1_600_000_000.9)
    first, second = gen.new_id(), gen.new_id()
    machine = hashlib.md5(b"gw-host").digest()[:3]
    expected1 = struct.pack(">I", 1_600_000_000) + machine + b"\x12\x34" + b"\x00\x00\x01"
    expected2 = struct.pack(">I", 1_600_000_000) + machine + b"\x12\x34" + b"\x00\x00\x02"
    assert _gw_b64decode(first) == expected1
    assert _gw_b64decode(second) == expected2
    # the same inputs give the same ids
    again = IdGenerator(hostname="gw-host", pid=0x1234, clock=lambda: 1_600_000_000.9)
    assert again.new_id() == first
    # and the text is exactly GoWorld's alphabet mapping of the 12 bytes
    std = base64.b64encode(expected1).decode()
    assert first == std.replace("+", "_").replace("/", ".")


def test_id_generator_alphabet_maps_62_and_63() -> None:
    # time 0xFBFFFFFF starts with bits 111110 111111..., i.e. base64 digits 62 and 63.
    gen = IdGenerator(hostname="h", pid=0xFFFF, clock=lambda: 0xFBFFFFFF)
    eid = gen.new_id()
    std = base64.b64encode(
        struct.pack(">I", 0xFBFFFFFF) + hashlib.md5(b"h").digest()[:3] + b"\xff\xff\x00\x00\x01"
    ).decode()
    assert std.startswith("+//")
    assert eid.startswith("_..")
    assert eid == std.replace("+", "_").replace("/", ".")
    assert is_valid_id(eid)


def test_id_generator_masks_pid_to_16_bits() -> None:
    gen = IdGenerator(hostname="h", pid=0x12345, clock=lambda: 1.0)
    raw = _gw_b64decode(gen.new_id())
    assert raw[7:9] == b"\x23\x45"


# ---- §1.4: msgpack encoding rules ----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected_hex"),
    [
        (0, "d3 00 00 00 00 00 00 00 00"),
        (1, "d3 00 00 00 00 00 00 00 01"),
        (-1, "d3 ff ff ff ff ff ff ff ff"),
        (127, "d3 00 00 00 00 00 00 00 7f"),
        (128, "d3 00 00 00 00 00 00 00 80"),
        (-32, "d3 ff ff ff ff ff ff ff e0"),
        (2**63 - 1, "d3 7f ff ff ff ff ff ff ff"),
        (-(2**63), "d3 80 00 00 00 00 00 00 00"),
        (2**63, "cf 80 00 00 00 00 00 00 00"),
        (2**64 - 1, "cf ff ff ff ff ff ff ff ff"),
    ],
)
def test_ints_are_int64_or_uint64(value: int, expected_hex: str) -> None:
    assert gwmsgpack.packb(value) == bytes.fromhex(expected_hex)
    assert gwmsgpack.unpackb(bytes.fromhex(expected_hex)) == value


@pytest.mark.parametrize("value", [2**64, 2**100, -(2**63) - 1])
def test_ints_beyond_64_bits_raise(value: int) -> None:
    with pytest.raises(LocalProtocolError):
        gwmsgpack.packb(value)


def test_int_enum_encodes_as_int64() -> None:
    assert gwmsgpack.packb(FilterOp.GE) == mp_int64(4)


@pytest.mark.parametrize(
    ("value", "expected_hex"),
    [
        (0.0, "cb 00 00 00 00 00 00 00 00"),
        (1.5, "cb 3f f8 00 00 00 00 00 00"),
        (-2.0, "cb c0 00 00 00 00 00 00 00"),
        (float("inf"), "cb 7f f0 00 00 00 00 00 00"),
    ],
)
def test_floats_are_float64(value: float, expected_hex: str) -> None:
    assert gwmsgpack.packb(value) == bytes.fromhex(expected_hex)


def test_float_32_bit_representable_value_is_still_cb() -> None:
    assert gwmsgpack.packb(0.5)[:1] == b"\xcb"
    assert len(gwmsgpack.packb(0.5)) == 9


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ([], b"\x90"),
        ((), b"\x90"),
        ({}, b"\x80"),
        (None, b"\xc0"),
        (True, b"\xc3"),
        (False, b"\xc2"),
        ("", b"\xa0"),
        (b"", b"\xc4\x00"),
        ([True, None], b"\x92\xc3\xc0"),
        ({"_K": 1}, b"\x81\xa2_K" + mp_int64(1)),
    ],
)
def test_containers_and_constants(value: object, expected: bytes) -> None:
    assert gwmsgpack.packb(value) == expected


@pytest.mark.parametrize(
    ("length", "prefix"),
    [
        (0, b"\xa0"),
        (31, b"\xbf"),
        (32, b"\xd9\x20"),
        (255, b"\xd9\xff"),
        (256, b"\xda\x01\x00"),
        (65535, b"\xda\xff\xff"),
        (65536, b"\xdb\x00\x01\x00\x00"),
    ],
)
def test_string_widths(length: int, prefix: bytes) -> None:
    text = "s" * length
    assert gwmsgpack.packb(text) == prefix + text.encode()
    assert gwmsgpack.unpackb(prefix + text.encode()) == text


def test_string_width_counts_utf8_bytes() -> None:
    text = "é" * 16  # 16 characters, 32 UTF-8 bytes
    assert gwmsgpack.packb(text) == b"\xd9\x20" + text.encode("utf-8")


@pytest.mark.parametrize(
    ("length", "prefix"),
    [
        (0, b"\xc4\x00"),
        (255, b"\xc4\xff"),
        (256, b"\xc5\x01\x00"),
        (65535, b"\xc5\xff\xff"),
        (65536, b"\xc6\x00\x01\x00\x00"),
    ],
)
def test_bin_widths(length: int, prefix: bytes) -> None:
    blob = bytes(range(256)) * (length // 256) + bytes(length % 256)
    assert gwmsgpack.packb(blob) == prefix + blob
    assert gwmsgpack.packb(bytearray(blob)) == prefix + blob
    assert gwmsgpack.unpackb(prefix + blob) == blob


def test_array_and_map_widths() -> None:
    assert gwmsgpack.packb([None] * 15) == b"\x9f" + b"\xc0" * 15
    assert gwmsgpack.packb([None] * 16) == b"\xdc\x00\x10" + b"\xc0" * 16
    assert gwmsgpack.packb([None] * 65536) == b"\xdd\x00\x01\x00\x00" + b"\xc0" * 65536
    small = {f"k{i:02}": None for i in range(15)}
    assert gwmsgpack.packb(small)[:1] == b"\x8f"
    big = {f"k{i:02}": None for i in range(16)}
    expected = b"\xde\x00\x10" + b"".join(b"\xa3" + k.encode() + b"\xc0" for k in big)
    assert gwmsgpack.packb(big) == expected


def test_unpack_ignores_trailing_bytes() -> None:
    assert gwmsgpack.unpackb(mp_int64(5) + b"\x00\x00\x00") == 5


def test_unencodable_type_is_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        gwmsgpack.packb(object())
    with pytest.raises(LocalProtocolError):
        gwmsgpack.packb({"set": {1, 2}})


# ---- §2.3: gate -> client layouts, built by hand --------------------------------------------

LEAF_FIRST_PATH = [0, 1, "key2", "key1", "complexAttr"]
LEAF_FIRST_PATH_MSGPACK = (
    b"\x95"
    + b"\xd3\x00\x00\x00\x00\x00\x00\x00\x00"
    + b"\xd3\x00\x00\x00\x00\x00\x00\x00\x01"
    + b"\xa4key2"
    + b"\xa4key1"
    + b"\xabcomplexAttr"
)


def test_create_entity_with_empty_client_data_carries_0x80() -> None:
    msg = CreateEntityOnClient(GATE_ID, CLIENT_ID, True, ENTITY_ID, "Account", 1.0, 2.0, 3.0, 45.0)
    assert msg.client_data == {}
    expected = (
        u16(1002)
        + header()
        + b"\x01"
        + ENTITY_ID.encode()
        + varstr("Account")
        + f32(1.0)
        + f32(2.0)
        + f32(3.0)
        + f32(45.0)
        + b"\x01\x00\x00\x00\x80"
    )
    assert expected[:2] == b"\xea\x03"
    assert encode_payload(msg) == expected
    assert decode_payload(expected) == msg


def test_create_space_carries_kind_as_int64() -> None:
    msg = CreateEntityOnClient(
        GATE_ID, CLIENT_ID, False, ENTITY_ID, "__space__", client_data={"_K": 1}
    )
    body = b"\x81\xa2_K" + mp_int64(1)
    expected = (
        u16(1002)
        + header()
        + b"\x00"
        + ENTITY_ID.encode()
        + varstr("__space__")
        + f32(0.0) * 4
        + data(body)
    )
    assert encode_payload(msg) == expected


def test_destroy_entity_type_name_before_id() -> None:
    msg = DestroyEntityOnClient(GATE_ID, CLIENT_ID, "Monster", ENTITY_ID)
    expected = u16(1003) + header() + varstr("Monster") + ENTITY_ID.encode()
    assert expected[:2] == b"\xeb\x03"
    assert encode_payload(msg) == expected
    assert decode_payload(expected) == msg


def test_map_attr_change_root_path_is_nil() -> None:
    msg = NotifyMapAttrChangeOnClient(GATE_ID, CLIENT_ID, ENTITY_ID, None, "hp", 100)
    expected = (
        u16(1004)
        + header()
        + ENTITY_ID.encode()
        + b"\x01\x00\x00\x00\xc0"
        + varstr("hp")
        + data(mp_int64(100))
    )
    assert encode_payload(msg) == expected
    assert decode_payload(expected) == msg


def test_map_attr_change_leaf_first_path_uses_int64() -> None:
    msg = NotifyMapAttrChangeOnClient(
        GATE_ID, CLIENT_ID, ENTITY_ID, LEAF_FIRST_PATH, "k", {"a": [], "b": {}}
    )
    value = b"\x82\xa1a\x90\xa1b\x80"
    expected = (
        u16(1004)
        + header()
        + ENTITY_ID.encode()
        + data(LEAF_FIRST_PATH_MSGPACK)
        + varstr("k")
        + data(value)
    )
    assert encode_payload(msg) == expected
    assert decode_payload(expected) == msg


def test_map_attr_del_layout() -> None:
    msg = NotifyMapAttrDelOnClient(GATE_ID, CLIENT_ID, ENTITY_ID, ["inner"], "gone")
    expected = (
        u16(1005)
        + header()
        + ENTITY_ID.encode()
        + data(b"\x91" + mp_fixstr("inner"))
        + varstr("gone")
    )
    assert encode_payload(msg) == expected
    assert decode_payload(expected) == msg


def test_list_attr_change_u32_index() -> None:
    msg = NotifyListAttrChangeOnClient(
        GATE_ID, CLIENT_ID, ENTITY_ID, LEAF_FIRST_PATH, 0x01020304, "v"
    )
    expected = (
        u16(1006)
        + header()
        + ENTITY_ID.encode()
        + data(LEAF_FIRST_PATH_MSGPACK)
        + b"\x04\x03\x02\x01"
        + data(b"\xa1v")
    )
    assert expected[:2] == b"\xee\x03"
    assert encode_payload(msg) == expected
    assert decode_payload(expected) == msg


def test_list_pop_append_and_map_clear_layouts() -> None:
    pop = NotifyListAttrPopOnClient(GATE_ID, CLIENT_ID, ENTITY_ID, ["items"])
    assert encode_payload(pop) == (
        u16(1007) + header() + ENTITY_ID.encode() + data(b"\x91\xa5items")
    )
    append = NotifyListAttrAppendOnClient(GATE_ID, CLIENT_ID, ENTITY_ID, ["items"], 2.5)
    assert encode_payload(append) == (
        u16(1008)
        + header()
        + ENTITY_ID.encode()
        + data(b"\x91\xa5items")
        + data(b"\xcb" + struct.pack(">d", 2.5))
    )
    clear = NotifyMapAttrClearOnClient(GATE_ID, CLIENT_ID, ENTITY_ID, None)
    assert encode_payload(clear) == u16(1012) + header() + ENTITY_ID.encode() + data(b"\xc0")


def test_call_on_client_layout() -> None:
    msg = CallEntityMethodOnClient(GATE_ID, CLIENT_ID, ENTITY_ID, "OnLogin", (True, 3))
    expected = (
        u16(1009)
        + header()
        + ENTITY_ID.encode()
        + varstr("OnLogin")
        + u16(2)
        + data(b"\xc3")
        + data(mp_int64(3))
    )
    assert encode_payload(msg) == expected
    assert decode_payload(expected) == msg


def test_filter_prop_messages_layout() -> None:
    setp = SetClientProxyFilterProp(GATE_ID, CLIENT_ID, "level", "10")
    assert encode_payload(setp) == u16(1010) + header() + varstr("level") + varstr("10")
    clear = ClearClientProxyFilterProps(GATE_ID, CLIENT_ID)
    assert encode_payload(clear) == u16(1011) + header()
    assert len(encode_payload(clear)) == 2 + 18


def test_call_filtered_clients_has_op_byte_and_no_header() -> None:
    msg = CallFilteredClients(FilterOp.GE, "level", "10", "OnBroadcast", ("hi",))
    expected = (
        u16(1501)
        + b"\x04"
        + varstr("level")
        + varstr("10")
        + varstr("OnBroadcast")
        + u16(1)
        + data(b"\xa2hi")
    )
    assert expected[:2] == b"\xdd\x05"
    assert encode_payload(msg) == expected
    assert decode_payload(expected) == msg


def test_sync_position_on_clients_two_records() -> None:
    records = (
        PositionRecord(ENTITY_ID, 1.0, 2.0, 3.0, 90.0),
        PositionRecord(OTHER_ID, -0.5, 0.0, 1e6, 359.0),
    )
    msg = SyncPositionYawOnClients(records)
    expected = u16(1502)
    for rec in records:
        expected += rec.entity_id.encode("ascii") + struct.pack(
            "<ffff", rec.x, rec.y, rec.z, rec.yaw
        )
    assert len(expected) == 2 + 2 * 32
    assert expected[:2] == b"\xde\x05"
    assert encode_payload(msg) == expected
    assert decode_payload(expected) == msg


def test_sync_position_on_clients_empty() -> None:
    assert encode_payload(SyncPositionYawOnClients()) == b"\xde\x05"
    assert decode_payload(b"\xde\x05") == SyncPositionYawOnClients(())


# ---- §2.5: legacy dialects ------------------------------------------------------------------

LEGACY = [Dialect.G2018, Dialect.G2017]


@pytest.mark.parametrize("dialect", LEGACY)
def test_legacy_call_is_type_12(dialect: Dialect) -> None:
    msg = CallEntityMethodFromClient(ACCOUNT_ID, "Login", ("test1", "123456"))
    head = bytes.fromhex(LOGIN_FRAME_HEX)
    expected = head[:4] + b"\x0c\x00" + head[6:]
    assert encode(msg, dialect) == expected
    assert decode_payload(expected[4:], dialect) == msg


@pytest.mark.parametrize("dialect", LEGACY)
def test_legacy_sync_is_type_13(dialect: Dialect) -> None:
    msg = SyncPositionYawFromClient(ENTITY_ID, 1.0, 2.0, 3.0, 4.0)
    expected = u16(13) + ENTITY_ID.encode() + struct.pack("<ffff", 1.0, 2.0, 3.0, 4.0)
    assert encode_payload(msg, dialect) == expected
    assert decode_payload(expected, dialect) == msg


@pytest.mark.parametrize("dialect", LEGACY)
def test_legacy_heartbeat_is_2004(dialect: Dialect) -> None:
    assert encode(HeartbeatFromClient(), dialect) == bytes.fromhex("02 00 00 00 d4 07")
    assert decode_payload(b"\xd4\x07", dialect) == HeartbeatFromClient()


@pytest.mark.parametrize("dialect", LEGACY)
@pytest.mark.parametrize("wire", [11, 2001])
def test_head_client_numbers_are_unknown_in_legacy(dialect: Dialect, wire: int) -> None:
    payload = encode_payload(CallEntityMethodFromClient(ACCOUNT_ID, "Login", ()))
    payload = u16(wire) + payload[2:] if wire == 11 else u16(wire)
    with pytest.raises(RemoteProtocolError, match="unknown"):
        decode_payload(payload, dialect)


def test_head_does_not_know_legacy_numbers() -> None:
    with pytest.raises(RemoteProtocolError, match="unknown"):
        decode_payload(u16(13) + ENTITY_ID.encode() + bytes(16))
    with pytest.raises(RemoteProtocolError, match="unknown"):
        decode_payload(u16(2004))


def test_head_reads_legacy_call_as_sync() -> None:
    # §2.5: a HEAD gate reads a legacy CALL (12) as a SYNC. Pinned as the documented quirk.
    legacy = encode_payload(
        CallEntityMethodFromClient(ACCOUNT_ID, "LongEnoughMethodName", ()), Dialect.G2018
    )
    assert len(legacy) >= 34
    decoded = decode_payload(legacy)
    assert isinstance(decoded, SyncPositionYawFromClient)
    assert decoded.entity_id == ACCOUNT_ID


def test_g2017_filtered_call_has_no_op_byte() -> None:
    msg = CallFilteredClients(FilterOp.EQ, "", "", "OnMsg", ("x",))
    expected = (
        u16(1501) + varstr("") + varstr("") + varstr("OnMsg") + u16(1) + data(b"\xa1x")
    )
    assert encode_payload(msg, Dialect.G2017) == expected
    assert decode_payload(expected, Dialect.G2017) == msg
    # G2018 still has the op byte
    assert encode_payload(msg, Dialect.G2018) == u16(1501) + b"\x00" + expected[2:]


def test_g2017_filtered_call_drops_nonzero_op() -> None:
    msg = CallFilteredClients(FilterOp.NE, "k", "v", "OnMsg", ())
    wire = encode_payload(msg, Dialect.G2017)
    assert wire == u16(1501) + varstr("k") + varstr("v") + varstr("OnMsg") + u16(0)
    assert decode_payload(wire, Dialect.G2017).op == 0


# Every attribute message, as (message with path=None, the body bytes after its path), built
# by hand. G2017 writes the top-level path as [] (0x90); HEAD and G2018 as nil (0xc0).
ATTR_MESSAGES = [
    (
        NotifyMapAttrChangeOnClient(GATE_ID, CLIENT_ID, ENTITY_ID, None, "hp", 100),
        varstr("hp") + data(mp_int64(100)),
    ),
    (NotifyMapAttrDelOnClient(GATE_ID, CLIENT_ID, ENTITY_ID, None, "gone"), varstr("gone")),
    (
        NotifyListAttrChangeOnClient(GATE_ID, CLIENT_ID, ENTITY_ID, None, 2, "v"),
        u32(2) + data(b"\xa1v"),
    ),
    (NotifyListAttrPopOnClient(GATE_ID, CLIENT_ID, ENTITY_ID, None), b""),
    (NotifyListAttrAppendOnClient(GATE_ID, CLIENT_ID, ENTITY_ID, None, True), data(b"\xc3")),
    (NotifyMapAttrClearOnClient(GATE_ID, CLIENT_ID, ENTITY_ID, None), b""),
]
ROOT_PATH = {Dialect.HEAD: b"\xc0", Dialect.G2018: b"\xc0", Dialect.G2017: b"\x90"}


def test_attr_messages_cover_every_type_with_a_path() -> None:
    with_path = {t for t, c in MESSAGE_CLASSES.items() if "path" in c.__dataclass_fields__}
    assert {type(m).MSGTYPE for m, _ in ATTR_MESSAGES} == with_path == ATTR_PATH_TYPES
    assert with_path == {1004, 1005, 1006, 1007, 1008, 1012}


@pytest.mark.parametrize("dialect", list(Dialect), ids=lambda d: d.name)
@pytest.mark.parametrize("msg,rest", ATTR_MESSAGES, ids=lambda m: type(m).__name__)
def test_top_level_attr_path_per_dialect(dialect: Dialect, msg: Any, rest: bytes) -> None:
    expected = (
        u16(int(msg.MSGTYPE)) + header() + ENTITY_ID.encode() + data(ROOT_PATH[dialect]) + rest
    )
    assert expected[PATH_OFFSET : PATH_OFFSET + 5] == b"\x01\x00\x00\x00" + ROOT_PATH[dialect]
    assert encode_payload(msg, dialect) == expected
    decoded = decode_payload(expected, dialect)
    assert decoded.path == ([] if dialect is Dialect.G2017 else None)  # type: ignore[attr-defined]
    assert dataclasses.replace(decoded, path=None) == msg  # type: ignore[type-var]
    # the gate's byte rewrite of the HEAD payload gives exactly the G2017 bytes
    head = encode_payload(msg)
    assert root_path_as_array(head) == encode_payload(msg, Dialect.G2017)
    assert len(root_path_as_array(head)) == len(head)


@pytest.mark.parametrize("dialect", list(Dialect), ids=lambda d: d.name)
@pytest.mark.parametrize("msg,rest", ATTR_MESSAGES, ids=lambda m: type(m).__name__)
@pytest.mark.parametrize(
    "path,raw",
    [(["inner"], b"\x91\xa5inner"), (LEAF_FIRST_PATH, LEAF_FIRST_PATH_MSGPACK), ([], b"\x90")],
    ids=["depth1", "leaf_first", "empty"],
)
def test_nested_attr_path_is_the_same_in_every_dialect(
    dialect: Dialect, msg: Any, rest: bytes, path: list[Any], raw: bytes
) -> None:
    msg = dataclasses.replace(msg, path=path)
    expected = u16(int(msg.MSGTYPE)) + header() + ENTITY_ID.encode() + data(raw) + rest
    assert encode_payload(msg, dialect) == expected
    assert decode_payload(expected, dialect) == msg
    assert root_path_as_array(expected) is expected  # untouched


def test_root_path_as_array_leaves_short_and_other_payloads_alone() -> None:
    for payload in (b"", b"\xec\x03", encode_payload(CallEntityMethodOnClient(
        GATE_ID, CLIENT_ID, ENTITY_ID, "M", ()
    ))):
        assert root_path_as_array(payload) is payload


def _sample_gate_to_client() -> list[object]:
    return [
        CreateEntityOnClient(GATE_ID, CLIENT_ID, True, ENTITY_ID, "Avatar", client_data={"a": 1}),
        DestroyEntityOnClient(GATE_ID, CLIENT_ID, "Avatar", ENTITY_ID),
        NotifyMapAttrChangeOnClient(GATE_ID, CLIENT_ID, ENTITY_ID, None, "k", 1),
        NotifyMapAttrDelOnClient(GATE_ID, CLIENT_ID, ENTITY_ID, ["m"], "k"),
        NotifyListAttrChangeOnClient(GATE_ID, CLIENT_ID, ENTITY_ID, ["l"], 3, "x"),
        NotifyListAttrPopOnClient(GATE_ID, CLIENT_ID, ENTITY_ID, ["l"]),
        NotifyListAttrAppendOnClient(GATE_ID, CLIENT_ID, ENTITY_ID, ["l"], None),
        CallEntityMethodOnClient(GATE_ID, CLIENT_ID, ENTITY_ID, "M", (1, "a")),
        NotifyMapAttrClearOnClient(GATE_ID, CLIENT_ID, ENTITY_ID, ["m"]),
        CallFilteredClients(FilterOp.EQ, "", "", "M", ()),
        SyncPositionYawOnClients((PositionRecord(ENTITY_ID, 1.0, 2.0, 3.0, 4.0),)),
    ]


def test_sample_covers_every_gate_to_client_type() -> None:
    assert {type(m).MSGTYPE for m in _sample_gate_to_client()} == set(GATE_TO_CLIENT)


@pytest.mark.parametrize("dialect", LEGACY)
@pytest.mark.parametrize("msg", _sample_gate_to_client(), ids=lambda m: type(m).__name__)
def test_server_to_client_types_unchanged_in_legacy(dialect: Dialect, msg: object) -> None:
    head = encode_payload(msg)  # type: ignore[arg-type]
    legacy = encode_payload(msg, dialect)  # type: ignore[arg-type]
    assert legacy[:2] == head[:2] == u16(int(type(msg).MSGTYPE))  # type: ignore[attr-defined]
    if isinstance(msg, CallFilteredClients) and dialect is Dialect.G2017:
        assert legacy == head[:2] + head[3:]
    elif getattr(msg, "path", []) is None and dialect is Dialect.G2017:
        assert legacy == root_path_as_array(head) != head  # [] instead of nil
        msg = dataclasses.replace(msg, path=[])  # type: ignore[type-var]
    else:
        assert legacy == head
    assert decode_payload(legacy, dialect) == msg


def test_every_client_visible_type_number() -> None:
    numbers = {int(t) for t in MESSAGE_CLASSES}
    assert numbers == {
        11, 12, 2001, 1002, 1003, 1004, 1005, 1006, 1007, 1008, 1009, 1010, 1011, 1012, 1501, 1502
    }
    assert int(MsgType.CALL_FILTERED_CLIENTS) == 1501
