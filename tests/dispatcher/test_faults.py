"""Issue 15 in the dispatcher: a dead game (its players' gates are told which entities were
lost; messages to them are dropped, not held) and a hung game (unhealthy after
``game_hang_timeout``: new entities and clients go elsewhere, or wait, bounded)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from dispatcher.service import BOOT_WAIT_LIMIT, LOST_ENTITY_SECONDS
from goworld.cluster.envelopes import Envelope
from goworld.proto.msgtypes import ENTITIES_LOST_CHUNK, MsgType
from tests.dispatcher.test_service import (
    E1,
    E2,
    E3,
    FakePeer,
    Harness,
    call,
    cid,
    cluster,
    eid,
    hello,
    notify_create,
)


def _client_connected(n: int, boot: str) -> Envelope:
    return Envelope(msgtype=MsgType.NOTIFY_CLIENT_CONNECTED, client_id=cid(n), entity_id=boot)


def _lost_ids(peer: FakePeer) -> list[tuple[int, list[str]]]:
    out = []
    for env in peer.of_type(MsgType.ENTITIES_LOST):
        data = env.payload
        out.append((env.game_id, [data[i : i + 16].decode("latin-1") for i in range(0, len(data), 16)]))
    return out


def _lbc(cpu: float = 1.0) -> Envelope:
    from goworld.cluster.envelopes import pack

    return Envelope(msgtype=MsgType.GAME_LBC_INFO, payload=pack(cpu))


# ---- a dead game ---------------------------------------------------------------------------


def test_a_dead_games_entities_are_told_to_every_gate() -> None:
    h = cluster(2, n_gates=2)
    h.game(1, notify_create(E1))
    h.game(1, notify_create(E2))
    h.game(2, notify_create(E3))
    h.svc.game_disconnected(1, h.games[1])
    for gate in h.gates.values():
        [(game_id, ids)] = _lost_ids(gate)
        assert game_id == 1 and sorted(ids) == [E1, E2]
    assert E3 in h.svc.entities and E1 not in h.svc.entities


def test_a_game_with_no_entities_here_tells_the_gates_nothing() -> None:
    h = cluster(2)
    h.svc.game_disconnected(1, h.games[1])
    assert h.gates[1].of_type(MsgType.ENTITIES_LOST) == []


def test_the_lost_ids_come_in_chunks() -> None:
    h = cluster(2)
    n = ENTITIES_LOST_CHUNK * 2 + 5
    for i in range(n):
        h.game(1, notify_create(eid(i)))
    h.svc.game_disconnected(1, h.games[1])
    chunks = _lost_ids(h.gates[1])
    assert [len(ids) for _, ids in chunks] == [ENTITIES_LOST_CHUNK, ENTITIES_LOST_CHUNK, 5]
    assert sorted(e for _, ids in chunks for e in ids) == sorted(eid(i) for i in range(n))


def test_a_boot_entity_not_created_yet_is_lost_with_its_game() -> None:
    h = cluster(1)
    h.gate(1, _client_connected(1, E1))
    assert h.games[1].of_type(MsgType.NOTIFY_CLIENT_CONNECTED)
    h.svc.game_disconnected(1, h.games[1])
    assert _lost_ids(h.gates[1]) == [(1, [E1])]


def test_a_frozen_game_that_disconnects_is_not_dead() -> None:
    h = cluster(1)
    h.game(1, notify_create(E1))
    h.game(1, Envelope(msgtype=MsgType.START_FREEZE_GAME, game_id=1))
    h.svc.game_disconnected(1, h.games[1])
    assert h.gates[1].of_type(MsgType.ENTITIES_LOST) == []
    assert E1 in h.svc.entities


def test_messages_to_lost_entities_are_dropped_and_summarised(caplog: pytest.LogCaptureFixture) -> None:
    h = cluster(2)
    h.game(1, notify_create(E1))
    h.svc.game_disconnected(1, h.games[1])
    h.clear()
    caplog.set_level(logging.WARNING, "goworld.dispatcher")
    for _ in range(50):
        h.game(2, call(E1, "Hello"))
        h.gate(1, Envelope(msgtype=MsgType.CALL_ENTITY_METHOD_FROM_CLIENT, entity_id=E1, name="x", client_id=cid(1)))
    h.gate(1, Envelope(msgtype=MsgType.NOTIFY_CLIENT_DISCONNECTED, entity_id=E1, client_id=cid(1)))
    assert not h.svc._early  # not held as if it were being created
    h.svc.tick()
    lines = [r.getMessage() for r in caplog.records if "lost with game1" in r.getMessage()]
    assert lines == ["dropped 101 messages for entities lost with game1"]
    h.clock.advance(10)
    h.svc.tick()
    assert h.games[2].sent == []


def test_a_lost_persistent_entity_loads_again_on_a_live_game() -> None:
    h = cluster(2)
    h.game(1, notify_create(E1))
    h.svc.game_disconnected(1, h.games[1])
    h.clear()
    h.game(2, Envelope(msgtype=MsgType.LOAD_ENTITY_SOMEWHERE, entity_id=E1, name="Avatar"))
    h.game(2, call(E1, "GetSpaceID"))
    [load] = h.games[2].of_type(MsgType.LOAD_ENTITY_SOMEWHERE)
    assert load.game_id == 2
    h.game(2, notify_create(E1))
    assert h.games[2].calls() == [(E1, "GetSpaceID")]


def test_an_entity_created_again_after_its_game_died_is_routed() -> None:
    h = cluster(2)
    h.game(1, notify_create(E1))
    h.svc.game_disconnected(1, h.games[1])
    h.game(2, notify_create(E1))  # loaded locally on game 2
    h.svc.handle_game(2, call(E1, "x"))
    assert h.games[2].calls() == [(E1, "x")]
    h.game(2, Envelope(msgtype=MsgType.NOTIFY_DESTROY_ENTITY, entity_id=E1))
    h.game(2, call(E1, "early"))  # held as a call that overtook a creation again
    assert E1 in h.svc._early


def test_lost_ids_are_forgotten_after_a_while() -> None:
    h = cluster(2)
    h.game(1, notify_create(E1))
    h.svc.game_disconnected(1, h.games[1])
    h.clock.advance(LOST_ENTITY_SECONDS + 1)
    h.svc.tick()
    assert not h.svc._lost
    h.game(2, call(E1, "x"))
    assert E1 in h.svc._early


def test_a_replaced_game_connection_tells_the_gates_too() -> None:
    h = cluster(1)
    h.game(1, notify_create(E1))
    h.connect_game(1)  # the same game id again, not a restore: the old one is down
    assert _lost_ids(h.gates[1]) == [(1, [E1])]


# ---- a hung game ---------------------------------------------------------------------------


def _hang(h: Harness, game_id: int, seconds: float, alive: tuple[int, ...] = ()) -> None:
    """Let ``seconds`` pass in steps of 1 s while only the games in ``alive`` send."""
    for _ in range(int(seconds)):
        h.clock.advance(1.0)
        for g in alive:
            h.svc.game_heard(g)
        h.svc.tick()


def test_a_silent_game_is_unhealthy_and_gets_no_new_clients(caplog: pytest.LogCaptureFixture) -> None:
    h = cluster(2, game_hang_timeout=3.0)
    caplog.set_level(logging.WARNING, "goworld.dispatcher")
    _hang(h, 1, 4, alive=(2,))
    assert h.svc.games[1].hung and not h.svc.games[2].hung
    assert any("game1 sent nothing" in r.getMessage() for r in caplog.records)
    for n in range(6):
        h.gate(1, _client_connected(n, eid(100 + n)))
    assert h.games[1].of_type(MsgType.NOTIFY_CLIENT_CONNECTED) == []
    assert len(h.games[2].of_type(MsgType.NOTIFY_CLIENT_CONNECTED)) == 6


def test_create_and_load_anywhere_avoid_an_unhealthy_game() -> None:
    h = cluster(2, game_hang_timeout=3.0)
    h.game(1, _lbc(0.0))  # the least loaded one, but silent from now on
    h.game(2, _lbc(50.0))
    _hang(h, 1, 4, alive=(2,))
    for i in range(5):
        h.game(2, Envelope(msgtype=MsgType.CREATE_ENTITY_SOMEWHERE, entity_id=eid(i), name="Monster"))
        h.game(2, Envelope(msgtype=MsgType.LOAD_ENTITY_SOMEWHERE, entity_id=eid(10 + i), name="Avatar"))
    assert h.games[1].of_type(MsgType.CREATE_ENTITY_SOMEWHERE) == []
    assert h.games[1].of_type(MsgType.LOAD_ENTITY_SOMEWHERE) == []
    assert len(h.games[2].of_type(MsgType.CREATE_ENTITY_SOMEWHERE)) == 5


def test_a_game_that_sends_again_is_healthy_and_takes_load() -> None:
    h = cluster(2, game_hang_timeout=3.0)
    _hang(h, 1, 4, alive=(2,))
    assert h.svc.games[1].hung
    h.svc.game_heard(1)
    assert not h.svc.games[1].hung
    for n in range(4):
        h.gate(1, _client_connected(n, eid(100 + n)))
    assert len(h.games[1].of_type(MsgType.NOTIFY_CLIENT_CONNECTED)) == 2


def test_with_every_game_hung_a_new_client_waits_then_gets_its_boot_entity() -> None:
    h = cluster(1, game_hang_timeout=3.0)
    _hang(h, 1, 4)
    h.gate(1, _client_connected(1, E1))
    assert h.games[1].of_type(MsgType.NOTIFY_CLIENT_CONNECTED) == []
    _hang(h, 1, 5)
    h.svc.game_heard(1)  # it resumes
    [boot] = h.games[1].of_type(MsgType.NOTIFY_CLIENT_CONNECTED)
    assert (boot.client_id, boot.entity_id, boot.gate_id) == (cid(1), E1, 1)
    assert h.gates[1].of_type(MsgType.KICK_CLIENT) == []


def test_a_client_waits_at_most_boot_wait_timeout_then_its_gate_is_told() -> None:
    h = cluster(1, game_hang_timeout=3.0, boot_wait_timeout=10.0)
    _hang(h, 1, 4)
    h.gate(1, _client_connected(1, E1))
    _hang(h, 1, 9)
    assert h.gates[1].of_type(MsgType.KICK_CLIENT) == []
    _hang(h, 1, 2)
    [kick] = h.gates[1].of_type(MsgType.KICK_CLIENT)
    assert (kick.gate_id, kick.client_id) == (1, cid(1))
    assert "boot_wait_timeout" in kick.name
    h.svc.game_heard(1)
    assert h.games[1].of_type(MsgType.NOTIFY_CLIENT_CONNECTED) == []
    # its gate closes it; its disconnect reaches no game (no boot entity exists)
    h.gate(1, Envelope(msgtype=MsgType.NOTIFY_CLIENT_DISCONNECTED, entity_id=E1, client_id=cid(1)))
    _hang(h, 1, 10, alive=(1,))
    assert h.games[1].of_type(MsgType.NOTIFY_CLIENT_DISCONNECTED) == []


def test_waiting_clients_are_bounded(monkeypatch: Any) -> None:
    import dispatcher.service as service

    monkeypatch.setattr(service, "BOOT_WAIT_LIMIT", 3)
    h = cluster(1, game_hang_timeout=3.0)
    _hang(h, 1, 4)
    for n in range(5):
        h.gate(1, _client_connected(n, eid(100 + n)))
    assert [k.client_id for k in h.gates[1].of_type(MsgType.KICK_CLIENT)] == [cid(3), cid(4)]
    assert BOOT_WAIT_LIMIT >= 1000


def test_a_waiting_client_that_leaves_is_not_placed_later() -> None:
    h = cluster(1, game_hang_timeout=3.0)
    _hang(h, 1, 4)
    h.gate(1, _client_connected(1, E1))
    h.gate(1, Envelope(msgtype=MsgType.NOTIFY_CLIENT_DISCONNECTED, entity_id=E1, client_id=cid(1)))
    h.svc.game_heard(1)
    assert h.games[1].of_type(MsgType.NOTIFY_CLIENT_CONNECTED) == []


def test_hang_detection_off_and_frozen_games() -> None:
    h = cluster(1, game_hang_timeout=0)
    _hang(h, 1, 100)
    assert not h.svc.games[1].hung
    h = cluster(1, game_hang_timeout=3.0)
    h.game(1, Envelope(msgtype=MsgType.START_FREEZE_GAME, game_id=1))
    _hang(h, 1, 10)
    assert not h.svc.games[1].hung  # a reload has its own rules (its queue)


def test_calls_to_a_hung_games_entities_still_queue_for_it() -> None:
    h = cluster(2, game_hang_timeout=3.0)
    h.game(1, notify_create(E1))
    _hang(h, 1, 4, alive=(2,))
    h.game(2, call(E1, "x"))
    assert h.games[1].calls() == [(E1, "x")]  # its peer queues it (bounded by its backlog)


def test_nothing_is_created_loaded_or_migrated_onto_a_dead_game() -> None:
    h = cluster(2)
    h.game(1, notify_create(E1))  # will migrate to game 2
    h.svc.game_disconnected(2, h.games[2])
    h.clear()
    h.game(1, Envelope(msgtype=MsgType.CREATE_ENTITY_SOMEWHERE, game_id=2, entity_id=E2, name="Monster"))
    h.game(1, Envelope(msgtype=MsgType.LOAD_ENTITY_SOMEWHERE, game_id=2, entity_id=E3, name="Avatar"))
    assert E2 not in h.svc.entities and E3 not in h.svc.entities
    h.game(1, Envelope(msgtype=MsgType.MIGRATE_REQUEST, entity_id=E1, game_id=2))
    h.game(1, Envelope(msgtype=MsgType.REAL_MIGRATE, entity_id=E1, game_id=2, payload=b"state"))
    assert E1 not in h.svc.entities
    assert _lost_ids(h.gates[1]) == [(2, [E1])]  # its client, if it had one, is told
    h.game(1, call(E1, "x"))
    assert h.games[1].calls() == []


def test_a_gate_away_when_a_game_dies_is_told_when_it_comes_back() -> None:
    h = cluster(2, n_gates=0)
    away = h.gates[1] = FakePeer("gate1")
    h.svc.gate_connected(1, away, "pid-a")
    h.game(1, notify_create(E1))
    h.svc.gate_disconnected(1, away)  # its stream broke: kept for GATE_RECONNECT_GRACE
    h.svc.game_disconnected(1, h.games[1])
    back = FakePeer("gate1")
    h.svc.gate_connected(1, back, "pid-a")
    assert _lost_ids(back) == [(1, [E1])]


# ---- a game whose stream broke: held for game_reconnect_grace ------------------------------


def test_a_broken_game_stream_is_held_and_the_same_process_resumes_with_nothing_lost() -> None:
    h = cluster(2, game_reconnect_grace=5.0)
    h.game(1, notify_create(E1))
    h.game(2, notify_create(E3))
    h.clear()
    h.svc.game_disconnected(1, h.games[1])
    assert h.gates[1].of_type(MsgType.ENTITIES_LOST) == []  # nobody is closed yet
    assert h.games[2].of_type(MsgType.NOTIFY_GAME_DISCONNECTED) == []
    assert E1 in h.svc.entities
    # calls to its entities wait; nothing new is placed on it meanwhile
    h.game(2, call(E1, "Hello"))
    h.gate(1, Envelope(msgtype=MsgType.CALL_ENTITY_METHOD_FROM_CLIENT, entity_id=E1, name="Hi", client_id=cid(1)))
    h.game(2, Envelope(msgtype=MsgType.CREATE_ENTITY_SOMEWHERE, entity_id=eid(9), name="Monster"))
    assert [e.msgtype for e in h.games[2].sent] == [MsgType.CREATE_ENTITY_SOMEWHERE]
    h.clock.advance(4.9)
    h.svc.tick()
    assert h.gates[1].of_type(MsgType.ENTITIES_LOST) == []
    # the same process's link reconnects: the held messages come, in order, after the ack
    again = FakePeer("game1-again")
    h.games[1] = again
    h.svc.game_connected(1, again, hello(1, eids=[E1], reconnect=True))
    assert [e.msgtype for e in again.sent] == [
        MsgType.SET_GAME_ID_ACK, MsgType.CALL_ENTITY_METHOD, MsgType.CALL_ENTITY_METHOD_FROM_CLIENT,
    ]
    assert [e.name for e in again.sent[1:]] == ["Hello", "Hi"]
    h.clock.advance(10)
    h.svc.tick()
    assert h.gates[1].of_type(MsgType.ENTITIES_LOST) == []
    h.clear()
    h.game(2, call(E1, "Later"))  # routed straight to it again
    assert [e.name for e in again.of_type(MsgType.CALL_ENTITY_METHOD)] == ["Later"]
    assert h.svc.games[1].healthy


def test_a_game_that_does_not_reconnect_within_the_grace_is_down() -> None:
    h = cluster(2, game_reconnect_grace=5.0)
    h.game(1, notify_create(E1))
    h.svc.game_disconnected(1, h.games[1])
    h.game(2, call(E1, "Hello"))
    h.clock.advance(5)
    h.svc.tick()
    assert _lost_ids(h.gates[1]) == [(1, [E1])]
    assert h.games[2].of_type(MsgType.NOTIFY_GAME_DISCONNECTED)
    assert E1 not in h.svc.entities and not h.svc.games[1].pending


def test_a_new_process_ends_the_grace_at_once() -> None:
    h = cluster(1, game_reconnect_grace=5.0)
    h.game(1, notify_create(E1))
    h.svc.game_disconnected(1, h.games[1])
    fresh = FakePeer("game1-new")
    h.games[1] = fresh
    h.svc.game_connected(1, fresh, hello(1))  # the supervisor's restart: not a reconnect
    assert _lost_ids(h.gates[1]) == [(1, [E1])]
    assert E1 not in h.svc.entities
    assert [e.msgtype for e in fresh.sent] == [MsgType.SET_GAME_ID_ACK]  # nothing stale


def test_an_orderly_stop_or_a_zero_grace_is_down_at_once() -> None:
    h = cluster(1, game_reconnect_grace=5.0)
    h.game(1, notify_create(E1))
    h.game(1, Envelope(msgtype=MsgType.STOP_BARRIER, game_id=1))
    h.svc.game_disconnected(1, h.games[1])
    assert _lost_ids(h.gates[1]) == [(1, [E1])]
    z = cluster(1)  # the service's own default: no grace
    z.game(1, notify_create(E1))
    z.svc.game_disconnected(1, z.games[1])
    assert _lost_ids(z.gates[1]) == [(1, [E1])]


def test_a_game_back_after_its_grace_is_told_its_clients_are_gone() -> None:
    from tests.dispatcher.test_service import ack_of

    h = cluster(1, game_reconnect_grace=5.0)
    h.game(1, notify_create(E1))
    h.svc.game_disconnected(1, h.games[1])
    h.clock.advance(6)
    h.svc.tick()
    assert _lost_ids(h.gates[1]) == [(1, [E1])]  # the gates closed its players
    late = FakePeer("game1-late")
    h.svc.game_connected(1, late, hello(1, eids=[E1], reconnect=True))
    assert ack_of(late)["clients_lost"] is True
    assert E1 in h.svc.entities  # routed again: the entity itself lives on
    again = FakePeer("game1-again")  # told once: a later break within the grace is not that
    h.svc.game_disconnected(1, late)
    h.svc.game_connected(1, again, hello(1, eids=[E1], reconnect=True))
    assert "clients_lost" not in ack_of(again)
