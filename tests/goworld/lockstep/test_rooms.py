"""goworld.lockstep.rooms.RoomManager without I/O: /create text, Connect checks, tokens,
unbound sessions and the tick heap (injected ``now``, fake wall clock, fake sessions)."""

from __future__ import annotations

import random

import pytest

from goworld.lockstep import lockstep_pb2 as pb
from goworld.lockstep.codec import MsgId
from goworld.lockstep.rooms import RoomManager, RoomRefused, parse_u64
from tests.goworld.lockstep import vectors as V
from tests.goworld.lockstep.test_room import (
    CLOSE,
    CONNECT_OK,
    EPS,
    HEARTBEAT,
    PERIOD,
    READY,
    T0,
    WALL0,
    Clock,
    FakeSession,
    at,
    frames_of,
    input_body,
    start_packet,
)

NO_PLAYER, NO_ROOM, ROOM_STATE, TOKEN = 1, 2, 3, 4


def refused(code: int) -> tuple[int, bytes]:
    body: bytes = pb.S2C_ConnectMsg(errorCode=code).SerializeToString()  # type: ignore[arg-type]
    return (MsgId.MSG_Connect, body)


def connect_body(
    player: int, room: int, token: str | None = None, resume: int | None = None
) -> bytes:
    msg = pb.C2S_ConnectMsg(playerID=player, battleID=room)
    if token is not None:
        msg.token = token
    if resume is not None:
        msg.resumeFrame = resume
    body: bytes = msg.SerializeToString()
    return body


class M:
    """A RoomManager with a fake wall clock."""

    def __init__(self, *, secret: bytes = b"k" * 32, **kwargs: object) -> None:
        settings = kwargs.pop("settings", None)
        self.clock = Clock()
        self.mgr = RoomManager(
            settings,  # type: ignore[arg-type]
            secret=secret,
            wall=self.clock.wall,
            **kwargs,  # type: ignore[arg-type]
        )

    @property
    def now(self) -> float:
        return self.clock.now

    def tick(self, now: float) -> list[int]:
        self.clock.now = now
        return [room.id for room in self.mgr.tick(now)]

    def recv(self, session: FakeSession, msg_id: int, body: bytes = b"") -> None:
        self.mgr.receive(session, msg_id, body, self.now)

    def connect(
        self,
        player: int,
        room: int,
        token: str | None = None,
        resume: int | None = None,
        session: FakeSession | None = None,
    ) -> FakeSession:
        session = session or FakeSession(f"p{player}@{room}")
        self.recv(session, MsgId.MSG_Connect, connect_body(player, room, token, resume))
        return session


# ---- /create -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", 1),
        ("0", 0),
        ("007", 7),
        ("18446744073709551615", 2**64 - 1),
        ("18446744073709551616", 0),
        ("99999999999999999999999", 0),
        ("+1", 0),
        (" 1", 0),
        ("1 ", 0),
        ("1_0", 0),
        ("-1", 0),
        ("0x10", 0),
        ("1e3", 0),
        ("", 0),
        ("\uff11", 0),  # a full-width digit: str.isdigit says yes, Go says no
        ("\u0661", 0),  # an Arabic-Indic digit
    ],
)
def test_parse_u64(text: str, value: int) -> None:
    assert parse_u64(text) == value


@pytest.mark.parametrize(
    ("query", "room_id"),
    [
        ("room=1&member=1,2", 1),
        ("room=0&member=1", 0),
        ("room=007", 7),
        ("room=18446744073709551615", 2**64 - 1),
        ("room=18446744073709551616", 0),
        ("room=%2B1", 0),  # "+1"
        ("room=+1", 0),  # "+" in a query is a space: " 1"
        ("room=%201", 0),
        ("room=1_0", 0),
        ("room=", 0),
        ("room=x", 0),
        ("room=%EF%BC%91", 0),  # full-width 1
        ("member=1,2", 0),  # no room
        ("room=3&room=4", 3),  # the first value, as Go's FormValue
    ],
)
def test_http_create_room_id(query: str, room_id: int) -> None:
    m = M()
    status, text = m.mgr.http_create(query, T0)
    assert status == 200
    assert text.startswith(f"room.ID=[{room_id}] room.Secret=[test_room] ")
    assert list(m.mgr.rooms) == [room_id]


