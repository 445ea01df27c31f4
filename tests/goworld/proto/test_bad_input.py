"""Malformed input: decoders raise RemoteProtocolError and nothing else; encoders refuse
what the wire cannot carry with LocalProtocolError (PROTOCOL.md §1.2, §1.3, §2)."""

from __future__ import annotations

import dataclasses
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from goworld.errors import LocalProtocolError, PacketTooLarge, RemoteProtocolError
from goworld.proto import (
    MAX_PAYLOAD,
    Dialect,
    Framer,
    decode_payload,
    encode_payload,
    frame,
    gwmsgpack,
    peek_msgtype,
)
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
    Message,
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
from goworld.proto.msgtypes import MsgType

EID = "EnTiTy.ID_abcdef"
EID2 = "0ther1D.________"
CID = "cLiEnTiD0123456_"
NESTED: dict[str, Any] = {"a": [1, 2.5, None, True], "b": {"c": b"\x00\xff", "d": "é"}}

#: One rich sample per message class (every field non-trivial where the layout allows it).
SAMPLES: dict[type[Message], Message] = {
    CallEntityMethodFromClient: CallEntityMethodFromClient(EID, "Login", ("test1", 7, NESTED)),
    SyncPositionYawFromClient: SyncPositionYawFromClient(EID, 1.0, 2.0, -3.0, 90.0),
    HeartbeatFromClient: HeartbeatFromClient(),
    CreateEntityOnClient: CreateEntityOnClient(
        3, CID, True, EID, "Avatar", 1.0, 0.0, 2.0, 45.0, {"name": "x", "lv": 3}
    ),
    DestroyEntityOnClient: DestroyEntityOnClient(3, CID, "Avatar", EID),
    NotifyMapAttrChangeOnClient: NotifyMapAttrChangeOnClient(
        3, CID, EID, [0, "inner"], "hp", NESTED
    ),
    NotifyMapAttrDelOnClient: NotifyMapAttrDelOnClient(3, CID, EID, ["inner"], "hp"),
    NotifyListAttrChangeOnClient: NotifyListAttrChangeOnClient(3, CID, EID, ["l"], 4, "v"),
    NotifyListAttrPopOnClient: NotifyListAttrPopOnClient(3, CID, EID, ["l", "m"]),
    NotifyListAttrAppendOnClient: NotifyListAttrAppendOnClient(3, CID, EID, None, [1, 2]),
    CallEntityMethodOnClient: CallEntityMethodOnClient(3, CID, EID, "OnHit", (1, "two")),
    SetClientProxyFilterProp: SetClientProxyFilterProp(3, CID, "level", "10"),
    ClearClientProxyFilterProps: ClearClientProxyFilterProps(3, CID),
    NotifyMapAttrClearOnClient: NotifyMapAttrClearOnClient(3, CID, EID, ["m"]),
    CallFilteredClients: CallFilteredClients(FilterOp.GT, "lv", "5", "OnNews", ("hi", 1)),
    SyncPositionYawOnClients: SyncPositionYawOnClients(
        (
            PositionRecord(EID, 1.0, 2.0, 3.0, 4.0),
            PositionRecord(EID2, 5.0, 6.0, 7.0, 8.0),
            PositionRecord(CID, -1.0, -2.0, -3.0, -4.0),
        )
    ),
}
CLASSES = sorted(MESSAGE_CLASSES.values(), key=lambda c: int(c.MSGTYPE))
DIALECTS = list(Dialect)
RECORD = 32  # 1502: EntityID(16) + 4 x f32


def _sample(cls: type[Message], dialect: Dialect) -> Message:
    msg = SAMPLES[cls]
    if isinstance(msg, CallFilteredClients) and not dialect.has_filter_op:
        msg = CallFilteredClients(0, msg.key, msg.value, msg.method, msg.args)
    if dialect.empty_root_path and getattr(msg, "path", []) is None:
        msg = dataclasses.replace(msg, path=[])  # type: ignore[type-var]  # G2017: [] on the wire
    return msg


def _wire(msgtype: MsgType, dialect: Dialect) -> int:
    return dialect.type_to_wire.get(msgtype, int(msgtype))


def test_every_class_has_a_sample() -> None:
    assert set(SAMPLES) == set(MESSAGE_CLASSES.values())


