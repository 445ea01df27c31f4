"""GateService and ClientProxy driven by a recording dispatcher link and fake transports
(PROTOCOL.md §2.2, §2.3, §2.5, §3.1, §4.1, §4.11).

The proxy flushes its output with ``loop.call_soon``, so every test runs in an event loop and
yields once (``await asyncio.sleep(0)``) before looking at what a client received. The fake
transport behaves like asyncio's: ``close()`` schedules ``connection_lost`` on the loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import struct
from typing import Any

import pytest

from gate.client_proxy import ClientProxy
from gate.service import GateService
from goworld.cluster.envelopes import Envelope
from goworld.entity.client import attr_body
from goworld.proto import codec
from goworld.proto.dialect import ATTR_PATH_TYPES, Dialect
from goworld.proto.framing import MAX_PAYLOAD, Framer, frame
from goworld.proto.ids import dispatcher_shard
from goworld.proto.messages import (
    CallEntityMethodFromClient,
    CallFilteredClients,
    CreateEntityOnClient,
    FilterOp,
    HeartbeatFromClient,
    PositionRecord,
    SyncPositionYawFromClient,
    SyncPositionYawOnClients,
)
from goworld.proto.msgtypes import MsgType
from goworld.proto.snappy_stream import (
    STREAM_IDENTIFIER,
    SnappyStreamDecoder,
    SnappyStreamEncoder,
)

GATE_ID = 7
NUM_DISPATCHERS = 3
TARGET = "Target.Entity_01"  # a well-formed id
OWNER = "NewOwnerEntity_2"
ARGS = ("test1", 123456, {"k": [1, 2.5]})


class FakeTransport:
    """Records writes; ``close`` sets a flag and reports the loss later, as asyncio does."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.protocol: ClientProxy | None = None

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.writes.append(bytes(data))

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        assert self.protocol is not None
        asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 5555) if name == "peername" else default

    def received(self, compressed: bool = False) -> list[bytes]:
        """Every packet payload written to this client so far."""
        data = b"".join(self.writes)
        if compressed:
            data = SnappyStreamDecoder().feed(data)
        framer = Framer()
        payloads = framer.feed(data)
        assert framer.buffered == 0, "a partial frame was written"
        return payloads


class Harness:
    def __init__(self, **kwargs: Any) -> None:
        self.sent: list[tuple[int, Envelope]] = []
        self.gate = GateService(
            GATE_ID,
            num_dispatchers=NUM_DISPATCHERS,
            send=lambda did, env: self.sent.append((did, env)),
            **kwargs,
        )

    def connect(self) -> tuple[ClientProxy, FakeTransport]:
        proxy = self.gate.new_proxy("tcp")
        transport = FakeTransport()
        transport.protocol = proxy
        proxy.connection_made(transport)
        return proxy, transport

    def forwarded(self, msgtype: int | None = None) -> list[tuple[int, Envelope]]:
        return [(d, e) for d, e in self.sent if msgtype is None or e.msgtype == msgtype]

    def from_dispatcher(self, env: Envelope, dispatcher_id: int = 1) -> None:
        self.gate.handle_dispatcher_message(dispatcher_id, env)


def call_frame(
    target: str = TARGET,
    method: str = "Login",
    args: tuple[Any, ...] = ARGS,
    dialect: Dialect = Dialect.HEAD,
) -> bytes:
    return codec.encode(CallEntityMethodFromClient(target, method, args), dialect)


def client_packet(msgtype: int, proxy: ClientProxy, body: bytes) -> Envelope:
    """A client-bound (1002–1012) envelope as a game sends it: payload = msgtype + H + body."""
    payload = struct.pack("<HH", msgtype, GATE_ID) + proxy.client_id.encode("latin-1") + body
    return Envelope(msgtype=msgtype, gate_id=GATE_ID, client_id=proxy.client_id, payload=payload)


def create_on_client(proxy: ClientProxy, entity_id: str, *, is_player: bool) -> Envelope:
    payload = codec.encode_payload(
        CreateEntityOnClient(
            GATE_ID, proxy.client_id, is_player, entity_id, "Avatar", 1.0, 2.0, 3.0, 4.0, {"a": 1}
        )
    )
    return Envelope(
        msgtype=MsgType.CREATE_ENTITY_ON_CLIENT,
        gate_id=GATE_ID,
        client_id=proxy.client_id,
        payload=payload,
    )


def set_prop(proxy: ClientProxy, key: str, value: str) -> Envelope:
    return Envelope(
        msgtype=MsgType.SET_CLIENTPROXY_FILTER_PROP,
        gate_id=GATE_ID,
        client_id=proxy.client_id,
        name=key,
        payload=value.encode("utf-8"),
    )