@pytest.mark.parametrize(
    ("member", "members", "seats"),
    [
        ("1,2", (1, 2), {1: 1, 2: 2}),
        ("3,1,3", (1, 3), {1: 2, 3: 3}),
        ("1,,x,3", (1, 0, 3), {1: 1, 0: 3, 3: 4}),
        ("%2B1,2_0,18446744073709551616,5", (0, 5), {0: 3, 5: 4}),
        ("18446744073709551615", (2**64 - 1,), {2**64 - 1: 1}),
        (None, (), {}),
    ],
)
def test_http_create_members(
    member: str | None, members: tuple[int, ...], seats: dict[int, int]
) -> None:
    m = M()
    query = "room=9" if member is None else f"room=9&member={member}"
    status, _ = m.mgr.http_create(query, T0)
    room = m.mgr.rooms[9]
    assert status == 200 and room.members == members
    assert {p.id: p.seat for p in room.players.values()} == seats
    assert room.tokens is None and room.seed == 0


def test_http_create_text() -> None:
    m = M()
    m.clock.skew = 100.5  # room.Time is the wall clock's, in whole seconds
    status, text = m.mgr.http_create("room=5&member=02,%201", T0)
    assert (status, text) == (
        200,
        "room.ID=[5] room.Secret=[test_room] room.Time=[1765000100], room.Member=[02, 1]",
    )
    assert m.mgr.rooms[5].members == (2, 0)
    status, text = m.mgr.http_create("room=6", T0)
    assert text == "room.ID=[6] room.Secret=[test_room] room.Time=[1765000100], room.Member=[]"
    assert int(WALL0) == 1765000000


def test_http_create_existing_room() -> None:
    m = M()
    m.mgr.http_create("room=5&member=1,2", T0)
    room = m.mgr.rooms[5]
    assert m.mgr.http_create("room=5&member=3", T0 + 1) == (200, "room id[5] exists")
    assert m.mgr.rooms[5] is room and room.members == (1, 2)
    with pytest.raises(RoomRefused) as info:
        m.mgr.create(5, [1], T0)
    assert info.value.exists
    assert m.mgr.stats["rooms_created"] == 1


def test_max_rooms() -> None:
    m = M(max_rooms=2)
    m.mgr.create(1, [1], T0)
    m.mgr.http_create("room=2&member=1", T0)
    with pytest.raises(RoomRefused) as info:
        m.mgr.create(3, [1], T0)
    assert not info.value.exists
    status, _ = m.mgr.http_create("room=3&member=1", T0)
    assert status == 503
    assert m.mgr.http_create("room=2&member=1", T0) == (200, "room id[2] exists")
    assert sorted(m.mgr.rooms) == [1, 2]


def test_http_rooms_are_bounded_in_total_and_per_host_and_game_rooms_are_not() -> None:
    m = M(max_rooms=10, http_max_rooms=3, http_rooms_per_ip=2)
    create = m.mgr.http_create
    assert create("room=1&member=1", T0, "198.18.0.5")[0] == 200
    assert create("room=2&member=1", T0, "198.18.0.5")[0] == 200
    assert create("room=3&member=1", T0, "198.18.0.5") == (
        503, "too many rooms from 198.18.0.5 (http_rooms_per_ip = 2)")
    # an IPv6 host is its /64; an IPv4-mapped address is the IPv4 host
    assert create("room=3&member=1", T0, "2001:db8::1")[0] == 200
    assert create("room=4&member=1", T0, "::ffff:198.18.0.5") == (
        503, "too many rooms made over HTTP (http_max_rooms = 3)")
    assert create("room=1&member=9", T0, "198.18.0.9") == (200, "room id[1] exists")
    for room_id in range(10, 17):  # game code's rooms: only max_rooms bounds them
        m.mgr.create(room_id, [1], T0)
    assert len(m.mgr.rooms) == 10
    # a forgotten HTTP room frees its place (its game over, then its close wait)
    m.mgr._forget(m.mgr.rooms[1])
    assert create("room=4&member=1", T0, "198.18.0.5")[0] == 200
    m.mgr._forget(m.mgr.rooms[2])
    m.mgr.create(17, [1], T0)  # max_rooms is reached by game code's rooms: that bound holds too
    assert create("room=5&member=1", T0, "198.18.0.5") == (503, "too many rooms (10)")


