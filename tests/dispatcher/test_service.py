"""DispatcherService driven by recording fake peers and a fake clock (PROTOCOL.md §2.4, §8).

Every test feeds envelopes in as games and gates would, and asserts on the envelopes each fake
peer received, in order. Peers record the envelope objects themselves (not copies), as the real
stream peer does: an envelope mutated after it was sent would show here too.
"""

from __future__ import annotations

import itertools
import logging
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dispatcher.service import (
    EARLY_CLIENTS_MAX_BYTES,
    EARLY_HOLD_SECONDS,
    EARLY_PER_CLIENT,
    ENTITY_BLOCK_SECONDS,
    KVREG_SETTLE_SECONDS,
    DispatcherService,
)
from goworld.cluster.envelopes import Envelope, pack, unpack
from goworld.proto.msgtypes import MsgType

DISP_ID = 3


def eid(n: int) -> str:
    """A well-formed 16-character entity id."""
    return f"Entity{n:010d}"


def cid(n: int) -> str:
    return f"Client{n:010d}"


E1, E2, E3, E4, E5 = (eid(i) for i in range(1, 6))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, dt: float) -> None:
        self.now += dt


class FakePeer:
    """A connected game or gate that records what the dispatcher sends it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sent: list[Envelope] = []
        self.closed = False
        #: set by a test to play a peer that is behind
        self.backlog_bytes = 0

    def send(self, env: Envelope) -> None:
        assert not self.closed, f"{self.name}: send after close"
        self.sent.append(env)

    def close(self) -> None:
        self.closed = True

    def types(self) -> list[int]:
        return [e.msgtype for e in self.sent]

    def of_type(self, msgtype: int) -> list[Envelope]:
        return [e for e in self.sent if e.msgtype == msgtype]

    def calls(self) -> list[tuple[str, str]]:
        return [(e.entity_id, e.name) for e in self.of_type(MsgType.CALL_ENTITY_METHOD)]

    def __repr__(self) -> str:
        return f"<FakePeer {self.name}>"


def hello(
    game_id: int,
    *,
    eids: tuple[str, ...] | list[str] = (),
    ban_boot: bool = False,
    restore: bool = False,
    reconnect: bool = False,
    kvreg: dict[str, str] | None = None,
) -> Envelope:
    info: dict[str, Any] = {"reconnect": reconnect, "restore": restore, "ban_boot": ban_boot, "eids": list(eids)}
    if kvreg is not None:
        info["kvreg"] = kvreg
    return Envelope(msgtype=MsgType.SET_GAME_ID, game_id=game_id, payload=pack(info))


def call(entity_id: str, method: str, args: bytes = b"\x00\x00") -> Envelope:
    return Envelope(
        msgtype=MsgType.CALL_ENTITY_METHOD, entity_id=entity_id, name=method, payload=args
    )


def notify_create(entity_id: str) -> Envelope:
    return Envelope(msgtype=MsgType.NOTIFY_CREATE_ENTITY, entity_id=entity_id)


class Harness:
    """One dispatcher plus the fake games and gates connected to it."""

    def __init__(self, *, desired_games: int = 0, desired_gates: int = 0, **kwargs: Any) -> None:
        self.clock = FakeClock()
        self.svc = DispatcherService(
            DISP_ID,
            desired_games=desired_games,
            desired_gates=desired_gates,
            clock=self.clock,
            rng=random.Random(1234),
            **kwargs,
        )
        self.games: dict[int, FakePeer] = {}
        self.gates: dict[int, FakePeer] = {}

    def connect_game(self, game_id: int, **hello_kwargs: Any) -> FakePeer:
        peer = FakePeer(f"game{game_id}")
        self.games[game_id] = peer
        self.svc.game_connected(game_id, peer, hello(game_id, **hello_kwargs))
        return peer

    def connect_gate(self, gate_id: int) -> FakePeer:
        peer = FakePeer(f"gate{gate_id}")
        self.gates[gate_id] = peer
        self.svc.gate_connected(gate_id, peer)
        return peer

    def clear(self) -> None:
        for peer in (*self.games.values(), *self.gates.values()):
            peer.sent.clear()

    def game(self, game_id: int, env: Envelope) -> None:
        self.svc.handle_game(game_id, env)

    def gate(self, gate_id: int, env: Envelope) -> None:
        self.svc.handle_gate(gate_id, env)


def cluster(n_games: int = 2, n_gates: int = 1, **kwargs: Any) -> Harness:
    h = Harness(**kwargs)
    for g in range(1, n_games + 1):
        h.connect_game(g)
    for g in range(1, n_gates + 1):
        h.connect_gate(g)
    h.clear()
    return h


def ack_of(peer: FakePeer) -> dict[str, Any]:
    acks = peer.of_type(MsgType.SET_GAME_ID_ACK)
    assert len(acks) == 1, peer.types()
    return unpack(acks[0].payload)


# ---- handshake -----------------------------------------------------------------------------


def test_game_handshake_ack_contents() -> None:
    h = Harness(desired_games=5, desired_gates=1)
    g1 = h.connect_game(1, eids=[E1])
    ack1 = ack_of(g1)
    assert g1.sent[0].msgtype == MsgType.SET_GAME_ID_ACK
    assert g1.sent[0].game_id == 1
    assert ack1 == {"disp": DISP_ID, "ready": False, "games": [1], "rejected": [], "kvreg": {}}

    h.clock.advance(KVREG_SETTLE_SECONDS)  # not ready, but settled: claims are taken
    h.game(
        1,
        Envelope(
            msgtype=MsgType.KVREG_REGISTER, name="Service/A#0", payload=pack(["game1", False])
        ),
    )
    g1.sent.clear()

    # Game 2 claims E1 (owned by the live game 1: rejected) and E2 (new: adopted).
    g2 = h.connect_game(2, eids=[E1, E2], ban_boot=True)
    assert g2.sent[0].msgtype == MsgType.SET_GAME_ID_ACK
    ack2 = ack_of(g2)
    assert ack2["disp"] == DISP_ID
    assert ack2["ready"] is False
    assert sorted(ack2["games"]) == [1, 2]
    assert ack2["rejected"] == [E1]
    assert ack2["kvreg"] == {"Service/A#0": "game1"}
    # The others learn about the new game.
    assert [(e.msgtype, e.game_id) for e in g1.sent] == [(MsgType.NOTIFY_GAME_CONNECTED, 2)]
    assert g2.of_type(MsgType.NOTIFY_GAME_CONNECTED) == []

    h.game(1, call(E1, "a"))
    h.game(1, call(E2, "b"))
    assert g1.calls() == [(E1, "a")]
    assert g2.calls() == [(E2, "b")]


def test_handshake_adopts_entities_of_a_dead_game() -> None:
    h = cluster(2)
    h.game(1, notify_create(E1))
    h.svc.game_disconnected(1, h.games[1])
    h.clear()
    g3 = h.connect_game(3, eids=[E1])
    assert ack_of(g3)["rejected"] == []
    h.game(2, call(E1, "m"))
    assert g3.calls() == [(E1, "m")]


# ---- entity routes -------------------------------------------------------------------------


def _route_by_notify_create(h: Harness) -> None:
    h.game(2, notify_create(E1))


def _route_by_create_somewhere(h: Harness) -> None:
    h.game(
        1, Envelope(msgtype=MsgType.CREATE_ENTITY_SOMEWHERE, game_id=2, entity_id=E1, name="Avatar")
    )
    assert [e.entity_id for e in h.games[2].of_type(MsgType.CREATE_ENTITY_SOMEWHERE)] == [E1]


def _route_by_load_somewhere(h: Harness) -> None:
    h.game(
        1, Envelope(msgtype=MsgType.LOAD_ENTITY_SOMEWHERE, game_id=2, entity_id=E1, name="Avatar")
    )
    assert [e.entity_id for e in h.games[2].of_type(MsgType.LOAD_ENTITY_SOMEWHERE)] == [E1]
    h.game(2, notify_create(E1))


def _route_by_real_migrate(h: Harness) -> None:
    h.game(1, notify_create(E1))
    h.game(1, Envelope(msgtype=MsgType.REAL_MIGRATE, entity_id=E1, game_id=2, payload=b"data"))
    assert [e.payload for e in h.games[2].of_type(MsgType.REAL_MIGRATE)] == [b"data"]


def _route_by_set_game_id(h: Harness) -> None:
    h.svc.game_disconnected(2, h.games[2])
    h.connect_game(2, eids=[E1], reconnect=True)


@pytest.mark.parametrize(
    "establish",
    [
        _route_by_notify_create,
        _route_by_create_somewhere,
        _route_by_load_somewhere,
        _route_by_real_migrate,
        _route_by_set_game_id,
    ],
    ids=["notify_create", "create_somewhere", "load_somewhere", "real_migrate", "set_game_id"],
)
def test_entity_route_sources(establish: Any) -> None:
    h = cluster(3)
    establish(h)
    h.game(3, call(E1, "Hello", b"\x01\x00\x05\x00\x00\x00\xa5hello"))
    delivered = h.games[2].of_type(MsgType.CALL_ENTITY_METHOD)
    assert [(e.entity_id, e.name, e.payload) for e in delivered] == [
        (E1, "Hello", b"\x01\x00\x05\x00\x00\x00\xa5hello")
    ]
    assert h.games[1].calls() == []
    assert h.games[3].calls() == []


def test_notify_destroy_forgets_the_route() -> None:
    h = cluster(2)
    h.game(2, notify_create(E1))
    h.game(1, Envelope(msgtype=MsgType.NOTIFY_DESTROY_ENTITY, entity_id=E1))  # not the owner
    h.game(1, call(E1, "a"))
    h.game(2, Envelope(msgtype=MsgType.NOTIFY_DESTROY_ENTITY, entity_id=E1))
    h.game(1, call(E1, "b"))  # held a while in case E1 is being created, then dropped
    h.clock.advance(EARLY_HOLD_SECONDS + 1)
    h.svc.tick()
    assert h.games[2].calls() == [(E1, "a")]
    assert h.svc.stats["dropped"] == 1


def test_a_call_that_overtakes_the_creation_notice_is_delivered() -> None:
    h = cluster(2)
    h.game(1, call(E1, "early"))  # e.g. a reply chain through game1 beat game2's NOTIFY_CREATE
    assert h.games[2].calls() == []
    h.game(2, notify_create(E1))
    h.game(1, call(E1, "later"))
    assert h.games[2].calls() == [(E1, "early"), (E1, "later")]


def test_call_to_unknown_entity_is_dropped() -> None:
    h = cluster(2)
    before = dict(h.svc.stats)
    h.game(1, call(E1, "m"))
    h.gate(
        1,
        Envelope(
            msgtype=MsgType.CALL_ENTITY_METHOD_FROM_CLIENT, entity_id=E1, name="m", client_id=cid(1)
        ),
    )
    h.gate(1, Envelope(msgtype=MsgType.NOTIFY_CLIENT_DISCONNECTED, entity_id=E1, client_id=cid(1)))
    h.clock.advance(EARLY_HOLD_SECONDS + 1)
    h.svc.tick()
    assert h.svc.stats["dropped"] == before["dropped"] + 3
    assert all(p.sent == [] for p in (*h.games.values(), *h.gates.values()))


def test_calls_from_clients_are_routed_to_the_owner() -> None:
    h = cluster(2)
    h.game(2, notify_create(E1))
    env = Envelope(
        msgtype=MsgType.CALL_ENTITY_METHOD_FROM_CLIENT,
        entity_id=E1,
        name="Login",
        payload=b"\x00\x00",
        client_id=cid(1),
        gate_id=1,
    )
    h.gate(1, env)
    got = h.games[2].of_type(MsgType.CALL_ENTITY_METHOD_FROM_CLIENT)
    assert [(e.entity_id, e.name, e.client_id, e.gate_id) for e in got] == [
        (E1, "Login", cid(1), 1)
    ]
    assert h.games[1].sent == []


# ---- blocking: load, migrate ---------------------------------------------------------------


def test_load_blocks_and_releases_calls_in_order_on_notify_create() -> None:
    h = cluster(2)
    h.game(
        1, Envelope(msgtype=MsgType.LOAD_ENTITY_SOMEWHERE, game_id=2, entity_id=E1, name="Avatar")
    )
    assert h.games[2].types() == [MsgType.LOAD_ENTITY_SOMEWHERE]
    for i in range(5):
        h.game(1, call(E1, f"m{i}"))
    assert h.games[2].calls() == []
    assert h.games[1].calls() == []
    h.game(2, notify_create(E1))
    h.game(1, call(E1, "after"))
    assert h.games[2].calls() == [(E1, f"m{i}") for i in range(5)] + [(E1, "after")]
    assert h.games[1].calls() == []


def test_load_of_a_known_entity_is_a_no_op() -> None:
    h = cluster(2)
    h.game(1, notify_create(E1))
    h.game(
        2, Envelope(msgtype=MsgType.LOAD_ENTITY_SOMEWHERE, game_id=2, entity_id=E1, name="Avatar")
    )
    assert h.games[2].sent == []
    h.game(2, call(E1, "m"))  # not blocked
    assert h.games[1].calls() == [(E1, "m")]


def test_migrate_request_echo_block_real_migrate_release_to_target() -> None:
    h = cluster(3)
    h.game(1, notify_create(E1))
    h.game(3, call(E1, "before"))
    req = Envelope(msgtype=MsgType.MIGRATE_REQUEST, entity_id=E1, name=E2, game_id=2)
    h.game(1, req)
    assert h.games[1].types() == [MsgType.CALL_ENTITY_METHOD, MsgType.MIGRATE_REQUEST]
    echo = h.games[1].sent[-1]
    assert (echo.entity_id, echo.name, echo.game_id) == (E1, E2, 2)
    for i in range(3):
        h.game(3, call(E1, f"q{i}"))
    assert h.games[1].calls() == [(E1, "before")]
    assert h.games[2].sent == []

    h.game(1, Envelope(msgtype=MsgType.REAL_MIGRATE, entity_id=E1, game_id=2, payload=b"mig"))
    h.game(3, call(E1, "after"))
    assert h.games[2].types() == [MsgType.REAL_MIGRATE] + [MsgType.CALL_ENTITY_METHOD] * 4
    assert h.games[2].calls() == [(E1, "q0"), (E1, "q1"), (E1, "q2"), (E1, "after")]
    assert h.games[1].calls() == [(E1, "before")]


def test_migrate_request_from_a_non_owner_is_ignored() -> None:
    h = cluster(2)
    h.game(1, notify_create(E1))
    h.game(2, Envelope(msgtype=MsgType.MIGRATE_REQUEST, entity_id=E1, name=E2, game_id=2))
    h.game(2, call(E1, "m"))
    assert h.games[2].sent == []
    assert h.games[1].calls() == [(E1, "m")]


def test_cancel_migrate_releases_to_the_owner_in_order() -> None:
    h = cluster(2)
    h.game(1, notify_create(E1))
    h.game(1, Envelope(msgtype=MsgType.MIGRATE_REQUEST, entity_id=E1, name=E2, game_id=2))
    h.game(2, call(E1, "a"))
    h.game(2, call(E1, "b"))
    assert h.games[1].calls() == []
    h.game(1, Envelope(msgtype=MsgType.CANCEL_MIGRATE, entity_id=E1))
    h.game(2, call(E1, "c"))
    assert h.games[1].calls() == [(E1, "a"), (E1, "b"), (E1, "c")]
    assert h.games[2].sent == []


def test_block_expires_after_60_seconds_on_tick() -> None:
    h = cluster(2)
    h.game(1, Envelope(msgtype=MsgType.LOAD_ENTITY_SOMEWHERE, game_id=2, entity_id=E1, name="A"))
    h.game(1, call(E1, "a"))
    h.game(1, call(E1, "b"))
    h.clock.advance(ENTITY_BLOCK_SECONDS - 0.5)
    h.svc.tick()
    assert h.games[2].calls() == []
    h.clock.advance(0.5)
    h.svc.tick()
    assert h.games[2].calls() == [(E1, "a"), (E1, "b")]
    h.svc.tick()  # nothing left to release
    h.game(1, call(E1, "c"))
    assert h.games[2].calls() == [(E1, "a"), (E1, "b"), (E1, "c")]


def test_expired_block_releases_the_queue_before_a_new_call_without_tick() -> None:
    h = cluster(2)
    h.game(1, notify_create(E1))
    h.game(1, Envelope(msgtype=MsgType.MIGRATE_REQUEST, entity_id=E1, name=E2, game_id=2))
    h.game(2, call(E1, "a"))
    h.clock.advance(ENTITY_BLOCK_SECONDS + 1)
    h.game(2, call(E1, "b"))
    assert h.games[1].calls() == [(E1, "a"), (E1, "b")]


def test_entity_queue_limit_drops_extra_calls(caplog: pytest.LogCaptureFixture) -> None:
    h = cluster(2)
    h.game(1, Envelope(msgtype=MsgType.LOAD_ENTITY_SOMEWHERE, game_id=2, entity_id=E1, name="A"))
    dropped = h.svc.stats["dropped"]
    with caplog.at_level(logging.ERROR, logger="goworld.dispatcher"):
        for i in range(1003):
            h.game(1, call(E1, str(i)))
    assert h.svc.stats["dropped"] == dropped + 3
    assert sum(r.levelno == logging.ERROR for r in caplog.records) == 3
    h.game(2, notify_create(E1))
    assert h.games[2].calls() == [(E1, str(i)) for i in range(1000)]


# ---- queries, kvreg, load balancing --------------------------------------------------------


def test_query_space_game_id() -> None:
    h = cluster(2)
    h.game(2, notify_create(E2))  # the space lives on game 2
    h.game(1, Envelope(msgtype=MsgType.QUERY_SPACE_GAMEID_FOR_MIGRATE, entity_id=E2, name=E1))
    h.game(1, Envelope(msgtype=MsgType.QUERY_SPACE_GAMEID_FOR_MIGRATE, entity_id=E3, name=E1))
    replies = h.games[1].of_type(MsgType.QUERY_SPACE_GAMEID_FOR_MIGRATE)
    assert [(e.entity_id, e.name, e.game_id) for e in replies] == [(E2, E1, 2), (E3, E1, 0)]
    assert h.games[2].sent == []


def _kvreg(key: str, value: str, force: bool) -> Envelope:
    return Envelope(msgtype=MsgType.KVREG_REGISTER, name=key, payload=pack([value, force]))


def test_kvreg_first_writer_wins_force_overrides_and_rebroadcasts() -> None:
    h = cluster(2)
    h.game(1, _kvreg("Service/S#0", "game1", False))
    for g in (1, 2):
        got = h.games[g].of_type(MsgType.KVREG_REGISTER)
        assert [(e.name, unpack(e.payload)) for e in got] == [("Service/S#0", ["game1", False])]
    h.clear()
    h.game(2, _kvreg("Service/S#0", "game2", False))
    assert h.games[1].sent == []  # no change, no broadcast; the loser learns who holds it
    assert [(e.name, unpack(e.payload)) for e in h.games[2].sent] == [("Service/S#0", ["game1", False])]
    assert h.svc.kvreg == {"Service/S#0": "game1"}
    h.clear()
    h.game(2, _kvreg("Service/S#0", "game2", True))
    for g in (1, 2):
        got = h.games[g].of_type(MsgType.KVREG_REGISTER)
        assert [(e.name, unpack(e.payload)) for e in got] == [("Service/S#0", ["game2", True])]
    g3 = h.connect_game(3)
    assert ack_of(g3)["kvreg"] == {"Service/S#0": "game2"}


def test_kvreg_takeover_from_a_down_owner_goes_to_the_first_claim_only() -> None:
    # A game claims a service shard *from* its owner ([value, force, expected]): applied while
    # the key names that owner and the owner is down here; the second claim loses as usual.
    h = cluster(3)
    h.game(1, _kvreg("Service/S#0", "game1", False))
    h.clear()

    def take(game_id: int) -> None:
        h.game(game_id, Envelope(msgtype=MsgType.KVREG_REGISTER, name="Service/S#0",
                                 payload=pack([f"game{game_id}", False, "game1"])))

    take(2)  # game1 is connected: no takeover, the claimer learns the holder
    assert h.svc.kvreg["Service/S#0"] == "game1"
    assert [unpack(e.payload) for e in h.games[2].sent] == [["game1", False]]
    assert h.games[3].sent == []
    h.svc.game_disconnected(1, h.games[1])  # down (no reconnect grace in this harness)
    h.clear()
    take(2)
    take(3)
    assert h.svc.kvreg["Service/S#0"] == "game2"
    for g in (2, 3):  # game2's claim is broadcast; game3's loses and learns the new holder
        got = [unpack(e.payload) for e in h.games[g].of_type(MsgType.KVREG_REGISTER)]
        assert got[0] == ["game2", False, "game1"]
    assert [unpack(e.payload) for e in h.games[3].of_type(MsgType.KVREG_REGISTER)][1:] == [["game2", False]]


def _lbc(cpu: float) -> Envelope:
    return Envelope(msgtype=MsgType.GAME_LBC_INFO, payload=pack(cpu))


def test_load_balancing_picks_the_least_loaded_game() -> None:
    h = cluster(3)
    h.game(1, _lbc(50.0))
    h.game(2, _lbc(5.0))
    h.game(3, _lbc(30.0))
    h.game(1, Envelope(msgtype=MsgType.CREATE_ENTITY_SOMEWHERE, game_id=0, entity_id=E1, name="A"))
    created = h.games[2].of_type(MsgType.CREATE_ENTITY_SOMEWHERE)
    assert [(e.entity_id, e.game_id) for e in created] == [(E1, 2)]
    h.game(1, Envelope(msgtype=MsgType.LOAD_ENTITY_SOMEWHERE, game_id=0, entity_id=E2, name="A"))
    assert [e.entity_id for e in h.games[2].of_type(MsgType.LOAD_ENTITY_SOMEWHERE)] == [E2]
    assert h.games[1].sent == [] and h.games[3].sent == []


def test_load_balancing_spreads_bursts() -> None:
    h = cluster(2)
    h.game(1, _lbc(10.0))
    h.game(2, _lbc(10.0))
    for i in range(100):
        h.game(
            1, Envelope(msgtype=MsgType.CREATE_ENTITY_SOMEWHERE, entity_id=eid(100 + i), name="A")
        )
    n1 = len(h.games[1].of_type(MsgType.CREATE_ENTITY_SOMEWHERE))
    n2 = len(h.games[2].of_type(MsgType.CREATE_ENTITY_SOMEWHERE))
    assert n1 + n2 == 100
    assert min(n1, n2) >= 40, (n1, n2)


def test_create_anywhere_without_games_is_dropped() -> None:
    h = Harness()
    h.svc.handle_game(1, Envelope(msgtype=MsgType.CREATE_ENTITY_SOMEWHERE, entity_id=E1, name="A"))
    assert E1 not in h.svc.entities


# ---- boot entities -------------------------------------------------------------------------


def _client_connected(n: int, boot: str, gate_id: int = 1) -> Envelope:
    return Envelope(
        msgtype=MsgType.NOTIFY_CLIENT_CONNECTED, client_id=cid(n), entity_id=boot, gate_id=gate_id
    )


def test_boot_entities_round_robin_over_games_without_ban_boot() -> None:
    h = Harness()
    h.connect_game(1, ban_boot=True)
    h.connect_game(2)
    h.connect_game(3)
    h.connect_gate(1)
    h.clear()
    for i in range(6):
        h.gate(1, _client_connected(i, eid(10 + i)))
    assert h.games[1].sent == []
    got2 = h.games[2].of_type(MsgType.NOTIFY_CLIENT_CONNECTED)
    got3 = h.games[3].of_type(MsgType.NOTIFY_CLIENT_CONNECTED)
    assert len(got2) == len(got3) == 3
    # Alternating: consecutive clients never land on the same game.
    owner = {e.client_id: 2 for e in got2} | {e.client_id: 3 for e in got3}
    order = [owner[cid(i)] for i in range(6)]
    assert all(a != b for a, b in itertools.pairwise(order)), order
    assert all(e.gate_id == 1 for e in got2 + got3)
    # The boot entity is routed to its game.
    h.gate(
        1,
        Envelope(
            msgtype=MsgType.CALL_ENTITY_METHOD_FROM_CLIENT,
            entity_id=eid(10),
            name="Login",
            client_id=cid(0),
        ),
    )
    assert len(h.games[order[0]].of_type(MsgType.CALL_ENTITY_METHOD_FROM_CLIENT)) == 1


def test_client_waits_for_a_boot_game_and_is_delivered_when_one_connects() -> None:
    h = Harness()
    h.connect_game(1, ban_boot=True)
    h.connect_gate(1)
    h.clear()
    h.gate(1, _client_connected(1, E1))
    h.gate(1, _client_connected(2, E2))
    assert h.games[1].sent == []
    h.connect_game(3, ban_boot=True)  # still no boot game
    assert h.games[3].of_type(MsgType.NOTIFY_CLIENT_CONNECTED) == []
    g2 = h.connect_game(2)
    assert g2.sent[0].msgtype == MsgType.SET_GAME_ID_ACK
    got = g2.of_type(MsgType.NOTIFY_CLIENT_CONNECTED)
    assert [(e.client_id, e.entity_id, e.gate_id) for e in got] == [
        (cid(1), E1, 1),
        (cid(2), E2, 1),
    ]
    assert h.games[1].of_type(MsgType.NOTIFY_CLIENT_CONNECTED) == []
    h.gate(
        1,
        Envelope(
            msgtype=MsgType.CALL_ENTITY_METHOD_FROM_CLIENT, entity_id=E1, name="x", client_id=cid(1)
        ),
    )
    assert len(g2.of_type(MsgType.CALL_ENTITY_METHOD_FROM_CLIENT)) == 1


def test_waiting_client_that_disconnects_is_forgotten() -> None:
    h = Harness()
    h.connect_gate(1)
    h.gate(1, _client_connected(1, E1))
    h.gate(1, _client_connected(2, E2))
    h.gate(1, Envelope(msgtype=MsgType.NOTIFY_CLIENT_DISCONNECTED, entity_id=E1, client_id=cid(1)))
    g1 = h.connect_game(1)
    got = g1.of_type(MsgType.NOTIFY_CLIENT_CONNECTED)
    assert [e.client_id for e in got] == [cid(2)]
    assert g1.of_type(MsgType.NOTIFY_CLIENT_DISCONNECTED) == []


def test_waiting_clients_of_a_disconnected_gate_are_forgotten() -> None:
    # A client held for a boot game belongs to its gate's connection. Once that gate is gone
    # the client is gone too (PROTOCOL.md §4.12: a gate that loses a dispatcher quits and
    # closes its clients), and no disconnect notice will ever follow. Delivering it later
    # would create a boot entity bound to a client that no longer exists, which nothing
    # ever destroys.
    h = Harness()
    h.connect_gate(1)
    h.gate(1, _client_connected(1, E1))
    h.svc.gate_disconnected(1, h.gates[1])
    g1 = h.connect_game(1)
    assert g1.of_type(MsgType.NOTIFY_CLIENT_CONNECTED) == []
    assert E1 not in h.svc.entities


# ---- deployment readiness ------------------------------------------------------------------


def test_deployment_ready_latch() -> None:
    h = Harness(desired_games=2, desired_gates=1)
    g1 = h.connect_game(1)
    assert ack_of(g1)["ready"] is False
    g2 = h.connect_game(2)
    assert ack_of(g2)["ready"] is False
    assert g1.of_type(MsgType.NOTIFY_DEPLOYMENT_READY) == []
    h.connect_gate(1)
    assert len(g1.of_type(MsgType.NOTIFY_DEPLOYMENT_READY)) == 1
    assert len(g2.of_type(MsgType.NOTIFY_DEPLOYMENT_READY)) == 1
    assert h.svc.deployment_ready

    g3 = h.connect_game(3)
    assert ack_of(g3)["ready"] is True
    assert g3.of_type(MsgType.NOTIFY_DEPLOYMENT_READY) == []
    # Latched: more gates, a game going down and coming back: no second broadcast.
    h.connect_gate(2)
    h.svc.game_disconnected(1, g1)
    g1b = h.connect_game(1)
    assert ack_of(g1b)["ready"] is True
    for peer in (g1, g2, g3, g1b):
        assert len(peer.of_type(MsgType.NOTIFY_DEPLOYMENT_READY)) <= 1


def test_deployment_ready_when_the_last_game_connects() -> None:
    h = Harness(desired_games=2, desired_gates=1)
    g1 = h.connect_game(1)
    h.connect_gate(1)
    g2 = h.connect_game(2)
    assert len(g1.of_type(MsgType.NOTIFY_DEPLOYMENT_READY)) == 1
    # Game 2 gets the signal exactly once: in its ACK or as a broadcast right after it.
    signals = int(ack_of(g2)["ready"]) + len(g2.of_type(MsgType.NOTIFY_DEPLOYMENT_READY))
    assert signals == 1
    assert g2.sent[0].msgtype == MsgType.SET_GAME_ID_ACK


# ---- disconnects ---------------------------------------------------------------------------


def test_gate_disconnect_notifies_every_game() -> None:
    h = cluster(3, 2)
    h.svc.gate_disconnected(2, FakePeer("stale"))  # not the connected peer: ignored
    assert all(p.sent == [] for p in h.games.values())
    h.svc.gate_disconnected(2, h.gates[2])
    for g in (1, 2, 3):
        assert [(e.msgtype, e.gate_id) for e in h.games[g].sent] == [
            (MsgType.NOTIFY_GATE_DISCONNECTED, 2)
        ]
    assert 2 not in h.svc.gates


def test_game_down_forgets_routes_and_notifies_the_others() -> None:
    h = cluster(3)
    h.game(2, notify_create(E1))
    h.game(2, notify_create(E2))
    h.game(1, notify_create(E3))
    g2 = h.games[2]
    h.svc.game_disconnected(2, g2)
    for g in (1, 3):
        assert [(e.msgtype, e.game_id) for e in h.games[g].sent] == [
            (MsgType.NOTIFY_GAME_DISCONNECTED, 2)
        ]
    assert g2.of_type(MsgType.NOTIFY_GAME_DISCONNECTED) == []
    dropped = h.svc.stats["dropped"]
    h.game(1, call(E1, "a"))
    h.game(1, call(E2, "b"))
    h.game(3, call(E3, "c"))
    h.clock.advance(EARLY_HOLD_SECONDS + 1)
    h.svc.tick()
    assert h.svc.stats["dropped"] == dropped + 2
    assert h.games[1].calls() == [(E3, "c")]
    g4 = h.connect_game(4)
    assert sorted(ack_of(g4)["games"]) == [1, 3, 4]


def test_freeze_queues_messages_and_restore_releases_them_after_the_ack() -> None:
    h = cluster(2, 1)
    h.game(1, notify_create(E1))
    g1 = h.games[1]
    h.game(1, Envelope(msgtype=MsgType.START_FREEZE_GAME, game_id=1))
    assert g1.types() == [MsgType.START_FREEZE_GAME_ACK]
    assert unpack(g1.sent[0].payload) == DISP_ID
    # Between the ACK and the disconnect, messages are already held back.
    h.game(2, call(E1, "a"))
    h.svc.game_disconnected(1, g1)
    assert h.games[2].of_type(MsgType.NOTIFY_GAME_DISCONNECTED) == []
    h.game(2, call(E1, "b"))
    h.svc.gate_disconnected(1, h.gates[1])
    h.game(2, call(E1, "c"))
    assert g1.types() == [MsgType.START_FREEZE_GAME_ACK]

    g1b = h.connect_game(1, eids=[E1], restore=True)
    assert g1b.sent[0].msgtype == MsgType.SET_GAME_ID_ACK
    assert ack_of(g1b)["rejected"] == []
    assert [(e.msgtype, e.entity_id, e.name) for e in g1b.sent[1:]] == [
        (MsgType.CALL_ENTITY_METHOD, E1, "a"),
        (MsgType.CALL_ENTITY_METHOD, E1, "b"),
        (MsgType.NOTIFY_GATE_DISCONNECTED, "", ""),
        (MsgType.CALL_ENTITY_METHOD, E1, "c"),
    ]
    h.game(2, call(E1, "d"))
    assert g1b.calls()[-1] == (E1, "d")
    assert [e.game_id for e in h.games[2].of_type(MsgType.NOTIFY_GAME_CONNECTED)] == [1]


def test_frozen_game_counts_as_alive_for_handshakes() -> None:
    h = cluster(2)
    h.game(1, notify_create(E1))
    h.game(1, Envelope(msgtype=MsgType.START_FREEZE_GAME, game_id=1))
    h.svc.game_disconnected(1, h.games[1])
    g3 = h.connect_game(3, eids=[E1])
    ack = ack_of(g3)
    assert ack["rejected"] == [E1]
    assert sorted(ack["games"]) == [1, 2, 3]


def test_frozen_queue_byte_bound(caplog: pytest.LogCaptureFixture) -> None:
    # Each queued call costs len(payload) + 64 bytes: 100 + 64 = 164; six fit in 1000.
    h = cluster(2, frozen_queue_max_bytes=1000)
    h.game(1, notify_create(E1))
    h.game(1, Envelope(msgtype=MsgType.START_FREEZE_GAME, game_id=1))
    h.svc.game_disconnected(1, h.games[1])
    dropped = h.svc.stats["dropped"]
    with caplog.at_level(logging.ERROR, logger="goworld.dispatcher"):
        for i in range(8):
            h.game(2, call(E1, str(i), bytes(100)))
    assert h.svc.stats["dropped"] == dropped + 2
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2
    assert "frozen_queue_max_bytes" in errors[0].getMessage()
    g1b = h.connect_game(1, eids=[E1], restore=True)
    assert g1b.calls() == [(E1, str(i)) for i in range(6)]


def test_call_nil_spaces_goes_to_every_game_but_the_excepted_one() -> None:
    h = cluster(3)
    h.game(
        2, Envelope(msgtype=MsgType.CALL_NIL_SPACES, game_id=2, name="Reload", payload=b"\x00\x00")
    )
    assert h.games[2].sent == []
    for g in (1, 3):
        assert [(e.msgtype, e.name) for e in h.games[g].sent] == [
            (MsgType.CALL_NIL_SPACES, "Reload")
        ]


# ---- gate-bound traffic --------------------------------------------------------------------


def test_filtered_call_goes_to_every_gate_exactly_once() -> None:
    h = cluster(2, 3)
    env = Envelope(msgtype=MsgType.CALL_FILTERED_CLIENTS, payload=b"\xdd\x05\x00payload")
    h.game(1, env)
    for g in (1, 2, 3):
        assert [e.payload for e in h.gates[g].sent] == [b"\xdd\x05\x00payload"]
    assert all(p.sent == [] for p in h.games.values())


@pytest.mark.parametrize("msgtype", [*range(1002, 1013), 1502])
def test_client_bound_messages_go_to_the_named_gate(msgtype: int) -> None:
    h = cluster(1, 3)
    env = Envelope(msgtype=msgtype, gate_id=2, client_id=cid(1), payload=b"\x01\x02body")
    h.game(1, env)
    assert [(e.msgtype, e.client_id, e.payload) for e in h.gates[2].sent] == [
        (msgtype, cid(1), b"\x01\x02body")
    ]
    assert h.gates[1].sent == [] and h.gates[3].sent == []
    dropped = h.svc.stats["dropped"]
    h.game(1, Envelope(msgtype=msgtype, gate_id=9, client_id=cid(1), payload=b"x"))
    assert h.svc.stats["dropped"] == dropped + 1


def _record(entity_id: str, tag: int) -> bytes:
    return entity_id.encode("latin-1") + bytes([tag]) * 16


def test_client_syncs_are_regrouped_per_game() -> None:
    h = cluster(2)
    h.game(1, notify_create(E1))
    h.game(2, notify_create(E2))
    h.game(1, notify_create(E3))
    h.game(1, Envelope(msgtype=MsgType.LOAD_ENTITY_SOMEWHERE, game_id=2, entity_id=E5, name="A"))
    h.clear()
    payload = b"".join(
        [_record(E1, 1), _record(E4, 2), _record(E2, 3), _record(E5, 4), _record(E3, 5)]
    )
    h.gate(1, Envelope(msgtype=MsgType.SYNC_POSITION_YAW_FROM_CLIENT, payload=payload, gate_id=1))
    s1 = h.games[1].of_type(MsgType.SYNC_POSITION_YAW_FROM_CLIENT)
    s2 = h.games[2].of_type(MsgType.SYNC_POSITION_YAW_FROM_CLIENT)
    assert [e.payload for e in s1] == [_record(E1, 1) + _record(E3, 5)]
    assert [e.payload for e in s2] == [_record(E2, 3)]


def test_client_syncs_never_reach_a_freezing_game() -> None:
    # After START_FREEZE_GAME the game snapshots its world: a position applied after that
    # would reach clients (AOI creates/destroys) but not the snapshot. Syncs are dropped
    # (clients resend their position several times a second).
    h = cluster(2)
    h.game(1, notify_create(E1))
    h.game(2, notify_create(E2))
    h.game(1, Envelope(msgtype=MsgType.START_FREEZE_GAME, game_id=1))
    h.clear()
    payload = _record(E1, 1) + _record(E2, 2)
    h.gate(1, Envelope(msgtype=MsgType.SYNC_POSITION_YAW_FROM_CLIENT, payload=payload, gate_id=1))
    assert h.games[1].of_type(MsgType.SYNC_POSITION_YAW_FROM_CLIENT) == []
    s2 = h.games[2].of_type(MsgType.SYNC_POSITION_YAW_FROM_CLIENT)
    assert [e.payload for e in s2] == [_record(E2, 2)]


# ---- replacement and anti-spoofing ---------------------------------------------------------


def test_second_connection_of_a_game_replaces_and_closes_the_old_one() -> None:
    h = cluster(2)
    h.game(1, notify_create(E1))
    old = h.games[1]
    new = h.connect_game(1, eids=[E1], reconnect=True)
    assert old.closed
    assert not new.closed
    assert new.sent[0].msgtype == MsgType.SET_GAME_ID_ACK
    assert ack_of(new)["rejected"] == []
    notes = [(e.msgtype, e.game_id) for e in h.games[2].sent]
    assert notes == [(MsgType.NOTIFY_GAME_DISCONNECTED, 1), (MsgType.NOTIFY_GAME_CONNECTED, 1)]
    # The old stream's teardown arrives late: ignored.
    h.svc.game_disconnected(1, old)
    assert len(h.games[2].sent) == 2
    h.game(2, call(E1, "m"))
    assert new.calls() == [(E1, "m")]
    assert old.calls() == []


def test_second_connection_of_a_gate_replaces_and_closes_the_old_one() -> None:
    h = cluster(1, 1)
    old = h.gates[1]
    new = h.connect_gate(1)
    assert old.closed and not new.closed
    h.svc.gate_disconnected(1, old)  # late teardown of the old stream: no second notice
    assert [e.msgtype for e in h.games[1].sent] == [MsgType.NOTIFY_GATE_DISCONNECTED]
    h.game(1, Envelope(msgtype=1009, gate_id=1, client_id=cid(1), payload=b"p"))
    assert len(new.sent) == 1 and old.sent == []


def test_replacing_a_gate_connection_tells_the_games_its_clients_are_gone() -> None:
    # Gates never reconnect: a gate that loses a dispatcher quits (gate/__main__.py,
    # reconnect=False), so a second SET_GATE_ID for the same id is a new gate process and every
    # client of the old one is gone. The old stream's own teardown is ignored once it has been
    # replaced, so unless the replacement itself tells the games, the entities bound to the
    # old gate's clients never learn that their clients left.
    h = cluster(2, 1)
    old = h.gates[1]
    h.connect_gate(1)
    h.svc.gate_disconnected(1, old)  # late teardown of the old stream
    for g in (1, 2):
        notes = h.games[g].of_type(MsgType.NOTIFY_GATE_DISCONNECTED)
        assert [e.gate_id for e in notes] == [1], f"game{g} was not told gate1's clients left"


@pytest.mark.parametrize(
    "msgtype",
    [
        MsgType.NOTIFY_CLIENT_CONNECTED,
        MsgType.NOTIFY_CLIENT_DISCONNECTED,
        MsgType.CALL_ENTITY_METHOD_FROM_CLIENT,
    ],
)
def test_gate_id_on_gate_messages_is_overwritten(msgtype: int) -> None:
    h = cluster(1, 2)
    h.game(1, notify_create(E1))
    h.clear()
    h.gate(2, Envelope(msgtype=msgtype, entity_id=E1, client_id=cid(1), gate_id=1, name="m"))
    got = h.games[1].of_type(msgtype)
    assert [e.gate_id for e in got] == [2]


def test_unexpected_message_types_are_dropped() -> None:
    h = cluster(1, 1)
    h.game(1, Envelope(msgtype=MsgType.SET_GATE_ID))
    h.gate(1, Envelope(msgtype=MsgType.CALL_ENTITY_METHOD, entity_id=E1))
    assert h.svc.stats["dropped"] == 2


# ---- property: routing never misdelivers or reorders ---------------------------------------

GAMES = (1, 2, 3)
N_ENTITIES = 4
OPS = (
    "create",
    "create_local",
    "load",
    "load_again",
    "finish_load",
    "call",
    "call",
    "call",
    "migrate",
    "real_migrate",
    "cancel",
    "destroy",
)


class _Model:
    """What the games know: who owns, loads or migrates each entity."""

    def __init__(self, h: Harness) -> None:
        self.h = h
        self.owns: dict[int, set[str]] = {g: set() for g in GAMES}
        self.loading: dict[str, int] = {}
        self.state: dict[str, str] = {}  # absent | live | loading | migrating
        self.owner: dict[str, int] = {}
        self.target: dict[str, int] = {}
        self.seq = 0
        self.expected: dict[str, list[int]] = {}
        self.delivered: dict[str, list[int]] = {}
        self.seen = dict.fromkeys(GAMES, 0)
        # Calls for an entity the dispatcher does not know yet are held (EARLY_HOLD_SECONDS)
        # and delivered once it is created or loaded; the model's clock never runs out.
        self.early: dict[str, list[int]] = {}

    def _adopt_early(self, e: str) -> None:
        self.expected.setdefault(e, []).extend(self.early.pop(e, []))

    def exists_anywhere(self, e: str) -> bool:
        return any(e in s for s in self.owns.values()) or e in self.loading

    def check_deliveries(self) -> None:
        for g in GAMES:
            peer = self.h.games[g]
            new, self.seen[g] = peer.sent[self.seen[g] :], len(peer.sent)
            for env in new:
                e = env.entity_id
                t = env.msgtype
                if t == MsgType.CALL_ENTITY_METHOD:
                    assert e in self.owns[g], f"call {env.name} for {e} delivered to game{g}"
                    self.delivered.setdefault(e, []).append(int(env.name))
                elif t == MsgType.CREATE_ENTITY_SOMEWHERE:
                    assert not self.exists_anywhere(e), f"{e} created twice"
                    self.owns[g].add(e)
                    self.owner[e] = g
                elif t == MsgType.LOAD_ENTITY_SOMEWHERE:
                    assert not self.exists_anywhere(e), f"{e} loaded while it exists"
                    self.loading[e] = g
                elif t == MsgType.REAL_MIGRATE:
                    assert self.target.get(e) == g
                    assert not self.exists_anywhere(e)
                    self.owns[g].add(e)
                    self.owner[e] = g
                elif t == MsgType.MIGRATE_REQUEST:
                    # The echo is the ACK: from now on the entity is in transit and the game
                    # must see no call for it until it cancels (the dispatcher holds them).
                    assert self.owner.get(e) == g and e in self.owns[g]
                    self.owns[g].discard(e)

    def apply(self, op: str, e: str, gi: int) -> None:
        h = self.h
        state = self.state.get(e, "absent")
        g = gi if gi else 1
        if op == "create" and state == "absent":
            self.state[e] = "live"
            self._adopt_early(e)
            h.game(
                1,
                Envelope(
                    msgtype=MsgType.CREATE_ENTITY_SOMEWHERE, game_id=gi, entity_id=e, name="A"
                ),
            )
        elif op == "create_local" and state == "absent":
            self.state[e] = "live"
            self._adopt_early(e)
            self.owns[g].add(e)
            self.owner[e] = g
            h.game(g, notify_create(e))
        elif op == "load" and state == "absent":
            self.state[e] = "loading"
            self._adopt_early(e)
            h.game(
                1,
                Envelope(msgtype=MsgType.LOAD_ENTITY_SOMEWHERE, game_id=gi, entity_id=e, name="A"),
            )
        elif op == "load_again" and state != "absent":
            h.game(
                g,
                Envelope(msgtype=MsgType.LOAD_ENTITY_SOMEWHERE, game_id=gi, entity_id=e, name="A"),
            )
        elif op == "finish_load" and state == "loading":
            self._finish_load(e)
        elif op == "call":
            self.seq += 1
            if state != "absent":
                self.expected.setdefault(e, []).append(self.seq)
            else:
                self.early.setdefault(e, []).append(self.seq)
            h.game(g, call(e, str(self.seq)))
        elif op == "migrate" and state == "live":
            owner = self.owner[e]
            target = gi if gi and gi != owner else owner % len(GAMES) + 1
            self.state[e] = "migrating"
            self.target[e] = target
            h.game(
                owner,
                Envelope(
                    msgtype=MsgType.MIGRATE_REQUEST, entity_id=e, name=eid(99), game_id=target
                ),
            )
        elif op == "real_migrate" and state == "migrating":
            self._real_migrate(e)
        elif op == "cancel" and state == "migrating":
            self.state[e] = "live"
            self.owns[self.owner[e]].add(e)  # the game keeps the entity and resumes it
            h.game(self.owner[e], Envelope(msgtype=MsgType.CANCEL_MIGRATE, entity_id=e))
        elif op == "destroy" and state == "live":
            owner = self.owner.pop(e)
            self.owns[owner].discard(e)
            self.state[e] = "absent"
            h.game(owner, Envelope(msgtype=MsgType.NOTIFY_DESTROY_ENTITY, entity_id=e))
        self.check_deliveries()

    def _finish_load(self, e: str) -> None:
        g = self.loading.pop(e)
        self.owns[g].add(e)
        self.owner[e] = g
        self.state[e] = "live"
        self.h.game(g, notify_create(e))

    def _real_migrate(self, e: str) -> None:
        owner = self.owner[e]
        target = self.target[e]
        assert e not in self.owns[owner]  # given away when the ACK (echo) arrived
        self.state[e] = "live"
        self.h.game(
            owner, Envelope(msgtype=MsgType.REAL_MIGRATE, entity_id=e, game_id=target, payload=b"m")
        )

    def settle(self) -> None:
        for e, state in list(self.state.items()):
            if state == "loading":
                self._finish_load(e)
            elif state == "migrating":
                self._real_migrate(e)
            self.check_deliveries()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(OPS),
            st.integers(0, N_ENTITIES - 1),
            st.integers(0, len(GAMES)),
        ),
        max_size=60,
    )
)
def test_routing_never_misdelivers_or_reorders(ops: list[tuple[str, int, int]]) -> None:
    h = Harness()
    for g in GAMES:
        h.connect_game(g)
    model = _Model(h)
    model.check_deliveries()
    for op, ei, gi in ops:
        model.apply(op, eid(ei), gi)
    model.settle()
    for e in {*model.expected, *model.delivered}:
        delivered = model.delivered.get(e, [])
        assert delivered == sorted(delivered), f"calls to {e} reordered: {delivered}"
        assert delivered == model.expected.get(e, []), f"calls to {e}: lost or duplicated"


def test_calls_to_a_frozen_game_queue_even_while_its_stream_is_still_open() -> None:
    # The CALL_ENTITY_METHOD fast path must not bypass the freeze: between START_FREEZE_GAME
    # and the stream closing, calls for the game's entities are held, not written to it.
    h = cluster(2)
    h.game(1, notify_create(E1))
    h.game(2, call(E1, "before"))
    assert h.games[1].calls()[-1] == (E1, "before")
    h.game(1, Envelope(msgtype=MsgType.START_FREEZE_GAME, game_id=1))
    h.game(2, call(E1, "held"))
    assert (E1, "held") not in h.games[1].calls()
    h.svc.game_disconnected(1, h.games[1])
    g1b = h.connect_game(1, eids=[E1], restore=True)
    assert g1b.calls() == [(E1, "held")]


# ---- bounds and back-pressure (issue 14) ---------------------------------------------------


def _client_call(entity_id: str, client: int, payload: bytes = b"\x00\x00") -> Envelope:
    return Envelope(
        msgtype=MsgType.CALL_ENTITY_METHOD_FROM_CLIENT,
        entity_id=entity_id,
        name="Chat",
        payload=payload,
        client_id=cid(client),
        gate_id=1,
    )


def test_clients_of_a_game_that_is_behind_are_paused_and_resumed_when_it_catches_up() -> None:
    h = cluster(2, pause_backlog_bytes=1000)
    h.game(1, notify_create(E1))
    h.game(2, notify_create(E2))
    h.games[1].backlog_bytes = 5000  # game1 is stalled
    for _ in range(3):
        h.gate(1, _client_call(E1, 1))
    h.gate(1, _client_call(E2, 2))  # game2 keeps up: its client is never paused
    pauses = h.gates[1].of_type(MsgType.PAUSE_CLIENTS)
    assert [p.payload for p in pauses] == [cid(1).encode()]  # once, however many calls
    assert len(h.games[1].of_type(MsgType.CALL_ENTITY_METHOD_FROM_CLIENT)) == 3  # none lost
    h.svc.relieve()
    assert h.gates[1].of_type(MsgType.RESUME_CLIENTS) == []  # still behind
    h.games[1].backlog_bytes = 100
    h.svc.relieve()
    resumes = h.gates[1].of_type(MsgType.RESUME_CLIENTS)
    assert [r.payload for r in resumes] == [cid(1).encode()]
    h.svc.relieve()
    assert len(h.gates[1].of_type(MsgType.RESUME_CLIENTS)) == 1


def test_clients_paused_for_a_game_that_dies_are_resumed() -> None:
    h = cluster(1, pause_backlog_bytes=1000)
    h.game(1, notify_create(E1))
    h.games[1].backlog_bytes = 5000
    h.gate(1, _client_call(E1, 7))
    assert h.gates[1].of_type(MsgType.PAUSE_CLIENTS)
    h.svc.game_disconnected(1, h.games[1])
    assert [r.payload for r in h.gates[1].of_type(MsgType.RESUME_CLIENTS)] == [cid(7).encode()]


def test_a_peer_past_its_bound_gets_nothing_more_and_the_drop_is_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = cluster(1, peer_max_backlog_bytes=10_000)
    h.game(1, notify_create(E1))
    h.games[1].backlog_bytes = 10_000
    h.game(1, call(E1, "Hit"))  # the inlined hot path
    h.gate(1, _client_call(E1, 1))
    assert h.games[1].of_type(MsgType.CALL_ENTITY_METHOD) == []
    assert h.games[1].of_type(MsgType.CALL_ENTITY_METHOD_FROM_CLIENT) == []
    assert h.svc.stats["dropped"] == 2
    assert "game1 is 10000 bytes behind" in caplog.text
    h.gates[1].backlog_bytes = 10_000
    h.game(1, Envelope(msgtype=MsgType.CALL_ENTITY_METHOD_ON_CLIENT, gate_id=1, client_id=cid(1)))
    h.game(1, Envelope(msgtype=MsgType.CALL_FILTERED_CLIENTS, payload=b"x"))
    assert h.gates[1].sent == []
    assert h.svc.stats["dropped"] == 4


def test_position_syncs_for_a_game_that_is_behind_are_dropped() -> None:
    h = cluster(2, pause_backlog_bytes=1000)
    h.game(1, notify_create(E1))
    h.game(2, notify_create(E2))
    h.games[1].backlog_bytes = 1000
    payload = _record(E1, 1) + _record(E2, 2)
    h.gate(1, Envelope(msgtype=MsgType.SYNC_POSITION_YAW_FROM_CLIENT, payload=payload, gate_id=1))
    assert h.games[1].of_type(MsgType.SYNC_POSITION_YAW_FROM_CLIENT) == []
    assert [e.payload for e in h.games[2].of_type(MsgType.SYNC_POSITION_YAW_FROM_CLIENT)] == [_record(E2, 2)]
    assert h.svc.stats["dropped_syncs"] == 1


def test_new_clients_get_their_boot_entity_on_a_game_that_keeps_up() -> None:
    h = cluster(2, pause_backlog_bytes=1000)
    h.games[1].backlog_bytes = 5000
    for n in range(4):
        h.gate(1, _client_connected(n, eid(100 + n)))
    assert len(h.games[2].of_type(MsgType.NOTIFY_CLIENT_CONNECTED)) == 4
    assert h.games[1].of_type(MsgType.NOTIFY_CLIENT_CONNECTED) == []
    h.games[2].backlog_bytes = 5000  # everyone behind: round robin as before
    for n in range(4, 8):
        h.gate(1, _client_connected(n, eid(100 + n)))
    assert len(h.games[1].of_type(MsgType.NOTIFY_CLIENT_CONNECTED)) == 2


def test_calls_held_for_unknown_entities_are_bounded_in_bytes() -> None:
    h = cluster(1)
    big = b"\x00" * (1024 * 1024)
    for n in range(40):  # 40 MiB for 40 ids that do not exist
        h.game(1, call(eid(500 + n), "Hit", big))
    held = sum(len(e.payload) for _, envs in h.svc._early.values() for e in envs)
    assert held <= 16 * 1024 * 1024
    assert h.svc.stats["dropped"] >= 24
    h.clock.advance(10)
    h.svc.tick()
    assert h.svc._early == {} and h.svc._early_bytes == 0


def test_a_blocked_entity_queue_is_bounded_in_bytes(caplog: pytest.LogCaptureFixture) -> None:
    h = cluster(2)
    h.game(1, Envelope(msgtype=MsgType.LOAD_ENTITY_SOMEWHERE, game_id=2, entity_id=E1, name="A"))
    big = b"\x00" * (1024 * 1024)
    for _ in range(20):
        h.game(1, call(E1, "Hit", big))
    h.game(2, notify_create(E1))
    delivered = h.games[2].of_type(MsgType.CALL_ENTITY_METHOD)
    assert 0 < len(delivered) <= 8
    assert "queue full" in caplog.text


def test_kick_client_goes_to_the_named_gate() -> None:
    h = cluster(1, n_gates=2)
    h.game(1, Envelope(msgtype=MsgType.KICK_CLIENT, gate_id=2, client_id=cid(3), name="flood"))
    assert [(e.client_id, e.name) for e in h.gates[2].of_type(MsgType.KICK_CLIENT)] == [(cid(3), "flood")]
    assert h.gates[1].sent == []


# ---- a gate's broken stream, a restarted dispatcher (issue 15) -----------------------------


def _gate_with_instance(h: Harness, gate_id: int, instance: str) -> FakePeer:
    peer = FakePeer(f"gate{gate_id}")
    h.gates[gate_id] = peer
    h.svc.gate_connected(gate_id, peer, instance)
    return peer


def test_a_gate_back_within_its_grace_keeps_its_clients_and_gets_what_was_held() -> None:
    h = cluster(1, n_gates=0)
    first = _gate_with_instance(h, 1, "pid-a")
    h.svc.gate_disconnected(1, first)
    h.game(1, Envelope(msgtype=MsgType.CALL_ENTITY_METHOD_ON_CLIENT, gate_id=1, client_id=cid(1)))
    h.game(1, Envelope(msgtype=MsgType.CALL_FILTERED_CLIENTS, payload=b"f"))
    h.clock.advance(5)
    h.svc.tick()
    assert h.games[1].of_type(MsgType.NOTIFY_GATE_DISCONNECTED) == []
    again = _gate_with_instance(h, 1, "pid-a")
    assert again.types() == [MsgType.CALL_ENTITY_METHOD_ON_CLIENT, MsgType.CALL_FILTERED_CLIENTS]
    h.clock.advance(60)
    h.svc.tick()
    assert h.games[1].of_type(MsgType.NOTIFY_GATE_DISCONNECTED) == []


def test_a_gate_away_longer_than_its_grace_is_gone_and_told_when_it_returns() -> None:
    h = cluster(1, n_gates=0)
    first = _gate_with_instance(h, 1, "pid-a")
    h.svc.gate_disconnected(1, first)
    h.clock.advance(11)
    h.svc.tick()
    assert len(h.games[1].of_type(MsgType.NOTIFY_GATE_DISCONNECTED)) == 1
    again = _gate_with_instance(h, 1, "pid-a")
    acks = again.of_type(MsgType.SET_GATE_ID)
    assert [a.name for a in acks] == ["dropped"]


def test_what_a_broken_stream_had_not_written_rejoins_the_held_queue_within_its_bound() -> None:
    # The stream's writer hands back what it had not written (requeue): it goes first, then
    # what was held since; past the bound the newest go, with one log line.
    h = cluster(1, n_gates=0)
    first = _gate_with_instance(h, 1, "pid-a")
    h.svc.gate_disconnected(1, first)
    mib = b"\x00" * (1024 * 1024)
    h.game(1, Envelope(msgtype=MsgType.CALL_ENTITY_METHOD_ON_CLIENT, gate_id=1, name="held", payload=b"x"))
    unsent = [Envelope(msgtype=MsgType.CALL_ENTITY_METHOD_ON_CLIENT, gate_id=1, name=f"u{i}", payload=mib)
              for i in range(40)]  # 40 MiB the writer had (its own bound is 64 MiB)
    h.svc.requeue("gate1", unsent[:2])
    again = _gate_with_instance(h, 1, "pid-a")
    assert [e.name for e in again.sent] == ["u0", "u1", "held"]  # in order, the unsent first
    h.svc.gate_disconnected(1, again)
    dropped = h.svc.stats["dropped"]
    h.svc.requeue("gate1", unsent)
    back = _gate_with_instance(h, 1, "pid-a")
    kept = [e.name for e in back.sent]
    assert kept == [f"u{i}" for i in range(len(kept))] and 10 <= len(kept) < 16  # 16 MiB at most
    assert h.svc.stats["dropped"] - dropped == 40 - len(kept)


def test_what_a_frozen_games_broken_stream_had_not_written_keeps_the_frozen_bound() -> None:
    h = cluster(1, n_gates=0, frozen_queue_max_bytes=4 * 1024 * 1024)
    h.svc.game_disconnected(1, h.games[1])  # no reconnect grace here: down, not frozen
    h.svc.requeue("game1", [Envelope(msgtype=MsgType.CALL_ENTITY_METHOD, payload=b"x")])
    assert h.svc.stats["dropped"] == 1  # nobody is held for it
    h2 = cluster(1, n_gates=0, frozen_queue_max_bytes=4 * 1024 * 1024, game_reconnect_grace=5.0)
    h2.svc.game_disconnected(1, h2.games[1])  # away: frozen for its grace
    mib = b"\x00" * (1024 * 1024)
    h2.svc.requeue("game1", [Envelope(msgtype=MsgType.CALL_ENTITY_METHOD, name=f"u{i}", payload=mib)
                             for i in range(10)])
    game = h2.svc.games[1]
    assert [e.name for e in game.pending] == ["u0", "u1", "u2"]  # 4 MiB with the overhead
    assert game.pending_bytes <= 4 * 1024 * 1024 and h2.svc.stats["dropped"] == 7


def test_a_new_gate_process_means_the_old_ones_clients_are_gone_at_once() -> None:
    h = cluster(1, n_gates=0)
    first = _gate_with_instance(h, 1, "pid-a")
    h.svc.gate_disconnected(1, first)
    second = _gate_with_instance(h, 1, "pid-b")
    assert len(h.games[1].of_type(MsgType.NOTIFY_GATE_DISCONNECTED)) == 1
    assert second.of_type(MsgType.SET_GATE_ID) == []
    h.clock.advance(60)
    h.svc.tick()
    assert len(h.games[1].of_type(MsgType.NOTIFY_GATE_DISCONNECTED)) == 1


def test_what_is_held_for_an_away_gate_is_bounded() -> None:
    h = cluster(1, n_gates=0)
    first = _gate_with_instance(h, 1, "pid-a")
    h.svc.gate_disconnected(1, first)
    big = b"\x00" * (1024 * 1024)
    for _ in range(20):
        h.game(1, Envelope(msgtype=MsgType.CALL_ENTITY_METHOD_ON_CLIENT, gate_id=1, payload=big))
    again = _gate_with_instance(h, 1, "pid-a")
    assert 0 < len(again.sent) < 20
    assert h.svc.stats["dropped"] >= 20 - len(again.sent)


def test_a_restarted_dispatcher_learns_the_kvreg_back_from_the_games() -> None:
    h = Harness()
    h.connect_game(1, kvreg={"Service/Chat#0": "game1", "Service/Chat#0/EntityID": eid(9)})
    assert h.svc.kvreg == {"Service/Chat#0": "game1", "Service/Chat#0/EntityID": eid(9)}
    h.connect_game(2, kvreg={"Service/Chat#0": "game2"})  # first writer still wins
    assert h.svc.kvreg["Service/Chat#0"] == "game1"
    assert ack_of(h.games[2])["kvreg"]["Service/Chat#0/EntityID"] == eid(9)


def test_a_restarted_dispatcher_takes_no_claim_before_every_game_is_back() -> None:
    # dispatcher1 restarted empty; a restarted game1 (empty mirror) is back first and claims a
    # key that game2 holds: the claim waits until game2's hello has told the registry back.
    h = Harness(desired_games=2, desired_gates=0)
    g1 = h.connect_game(1)
    h.game(1, _kvreg("Service/S#0", "game1", False))
    assert h.svc.kvreg == {} and g1.of_type(MsgType.KVREG_REGISTER) == []
    g2 = h.connect_game(2, kvreg={"Service/S#0": "game2"})  # the deployment is ready again
    assert h.svc.kvreg == {"Service/S#0": "game2"}
    told = [(e.name, unpack(e.payload)) for e in g1.of_type(MsgType.KVREG_REGISTER)]
    # learnt from game2's hello, then the answer to its own claim: game2 holds it
    assert told == [("Service/S#0", ["game2", False])] * 2
    assert g2.of_type(MsgType.KVREG_REGISTER) == []


def test_a_claim_of_a_key_the_claimer_already_holds_is_confirmed_to_it() -> None:
    # a restarted game claims a key the registry gives to its former process: it must hear it
    h = cluster(2)
    h.game(1, _kvreg("Service/S#0", "game1", False))
    h.clear()
    h.game(1, _kvreg("Service/S#0", "game1", False))
    assert [(e.name, unpack(e.payload)) for e in h.games[1].sent] == [("Service/S#0", ["game1", False])]
    assert h.games[2].sent == []


def test_held_claims_are_taken_after_the_settle_time_when_a_game_never_returns() -> None:
    h = Harness(desired_games=2, desired_gates=0)
    g1 = h.connect_game(1)
    h.game(1, _kvreg("Service/S#0", "game1", False))
    h.clock.advance(KVREG_SETTLE_SECONDS)
    h.svc.tick()
    assert h.svc.kvreg == {"Service/S#0": "game1"}
    assert len(g1.of_type(MsgType.KVREG_REGISTER)) == 1


def test_a_restarted_dispatcher_holds_what_is_for_gates_not_back_yet() -> None:
    h = Harness(desired_games=1, desired_gates=2)
    h.connect_game(1)
    to_gate2 = Envelope(msgtype=MsgType.CALL_ENTITY_METHOD_ON_CLIENT, gate_id=2, client_id=cid(1))
    h.game(1, to_gate2)
    h.game(1, Envelope(msgtype=MsgType.CALL_ENTITY_METHOD_ON_CLIENT, gate_id=7, client_id=cid(2)))
    assert h.svc.stats["dropped"] == 1  # gate 7 is not in the deployment
    h.clock.advance(3)
    gate2 = _gate_with_instance(h, 2, "pid-b")
    assert gate2.types() == [MsgType.CALL_ENTITY_METHOD_ON_CLIENT]  # held, then delivered
    assert h.games[1].of_type(MsgType.NOTIFY_GATE_DISCONNECTED) == []
    # gate1 never comes back: after the grace what was held goes, and so do its clients
    h.game(1, Envelope(msgtype=MsgType.CALL_ENTITY_METHOD_ON_CLIENT, gate_id=1, client_id=cid(3)))
    h.clock.advance(10)
    h.svc.tick()
    assert [e.gate_id for e in h.games[1].of_type(MsgType.NOTIFY_GATE_DISCONNECTED)] == [1]
    late = _gate_with_instance(h, 1, "pid-a")  # shows up after all: told its clients are gone
    assert [e.name for e in late.of_type(MsgType.SET_GATE_ID)] == ["dropped"]
    assert late.of_type(MsgType.CALL_ENTITY_METHOD_ON_CLIENT) == []


def test_a_dispatcher_that_was_stopped_itself_does_not_call_the_games_hung() -> None:
    h = cluster(2, game_hang_timeout=3.0)
    h.svc.tick()
    h.clock.advance(1)
    h.svc.tick()
    h.clock.advance(6)  # the dispatcher was SIGSTOPped: no tick, no batch read
    h.svc.tick()
    assert not any(g.hung for g in h.svc.games.values())
    h.clock.advance(1)
    h.svc.tick()
    h.clock.advance(1)
    h.svc.tick()
    h.clock.advance(1.5)  # now the games really are silent for more than 3 s
    h.svc.tick()
    assert all(g.hung for g in h.svc.games.values())


# ---- goworld stop --cluster ----------------------------------------------------------------


def test_drain_gates_asks_every_connected_gate_and_keeps_their_reports() -> None:
    h = cluster(n_games=1, n_gates=3)
    h.svc.gate_disconnected(3, h.gates[3])  # away: not asked
    h.clear()
    assert h.svc.drain_gates() == [1, 2]
    for gate_id in (1, 2):
        assert h.gates[gate_id].types() == [MsgType.DRAIN_GATE]
    assert h.gates[3].sent == [] and h.games[1].sent == []
    h.gate(1, Envelope(msgtype=MsgType.GATE_DRAINED, gate_id=1, payload=pack({"clients": 4, "told": 3, "seconds": 0.2})))
    h.gate(2, Envelope(msgtype=MsgType.GATE_DRAINED, gate_id=2, payload=b"\xc1"))  # not msgpack
    assert h.svc.drain_reports == {1: {"clients": 4, "told": 3, "seconds": 0.2}, 2: {}}
    assert h.svc.stats["dropped"] == 0
    h.svc.drain_gates()  # asked again: the old answers are gone
    assert h.svc.drain_reports == {}


def test_one_clients_calls_to_unknown_entities_do_not_crowd_out_the_games() -> None:
    h = cluster(2)
    for n in range(200):  # one client calling made-up ids
        h.gate(1, Envelope(msgtype=MsgType.CALL_ENTITY_METHOD_FROM_CLIENT, entity_id=eid(700 + n),
                           name="m", client_id=cid(1)))
    held = [e for _, envs in h.svc._early.values() for e in envs]
    assert len(held) == EARLY_PER_CLIENT and h.svc.stats["dropped"] == 200 - EARLY_PER_CLIENT
    # a game's call to an entity being created is still held, and delivered once it exists
    h.game(1, call(E1, "Welcome"))
    h.game(2, notify_create(E1))
    assert h.games[2].calls() == [(E1, "Welcome")]
    # the client's places come back when its held calls go
    h.clock.advance(EARLY_HOLD_SECONDS + 1)
    h.svc.tick()
    assert h.svc._early == {} and h.svc._early_clients == {}
    h.gate(1, Envelope(msgtype=MsgType.CALL_ENTITY_METHOD_FROM_CLIENT, entity_id=eid(999), name="m",
                       client_id=cid(1)))
    assert len(h.svc._early) == 1


def test_clients_together_hold_at_most_their_share_of_the_unknown_entity_budget() -> None:
    h = cluster(2)
    big = b"\x00" * (1024 * 1024)
    for n in range(40):  # 40 clients, one 1 MiB call each to a made-up id
        h.gate(1, Envelope(msgtype=MsgType.CALL_ENTITY_METHOD_FROM_CLIENT, entity_id=eid(800 + n),
                           name="m", client_id=cid(100 + n), payload=big))
    assert h.svc._early_client_bytes <= EARLY_CLIENTS_MAX_BYTES
    # the games' share is untouched: 8 calls of 1 MiB to entities being created are all kept
    for n in range(8):
        h.game(1, call(eid(900 + n), "Welcome", big))
    for n in range(8):
        h.game(2, notify_create(eid(900 + n)))
    assert len(h.games[2].calls()) == 8
    h.clock.advance(EARLY_HOLD_SECONDS + 1)
    h.svc.tick()
    assert h.svc._early_client_bytes == 0 and h.svc._early_client_ids == set()