def filtered(
    op: int, key: str, value: str, method: str = "OnSay", args: tuple[Any, ...] = ("hi",)
) -> Envelope:
    payload = codec.encode_payload(CallFilteredClients(op, key, value, method, args))
    return Envelope(msgtype=MsgType.CALL_FILTERED_CLIENTS, payload=payload)


# ---- connection --------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_connection_notifies_the_boot_entity_shard() -> None:
    h = Harness()
    proxy, transport = h.connect()
    assert proxy.peer == "127.0.0.1:5555"
    assert h.gate.clients == {proxy.client_id: proxy}
    [(did, env)] = h.sent
    assert did == dispatcher_shard(proxy.boot_eid, NUM_DISPATCHERS)
    assert env.msgtype == MsgType.NOTIFY_CLIENT_CONNECTED
    assert (env.client_id, env.entity_id, env.gate_id) == (proxy.client_id, proxy.boot_eid, GATE_ID)
    assert env.payload == b"127.0.0.1:5555"  # the client's address, for game code
    await asyncio.sleep(0)
    assert transport.writes == [] and not transport.closed


@pytest.mark.asyncio
async def test_disconnect_notifies_the_boot_entity_when_no_owner_was_set() -> None:
    h = Harness()
    proxy, transport = h.connect()
    h.sent.clear()
    transport.close()
    await asyncio.sleep(0)
    assert proxy.client_id not in h.gate.clients
    [(did, env)] = h.sent
    assert env.msgtype == MsgType.NOTIFY_CLIENT_DISCONNECTED
    assert (env.entity_id, env.client_id, env.gate_id) == (proxy.boot_eid, proxy.client_id, GATE_ID)
    assert did == dispatcher_shard(proxy.boot_eid, NUM_DISPATCHERS)


# ---- client -> cluster ---------------------------------------------------------------------


def _chunks(data: bytes, how: str) -> list[bytes]:
    if how == "whole":
        return [data]
    if how == "bytewise":
        return [data[i : i + 1] for i in range(len(data))]
    return [data[i : i + 7] for i in range(0, len(data), 7)]


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["whole", "bytewise", "chunks"])
async def test_call_is_forwarded_to_the_target_shard(how: str) -> None:
    h = Harness()
    proxy, transport = h.connect()
    h.sent.clear()
    other = "Other.Entity__zz"
    data = call_frame() + call_frame(other, "Chat", ())
    for piece in _chunks(data, how):
        proxy.data_received(piece)
    await asyncio.sleep(0)
    assert not transport.closed
    got = [
        (d, e.msgtype, e.entity_id, e.name, e.payload, e.client_id, e.gate_id) for d, e in h.sent
    ]
    assert got == [
        (
            dispatcher_shard(TARGET, NUM_DISPATCHERS),
            MsgType.CALL_ENTITY_METHOD_FROM_CLIENT,
            TARGET,
            "Login",
            codec.encode_args(ARGS),
            proxy.client_id,
            GATE_ID,
        ),
        (
            dispatcher_shard(other, NUM_DISPATCHERS),
            MsgType.CALL_ENTITY_METHOD_FROM_CLIENT,
            other,
            "Chat",
            b"\x00\x00",
            proxy.client_id,
            GATE_ID,
        ),
    ]


def _sync_record(entity_id: str, x: float) -> bytes:
    return codec.encode_payload(SyncPositionYawFromClient(entity_id, x, 2.0, 3.0, 90.0))[2:]


@pytest.mark.asyncio
async def test_syncs_are_batched_per_dispatcher_until_flushed() -> None:
    h = Harness()
    a, _ = h.connect()
    b, _ = h.connect()
    h.sent.clear()
    # Entity ids chosen so that their shards differ (last two characters decide).
    e1, e2, e3 = "SyncEntity000000", "SyncEntity000001", "SyncEntity000003"
    shards = {e: dispatcher_shard(e, NUM_DISPATCHERS) for e in (e1, e2, e3)}
    assert shards[e1] == shards[e3] != shards[e2]
    h.from_dispatcher(create_on_client(a, e1, is_player=True))
    h.from_dispatcher(create_on_client(b, e2, is_player=True))
    a.data_received(codec.encode(SyncPositionYawFromClient(e1, 1.0, 2.0, 3.0, 90.0)))
    b.data_received(codec.encode(SyncPositionYawFromClient(e2, 5.0, 2.0, 3.0, 90.0)))
    h.from_dispatcher(create_on_client(a, e3, is_player=True))  # a's owner is now e3
    # Bytes after the one record are ignored.
    extra = codec.encode_payload(SyncPositionYawFromClient(e3, 7.0, 2.0, 3.0, 90.0)) + b"junk"
    a.data_received(frame(extra))
    assert h.sent == []
    h.gate.flush_syncs()
    got = {d: (e.msgtype, e.payload, e.gate_id) for d, e in h.sent}
    assert len(h.sent) == 2
    assert got == {
        shards[e1]: (
            MsgType.SYNC_POSITION_YAW_FROM_CLIENT,
            _sync_record(e1, 1.0) + _sync_record(e3, 7.0),
            GATE_ID,
        ),
        shards[e2]: (MsgType.SYNC_POSITION_YAW_FROM_CLIENT, _sync_record(e2, 5.0), GATE_ID),
    }
    h.sent.clear()
    h.gate.flush_syncs()
    assert h.sent == []