def test_http_max_rooms_zero_turns_the_http_api_off() -> None:
    m = M(http_max_rooms=0)
    assert m.mgr.http_create("room=1&member=1", T0, "127.0.0.1") == (
        503, "the HTTP room API is off (http_max_rooms = 0)")
    m.mgr.create(1, [1], T0)  # game code's rooms still come


def test_max_players() -> None:
    m = M(max_players=3)
    m.mgr.create(1, [1, 2, 3, 3, 1], T0)  # three players
    with pytest.raises(RoomRefused) as info:
        m.mgr.create(2, [1, 2, 3, 4], T0)
    assert not info.value.exists
    assert m.mgr.http_create("room=2&member=1,2,3,4", T0)[0] == 503
    assert list(m.mgr.rooms) == [1]
    for bad in (0, 17):
        with pytest.raises(ValueError):
            RoomManager(max_players=bad)
    RoomManager(max_players=16)


# ---- before Connect ------------------------------------------------------------------------


def test_unbound_heartbeat_and_end_echo() -> None:
    m = M()
    s = FakeSession()
    m.recv(s, MsgId.MSG_Heartbeat)
    m.recv(s, MsgId.MSG_END, b"\x01\x02\x03")
    m.recv(s, MsgId.MSG_END)
    assert s.take() == [HEARTBEAT, (MsgId.MSG_END, b"\x01\x02\x03"), (MsgId.MSG_END, b"")]
    assert s.closed == 0 and m.mgr.sessions == 0


@pytest.mark.parametrize(
    "msg_id",
    [
        MsgId.MSG_BEGIN,
        MsgId.MSG_JoinRoom,
        MsgId.MSG_Progress,
        MsgId.MSG_Ready,
        MsgId.MSG_Start,
        MsgId.MSG_Frame,
        MsgId.MSG_Input,
        MsgId.MSG_Result,
        MsgId.MSG_Close,
        99,
    ],
)
def test_anything_else_before_connect_closes_the_session(msg_id: int) -> None:
    m = M()
    m.mgr.create(1, [1], T0)
    s = FakeSession()
    m.recv(s, msg_id, b"")
    assert s.closed == 1 and s.packets == []
    assert m.mgr.stats["sessions_closed_bad_packet"] == 1
    assert m.mgr.rooms[1].online() == []


@pytest.mark.parametrize("body", [b"\x08", b"\xff", b"\x08\x01\x10"])
def test_an_unreadable_connect_closes_the_session(body: bytes) -> None:
    m = M()
    m.mgr.create(1, [1], T0)
    s = FakeSession()
    m.recv(s, MsgId.MSG_Connect, body)
    assert s.closed == 1 and s.packets == [] and m.mgr.sessions == 0


# ---- Connect checks ------------------------------------------------------------------------


def _finished_room(m: M, room_id: int) -> None:
    """A room whose game is over (an empty room starts at its first tick, ends at the next)."""
    room = m.mgr.create(room_id, [], m.now)
    for _ in range(2):
        due = m.mgr.next_due()
        assert due is not None
        m.tick(max(due, room.next_tick_at) + EPS)
    assert room.finishing and room.result is not None


def test_connect_checks_in_lockstepservers_order_and_keep_the_session() -> None:
    m = M()
    m.mgr.create(1, [1, 2], T0, with_tokens=True)
    _finished_room(m, 3)
    s = FakeSession()
    steps = [
        (connect_body(5, 99, "bad"), NO_ROOM),
        (connect_body(5, 3, "bad"), ROOM_STATE),  # finishing comes before "no such player"
        (connect_body(5, 1, "bad"), NO_PLAYER),  # no such player comes before the token
        (connect_body(1, 1, "bad"), TOKEN),
        (connect_body(1, 1), TOKEN),  # no token at all
        (connect_body(1, 1, m.mgr.token(1, 2)), TOKEN),  # another player's
    ]
    for body, code in steps:
        m.recv(s, MsgId.MSG_Connect, body)
        assert s.take() == [refused(code)], code
        assert s.closed == 0 and m.mgr.sessions == 0
    assert m.mgr.stats["connects_refused"] == len(steps)
    # still unbound: a Heartbeat is answered by the manager, a JoinRoom would close it
    m.recv(s, MsgId.MSG_Heartbeat)
    assert s.take() == [HEARTBEAT]
    # and the same session may try again
    m.connect(1, 1, m.mgr.token(1, 1), session=s)
    assert s.take() == [CONNECT_OK]
    assert m.mgr.sessions == 1 and m.mgr.rooms[1].players[1].session is s


