"""Issue 15 at the gate: ENTITIES_LOST closes the clients whose player died with its game, and a
client that announced notices (a feature word in its heartbeat) is told why first; GoWorld's
clients (a bare heartbeat, or none) see only the close."""

from __future__ import annotations

import asyncio
import struct

import pytest

from gate.client_proxy import ClientProxy
from goworld.cluster.envelopes import Envelope
from goworld.proto import codec
from goworld.proto.dialect import Dialect
from goworld.proto.framing import frame
from goworld.proto.messages import HeartbeatFromClient
from goworld.proto.msgtypes import FEATURE_NOTICES, MsgType
from goworld.proto.snappy_stream import SnappyStreamEncoder
from tests.gate.test_service import FakeTransport, Harness, create_on_client

OWNER_A = "AvatarOnGame1__A"
OWNER_B = "AvatarOnGame2__B"


def announce(proxy: ClientProxy, dialect: Dialect = Dialect.HEAD, features: int = FEATURE_NOTICES) -> None:
    msgtype = dialect.type_to_wire.get(MsgType.HEARTBEAT_FROM_CLIENT, MsgType.HEARTBEAT_FROM_CLIENT)
    proxy.data_received(frame(struct.pack("<HI", msgtype, features)))


def lost(game_id: int, *eids: str) -> Envelope:
    return Envelope(msgtype=MsgType.ENTITIES_LOST, game_id=game_id, payload="".join(eids).encode("latin-1"))


def notices(transport: FakeTransport, compressed: bool = False) -> list[tuple[str, str]]:
    out = []
    for payload in transport.received(compressed):
        if codec.peek_msgtype(payload) == MsgType.NOTICE_ON_CLIENT:
            code, pos = codec.read_varstr(payload, 2)
            text, _ = codec.read_varstr(payload, pos)
            out.append((code, text))
    return out


@pytest.mark.asyncio
async def test_heartbeat_features_mark_a_client_that_understands_notices() -> None:
    h = Harness()
    ours, _ = h.connect()
    goworlds, _ = h.connect()
    announce(ours)
    goworlds.data_received(codec.encode(HeartbeatFromClient()))
    assert ours.notices and not goworlds.notices
    assert not ours.closed and not goworlds.closed
    announce(ours, features=0)  # a later heartbeat may say otherwise
    assert not ours.notices


@pytest.mark.asyncio
async def test_legacy_heartbeats_may_announce_notices_too() -> None:
    h = Harness(dialect=Dialect.G2018)
    proxy, _ = h.connect()
    announce(proxy, Dialect.G2018)
    assert proxy.notices and not proxy.closed


@pytest.mark.asyncio
async def test_entities_lost_close_the_clients_whose_player_died() -> None:
    h = Harness()
    a, ta = h.connect()
    b, tb = h.connect()
    goworlds, tg = h.connect()
    waiting, tw = h.connect()  # still owned by its boot entity
    announce(a)
    announce(b)
    h.from_dispatcher(create_on_client(a, OWNER_A, is_player=True))
    h.from_dispatcher(create_on_client(b, OWNER_B, is_player=True))
    h.from_dispatcher(create_on_client(goworlds, "AvatarOnGame1__G", is_player=True))
    await asyncio.sleep(0)
    before = len(ta.writes)
    h.from_dispatcher(lost(1, OWNER_A, "AvatarOnGame1__G", waiting.boot_eid, "SomeMonster_0001"))
    assert ta.closed and tg.closed and tw.closed and not tb.closed
    [(code, text)] = notices(ta)
    assert code == "game_lost" and "game1" in text
    assert len(ta.writes) == before + 1  # the notice, written before the close
    assert notices(tg) == [] and notices(tw) == []  # GoWorld's clients: only the close
    await asyncio.sleep(0)
    gone = {e.entity_id for _, e in h.forwarded(MsgType.NOTIFY_CLIENT_DISCONNECTED)}
    assert gone == {OWNER_A, "AvatarOnGame1__G", waiting.boot_eid}
    assert set(h.gate.clients) == {b.client_id}


@pytest.mark.asyncio
async def test_what_was_queued_for_the_client_goes_out_before_the_notice() -> None:
    h = Harness()
    a, ta = h.connect()
    announce(a)
    h.from_dispatcher(create_on_client(a, OWNER_A, is_player=True))  # queued, not flushed yet
    h.from_dispatcher(lost(1, OWNER_A))
    types = [codec.peek_msgtype(p) for p in ta.received()]
    assert types == [MsgType.CREATE_ENTITY_ON_CLIENT, MsgType.NOTICE_ON_CLIENT]


@pytest.mark.asyncio
async def test_a_compressed_client_gets_its_notice_through_snappy() -> None:
    h = Harness(compress=True)
    a, ta = h.connect()
    enc = SnappyStreamEncoder()
    a.data_received(enc.encode(frame(struct.pack("<HI", MsgType.HEARTBEAT_FROM_CLIENT, FEATURE_NOTICES))))
    assert a.notices
    h.from_dispatcher(lost(3, a.boot_eid))
    assert [c for c, _ in notices(ta, compressed=True)] == ["game_lost"]


@pytest.mark.asyncio
async def test_a_kick_tells_a_client_that_understands_notices_why() -> None:
    h = Harness()
    a, ta = h.connect()
    g, tg = h.connect()
    announce(a)
    for proxy in (a, g):
        h.from_dispatcher(Envelope(msgtype=MsgType.KICK_CLIENT, client_id=proxy.client_id, name="no game server"))
    assert ta.closed and tg.closed
    assert notices(ta) == [("kicked", "no game server")]
    assert notices(tg) == []


@pytest.mark.asyncio
async def test_the_gates_own_closes_tell_a_client_that_understands_notices() -> None:
    h = Harness()
    a, ta = h.connect()
    announce(a)
    a.data_received(struct.pack("<IH", 2, 999))  # an unknown message type
    assert ta.closed
    [(code, text)] = notices(ta)
    assert code == "bad_packet" and "unknown message type 999" in text


@pytest.mark.asyncio
async def test_a_client_that_does_not_read_is_closed_without_a_notice() -> None:
    h = Harness()
    a, ta = h.connect()
    announce(a)
    ta.get_write_buffer_size = lambda: 1 << 40  # type: ignore[attr-defined]
    a.send_payload(b"\x09\x04" + b"x" * 18)
    await asyncio.sleep(0)
    assert ta.closed
    assert notices(ta) == []