@pytest.mark.asyncio
async def test_heartbeat_is_accepted() -> None:
    h = Harness()
    proxy, transport = h.connect()
    h.sent.clear()
    proxy.heartbeat = 0.0
    proxy.data_received(codec.encode(HeartbeatFromClient()))
    await asyncio.sleep(0)
    assert h.sent == []
    assert not transport.closed
    assert proxy.heartbeat > 0.0


def _bad_inputs() -> dict[str, bytes]:
    call_payload = codec.encode_payload(CallEntityMethodFromClient(TARGET, "Login", ARGS))
    return {
        "unknown_msgtype": frame(struct.pack("<H", 99) + b"body"),
        "truncated_call": frame(call_payload[:-1]),
        "call_without_args": frame(call_payload[: 2 + 16 + 4 + 5]),
        "invalid_entity_id": frame(
            codec.encode_payload(CallEntityMethodFromClient("bad!entity id...", "Login", ()))
        ),
        "trailing_bytes": frame(call_payload + b"\x00"),
        "invalid_utf8_method": frame(
            struct.pack("<H", 11) + TARGET.encode() + b"\x02\x00\x00\x00\xff\xfe" + b"\x00\x00"
        ),
        "bad_msgpack_arg": frame(
            struct.pack("<H", 11)
            + TARGET.encode()
            + b"\x01\x00\x00\x00m"
            + b"\x01\x00\x01\x00\x00\x00\xc1"
        ),
        "short_sync": frame(
            codec.encode_payload(SyncPositionYawFromClient(TARGET, 1, 2, 3, 4))[:-1]
        ),
        # over CHECK_BY_DECODING: checked by the skip, which must refuse a truncated array too
        "big_truncated_msgpack_arg": frame(
            struct.pack("<H", 11) + TARGET.encode() + b"\x01\x00\x00\x00m"
            + b"\x01\x00" + struct.pack("<I", 2005) + b"\xdd" + struct.pack(">I", 2001) + b"\x90" * 2000
        ),
        "call_over_client_call_max_bytes": frame(
            codec.encode_payload(CallEntityMethodFromClient(TARGET, "Login", ("x" * (1 << 20),)))
        ),
        "one_byte_payload": frame(b"\x0b"),
        "zero_length_payload": b"\x00\x00\x00\x00",
        "oversize_length": struct.pack("<I", MAX_PAYLOAD + 1) + b"\x0b\x00",
    }


@pytest.mark.asyncio
@pytest.mark.parametrize("name", list(_bad_inputs()))
async def test_bad_input_closes_only_that_client_with_one_warning(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    h = Harness()
    bad, bad_transport = h.connect()
    good, good_transport = h.connect()
    h.sent.clear()
    with caplog.at_level(logging.DEBUG, logger="goworld.gate"):
        # A valid call in the same read, after the bad packet, must not be forwarded either.
        bad.data_received(_bad_inputs()[name] + call_frame())
        bad.data_received(call_frame())  # after the close: ignored
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    assert bad_transport.closed
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert warnings[0].levelno == logging.WARNING
    assert bad.client_id in warnings[0].getMessage()
    # Nothing forwarded but the disconnect notice of the closed client.
    assert [e.msgtype for _, e in h.sent] == [MsgType.NOTIFY_CLIENT_DISCONNECTED]
    assert h.sent[0][1].client_id == bad.client_id
    assert bad.client_id not in h.gate.clients
    # The other client is unaffected.
    h.sent.clear()
    good.data_received(call_frame())
    h.from_dispatcher(client_packet(MsgType.CALL_ENTITY_METHOD_ON_CLIENT, good, b"x"))
    await asyncio.sleep(0)
    assert not good_transport.closed
    assert [(e.msgtype, e.client_id) for _, e in h.sent] == [
        (MsgType.CALL_ENTITY_METHOD_FROM_CLIENT, good.client_id)
    ]
    assert len(good_transport.received()) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["separate_reads", "one_read"])