def test_a_failed_connect_leaves_the_session_unbound() -> None:
    m = M()
    m.mgr.create(1, [1], T0)
    s = m.connect(2, 1)
    assert s.take() == [refused(NO_PLAYER)]
    m.recv(s, MsgId.MSG_JoinRoom)
    assert s.closed == 1 and s.packets == []


def test_tokens_of_game_rooms() -> None:
    m = M()
    room = m.mgr.create(1, [1, 2], T0, with_tokens=True)
    other = m.mgr.create(2, [1, 2], T0, with_tokens=True)
    assert room.tokens == {1: m.mgr.token(1, 1), 2: m.mgr.token(1, 2)}
    assert len({m.mgr.token(1, 1), m.mgr.token(1, 2), m.mgr.token(2, 1)}) == 3
    assert M(secret=b"x" * 32).mgr.token(1, 1) != m.mgr.token(1, 1)
    assert M().mgr.token(1, 1) == m.mgr.token(1, 1)  # the same secret, the same token
    assert other.tokens is not None
    assert m.connect(1, 1, other.tokens[1]).take() == [refused(TOKEN)]
    assert m.connect(1, 1, "é" + m.mgr.token(1, 1)).take() == [refused(TOKEN)]
    assert m.connect(1, 1, m.mgr.token(1, 1)).take() == [CONNECT_OK]


def test_a_token_of_invalid_utf8_is_refused_not_a_crash() -> None:
    m = M()
    m.mgr.create(1, [1], T0, with_tokens=True)
    s = FakeSession()
    body = bytes.fromhex("08 01 10 01 52 02 ff fe")  # token = b"\xff\xfe"
    m.recv(s, MsgId.MSG_Connect, body)
    assert s.take() == [refused(TOKEN)] and s.closed == 0


@pytest.mark.parametrize("token", [None, "", "anything", "\xff".encode("latin-1")])
def test_http_rooms_accept_any_token(token: str | bytes | None) -> None:
    m = M()
    m.mgr.http_create("room=1&member=1", T0)
    s = FakeSession()
    if isinstance(token, bytes):
        body = bytes.fromhex("08 01 10 01 52 01") + token
    else:
        body = connect_body(1, 1, token)
    m.recv(s, MsgId.MSG_Connect, body)
    assert s.take() == [CONNECT_OK]


def test_require_token_refuses_http_rooms() -> None:
    m = M(require_token=True)
    m.mgr.http_create("room=1&member=1", T0)
    m.mgr.create(2, [1], T0, with_tokens=True)
    for token in (None, "test_room", m.mgr.token(1, 1)):
        assert m.connect(1, 1, token).take() == [refused(TOKEN)]
    assert m.connect(3, 1).take() == [refused(NO_PLAYER)]  # the order still holds
    assert m.connect(1, 2, m.mgr.token(2, 1)).take() == [CONNECT_OK]


# ---- bound sessions ------------------------------------------------------------------------


def test_a_bound_sessions_further_connect_is_ignored() -> None:
    m = M()
    room = m.mgr.create(1, [1, 2], T0)
    m.mgr.create(2, [1], T0)
    s = m.connect(1, 1)
    s.take()
    for body in (connect_body(2, 1), connect_body(1, 2), connect_body(1, 99), b"\xff"):
        m.recv(s, MsgId.MSG_Connect, body)
    assert s.packets == [] and s.closed == 0
    assert room.players[1].session is s and room.players[2].session is None
    assert m.mgr.rooms[2].online() == [] and m.mgr.sessions == 1
    # and its packets go to its room
    m.recv(s, MsgId.MSG_JoinRoom)
    assert s.ids() == [MsgId.MSG_JoinRoom]