# ---- truncation ----------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_prefix_is_rejected(cls: type[Message], dialect: Dialect) -> None:
    msg = _sample(cls, dialect)
    payload = encode_payload(msg, dialect)
    assert decode_payload(payload, dialect) == msg
    accepted = []
    for n in range(len(payload)):
        prefix = payload[:n]
        if cls is SyncPositionYawOnClients and n >= 2 and (n - 2) % RECORD == 0:
            # records run to the end of the payload: a prefix at a record boundary is valid
            decoded = decode_payload(prefix, dialect)
            assert isinstance(decoded, SyncPositionYawOnClients)
            expected = msg.records[: (n - 2) // RECORD]  # type: ignore[attr-defined]
            assert decoded.records == expected
            accepted.append(n)
            continue
        with pytest.raises(RemoteProtocolError):
            decode_payload(prefix, dialect)
    if cls is SyncPositionYawOnClients:
        assert accepted == [2, 34, 66]
    else:
        assert accepted == []


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
def test_truncated_frames_yield_nothing(dialect: Dialect) -> None:
    stream = b"".join(frame(encode_payload(_sample(c, dialect), dialect)) for c in CLASSES)
    for n in range(len(stream)):
        framer = Framer()
        got = framer.feed(stream[:n])
        consumed = sum(4 + len(p) for p in got)
        assert framer.buffered == n - consumed
        for p in got:
            decode_payload(p, dialect)  # every complete frame still decodes


# ---- trailing bytes ------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_trailing_byte(cls: type[Message], dialect: Dialect) -> None:
    msg = _sample(cls, dialect)
    payload = encode_payload(msg, dialect) + b"\x00"
    if cls is SyncPositionYawFromClient:
        # §2.2: the gate reads exactly one record; extra bytes are ignored
        assert decode_payload(payload, dialect) == msg
        assert decode_payload(payload + b"junk" * 20, dialect) == msg
    else:
        with pytest.raises(RemoteProtocolError):
            decode_payload(payload, dialect)


def test_trailing_bytes_after_call_body() -> None:
    payload = encode_payload(SAMPLES[CallEntityMethodFromClient])
    for extra in (b"\x00", b"\x01\x02", CID.encode()):
        with pytest.raises(RemoteProtocolError, match="trailing"):
            decode_payload(payload + extra)


def test_position_sync_partial_record() -> None:
    payload = encode_payload(SAMPLES[SyncPositionYawOnClients])
    for extra in range(1, RECORD):
        with pytest.raises(RemoteProtocolError):
            decode_payload(payload + bytes(extra))
    grown = decode_payload(payload + bytes(RECORD))
    assert isinstance(grown, SyncPositionYawOnClients)
    assert grown.records[-1] == PositionRecord("\x00" * 16, 0.0, 0.0, 0.0, 0.0)


# ---- frame lengths -------------------------------------------------------------------------


def test_packet_too_large_is_a_remote_protocol_error() -> None:
    assert issubclass(PacketTooLarge, RemoteProtocolError)


def test_framer_rejects_32mib_plus_one() -> None:
    with pytest.raises(PacketTooLarge):
        Framer().feed(struct.pack("<I", MAX_PAYLOAD + 1))
    with pytest.raises(PacketTooLarge):
        Framer().feed(b"\xff\xff\xff\xff")


def test_framer_rejects_oversize_header_fed_bytewise() -> None:
    framer = Framer()
    header = struct.pack("<I", MAX_PAYLOAD + 1)
    for b in header[:3]:
        assert framer.feed(bytes([b])) == []
    with pytest.raises(PacketTooLarge):
        framer.feed(header[3:])


def test_framer_rejects_oversize_after_valid_frames() -> None:
    with pytest.raises(PacketTooLarge):
        Framer().feed(frame(b"\xd1\x07") + struct.pack("<I", MAX_PAYLOAD + 1))


def test_framer_accepts_exactly_32mib() -> None:
    framer = Framer()
    assert framer.feed(struct.pack("<I", MAX_PAYLOAD)) == []
    assert framer.buffered == 4
    assert framer.feed(bytes(1024)) == []
    assert framer.buffered == 4 + 1024
    (payload,) = framer.feed(bytes(MAX_PAYLOAD - 1024) + frame(b"\xd1\x07"))[:1]
    assert len(payload) == MAX_PAYLOAD
    assert framer.buffered == 0


def test_framer_custom_limit() -> None:
    framer = Framer(max_payload=10)
    assert framer.feed(frame(bytes(10))) == [bytes(10)]
    with pytest.raises(PacketTooLarge):
        framer.feed(frame(bytes(11)))


def test_frame_refuses_over_32mib() -> None:
    with pytest.raises(LocalProtocolError):
        frame(bytes(MAX_PAYLOAD + 1))
    assert frame(bytes(MAX_PAYLOAD))[:4] == struct.pack("<I", MAX_PAYLOAD)


def test_zero_length_frame() -> None:
    framer = Framer()
    assert framer.feed(b"\x00\x00\x00\x00") == [b""]
    assert framer.buffered == 0
    for dialect in DIALECTS:
        with pytest.raises(RemoteProtocolError):
            decode_payload(b"", dialect)
        with pytest.raises(RemoteProtocolError):
            decode_payload(b"\x0b", dialect)
    with pytest.raises(RemoteProtocolError):
        peek_msgtype(b"")


# ---- unknown types -------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
def test_every_unknown_type_is_rejected(dialect: Dialect) -> None:
    known = {_wire(t, dialect) for t in MESSAGE_CLASSES}
    assert len(known) == len(MESSAGE_CLASSES)
    body = bytes(40)
    for wire in range(0x10000):
        payload = struct.pack("<H", wire) + body
        if wire in known:
            continue
        try:
            decode_payload(payload, dialect)
        except RemoteProtocolError as exc:
            assert "unknown" in str(exc)
        else:
            pytest.fail(f"type {wire} decoded in {dialect}")


@pytest.mark.parametrize(
    "wire", [0, 1, 6, 13, 25, 1000, 1001, 1013, 1499, 1500, 1503, 1999, 2002, 65535]
)
def test_unknown_type_examples(wire: int) -> None:
    with pytest.raises(RemoteProtocolError, match="unknown"):
        decode_payload(struct.pack("<H", wire))


# ---- field-level garbage -------------------------------------------------------------------

H = struct.pack("<H", 3) + CID.encode()


def _varbytes(raw: bytes) -> bytes:
    return struct.pack("<I", len(raw)) + raw


BAD_MSGPACK = [
    b"",  # empty Data
    b"\xc1",  # never-used code
    b"\xd3\x00\x00",  # truncated int64
    b"\x92\xc0",  # array missing an element
    b"\xd9\x05ab",  # str8 overrunning its Data
    b"\xa2\xff\xfe",  # invalid UTF-8 inside a msgpack str
    b"\x81\x90\xc0",  # map keyed by an array (unhashable)
    b"\x91" * 5000 + b"\xc0",  # nesting deeper than the unpacker allows
    b"\xd6\xff\x00\x00",  # truncated timestamp extension
]


@pytest.mark.parametrize("garbage", BAD_MSGPACK, ids=lambda b: b[:6].hex() or "empty")
def test_garbage_msgpack_in_data_field(garbage: bytes) -> None:
    bad_path = (
        struct.pack("<H", 1004) + H + EID.encode() + _varbytes(garbage) + _varbytes(b"k")
        + _varbytes(b"\xc0")
    )
    with pytest.raises(RemoteProtocolError):
        decode_payload(bad_path)
    bad_arg = (
        struct.pack("<H", 11) + EID.encode() + _varbytes(b"M") + struct.pack("<H", 1)
        + _varbytes(garbage)
    )
    with pytest.raises(RemoteProtocolError):
        decode_payload(bad_arg)
    with pytest.raises(RemoteProtocolError):
        gwmsgpack.unpackb(garbage)


def test_args_count_larger_than_present() -> None:
    payload = struct.pack("<H", 11) + EID.encode() + _varbytes(b"M") + struct.pack("<H", 3)
    payload += _varbytes(b"\xc0") * 2
    with pytest.raises(RemoteProtocolError):
        decode_payload(payload)


@pytest.mark.parametrize("bad_utf8", [b"\xff", b"\xc3", b"\xed\xa0\x80", b"ok\x80"])
def test_invalid_utf8_in_varstr(bad_utf8: bytes) -> None:
    call = struct.pack("<H", 11) + EID.encode() + _varbytes(bad_utf8) + struct.pack("<H", 0)
    with pytest.raises(RemoteProtocolError, match="UTF-8"):
        decode_payload(call)
    destroy = struct.pack("<H", 1003) + H + _varbytes(bad_utf8) + EID.encode()
    with pytest.raises(RemoteProtocolError, match="UTF-8"):
        decode_payload(destroy)
    filtered = struct.pack("<H", 1501) + b"\x00" + _varbytes(bad_utf8) + _varbytes(b"")
    filtered += _varbytes(b"M") + struct.pack("<H", 0)
    with pytest.raises(RemoteProtocolError, match="UTF-8"):
        decode_payload(filtered)


@pytest.mark.parametrize("announced", [6, 7, 100, 0x7FFF_FFFF, 0xFFFF_FFFF])
def test_varstr_length_overruns_packet(announced: int) -> None:
    # "Login" is 5 bytes; announce more, keep the rest of the packet short
    tail = b"Login" + struct.pack("<H", 0)  # 7 bytes follow the length field
    payload = struct.pack("<H", 11) + EID.encode() + struct.pack("<I", announced) + tail
    if announced == 7:
        # the string swallows the args count; the args are then truncated
        with pytest.raises(RemoteProtocolError, match="truncated"):
            decode_payload(payload)
    else:
        with pytest.raises(RemoteProtocolError):
            decode_payload(payload)


def test_data_length_overruns_packet() -> None:
    payload = struct.pack("<H", 1007) + H + EID.encode() + struct.pack("<I", 2) + b"\xc0"
    with pytest.raises(RemoteProtocolError, match="overruns"):
        decode_payload(payload)


def test_memoryview_and_bytearray_payloads_decode() -> None:
    payload = encode_payload(SAMPLES[CallEntityMethodFromClient])
    assert decode_payload(bytearray(payload)) == SAMPLES[CallEntityMethodFromClient]
    assert decode_payload(memoryview(payload)) == SAMPLES[CallEntityMethodFromClient]


# ---- encoder refusals ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad_id", ["", "short", "A" * 15, "A" * 17, "\u0100" * 16, "\u20ac" + "A" * 15]
)
def test_encoding_a_bad_id_is_local_error(bad_id: str) -> None:
    for msg in (
        CallEntityMethodFromClient(bad_id, "M"),
        SyncPositionYawFromClient(bad_id, 0.0, 0.0, 0.0, 0.0),
        DestroyEntityOnClient(1, bad_id, "T", EID),
        DestroyEntityOnClient(1, CID, "T", bad_id),
        SyncPositionYawOnClients((PositionRecord(bad_id, 0.0, 0.0, 0.0, 0.0),)),
    ):
        with pytest.raises(LocalProtocolError):
            encode_payload(msg)