async def test_valid_packet_before_an_oversize_header_is_forwarded(how: str) -> None:
    # What a client sent before its protocol violation must not depend on how TCP cut the
    # bytes: read separately, the call is forwarded and then the client is closed; the same
    # bytes in one read must give the same result (GoWorld reads packet by packet too).
    h = Harness()
    proxy, transport = h.connect()
    h.sent.clear()
    good = call_frame()
    bad = struct.pack("<I", MAX_PAYLOAD + 1)
    if how == "separate_reads":
        proxy.data_received(good)
        proxy.data_received(bad)
    else:
        proxy.data_received(good + bad)
    await asyncio.sleep(0)
    assert transport.closed
    assert [e.msgtype for _, e in h.sent] == [
        MsgType.CALL_ENTITY_METHOD_FROM_CLIENT,
        MsgType.NOTIFY_CLIENT_DISCONNECTED,
    ]


# ---- cluster -> client: owner, filters -----------------------------------------------------


@pytest.mark.asyncio
async def test_player_create_sets_the_owner_named_by_the_disconnect_notice() -> None:
    h = Harness()
    proxy, transport = h.connect()
    h.sent.clear()
    env = create_on_client(proxy, OWNER, is_player=True)
    h.from_dispatcher(env)
    h.from_dispatcher(create_on_client(proxy, "NotThePlayer_123", is_player=False))
    await asyncio.sleep(0)
    received = transport.received()
    assert received[0] == env.payload  # forwarded unchanged, routing header included
    assert len(received) == 2
    assert h.sent == []
    transport.close()
    await asyncio.sleep(0)
    [(did, notice)] = h.sent
    assert notice.msgtype == MsgType.NOTIFY_CLIENT_DISCONNECTED
    assert (notice.entity_id, notice.client_id, notice.gate_id) == (OWNER, proxy.client_id, GATE_ID)
    assert did == dispatcher_shard(OWNER, NUM_DISPATCHERS)


@pytest.mark.asyncio
async def test_player_create_for_a_gone_client_notifies_the_owner_at_once() -> None:
    h = Harness()
    proxy, transport = h.connect()
    transport.close()
    await asyncio.sleep(0)
    h.sent.clear()
    h.from_dispatcher(create_on_client(proxy, OWNER, is_player=True))
    [(did, notice)] = h.sent
    assert notice.msgtype == MsgType.NOTIFY_CLIENT_DISCONNECTED
    assert (notice.entity_id, notice.client_id, notice.gate_id) == (OWNER, proxy.client_id, GATE_ID)
    assert did == dispatcher_shard(OWNER, NUM_DISPATCHERS)
    # A non-player create for a gone client is just dropped.
    h.sent.clear()
    h.from_dispatcher(create_on_client(proxy, OWNER, is_player=False))
    assert h.sent == []


@pytest.mark.asyncio
async def test_filter_prop_messages_update_the_index_and_are_not_forwarded() -> None:
    h = Harness()
    proxy, transport = h.connect()
    h.from_dispatcher(set_prop(proxy, "room", "lobby"))
    h.from_dispatcher(set_prop(proxy, "lv", "9"))
    h.from_dispatcher(set_prop(proxy, "room", "hall"))
    assert h.gate.filters.get(proxy.client_id) == {"room": "hall", "lv": "9"}
    h.from_dispatcher(
        Envelope(
            msgtype=MsgType.CLEAR_CLIENTPROXY_FILTER_PROPS,
            gate_id=GATE_ID,
            client_id=proxy.client_id,
        )
    )
    assert h.gate.filters.get(proxy.client_id) == {}
    assert not h.gate.filters.has_key("room")
    await asyncio.sleep(0)
    assert transport.writes == []


@pytest.mark.asyncio
async def test_disconnect_drops_filter_props() -> None:
    h = Harness()
    proxy, transport = h.connect()
    h.from_dispatcher(set_prop(proxy, "room", "lobby"))
    transport.close()
    await asyncio.sleep(0)
    assert not h.gate.filters.has_key("room")


OP_FUNCS = {
    FilterOp.EQ: lambda a, b: a == b,
    FilterOp.NE: lambda a, b: a != b,
    FilterOp.LT: lambda a, b: a < b,
    FilterOp.GT: lambda a, b: a > b,
    FilterOp.LE: lambda a, b: a <= b,
    FilterOp.GE: lambda a, b: a >= b,
}


@pytest.mark.asyncio
@pytest.mark.parametrize("op", list(FilterOp))
@pytest.mark.parametrize("value", ["9", "10", "100", "é", ""])
async def test_filtered_call_reaches_each_matching_client_once(op: FilterOp, value: str) -> None:
    h = Harness()
    props = ["1", "10", "9", "90", "5", "é", "z", ""]
    clients = [h.connect() for _ in props]
    _bare, bare_transport = h.connect()  # has no "lv" prop
    for (proxy, _), v in zip(clients, props, strict=True):
        h.from_dispatcher(set_prop(proxy, "lv", v))
    env = filtered(op, "lv", value)
    h.from_dispatcher(env)
    await asyncio.sleep(0)
    for (_proxy, transport), v in zip(clients, props, strict=True):
        expected = [env.payload] if OP_FUNCS[op](v, value) else []
        assert transport.received() == expected, (op, v, value)
    assert bare_transport.writes == []