def _replaced() -> tuple[M, FakeSession, FakeSession]:
    m = M()
    room = m.mgr.create(1, [1, 2], T0)
    old = m.connect(1, 1)
    m.connect(2, 1)
    m.recv(old, MsgId.MSG_Ready)
    new = m.connect(1, 1)
    assert old.closed == 1 and new.take() == [CONNECT_OK]
    assert room.players[1].session is new and not room.players[1].ready
    old.take()
    return m, old, new


def test_a_replaced_sessions_packets_do_not_reach_the_room() -> None:
    m, old, new = _replaced()
    room = m.mgr.rooms[1]
    m.recv(old, MsgId.MSG_Ready)
    assert not room.players[1].ready
    m.recv(old, MsgId.MSG_Progress, V.PROGRESS_REQUEST_BODY)
    assert room.players[1].progress == 0
    assert new.packets == [] and room.players[1].session is new


def test_a_replaced_session_is_ignored_not_treated_as_new() -> None:
    m, old, new = _replaced()
    room = m.mgr.rooms[1]
    for msg_id, body in [
        (MsgId.MSG_Heartbeat, b""),
        (MsgId.MSG_Connect, connect_body(1, 1)),
        (MsgId.MSG_Input, input_body(1)),
        (MsgId.MSG_JoinRoom, b""),
        (MsgId.MSG_END, b"x"),
    ]:
        m.recv(old, msg_id, body)
    assert old.packets == [] and old.closed == 1 and room.dropped_inputs == 0
    assert room.players[1].session is new and new.closed == 0 and new.packets == []
    # once the server reports the old session closed, the player keeps the new one
    m.mgr.session_closed(old)
    assert room.players[1].session is new and m.mgr.sessions == 2


def test_session_closed() -> None:
    m = M()
    room = m.mgr.create(1, [1, 2], T0)
    s1, s2 = m.connect(1, 1), m.connect(2, 1)
    assert m.mgr.sessions == 2 and m.mgr.players_in_rooms() == 2
    m.mgr.session_closed(s1)
    assert room.players[1].session is None and m.mgr.sessions == 1
    m.mgr.session_closed(s1)  # twice: nothing
    m.mgr.session_closed(FakeSession())  # never bound: nothing
    assert room.online() == [room.players[2]]
    m.recv(s1, MsgId.MSG_JoinRoom)  # a closed session's late packet: it is unbound now
    assert room.players[1].session is None
    assert s2.take() == [CONNECT_OK]


def test_resume_frame_through_connect() -> None:
    m = M()
    room = m.mgr.create(1, [1, 2], T0)
    s1, s2 = m.connect(1, 1), m.connect(2, 1)
    m.recv(s1, MsgId.MSG_Ready)
    m.recv(s2, MsgId.MSG_Ready)
    m.tick(at(0))
    assert room.state == "gaming"
    inputs = {}
    for k in range(1, 91):
        if k % 4 == 0:
            m.recv(s1, MsgId.MSG_Input, input_body(sid=k))
            inputs[room.frame] = ((1, k, 0, 0, 1),)
        if k % 20 == 0:
            m.recv(s2, MsgId.MSG_Heartbeat)
        m.tick(at(k))
    last_send = room._last_send
    # a plain reconnect: the whole history, whatever the old session had
    plain = m.connect(2, 1)
    m.recv(plain, MsgId.MSG_Ready)
    assert s2.closed == 1
    packets = plain.take()
    assert packets[:3] == [CONNECT_OK, READY, start_packet(room.start_time)]
    frames = frames_of(packets)
    expected = {f: i for f, i in inputs.items() if f < last_send}
    assert {f: i for f, i in frames if i} == expected
    assert frames[-1][0] == last_send - 1 and frames[0][0] == min(inputs)
    # resuming from frame 50: only what comes after
    resumed = m.connect(2, 1, resume=50)
    m.recv(resumed, MsgId.MSG_Ready)
    frames = frames_of(resumed.take())
    assert {f: i for f, i in frames if i} == {f: i for f, i in expected.items() if f >= 50}
    assert frames[-1][0] == last_send - 1