@pytest.mark.parametrize(
    "msg",
    [
        ClearClientProxyFilterProps(0x10000, CID),
        ClearClientProxyFilterProps(-1, CID),
        NotifyListAttrChangeOnClient(1, CID, EID, None, 2**32, 0),
        NotifyListAttrChangeOnClient(1, CID, EID, None, -1, 0),
        CallFilteredClients(256, "", "", "M"),
        SyncPositionYawFromClient(EID, 1e300, 0.0, 0.0, 0.0),
        SyncPositionYawOnClients((PositionRecord(EID, 0.0, 0.0, 0.0, float(2**200)),)),
        CallEntityMethodFromClient(EID, "M", (2**64,)),
        CallEntityMethodFromClient(EID, "M", (object(),)),
        CallEntityMethodFromClient(EID, "M", (None,) * 0x10000),
        NotifyMapAttrChangeOnClient(1, CID, EID, None, "k", {1, 2}),
    ],
    ids=lambda m: type(m).__name__,
)
def test_unencodable_values_are_local_errors(msg: Message) -> None:
    with pytest.raises(LocalProtocolError):
        encode_payload(msg)


def test_lone_surrogate_in_varstr_is_local_error() -> None:
    """A str the wire cannot carry (not encodable as UTF-8) must be refused as a
    LocalProtocolError, like every other unencodable value (codec module docstring)."""
    with pytest.raises(LocalProtocolError):
        encode_payload(CallEntityMethodFromClient(EID, "bad\ud800", ()))