def test_byte_wise_order_is_not_numeric() -> None:
    assert OP_FUNCS[FilterOp.LT]("10", "9")


@pytest.mark.asyncio
@pytest.mark.parametrize("op", list(FilterOp))
async def test_filtered_call_with_empty_key_reaches_every_client(op: FilterOp) -> None:
    h = Harness()
    clients = [h.connect() for _ in range(4)]
    h.from_dispatcher(set_prop(clients[0][0], "lv", "3"))
    env = filtered(op, "", "whatever")
    h.from_dispatcher(env)
    await asyncio.sleep(0)
    for _, transport in clients:
        assert transport.received() == [env.payload]


@pytest.mark.asyncio
async def test_filtered_call_with_an_unknown_key_reaches_nobody() -> None:
    h = Harness()
    proxy, transport = h.connect()
    h.from_dispatcher(set_prop(proxy, "lv", "3"))
    h.from_dispatcher(filtered(FilterOp.NE, "room", "x"))
    await asyncio.sleep(0)
    assert transport.writes == []


@pytest.mark.asyncio
async def test_filtered_call_in_the_2017_dialect_has_no_op_byte() -> None:
    h = Harness(dialect=Dialect.G2017)
    proxy, transport = h.connect()
    h.from_dispatcher(set_prop(proxy, "room", "lobby"))
    env = filtered(FilterOp.EQ, "room", "lobby", "OnSay", ("hello", 3))
    h.from_dispatcher(env)
    await asyncio.sleep(0)
    [payload] = transport.received()
    assert payload == env.payload[:2] + env.payload[3:]
    msg = codec.decode_payload(payload, Dialect.G2017)
    assert msg == CallFilteredClients(0, "room", "lobby", "OnSay", ("hello", 3))


@pytest.mark.asyncio
async def test_position_syncs_are_split_per_client() -> None:
    h = Harness()
    (a, ta), (b, tb), (_c, tc) = h.connect(), h.connect(), h.connect()
    ghost = "GhostClient00000"

    def rec(proxy_cid: str, entity_id: str, x: float) -> bytes:
        return (
            proxy_cid.encode("latin-1")
            + entity_id.encode("latin-1")
            + struct.pack("<ffff", x, 0, 0, 0)
        )

    data = b"".join(
        [
            rec(a.client_id, "EntityA000000001", 1.0),
            rec(b.client_id, "EntityB000000001", 2.0),
            rec(ghost, "EntityG000000001", 3.0),
            rec(a.client_id, "EntityA000000002", 4.0),
        ]
    )
    h.from_dispatcher(
        Envelope(msgtype=MsgType.SYNC_POSITION_YAW_ON_CLIENTS, gate_id=GATE_ID, payload=data)
    )
    await asyncio.sleep(0)
    [pa] = ta.received()
    [pb] = tb.received()
    assert tc.writes == []
    assert codec.decode_payload(pa) == SyncPositionYawOnClients(
        (
            PositionRecord("EntityA000000001", 1.0, 0, 0, 0),
            PositionRecord("EntityA000000002", 4.0, 0, 0, 0),
        )
    )
    assert codec.decode_payload(pb) == SyncPositionYawOnClients(
        (PositionRecord("EntityB000000001", 2.0, 0, 0, 0),)
    )
    assert len(pa) == 2 + 2 * 32 and len(pb) == 2 + 32


# ---- output batching, compression, dialects ------------------------------------------------


@pytest.mark.asyncio
async def test_packets_of_one_loop_iteration_go_out_in_one_write() -> None:
    h = Harness()
    proxy, transport = h.connect()
    _other, other_transport = h.connect()
    envs = [
        create_on_client(proxy, OWNER, is_player=True),
        client_packet(MsgType.CALL_ENTITY_METHOD_ON_CLIENT, proxy, b"\x01call"),
        client_packet(MsgType.NOTIFY_MAP_ATTR_CLEAR_ON_CLIENT, proxy, b"\x02clear"),
    ]
    for env in envs:
        h.from_dispatcher(env)
    h.from_dispatcher(filtered(FilterOp.EQ, "", ""))
    assert transport.writes == []  # nothing before the loop runs the flush
    await asyncio.sleep(0)
    assert len(transport.writes) == 1
    assert len(other_transport.writes) == 1
    assert transport.received() == [e.payload for e in envs] + [
        filtered(FilterOp.EQ, "", "").payload
    ]
    # The next iteration gets its own single write.
    h.from_dispatcher(client_packet(MsgType.DESTROY_ENTITY_ON_CLIENT, proxy, b"a"))
    h.from_dispatcher(client_packet(MsgType.DESTROY_ENTITY_ON_CLIENT, proxy, b"b"))
    await asyncio.sleep(0)
    assert len(transport.writes) == 2
    assert len(other_transport.writes) == 1