# ---- the end of rooms, and the tick heap ---------------------------------------------------


def test_an_ended_room_is_returned_once_then_forgotten_after_its_close_wait() -> None:
    m = M()
    room = m.mgr.create(4, [1, 2], T0)
    s1, s2 = m.connect(1, 4), m.connect(2, 4)
    for s in (s1, s2):
        m.recv(s, MsgId.MSG_Ready)
    assert m.tick(at(0)) == []
    m.tick(at(5))
    m.recv(s1, MsgId.MSG_Result, V.RESULT_BODY)
    m.recv(s2, MsgId.MSG_Result, V.RESULT_BODY)
    assert m.tick(at(6)) == [4]
    end = at(6)
    assert room.result is not None and room.result.reason == "results"
    assert room.result.results == {1: 2, 2: 2}
    assert s1.packets[-1] == CLOSE
    # the close wait: the room is still there, finishing
    k = 7
    while at(k) < end + 3.0 - PERIOD:
        assert m.tick(at(k)) == []
        k += 1
    assert m.mgr.rooms[4] is room
    assert m.mgr.http_create("room=4&member=1", at(k)) == (200, "room id[4] exists")
    late = m.connect(1, 4)
    assert late.take() == [refused(ROOM_STATE)]
    m.recv(s1, MsgId.MSG_Heartbeat)
    assert s1.packets[-1] == HEARTBEAT
    # its end
    assert m.tick(end + 3.0 + EPS) == []
    assert 4 not in m.mgr.rooms and room.done
    assert s1.closed == 1 and s2.closed == 1 and m.mgr.sessions == 0
    assert m.mgr.next_due() is None and m.tick(end + 10.0) == []
    assert m.connect(1, 4).take() == [refused(NO_ROOM)]
    status, _ = m.mgr.http_create("room=4&member=1", end + 10.0)
    assert status == 200 and m.mgr.rooms[4] is not room
    assert m.mgr.stats["rooms_ended"] == 1


def test_next_due_and_only_due_rooms_tick() -> None:
    m = M()
    assert m.mgr.next_due() is None
    now = T0 + 0.005
    rooms = [m.mgr.create(i, [1], now + i * 0.001) for i in range(8)]
    # each room's first tick is within one period of its creation, on one of four grids
    for i, room in enumerate(rooms):
        assert 0 <= room.created - (now + i * 0.001) < PERIOD
        assert room.next_tick_at == room.created
    phases = [round((room.created % PERIOD) / (PERIOD / 4)) % 4 for room in rooms]
    assert sorted(phases) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert m.mgr.next_due() == min(room.created for room in rooms)
    rng = random.Random(3)
    for _ in range(400):
        due = m.mgr.next_due()
        assert due is not None
        assert due == min(r.next_tick_at for r in rooms)
        now = due + rng.choice([0.0, 0.0, 0.004, 0.05])
        before = {r.id: (r.next_tick_at, r._ticks) for r in rooms}
        m.tick(now)
        for r in rooms:
            assert r.next_tick_at > now
            if before[r.id][0] > now:  # not due: untouched
                assert (r.next_tick_at, r._ticks) == before[r.id]


def test_stop_ends_every_room() -> None:
    m = M()
    a = m.mgr.create(1, [1], T0)
    b = m.mgr.create(2, [], T0)
    s = m.connect(1, 1)
    ended: list[int] = []
    while not ended:
        due = m.mgr.next_due()
        assert due is not None
        ended += m.tick(due + EPS)
    assert ended == [2]  # b ended on its own
    stopped = m.mgr.stop(m.now)
    assert stopped == [a]
    assert a.result is not None and a.result.reason == "stopped"
    assert b.result is not None and b.result.reason == "everyone_left"
    assert s.closed == 1 and a.done and b.done
    assert m.mgr.rooms == {} and m.mgr.sessions == 0 and m.mgr.next_due() is None


def test_new_room_ids() -> None:
    m = M()
    for _ in range(50):
        room_id = m.mgr.new_room_id()
        assert 0 < room_id < 2**63 and room_id not in m.mgr.rooms
        m.mgr.create(room_id, [1], T0)
