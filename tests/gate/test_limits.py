"""The gate's bounds on one client and one address (issue 14), driven with fake transports and
a fake clock: token buckets and pausing, the close of a persistent flooder, the partial packet
budget and timeouts, the address book, position-sync ownership and the log summaries."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterator
from typing import Any

import pytest

import gate.client_proxy as client_proxy
from gate.client_proxy import ClientProxy
from gate.limits import AddressBook, GateLimits, Summary, refill
from gate.service import GateService
from goworld.cluster.envelopes import Envelope
from goworld.proto import codec
from goworld.proto.framing import frame
from goworld.proto.messages import (
    CreateEntityOnClient,
    HeartbeatFromClient,
    SyncPositionYawFromClient,
)
from goworld.proto.msgtypes import MsgType

GATE_ID = 3
HEARTBEAT = codec.encode(HeartbeatFromClient())


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    c = Clock()
    monkeypatch.setattr(client_proxy, "_monotonic", c)
    yield c


class Transport:
    """A transport that records pause/resume and reports close as asyncio does (later)."""

    def __init__(self, peer: tuple[str, int] = ("127.0.0.1", 5555)) -> None:
        self.peer = peer
        self.closed = False
        self.reading = True
        self.pauses = 0
        self.protocol: ClientProxy | None = None

    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            assert self.protocol is not None
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading = False
        self.pauses += 1

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.peer if name == "peername" else default


class Gate:
    def __init__(self, **limits: Any) -> None:
        self.sent: list[Envelope] = []
        self.gate = GateService(
            GATE_ID,
            num_dispatchers=1,
            send=lambda did, env: self.sent.append(env),
            limits=dataclasses.replace(GateLimits(), **limits),
        )

    def connect(self, ip: str = "127.0.0.1") -> tuple[ClientProxy, Transport]:
        proxy = self.gate.new_proxy("tcp")
        transport = Transport((ip, 40000 + len(self.gate.clients)))
        transport.protocol = proxy
        proxy.connection_made(transport)
        return proxy, transport

    def calls(self) -> int:
        return sum(e.msgtype == MsgType.CALL_ENTITY_METHOD_FROM_CLIENT for e in self.sent)


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# ---- token buckets -----------------------------------------------------------------------


def test_refill_caps_at_the_burst_and_keeps_a_debt() -> None:
    assert refill(-5.0, 10.0, 20.0, 0.2) == -3.0
    assert refill(15.0, 10.0, 20.0, 5.0) == 20.0


@pytest.mark.asyncio
async def test_a_burst_over_the_packet_bucket_pauses_reading_and_handles_every_packet(
    clock: Clock,
) -> None:
    g = Gate(max_packets_per_sec=1000, packets_burst=5)
    proxy, transport = g.connect()
    proxy.data_received(HEARTBEAT * 20)  # 15 over the burst: 15 ms of debt
    assert not transport.reading and proxy.paused
    assert not transport.closed
    await asyncio.sleep(0.3)  # the resume timer (15 ms) has fired
    assert transport.reading and not proxy.paused
    clock.now += 1.0  # an honest pause: the bucket refilled, the client is under the limit
    proxy.data_received(HEARTBEAT)
    assert transport.reading and not transport.closed


@pytest.mark.asyncio
async def test_the_bytes_bucket_counts_bytes_not_packets(clock: Clock) -> None:
    g = Gate(max_bytes_per_sec=1000, bytes_burst=100, max_packets_per_sec=0)
    proxy, transport = g.connect()
    proxy.data_received(frame(b"\xd1\x07" + b"x" * 50))  # 56 bytes: under the burst
    assert transport.reading
    proxy.data_received(frame(b"\xd1\x07" + b"x" * 50))  # 112 in all: 12 bytes of debt
    assert not transport.reading
    assert not transport.closed


@pytest.mark.asyncio
async def test_a_client_over_the_limit_for_long_is_closed_with_one_line(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    g = Gate(max_packets_per_sec=100, packets_burst=10, over_limit_close_after=5.0)
    proxy, transport = g.connect()
    caplog.set_level(logging.WARNING, "goworld.gate")
    for _ in range(6):  # keeps sending 1,000 packets/s: still over after 5 s
        proxy.data_received(HEARTBEAT * 1000)
        clock.now += 1.0
    proxy.data_received(HEARTBEAT * 1000)
    assert transport.closed
    assert [m for m in warnings(caplog) if "rate limit" in m] == [warnings(caplog)[0]]
    assert len(warnings(caplog)) == 1


@pytest.mark.asyncio
async def test_an_honest_client_under_the_limit_is_never_paused(clock: Clock) -> None:
    g = Gate(max_packets_per_sec=50, packets_burst=100)
    proxy, transport = g.connect()
    for _ in range(600):  # 10 packets every 0.25 s = 40/s for 150 s
        proxy.data_received(HEARTBEAT * 10)
        clock.now += 0.25
    assert transport.pauses == 0 and not transport.closed


@pytest.mark.asyncio
async def test_rate_limits_off(clock: Clock) -> None:
    g = Gate(max_packets_per_sec=0, max_bytes_per_sec=0)
    proxy, transport = g.connect()
    for _ in range(20):
        proxy.data_received(HEARTBEAT * 10_000)
        clock.now += 1.0
    assert transport.pauses == 0 and not transport.closed


# ---- partial packets -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_partial_packets_have_a_gate_wide_budget(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    g = Gate(partial_frame_budget=1000, max_bytes_per_sec=0)
    a, ta = g.connect()
    b, tb = g.connect()
    header = (100_000).to_bytes(4, "little")
    a.data_received(header + b"\xd1\x07" + b"a" * 598)  # a heartbeat with a long body
    assert g.gate.partial_bytes == 604 and not ta.closed
    b.data_received(header + b"b" * 300)  # 604 + 304 = 908: still under
    assert g.gate.partial_bytes == 908 and not tb.closed
    b.data_received(b"b" * 200)  # 1108: over; b is the one whose packet took it over
    assert tb.closed and not ta.closed
    assert g.gate.partial_bytes == 604
    assert any("partial_frame_budget" in m for m in warnings(caplog))
    a.data_received(b"a" * (100_000 - 600) + HEARTBEAT)  # a's packet completes
    assert g.gate.partial_bytes == 0 and not ta.closed
    await asyncio.sleep(0)
    c, tc = g.connect()
    c.data_received(header + b"c" * 900)
    assert not tc.closed  # the budget was given back


@pytest.mark.asyncio
async def test_closing_a_client_gives_its_partial_bytes_back(clock: Clock) -> None:
    g = Gate()
    proxy, transport = g.connect()
    proxy.data_received((5000).to_bytes(4, "little") + b"x" * 100)
    assert g.gate.partial_bytes == 104
    transport.close()
    await asyncio.sleep(0)
    assert g.gate.partial_bytes == 0


@pytest.mark.asyncio
async def test_sweep_closes_a_partial_packet_that_stalls_not_a_busy_stream(clock: Clock) -> None:
    g = Gate(frame_timeout=30.0, idle_timeout=0)
    stalled, ts = g.connect()
    busy, tb = g.connect()
    stalled.data_received(HEARTBEAT + (5000).to_bytes(4, "little") + b"x")
    packet = frame(b"\xd1\x07" + b"y" * 10)
    # busy streams packets whose reads always end inside the next packet
    busy.data_received(packet + packet[:5])
    for _ in range(40):
        clock.now += 1.0
        busy.data_received(packet[5:] + packet[:5])
        stalled.data_received(b"x")  # trickles bytes but never completes
        g.gate.sweep(clock.now)
    await asyncio.sleep(0)
    assert ts.closed
    assert not tb.closed


@pytest.mark.asyncio
async def test_sweep_closes_a_connection_without_a_first_packet(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    g = Gate(handshake_timeout=10.0, idle_timeout=0)
    silent, ts = g.connect()
    spoke, tp = g.connect()
    spoke.data_received(HEARTBEAT)
    clock.now += 5.0
    assert g.gate.sweep(clock.now) == 0
    clock.now += 6.0
    assert g.gate.sweep(clock.now) == 1
    assert ts.closed and not tp.closed
    assert any("handshake_timeout" in m for m in warnings(caplog))


@pytest.mark.asyncio
async def test_sweep_closes_idle_clients_and_heartbeats_keep_them(clock: Clock) -> None:
    g = Gate(idle_timeout=120.0)
    idle, ti = g.connect()
    lively, tl = g.connect()
    idle.data_received(HEARTBEAT)
    for _ in range(13):
        clock.now += 10.0
        lively.data_received(HEARTBEAT)
        g.gate.sweep(clock.now)
    assert ti.closed and not tl.closed


def test_idle_timeout_is_on_by_default() -> None:
    assert GateLimits().idle_timeout == 120.0


# ---- address book ------------------------------------------------------------------------


def test_address_book_counts_per_address_and_in_total() -> None:
    book = AddressBook(max_total=4, max_per_ip=2)
    assert book.admit("10.0.0.1") is None
    assert book.admit("10.0.0.1") is None
    assert "max_connections_per_ip" in (book.admit("10.0.0.1") or "")
    assert book.admit("10.0.0.2") is None
    assert book.admit("10.0.0.3") is None
    assert "max_clients" in (book.admit("10.0.0.4") or "")
    book.release("10.0.0.1")
    assert book.count("10.0.0.1") == 1 and book.total == 3
    assert book.admit("10.0.0.1") is None
    book.release("never.seen")  # harmless
    assert book.total == 4


@pytest.mark.asyncio
async def test_kcp_like_connections_are_counted_when_the_proxy_connects(
    caplog: pytest.LogCaptureFixture,
) -> None:
    g = Gate(max_connections_per_ip=2)
    caplog.set_level(logging.WARNING, "goworld.gate")
    kept = [g.connect("127.0.0.2") for _ in range(2)]
    refused = [g.connect("127.0.0.2") for _ in range(50)]
    honest, th = g.connect("127.0.0.1")
    assert all(t.closed for _, t in refused)
    assert not any(t.closed for _, t in kept) and not th.closed
    assert len(g.gate.clients) == 3
    assert len([m for m in warnings(caplog) if "refused: max_connections_per_ip" in m]) == 1
    kept[0][1].close()
    await asyncio.sleep(0)
    again, ta = g.connect("127.0.0.2")
    assert not ta.closed


# ---- ownership -----------------------------------------------------------------------------


def _create_player(proxy: ClientProxy, eid: str) -> Envelope:
    payload = codec.encode_payload(
        CreateEntityOnClient(GATE_ID, proxy.client_id, True, eid, "Avatar", 0, 0, 0, 0, {})
    )
    return Envelope(
        msgtype=MsgType.CREATE_ENTITY_ON_CLIENT, gate_id=GATE_ID, client_id=proxy.client_id,
        payload=payload,
    )


@pytest.mark.asyncio
async def test_a_sync_of_an_entity_the_client_does_not_own_is_dropped_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    g = Gate(max_packets_per_sec=0)
    attacker, ta = g.connect()
    victim, _ = g.connect()
    g.gate.handle_dispatcher_message(1, _create_player(victim, "VictimEntity0001"))
    g.gate.handle_dispatcher_message(1, _create_player(attacker, "AttackerEntity01"))
    caplog.set_level(logging.WARNING, "goworld.gate")
    bad = codec.encode(SyncPositionYawFromClient("VictimEntity0001", 9.0, 9.0, 9.0, 9.0))
    attacker.data_received(bad * 1000)
    good = codec.encode(SyncPositionYawFromClient("AttackerEntity01", 1.0, 2.0, 3.0, 4.0))
    attacker.data_received(good)
    g.sent.clear()
    g.gate.flush_syncs()
    [env] = g.sent
    assert env.payload[:16] == b"AttackerEntity01"  # only the owned record went on
    assert not ta.closed and attacker.refused_syncs == 1000
    assert len(warnings(caplog)) == 1


@pytest.mark.asyncio
async def test_a_stale_sync_during_a_handover_is_dropped_without_closing() -> None:
    g = Gate()
    proxy, transport = g.connect()
    g.gate.handle_dispatcher_message(1, _create_player(proxy, "OldPlayer0000001"))
    g.gate.handle_dispatcher_message(1, _create_player(proxy, "NewPlayer0000001"))
    proxy.data_received(codec.encode(SyncPositionYawFromClient("OldPlayer0000001", 1, 2, 3, 4)))
    proxy.data_received(codec.encode(SyncPositionYawFromClient("NewPlayer0000001", 1, 2, 3, 4)))
    g.sent.clear()
    g.gate.flush_syncs()
    assert [e.payload[:16] for e in g.sent] == [b"NewPlayer0000001"]
    await asyncio.sleep(0)
    assert not transport.closed


# ---- summaries -------------------------------------------------------------------------------


def test_summary_writes_the_first_event_then_one_count_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    log = logging.getLogger("test.summary")
    summary = Summary(log, interval=10.0, clock=clock)
    caplog.set_level(logging.WARNING, "test.summary")
    for i in range(10_000):
        summary.event("connection refused", f"from 10.0.0.{i % 7}", f"10.0.0.{i % 7}")
    summary.event("other kind", "x")
    assert len(caplog.records) == 2
    clock.now += 5.0
    summary.flush()
    assert len(caplog.records) == 2  # the interval is not over
    clock.now += 5.0
    summary.flush()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert "9999 more" in lines[2] and "7 source(s)" in lines[2]
    summary.event("connection refused", "again")  # a new interval: logged at once
    assert len(caplog.records) == 4
    summary.event("connection refused", "and again")
    summary.flush(force=True)  # at exit: the counts so far
    assert len(caplog.records) == 5 and "1 more" in caplog.records[-1].getMessage()


# ---- the cluster's requests: back-pressure and kicks ------------------------------------------


def _ids(*proxies: ClientProxy) -> bytes:
    return b"".join(p.client_id.encode("latin-1") for p in proxies)


@pytest.mark.asyncio
async def test_pause_and_resume_clients_from_the_dispatcher(clock: Clock) -> None:
    g = Gate(max_packets_per_sec=1000, packets_burst=5)
    a, ta = g.connect()
    b, tb = g.connect()
    c, tc = g.connect()
    g.gate.handle_dispatcher_message(1, Envelope(msgtype=MsgType.PAUSE_CLIENTS, payload=_ids(a, b)))
    assert not ta.reading and not tb.reading and tc.reading
    # a rate-limit pause that ends while the client is held leaves it paused
    a.data_received(HEARTBEAT * 20)
    await asyncio.sleep(0.2)
    assert not ta.reading and a.paused
    g.gate.handle_dispatcher_message(1, Envelope(msgtype=MsgType.RESUME_CLIENTS, payload=_ids(a, b)))
    assert ta.reading and tb.reading and not a.paused
    # held during a rate-limit pause: the resume waits for the timer
    b.data_received(HEARTBEAT * 100)  # 95 over: 95 ms
    g.gate.handle_dispatcher_message(1, Envelope(msgtype=MsgType.PAUSE_CLIENTS, payload=_ids(b)))
    g.gate.handle_dispatcher_message(1, Envelope(msgtype=MsgType.RESUME_CLIENTS, payload=_ids(b)))
    assert not tb.reading
    await asyncio.sleep(0.3)
    assert tb.reading
    assert not (ta.closed or tb.closed or tc.closed)


@pytest.mark.asyncio
async def test_kick_client_closes_that_client_with_the_games_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    g = Gate()
    a, ta = g.connect()
    b, tb = g.connect()
    caplog.set_level(logging.WARNING, "goworld.gate")
    kick = Envelope(msgtype=MsgType.KICK_CLIENT, client_id=a.client_id, name="refused calls")
    g.gate.handle_dispatcher_message(1, kick)
    assert ta.closed and not tb.closed
    assert any("kicked: refused calls" in m for m in warnings(caplog))
    await asyncio.sleep(0)
    g.gate.handle_dispatcher_message(1, kick)  # already gone: nothing
    assert [e.msgtype for e in g.sent].count(MsgType.NOTIFY_CLIENT_DISCONNECTED) == 1


@pytest.mark.asyncio
async def test_a_client_the_gate_does_not_read_is_not_closed_for_its_silence(clock: Clock) -> None:
    g = Gate(idle_timeout=120.0, frame_timeout=30.0)
    held, th = g.connect()
    held.data_received(HEARTBEAT + (1000).to_bytes(4, "little"))  # a partial packet, too
    g.gate.handle_dispatcher_message(1, Envelope(msgtype=MsgType.PAUSE_CLIENTS, payload=_ids(held)))
    clock.now += 600.0
    assert g.gate.sweep(clock.now) == 0 and not th.closed
    g.gate.handle_dispatcher_message(1, Envelope(msgtype=MsgType.RESUME_CLIENTS, payload=_ids(held)))
    assert g.gate.sweep(clock.now) == 0  # its clocks restart when the gate reads it again
    clock.now += 31.0
    assert g.gate.sweep(clock.now) == 1 and th.closed  # the partial packet is still stuck


@pytest.mark.asyncio
async def test_a_closed_client_frees_its_partial_packet_at_once(clock: Clock) -> None:
    g = Gate(max_bytes_per_sec=0)
    proxy, transport = g.connect()
    proxy.data_received((10_000_000).to_bytes(4, "little") + bytes(1_000_000))
    proxy.abort("test")
    # still referenced (by its transport, until the loop reports the loss), but its bytes are gone
    assert proxy._framer.buffered == 0 and g.gate.partial_bytes == 0


def test_ipv6_addresses_count_per_64_and_mapped_ipv4_as_ipv4() -> None:
    from gate.limits import address_key

    assert address_key("10.1.2.3") == "10.1.2.3"
    assert address_key("::ffff:10.1.2.3") == "10.1.2.3"
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::9")
    assert address_key("2001:db8:1:2::1") != address_key("2001:db8:1:3::1")
    book = AddressBook(max_total=0, max_per_ip=2)
    assert book.admit("2001:db8::1") is None and book.admit("2001:db8::2") is None
    assert book.admit("2001:db8::3") is not None  # same /64
    assert book.admit("::ffff:10.0.0.1") is None and book.count("10.0.0.1") == 1
    book.release("2001:db8::1")
    assert book.count("2001:db8::7") == 1


@pytest.mark.asyncio
async def test_bursts_over_the_limit_far_apart_are_not_one_long_excess(clock: Clock) -> None:
    g = Gate(max_packets_per_sec=100, packets_burst=200, over_limit_close_after=5.0)
    proxy, transport = g.connect()
    for _ in range(5):  # 300 packets at once every 10 s: 30/s on average
        proxy.data_received(HEARTBEAT * 300)
        assert not transport.reading  # each burst is over the limit: paused
        clock.now += 10.0
        await asyncio.sleep(0.02)
    assert not transport.closed


@pytest.mark.asyncio
async def test_a_link_behind_holds_every_client_and_the_reasons_add_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    g = Gate(link_pause_backlog_bytes=1000)
    a, ta = g.connect()
    b, tb = g.connect()
    caplog.set_level(logging.INFO, "goworld.gate")
    g.gate.link_backlog(999)
    assert ta.reading and tb.reading
    g.gate.link_backlog(1000)
    assert not ta.reading and not tb.reading
    c, tc = g.connect()  # a newcomer while the link is behind is held too
    assert not tc.reading
    # the dispatcher also pauses a: the link catching up does not release it
    g.gate.handle_dispatcher_message(1, Envelope(msgtype=MsgType.PAUSE_CLIENTS, payload=_ids(a)))
    g.gate.link_backlog(500)  # between a quarter and the limit: still held
    assert not tb.reading
    g.gate.link_backlog(249)
    assert tb.reading and tc.reading and not ta.reading
    g.gate.handle_dispatcher_message(1, Envelope(msgtype=MsgType.RESUME_CLIENTS, payload=_ids(a)))
    assert ta.reading
    logged = [r.getMessage() for r in caplog.records]
    assert sum("wait for a dispatcher" in m for m in logged) == 1
    assert sum("caught up" in m for m in logged) == 1


def test_link_back_pressure_can_be_turned_off() -> None:
    g = Gate(link_pause_backlog_bytes=0)
    g.gate.link_backlog(1 << 40)
    assert not g.gate.link_held