def test_msgpack_str_we_send_is_one_we_can_read() -> None:
    """gwmsgpack must not emit a msgpack str that is not UTF-8: either refuse the value
    with LocalProtocolError or emit bytes its own decoder (and any UTF-8 peer) accepts."""
    try:
        packed = gwmsgpack.packb("bad\udc80")
    except LocalProtocolError:
        return
    assert gwmsgpack.unpackb(packed) == "bad\udc80"


# ---- fuzzing -------------------------------------------------------------------------------

KNOWN_WIRES = sorted({_wire(t, d) for d in DIALECTS for t in MESSAGE_CLASSES} | {0, 65535})


def _decode_or_protocol_error(payload: bytes, dialect: Dialect) -> Message | None:
    try:
        msg = decode_payload(payload, dialect)
    except RemoteProtocolError:
        return None
    assert isinstance(msg, Message)
    wire = payload[0] | payload[1] << 8
    assert _wire(type(msg).MSGTYPE, dialect) == wire
    return msg


@settings(max_examples=2000, deadline=None)
@given(payload=st.binary(max_size=200))
def test_fuzz_arbitrary_bytes(payload: bytes) -> None:
    for dialect in DIALECTS:
        _decode_or_protocol_error(payload, dialect)


@settings(max_examples=2500, deadline=None)
@given(wire=st.sampled_from(KNOWN_WIRES), body=st.binary(max_size=120))
def test_fuzz_known_type_random_body(wire: int, body: bytes) -> None:
    payload = struct.pack("<H", wire) + body
    for dialect in DIALECTS:
        _decode_or_protocol_error(payload, dialect)