@pytest.mark.asyncio
async def test_nothing_is_written_to_a_client_closed_before_the_flush() -> None:
    h = Harness()
    proxy, transport = h.connect()
    h.from_dispatcher(client_packet(MsgType.CALL_ENTITY_METHOD_ON_CLIENT, proxy, b"x"))
    proxy.close()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert transport.writes == []
    assert transport.closed


@pytest.mark.asyncio
async def test_compressed_output_is_a_snappy_framing_stream() -> None:
    h = Harness(compress=True)
    proxy, transport = h.connect()
    big = client_packet(MsgType.CALL_ENTITY_METHOD_ON_CLIENT, proxy, b"A" * 5000)
    small = client_packet(MsgType.DESTROY_ENTITY_ON_CLIENT, proxy, b"\x01")
    h.from_dispatcher(big)
    await asyncio.sleep(0)
    h.from_dispatcher(small)
    await asyncio.sleep(0)
    assert len(transport.writes) == 2
    assert transport.writes[0].startswith(STREAM_IDENTIFIER)
    assert not transport.writes[1].startswith(STREAM_IDENTIFIER)
    assert len(transport.writes[0]) < 1000  # it really was compressed
    assert transport.received(compressed=True) == [big.payload, small.payload]


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["whole", "bytewise", "chunks"])
async def test_compressed_input_is_accepted(how: str) -> None:
    h = Harness(compress=True)
    proxy, transport = h.connect()
    h.sent.clear()
    encoder = SnappyStreamEncoder()
    data = encoder.encode(call_frame(args=("x" * 300,))) + encoder.encode(
        call_frame(method="Second")
    )
    for piece in _chunks(data, how):
        proxy.data_received(piece)
    await asyncio.sleep(0)
    assert not transport.closed
    assert [(e.msgtype, e.name) for _, e in h.sent] == [
        (MsgType.CALL_ENTITY_METHOD_FROM_CLIENT, "Login"),
        (MsgType.CALL_ENTITY_METHOD_FROM_CLIENT, "Second"),
    ]
    assert h.sent[0][1].payload == codec.encode_args(("x" * 300,))


