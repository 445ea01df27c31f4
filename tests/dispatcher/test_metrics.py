"""The dispatcher's figures (dispatcher/metrics.py): routing counters, games by state, queue
depths and bytes per peer, held messages per queue, paused clients."""

from __future__ import annotations

import asyncio

import pytest

from dispatcher.metrics import DispatcherFigures
from dispatcher.server import StreamPeer
from goworld.cluster.envelopes import Envelope
from goworld.cluster.streams import ENVELOPE_OVERHEAD, BatchWriter
from goworld.metrics import Exporter
from goworld.proto.msgtypes import MsgType
from goworld.testing import Scraped, parse_metrics
from tests.dispatcher.test_service import E1, E2, E3, _client_call, call, cluster, notify_create


def scrape(figures: DispatcherFigures) -> Scraped:
    return parse_metrics(Exporter("dispatcher", 1, figures=figures).metrics_text().decode())


def test_routing_queues_and_paused_clients() -> None:
    h = cluster(2, pause_backlog_bytes=1000)
    h.game(1, notify_create(E1))
    h.game(2, notify_create(E2))
    h.games[1].backlog_bytes = 5000  # game1 is behind: its client gets paused
    h.gate(1, _client_call(E1, 1))
    h.gate(1, _client_call(E2, 2))
    h.game(2, call(E3, "Early", b"x" * 100))  # E3 is not known yet: held
    h.game(2, Envelope(msgtype=MsgType.START_FREEZE_GAME, game_id=2))
    h.game(1, call(E2, "ToFrozen", b"y" * 50))  # game2 is frozen: queued for it
    figures = DispatcherFigures(h.svc)
    got = scrape(figures)
    assert got["goworld_dispatcher_entities"][()] == 2
    assert got["goworld_dispatcher_games"] == {
        (("state", "up"),): 1, (("state", "frozen"),): 1, (("state", "hung"),): 0,
        (("state", "away"),): 0, (("state", "down"),): 0,
    }
    assert got["goworld_dispatcher_gates"][()] == 1
    assert got["goworld_dispatcher_routed_messages_total"][()] == h.svc.stats["routed"] >= 2
    assert got["goworld_dispatcher_paused_total"][()] == 1
    assert got["goworld_dispatcher_paused_clients"][()] == 1
    held = got["goworld_dispatcher_held_messages"]
    assert held[(("queue", "unknown_entity"),)] == 1
    assert held[(("queue", "frozen_game"),)] == 1
    assert held[(("queue", "blocked_entity"),)] == 0
    size = got["goworld_dispatcher_held_bytes"]
    assert size[(("queue", "unknown_entity"),)] == 100 + ENVELOPE_OVERHEAD
    assert size[(("queue", "frozen_game"),)] == 50 + ENVELOPE_OVERHEAD
    backlog = got["goworld_dispatcher_peer_backlog_bytes"]
    assert backlog[(("peer", "game1"),)] == 5000 and backlog[(("peer", "gate1"),)] == 0
    summary = figures.summary()
    assert (summary["clients"], summary["entities"], summary["games"], summary["gates"]) == (
        None, 2, [1, 2], [1]
    )


@pytest.mark.asyncio
async def test_stream_peers_count_what_they_sent_and_received() -> None:
    written: list[object] = []

    async def write(batch: object) -> None:
        written.append(batch)

    writer = BatchWriter(write)
    task = asyncio.create_task(writer.run())
    peer = StreamPeer("game1", writer, task)
    h = cluster(0, 0)
    h.svc.game_connected(1, peer, Envelope(msgtype=MsgType.SET_GAME_ID, game_id=1, payload=b"\x80"))
    peer.received += 3
    writer.send(Envelope(msgtype=MsgType.CALL_ENTITY_METHOD, payload=b"z" * 10))
    await asyncio.sleep(0.01)
    got = scrape(DispatcherFigures(h.svc))
    sent = got["goworld_dispatcher_peer_sent_messages_total"][(("peer", "game1"),)]
    assert sent == writer.messages_sent >= 2  # the ack and the call
    assert got["goworld_dispatcher_peer_sent_bytes_total"][(("peer", "game1"),)] == writer.bytes_sent > 10
    assert got["goworld_dispatcher_peer_received_messages_total"][(("peer", "game1"),)] == 3
    writer.close()
    await task


def test_a_game_whose_stream_broke_is_away_until_its_grace_ends() -> None:
    h = cluster(2, game_reconnect_grace=5.0)
    h.svc.game_disconnected(2, h.games[2])
    states = scrape(DispatcherFigures(h.svc))["goworld_dispatcher_games"]
    assert states[(("state", "away"),)] == 1 and states[(("state", "up"),)] == 1
    h.clock.advance(5)
    h.svc.tick()
    states = scrape(DispatcherFigures(h.svc))["goworld_dispatcher_games"]
    assert states[(("state", "away"),)] == 0 and states[(("state", "down"),)] == 1