_mutation = st.one_of(
    st.tuples(st.just("set"), st.integers(0, 10_000), st.integers(0, 255)),
    st.tuples(st.just("insert"), st.integers(0, 10_000), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), st.integers(0, 10_000), st.integers(1, 8)),
    st.tuples(st.just("truncate"), st.integers(0, 10_000), st.just(0)),
)


def _mutate(payload: bytes, mutations: list[tuple[str, int, Any]]) -> bytes:
    buf = bytearray(payload)
    for kind, where, arg in mutations:
        pos = where % (len(buf) + 1)
        if kind == "set" and pos < len(buf):
            buf[pos] = arg
        elif kind == "insert":
            buf[pos:pos] = arg
        elif kind == "delete":
            del buf[pos : pos + arg]
        elif kind == "truncate":
            del buf[pos:]
    return bytes(buf)


@settings(max_examples=2500, deadline=None)
@given(
    cls=st.sampled_from(CLASSES),
    source=st.sampled_from(DIALECTS),
    mutations=st.lists(_mutation, min_size=1, max_size=4),
)
def test_fuzz_mutated_valid_payloads(
    cls: type[Message], source: Dialect, mutations: list[tuple[str, int, Any]]
) -> None:
    payload = _mutate(encode_payload(_sample(cls, source), source), mutations)
    for dialect in DIALECTS:
        _decode_or_protocol_error(payload, dialect)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    chunks=st.lists(st.binary(max_size=64), max_size=12),
    max_payload=st.sampled_from([0, 1, 16, 64, MAX_PAYLOAD]),
)
def test_fuzz_framer(chunks: list[bytes], max_payload: int) -> None:
    framer = Framer(max_payload=max_payload)
    fed = 0
    consumed = 0
    for chunk in chunks:
        fed += len(chunk)
        try:
            out = framer.feed(chunk)
        except PacketTooLarge:
            return  # the only exception allowed out; the stream is then dead
        for p in out:
            assert len(p) <= max_payload
        consumed += sum(4 + len(p) for p in out)
        assert framer.buffered == fed - consumed
        assert framer.buffered < 4 + max_payload or max_payload == MAX_PAYLOAD


@settings(max_examples=300, deadline=None)
@given(stream=st.binary(max_size=400), cut=st.integers(0, 400))
def test_fuzz_framer_split_is_invisible(stream: bytes, cut: int) -> None:
    """Any byte stream gives the same payloads (or the same PacketTooLarge) however split."""

    def run(parts: list[bytes]) -> list[bytes] | str:
        framer = Framer(max_payload=64)
        out: list[bytes] = []
        try:
            for part in parts:
                out += framer.feed(part)
        except PacketTooLarge:
            return "too large"
        return out

    cut = min(cut, len(stream))
    whole = run([stream])
    assert run([stream[:cut], stream[cut:]]) == whole
    assert run([stream[i : i + 1] for i in range(len(stream))]) == whole


def test_check_args_takes_what_decode_args_takes_and_refuses_broken_structure() -> None:
    import struct

    from goworld.errors import RemoteProtocolError
    from goworld.proto import codec

    good = codec.encode_args((1, "two", [3.0] * 400, {"four": b"4" * 600}))
    assert codec.check_args(good) == len(good) == codec.decode_args(good)[1]
    big_bad = b"\x01\x00" + struct.pack("<I", 1001) + b"\xdc\x03\xe8" + b"\x90" * 998  # 1000 items, 998 sent
    small_bad = b"\x01\x00\x01\x00\x00\x00\xc1"
    for bad in (big_bad, small_bad, good[:-1], b"\x01"):
        with pytest.raises(RemoteProtocolError):
            codec.decode_args(bad)
        with pytest.raises(RemoteProtocolError):
            codec.check_args(bad)


def test_a_big_argument_is_checked_without_being_built() -> None:
    """4 MiB of empty lists inside one array: decoding builds 4M lists (~250 MB); the check
    must stay near the bytes it was given."""
    import struct
    import tracemalloc

    from goworld.proto import codec

    n = 4 * 1024 * 1024
    value = b"\xdd" + struct.pack(">I", n) + b"\x90" * n
    args = b"\x01\x00" + struct.pack("<I", len(value)) + value
    tracemalloc.start()
    try:
        assert codec.check_args(args) == len(args)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * len(args), peak