@pytest.mark.asyncio
async def test_uncompressed_input_to_a_compressing_gate_closes_the_client(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = Harness(compress=True)
    proxy, transport = h.connect()
    h.sent.clear()
    with caplog.at_level(logging.WARNING, logger="goworld.gate"):
        proxy.data_received(call_frame())
        await asyncio.sleep(0)
    assert transport.closed
    assert sum(r.levelno >= logging.WARNING for r in caplog.records) == 1
    assert [e.msgtype for _, e in h.sent] == [MsgType.NOTIFY_CLIENT_DISCONNECTED]


@pytest.mark.asyncio
async def test_legacy_2018_dialect_numbers(caplog: pytest.LogCaptureFixture) -> None:
    h = Harness(dialect=Dialect.G2018)
    proxy, transport = h.connect()
    h.from_dispatcher(create_on_client(proxy, TARGET, is_player=True))
    h.sent.clear()
    call = call_frame(dialect=Dialect.G2018)
    assert call[4:6] == b"\x0c\x00"  # 12 on the wire
    sync = codec.encode(SyncPositionYawFromClient(TARGET, 1.0, 2.0, 3.0, 4.0), Dialect.G2018)
    assert sync[4:6] == b"\x0d\x00"  # 13 on the wire
    proxy.data_received(call + sync + frame(struct.pack("<H", 2004)))
    await asyncio.sleep(0)
    assert not transport.closed
    assert [(d, e.msgtype, e.entity_id, e.payload) for d, e in h.sent] == [
        (
            dispatcher_shard(TARGET, NUM_DISPATCHERS),
            MsgType.CALL_ENTITY_METHOD_FROM_CLIENT,
            TARGET,
            codec.encode_args(ARGS),
        )
    ]
    h.sent.clear()
    h.gate.flush_syncs()
    assert [(e.msgtype, e.payload) for _, e in h.sent] == [
        (MsgType.SYNC_POSITION_YAW_FROM_CLIENT, TARGET.encode() + struct.pack("<ffff", 1, 2, 3, 4))
    ]
    h.sent.clear()
    with caplog.at_level(logging.WARNING, logger="goworld.gate"):
        proxy.data_received(call_frame())  # 11 is not a 2018 message
        await asyncio.sleep(0)
    assert transport.closed
    assert sum(r.levelno >= logging.WARNING for r in caplog.records) == 1
    assert [e.msgtype for _, e in h.sent] == [MsgType.NOTIFY_CLIENT_DISCONNECTED]


# Every attribute message as the game builds it (goworld.entity.client.attr_body): msgtype and
# the fields after the path. The game always writes a top-level path as nil; a G2017 gate must
# send [] (0x90) instead, as GoWorld did in 2017; HEAD and G2018 gates forward nil (0xc0).
ATTR_CASES = [
    (MsgType.NOTIFY_MAP_ATTR_CHANGE_ON_CLIENT, ("chatroom", "lobby")),
    (MsgType.NOTIFY_MAP_ATTR_DEL_ON_CLIENT, ("chatroom",)),
    (MsgType.NOTIFY_LIST_ATTR_CHANGE_ON_CLIENT, (1, 2.5)),
    (MsgType.NOTIFY_LIST_ATTR_POP_ON_CLIENT, ()),
    (MsgType.NOTIFY_LIST_ATTR_APPEND_ON_CLIENT, ({"k": [1]},)),
    (MsgType.NOTIFY_MAP_ATTR_CLEAR_ON_CLIENT, ()),
]
PATH_DATA = 36  # u16 msgtype + H (18) + EntityID (16): the path's u32 length, then its msgpack


def test_attr_cases_cover_every_attribute_message() -> None:
    assert {t for t, _ in ATTR_CASES} == ATTR_PATH_TYPES


@pytest.mark.asyncio
@pytest.mark.parametrize("dialect", list(Dialect), ids=lambda d: d.name)
@pytest.mark.parametrize("msgtype,rest", ATTR_CASES, ids=lambda v: getattr(v, "name", ""))
@pytest.mark.parametrize(
    "path", [None, ["inner"], [0, "items", "bag"], []], ids=["top", "depth1", "depth3", "empty"]
)
async def test_attribute_paths_on_the_wire(
    dialect: Dialect, msgtype: MsgType, rest: tuple[Any, ...], path: list[Any] | None
) -> None:
    h = Harness(dialect=dialect)
    proxy, transport = h.connect()
    sent = client_packet(msgtype, proxy, attr_body(msgtype, TARGET, path, *rest))
    assert sent.payload[PATH_DATA + 4] == (0xC0 if path is None else 0x90 + len(path))
    h.from_dispatcher(sent)
    await asyncio.sleep(0)
    [payload] = transport.received()

    top_level_as_array = path is None and dialect is Dialect.G2017
    wire_path = [] if top_level_as_array else path
    # the bytes: only the one msgpack byte of a top-level path differs, and only for G2017
    assert len(payload) == len(sent.payload)
    if path is None:
        assert payload[PATH_DATA : PATH_DATA + 5] == b"\x01\x00\x00\x00" + (
            b"\x90" if dialect is Dialect.G2017 else b"\xc0"
        )
        assert payload[: PATH_DATA + 4] == sent.payload[: PATH_DATA + 4]
        assert payload[PATH_DATA + 5 :] == sent.payload[PATH_DATA + 5 :]
    else:
        assert payload == sent.payload
    # decoded with the codec: HEAD reading (server->client layouts are the same in every dialect)
    # and the gate's own dialect agree, and only the path differs from what the game sent
    for reader in (Dialect.HEAD, dialect):
        msg = codec.decode_payload(payload, reader)
        assert msgtype == type(msg).MSGTYPE
        assert msg.path == wire_path  # type: ignore[attr-defined]
        assert type(msg.path) is type(wire_path)  # type: ignore[attr-defined]
        assert dataclasses.replace(msg, path=path) == codec.decode_payload(sent.payload)  # type: ignore[type-var]
    # ... and it is what the codec writes for that dialect
    assert payload == codec.encode_payload(codec.decode_payload(sent.payload), dialect)


@pytest.mark.asyncio
@pytest.mark.parametrize("dialect", list(Dialect), ids=lambda d: d.name)
async def test_only_g2017_gates_look_at_attribute_paths(dialect: Dialect) -> None:
    h = Harness(dialect=dialect)
    # HEAD and G2018 gates route client-bound packets exactly as before (nothing extra to pay)
    expected = h.gate._to_client_g2017 if dialect is Dialect.G2017 else h.gate._to_client
    assert h.gate._client_bound == expected
    # a G2017 gate still handles the other client-bound types as every gate does
    proxy, transport = h.connect()
    h.from_dispatcher(create_on_client(proxy, OWNER, is_player=True))
    body = struct.pack("<I", 5) + b"Entry" + TARGET.encode("latin-1")
    h.from_dispatcher(client_packet(MsgType.DESTROY_ENTITY_ON_CLIENT, proxy, body))
    h.from_dispatcher(set_prop(proxy, "room", "lobby"))
    await asyncio.sleep(0)
    assert proxy.owner_eid == OWNER
    assert list(h.gate.filters.match("room", FilterOp.EQ, "lobby")) == [proxy.client_id]
    assert [codec.peek_msgtype(p) for p in transport.received()] == [1002, 1003]


@pytest.mark.asyncio
async def test_head_gate_rejects_the_legacy_heartbeat(caplog: pytest.LogCaptureFixture) -> None:
    h = Harness()
    proxy, transport = h.connect()
    with caplog.at_level(logging.WARNING, logger="goworld.gate"):
        proxy.data_received(frame(struct.pack("<H", 2004)))
        await asyncio.sleep(0)
    assert transport.closed


@pytest.mark.asyncio
async def test_close_all_closes_every_client_and_refuses_new_ones() -> None:
    h = Harness()
    clients = [h.connect() for _ in range(3)]
    h.gate.close_all()
    await asyncio.sleep(0)
    assert all(t.closed for _, t in clients)
    assert h.gate.clients == {}
    late, late_transport = h.connect()
    assert late_transport.closed
    assert late.client_id not in h.gate.clients


@pytest.mark.asyncio
async def test_close_idle_closes_only_clients_silent_for_too_long(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = Harness()
    (idle, idle_t), (busy, busy_t) = h.connect(), h.connect()
    idle.heartbeat = 100.0
    busy.heartbeat = 100.0
    busy.data_received(codec.encode(HeartbeatFromClient()))  # refreshes to "now"
    now = busy.heartbeat + 1.0
    with caplog.at_level(logging.WARNING, logger="goworld.gate"):
        assert h.gate.close_idle(30.0, now=now) == 1
        await asyncio.sleep(0)
    assert idle_t.closed and not busy_t.closed
    assert sum(r.levelno >= logging.WARNING for r in caplog.records) == 1
    assert list(h.gate.clients) == [busy.client_id]


@pytest.mark.asyncio
async def test_a_client_that_stops_reading_is_dropped_before_the_gate_buffers_too_much(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from gate.client_proxy import MAX_PENDING_OUTPUT

    class StuckTransport(FakeTransport):
        """The peer reads nothing: everything written stays in the send buffer."""

        def get_write_buffer_size(self) -> int:
            return sum(len(w) for w in self.writes)

    h = Harness()
    stuck = h.gate.new_proxy("tcp")
    transport = StuckTransport()
    transport.protocol = stuck
    stuck.connection_made(transport)
    other, other_transport = h.connect()
    big = b"x" * (4 * 1024 * 1024)
    with caplog.at_level(logging.WARNING, logger="goworld.gate"):
        for _ in range(MAX_PENDING_OUTPUT // len(big) + 2):
            for proxy in (stuck, other):
                h.from_dispatcher(client_packet(1009, proxy, big))
            await asyncio.sleep(0)
            other_transport.writes.clear()  # this client reads what it gets
    await asyncio.sleep(0)
    assert transport.closed and not other_transport.closed
    assert [r.getMessage() for r in caplog.records if "not reading" in r.getMessage()] != []
    assert sum(len(w) for w in transport.writes) <= MAX_PENDING_OUTPUT + 2 * len(big)


def test_a_dispatchers_drain_gate_reaches_the_process_with_the_dispatchers_id() -> None:
    h = Harness()
    h.from_dispatcher(Envelope(msgtype=MsgType.DRAIN_GATE, gate_id=GATE_ID), dispatcher_id=2)  # nobody listens yet
    asked: list[int] = []
    h.gate.drain_requested = asked.append
    h.from_dispatcher(Envelope(msgtype=MsgType.DRAIN_GATE, gate_id=GATE_ID), dispatcher_id=2)
    assert asked == [2] and h.sent == []


@pytest.mark.asyncio
async def test_a_big_valid_call_is_forwarded_as_it_came() -> None:
    """Arguments over CHECK_BY_DECODING take the skip path: a valid one goes through."""
    h = Harness()
    proxy, transport = h.connect()
    h.sent.clear()
    args = (["x" * 100] * 50, {"k": list(range(100))})
    proxy.data_received(call_frame(TARGET, "Save", args))
    await asyncio.sleep(0)
    assert not transport.closed
    ((_, env),) = h.sent
    assert env.name == "Save" and codec.decode_args(env.payload) == (args, len(env.payload))
    assert len(env.payload) > codec.CHECK_BY_DECODING
