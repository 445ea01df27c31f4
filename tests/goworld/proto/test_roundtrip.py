"""Property tests: every message round-trips in every dialect; framing survives any split.

The strategy table is keyed by message class and checked against
``goworld.proto.messages.MESSAGE_CLASSES``, so adding a message class without adding a
strategy here makes the suite fail.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from goworld.proto import Dialect, Framer, decode_payload, encode, encode_payload, frame, gwmsgpack
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

ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_."

# ---- strategies ----------------------------------------------------------------------------

gw_ids = st.text(alphabet=ID_ALPHABET, min_size=16, max_size=16)
latin1_ids = st.text(
    alphabet=st.characters(min_codepoint=0, max_codepoint=255), min_size=16, max_size=16
)
#: Well-formed ids, and arbitrary 16 bytes (as latin-1 text): both must round-trip.
ids = st.one_of(gw_ids, latin1_ids)

f32s = st.floats(width=32, allow_nan=False)
u16s = st.integers(0, 0xFFFF)
u32s = st.integers(0, 0xFFFF_FFFF)
texts = st.text(max_size=40)

msgpack_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.binary(max_size=20),
)
#: Anything GoWorld's msgpack carries. Lists, not tuples: arrays decode as lists.
msgpack_values = st.recursive(
    msgpack_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.text(max_size=8), children, max_size=5),
    ),
    max_leaves=12,
)
args = st.lists(msgpack_values, max_size=4).map(tuple)
#: Leaf-first attribute paths (keys and list indices), or None for the root map.
paths = st.one_of(
    st.none(),
    st.lists(st.one_of(st.text(max_size=12), st.integers(0, 2**31)), max_size=5),
)
client_data = st.dictionaries(st.text(max_size=10), msgpack_values, max_size=5)


def _h(cls: type[Message], **fields: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.builds(cls, gate_id=u16s, client_id=ids, **fields)


STRATEGIES: dict[type[Message], st.SearchStrategy[Any]] = {
    CallEntityMethodFromClient: st.builds(
        CallEntityMethodFromClient, entity_id=ids, method=texts, args=args
    ),
    SyncPositionYawFromClient: st.builds(
        SyncPositionYawFromClient, entity_id=ids, x=f32s, y=f32s, z=f32s, yaw=f32s
    ),
    HeartbeatFromClient: st.builds(HeartbeatFromClient),
    CreateEntityOnClient: _h(
        CreateEntityOnClient,
        is_player=st.booleans(),
        entity_id=ids,
        type_name=texts,
        x=f32s,
        y=f32s,
        z=f32s,
        yaw=f32s,
        client_data=client_data,
    ),
    DestroyEntityOnClient: _h(DestroyEntityOnClient, type_name=texts, entity_id=ids),
    NotifyMapAttrChangeOnClient: _h(
        NotifyMapAttrChangeOnClient, entity_id=ids, path=paths, key=texts, value=msgpack_values
    ),
    NotifyMapAttrDelOnClient: _h(NotifyMapAttrDelOnClient, entity_id=ids, path=paths, key=texts),
    NotifyListAttrChangeOnClient: _h(
        NotifyListAttrChangeOnClient, entity_id=ids, path=paths, index=u32s, value=msgpack_values
    ),
    NotifyListAttrPopOnClient: _h(NotifyListAttrPopOnClient, entity_id=ids, path=paths),
    NotifyListAttrAppendOnClient: _h(
        NotifyListAttrAppendOnClient, entity_id=ids, path=paths, value=msgpack_values
    ),
    CallEntityMethodOnClient: _h(CallEntityMethodOnClient, entity_id=ids, method=texts, args=args),
    SetClientProxyFilterProp: _h(SetClientProxyFilterProp, key=texts, value=texts),
    ClearClientProxyFilterProps: _h(ClearClientProxyFilterProps),
    NotifyMapAttrClearOnClient: _h(NotifyMapAttrClearOnClient, entity_id=ids, path=paths),
    CallFilteredClients: st.builds(
        CallFilteredClients,
        op=st.one_of(st.sampled_from(FilterOp), st.integers(0, 255)),
        key=texts,
        value=texts,
        method=texts,
        args=args,
    ),
    SyncPositionYawOnClients: st.builds(
        SyncPositionYawOnClients,
        records=st.lists(
            st.builds(PositionRecord, entity_id=ids, x=f32s, y=f32s, z=f32s, yaw=f32s),
            max_size=8,
        ).map(tuple),
    ),
}


def _restrict_to_dialect(msg: Message, dialect: Dialect) -> Message:
    """G2017's 1501 has no op byte, so only op 0 survives there (the decoder fills in 0), and
    G2017 writes a top-level attribute path as ``[]``, so ``None`` comes back as ``[]``."""
    if isinstance(msg, CallFilteredClients) and not dialect.has_filter_op:
        return CallFilteredClients(0, msg.key, msg.value, msg.method, msg.args)
    if dialect.empty_root_path and getattr(msg, "path", []) is None:
        return dataclasses.replace(msg, path=[])  # type: ignore[type-var]
    return msg


def strict_equal(a: Any, b: Any) -> bool:
    """Equality that also compares types (``True != 1``, ``1 != 1.0``) and treats
    floats bit for bit (``-0.0 != 0.0``)."""
    if isinstance(a, int) and not isinstance(a, bool):
        # IntEnum members (FilterOp) decode as plain ints; that is fine
        return isinstance(b, int) and not isinstance(b, bool) and a == b
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return math.copysign(1.0, a) == math.copysign(1.0, b) and a == b
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(strict_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(strict_equal(a[k], b[k]) for k in a)
    if hasattr(a, "__dataclass_fields__"):
        return all(
            strict_equal(getattr(a, name), getattr(b, name)) for name in a.__dataclass_fields__
        )
    return bool(a == b)


# ---- the table covers every class ----------------------------------------------------------


def test_every_message_class_has_a_strategy() -> None:
    missing = [cls.__name__ for cls in MESSAGE_CLASSES.values() if cls not in STRATEGIES]
    assert not missing, f"add a hypothesis strategy for {missing}"
    assert set(STRATEGIES) == set(MESSAGE_CLASSES.values())


def test_message_classes_table_is_keyed_by_msgtype() -> None:
    for msgtype, cls in MESSAGE_CLASSES.items():
        assert msgtype == cls.MSGTYPE


CLASSES = sorted(MESSAGE_CLASSES.values(), key=lambda c: int(c.MSGTYPE))


@pytest.mark.parametrize("dialect", list(Dialect), ids=lambda d: d.name)
@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_payload_round_trip(cls: type[Message], dialect: Dialect, data: st.DataObject) -> None:
    assert cls in STRATEGIES, f"no hypothesis strategy for {cls.__name__}"
    msg = _restrict_to_dialect(data.draw(STRATEGIES[cls]), dialect)
    assert type(msg) is cls
    payload = encode_payload(msg, dialect)
    decoded = decode_payload(payload, dialect)
    assert decoded == msg
    assert strict_equal(decoded, msg)
    # re-encoding the decoded message gives the same bytes (no type drift, e.g. bool -> int)
    assert encode_payload(decoded, dialect) == payload


@pytest.mark.parametrize("dialect", list(Dialect), ids=lambda d: d.name)
@settings(max_examples=50, deadline=None)
@given(msgs=st.lists(st.one_of(*STRATEGIES.values()), max_size=6), data=st.data())
def test_encoded_frames_through_framer(
    dialect: Dialect, msgs: list[Message], data: st.DataObject
) -> None:
    msgs = [_restrict_to_dialect(m, dialect) for m in msgs]
    stream = b"".join(encode(m, dialect) for m in msgs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    framer = Framer()
    payloads: list[bytes] = []
    for start, stop in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        payloads += framer.feed(stream[start:stop])
    assert framer.buffered == 0
    assert [decode_payload(p, dialect) for p in payloads] == msgs


@pytest.mark.parametrize("dialect", [Dialect.G2017], ids=lambda d: d.name)
@given(op=st.integers(1, 255), msg=STRATEGIES[CallFilteredClients])
def test_g2017_filtered_call_loses_only_op(
    dialect: Dialect, op: int, msg: CallFilteredClients
) -> None:
    msg = CallFilteredClients(op, msg.key, msg.value, msg.method, msg.args)
    decoded = decode_payload(encode_payload(msg, dialect), dialect)
    assert isinstance(decoded, CallFilteredClients)
    assert decoded.op == 0
    assert (decoded.key, decoded.value, decoded.method, decoded.args) == (
        msg.key,
        msg.value,
        msg.method,
        msg.args,
    )


# ---- msgpack values ------------------------------------------------------------------------


@settings(max_examples=300)
@given(value=msgpack_values)
def test_msgpack_round_trip(value: Any) -> None:
    packed = gwmsgpack.packb(value)
    decoded = gwmsgpack.unpackb(packed)
    assert strict_equal(decoded, value)
    assert gwmsgpack.packb(decoded) == packed


@given(value=st.integers(-(2**63), 2**64 - 1))
def test_every_int_is_nine_bytes(value: int) -> None:
    packed = gwmsgpack.packb(value)
    assert len(packed) == 9
    assert packed[0] == (0xD3 if value < 2**63 else 0xCF)


@given(value=st.floats(allow_nan=False))
def test_every_float_is_nine_bytes(value: float) -> None:
    packed = gwmsgpack.packb(value)
    assert len(packed) == 9 and packed[0] == 0xCB


@given(values=st.lists(msgpack_values, max_size=5))
def test_tuples_encode_like_lists_and_decode_as_lists(values: list[Any]) -> None:
    assert gwmsgpack.packb(tuple(values)) == gwmsgpack.packb(values)
    assert strict_equal(gwmsgpack.unpackb(gwmsgpack.packb(tuple(values))), values)


# ---- framing -------------------------------------------------------------------------------

payload_lists = st.lists(st.binary(max_size=200), max_size=12)


def _stream(payloads: list[bytes]) -> bytes:
    return b"".join(frame(p) for p in payloads)


@given(payloads=payload_lists)
def test_framer_whole_stream(payloads: list[bytes]) -> None:
    framer = Framer()
    assert framer.feed(_stream(payloads)) == payloads
    assert framer.buffered == 0


@settings(max_examples=50)
@given(payloads=payload_lists)
def test_framer_one_byte_at_a_time(payloads: list[bytes]) -> None:
    stream = _stream(payloads)
    framer = Framer()
    out: list[bytes] = []
    for i in range(len(stream)):
        out += framer.feed(stream[i : i + 1])
        assert framer.buffered <= i + 1
    assert out == payloads
    assert framer.buffered == 0


@given(payloads=payload_lists, data=st.data())
def test_framer_random_chunks(payloads: list[bytes], data: st.DataObject) -> None:
    stream = _stream(payloads)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=20), label="cuts"))
    framer = Framer()
    out: list[bytes] = []
    for start, stop in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        chunk = stream[start:stop]
        # bytearray and memoryview are accepted too
        out += framer.feed(data.draw(st.sampled_from([bytes, bytearray, memoryview]))(chunk))
    assert out == payloads
    assert framer.buffered == 0


@given(payloads=payload_lists, tail=st.binary(min_size=1, max_size=3))
def test_framer_keeps_incomplete_header(payloads: list[bytes], tail: bytes) -> None:
    framer = Framer()
    assert framer.feed(_stream(payloads) + tail) == payloads
    assert framer.buffered == len(tail)
