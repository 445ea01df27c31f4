"""goworld.lockstep.room.Room, driven without I/O: injected ``now`` floats, a fake wall clock
and fake sessions that decode what they receive with codec.PacketReader (1024-byte limit)."""

from __future__ import annotations

import random
from collections.abc import Iterable

import pytest

from goworld.lockstep import lockstep_pb2 as pb
from goworld.lockstep.codec import MsgId, PacketReader, encode
from goworld.lockstep.room import MAX_PLAYERS, Room, RoomSettings
from tests.goworld.lockstep import vectors as V

T0 = 1000.0  # the room's creation, monotonic seconds
WALL0 = 1_765_000_000.25  # Unix time at T0
PERIOD = 1 / 30
EPS = 1e-6

Input = tuple[int, int, int, int, int]  # (player, sid, x, y, seat)
Frame = tuple[int, tuple[Input, ...]]  # (frame id, inputs)


def at(k: float) -> float:
    """Just after tick ``k`` of a room created at T0 is due."""
    return T0 + k * PERIOD + EPS


class Clock:
    """Monotonic time driven by the test; the wall clock follows it."""

    def __init__(self) -> None:
        self.now = T0
        self.skew = 0.0  # how far the wall clock ran ahead of the monotonic one

    def wall(self) -> float:
        return WALL0 + (self.now - T0) + self.skew


class FakeSession:
    """Records every packet sent to it, decoded as a client would (PacketReader, 1024 limit)."""

    def __init__(self, name: str = "session", max_body: int = 1024) -> None:
        self.name = name
        self._reader = PacketReader(max_body)
        self.packets: list[tuple[int, bytes]] = []
        self.bodies: list[int] = []  # body size of every packet
        self.closed = 0
        self.sent_after_close = 0

    def __repr__(self) -> str:
        return f"<FakeSession {self.name}>"

    def send(self, data: bytes) -> None:
        if self.closed:
            self.sent_after_close += 1
        got = self._reader.feed(data)  # raises LockstepPacketTooLarge past 1024 bytes
        assert len(got) == 1 and self._reader.buffered == 0, "one whole packet per send"
        self.packets.append(got[0])
        self.bodies.append(len(got[0][1]))

    def close(self) -> None:
        self.closed += 1

    def take(self) -> list[tuple[int, bytes]]:
        out, self.packets = self.packets, []
        return out

    def ids(self) -> list[int]:
        return [msg_id for msg_id, _ in self.packets]


def frame_messages(packets: Iterable[tuple[int, bytes]]) -> list[list[Frame]]:
    """Every S2C_FrameMsg among ``packets``, as lists of (frame id, inputs)."""
    out = []
    for msg_id, body in packets:
        if msg_id == MsgId.MSG_Frame:
            msg = pb.S2C_FrameMsg.FromString(body)
            out.append(
                [
                    (
                        f.frameID,
                        tuple((i.id, i.sid, i.x, i.y, i.roomseatid) for i in f.input),
                    )
                    for f in msg.frames
                ]
            )
    return out


def frames_of(packets: Iterable[tuple[int, bytes]]) -> list[Frame]:
    return [f for message in frame_messages(packets) for f in message]


def nonempty(frames: Iterable[Frame]) -> dict[int, tuple[Input, ...]]:
    return {fid: inputs for fid, inputs in frames if inputs}


def input_body(sid: int = 0, x: int = 0, y: int = 0) -> bytes:
    body: bytes = pb.C2S_InputMsg(sid=sid, x=x, y=y).SerializeToString()
    return body


def start_packet(timestamp: int) -> tuple[int, bytes]:
    return (MsgId.MSG_Start, pb.S2C_StartMsg(timeStamp=timestamp).SerializeToString())


HEARTBEAT = (MsgId.MSG_Heartbeat, b"")
READY = (MsgId.MSG_Ready, b"")
RESULT_ACK = (MsgId.MSG_Result, b"")
CLOSE = (MsgId.MSG_Close, b"")
CONNECT_OK = (MsgId.MSG_Connect, V.CONNECT_OK_BODY)


class H:
    """A room, its clock, and one fake session per connected player."""

    def __init__(
        self, members: Iterable[int] = (1, 2), *, seed: int = 0, **settings: float
    ) -> None:
        self.clock = Clock()
        self.room = Room(
            7,
            list(members),
            T0,
            settings=RoomSettings(**settings),  # type: ignore[arg-type]
            seed=seed,
            wall=self.clock.wall,
        )
        self.k = -1  # the last tick run through step()
        self.s: dict[int, FakeSession] = {}

    @property
    def now(self) -> float:
        return self.clock.now

    def step(self, n: int = 1) -> None:
        for _ in range(n):
            self.k += 1
            self.clock.now = at(self.k)
            self.room.tick(self.clock.now)

    def connect(self, pid: int, name: str | None = None, resume: int | None = None) -> FakeSession:
        session = FakeSession(name or f"p{pid}")
        self.room.bind(session, pid, self.now, resume)
        self.s[pid] = session
        return session

    def reconnect(self, pid: int, resume: int | None = None, name: str = "again") -> FakeSession:
        """A new session for ``pid`` as RoomManager binds it, with the frame it resumes at."""
        return self.connect(pid, name, resume)

    def send(self, pid: int, msg_id: int, body: bytes = b"") -> None:
        self.room.receive(self.room.players[pid], msg_id, body, self.now)

    def input(self, pid: int, sid: int = 0, x: int = 0, y: int = 0) -> None:
        self.send(pid, MsgId.MSG_Input, input_body(sid, x, y))

    def leave(self, pid: int) -> None:
        self.room.session_closed(self.room.players[pid], self.s[pid])

    def start(self, pids: Iterable[int] | None = None) -> None:
        """Connect and ready ``pids`` (all members by default) and run tick 0: the game starts."""
        for pid in self.room.members if pids is None else pids:
            self.connect(pid)
            self.send(pid, MsgId.MSG_Ready)
        self.step()
        assert self.room.state == "gaming" and self.room.frame == 0
        for session in self.s.values():
            session.take()


# ---- seats and JoinRoom --------------------------------------------------------------------


def test_seat_order_is_member_order_and_duplicates_take_the_last_position() -> None:
    h = H((3, 1, 2, 1))
    room = h.room
    assert room.members == (3, 2, 1)
    assert {p.id: p.seat for p in room.players.values()} == {3: 1, 2: 3, 1: 4}
    h.connect(2)
    h.send(2, MsgId.MSG_JoinRoom)
    (packet,) = h.s[2].take()[1:]
    reply = pb.S2C_JoinRoomMsg.FromString(packet[1])
    assert packet[0] == MsgId.MSG_JoinRoom
    assert reply.roomseatid == 3
    assert list(reply.others) == [3, 1]  # seat order, offline members included
    assert list(reply.pros) == [0, 0]


def test_join_room_reply_bytes_match_lockstepserver() -> None:
    h = H((1, 2))
    s = h.connect(1)
    h.send(1, MsgId.MSG_JoinRoom, b"ignored")
    assert s.take() == [CONNECT_OK, (MsgId.MSG_JoinRoom, V.JOIN_ROOM_OBSERVED_BODY)]
    h.send(1, MsgId.MSG_JoinRoom)
    raw = encode(MsgId.MSG_JoinRoom, V.JOIN_ROOM_OBSERVED_BODY)
    assert raw == bytes.fromhex("00 08 0a 08 01 10 02 18 00 20 00")
    assert s.take() == [(MsgId.MSG_JoinRoom, raw[3:])]


def test_join_room_others_and_pros_in_seat_order_with_seed() -> None:
    h = H((1, 2, 3), seed=12345)
    for pid in (1, 2, 3):
        h.connect(pid)
    h.send(1, MsgId.MSG_Progress, pb.C2S_ProgressMsg(pro=100).SerializeToString())
    h.send(3, MsgId.MSG_Progress, pb.C2S_ProgressMsg(pro=50).SerializeToString())
    h.s[2].take()
    h.send(2, MsgId.MSG_JoinRoom)
    assert h.s[2].take() == [(MsgId.MSG_JoinRoom, V.JOIN_ROOM_THREE_BODY)]


def test_room_size_limit() -> None:
    Room(1, list(range(MAX_PLAYERS)) * 2, T0)  # duplicates collapse: 16 players
    with pytest.raises(ValueError):
        Room(1, list(range(MAX_PLAYERS + 1)), T0)


# ---- Ready state: Progress, Ready, Start -----------------------------------------------------


def test_progress_goes_to_the_other_online_members_only() -> None:
    h = H((1, 2, 3))
    for pid in (1, 2):
        h.connect(pid).take()
    h.send(1, MsgId.MSG_Progress, V.PROGRESS_REQUEST_BODY)  # pro=50
    assert h.s[1].take() == []
    assert h.s[2].take() == [(MsgId.MSG_Progress, bytes.fromhex("08 01 10 32"))]
    # pro copied only if present
    h.send(2, MsgId.MSG_Progress, b"")
    assert h.s[1].take() == [(MsgId.MSG_Progress, bytes.fromhex("08 02"))]
    assert h.room.players[2].progress == 0
    # a bad body is ignored
    h.send(2, MsgId.MSG_Progress, b"\x08")
    assert h.s[1].take() == []
    # the stored progress shows in JoinRoom
    h.send(2, MsgId.MSG_JoinRoom)
    reply = pb.S2C_JoinRoomMsg.FromString(h.s[2].take()[0][1])
    assert list(reply.others) == [1, 3] and list(reply.pros) == [50, 0]


def test_progress_is_ignored_once_the_game_started() -> None:
    h = H((1, 2))
    h.start()
    h.send(1, MsgId.MSG_Progress, V.PROGRESS_REQUEST_BODY)
    assert h.s[2].take() == [] and h.s[1].take() == []
    assert h.room.players[1].progress == 100


def test_ready_is_answered_once_and_all_ready_starts() -> None:
    h = H((1, 2))
    s1, s2 = h.connect(1), h.connect(2)
    s1.take(), s2.take()
    h.send(1, MsgId.MSG_Ready)
    h.send(1, MsgId.MSG_Ready)
    assert s1.take() == [READY]
    h.step(5)
    assert h.room.state == "ready" and s1.take() == [] and s2.take() == []
    h.clock.skew += 0.8  # the wall clock moved on since creation
    h.send(2, MsgId.MSG_Ready)
    assert s2.take() == [READY]
    h.step()
    stamp = int(h.clock.wall())
    assert stamp == int(WALL0) + 1 and h.room.created_wall == int(WALL0)
    assert s1.take() == [start_packet(stamp)]
    assert s2.take() == [start_packet(stamp)]
    assert h.room.start_time == stamp and h.room.started
    # at Start every member has progress 100
    h.send(1, MsgId.MSG_JoinRoom)
    assert list(pb.S2C_JoinRoomMsg.FromString(s1.take()[0][1]).pros) == [100]


def test_ready_timeout_starts_with_whoever_is_online() -> None:
    h = H((1, 2, 3), ready_timeout=1.0)
    s1, s2 = h.connect(1), h.connect(2)
    h.send(2, MsgId.MSG_Ready)
    s1.take(), s2.take()
    h.step(29)
    assert h.room.state == "ready"
    h.step(3)
    assert h.room.state == "gaming"
    assert s1.ids() == [MsgId.MSG_Start] and s2.ids() == [MsgId.MSG_Start]
    assert all(p.ready and p.progress == 100 for p in h.room.players.values())


def test_ready_timeout_with_nobody_online_ends_the_room() -> None:
    h = H((1, 2), ready_timeout=1.0)
    s1 = h.connect(1)
    h.leave(1)
    h.step(29)
    assert h.room.result is None
    h.step(3)
    result = h.room.result
    assert result is not None and result.reason == "nobody_came"
    assert not result.started and result.frames == 0
    assert h.room.finishing and MsgId.MSG_Close not in s1.ids()


def test_inputs_before_start_are_dropped() -> None:
    h = H((1, 2))
    h.connect(1), h.connect(2)
    h.input(1, sid=5)
    h.send(1, MsgId.MSG_Ready)
    h.send(2, MsgId.MSG_Ready)
    assert h.room.dropped_inputs == 1
    h.step(4)  # start, then frames 1..3: one regular send
    frames = frames_of(h.s[1].packets)
    assert frames == [(2, ())]
    assert h.room.input_log()["inputs"] == []


# ---- frames --------------------------------------------------------------------------------


def test_quiet_room_sends_the_last_frame_every_three_ticks() -> None:
    h = H((1, 2))
    h.start()
    sends: list[int] = []
    for _ in range(12):
        before = len(h.s[1].packets)
        h.step()
        if len(h.s[1].packets) > before:
            sends.append(h.room.frame)
    assert sends == [3, 6, 9, 12]
    expected = [[(2, ())], [(5, ())], [(8, ())], [(11, ())]]
    assert frame_messages(h.s[1].packets) == expected
    assert frame_messages(h.s[2].packets) == expected
    assert [body for _, body in h.s[1].packets][0] == V.EMPTY_FRAME_BODY  # 0a 02 08 02


def test_an_input_makes_the_next_tick_send_and_restarts_the_rhythm() -> None:
    h = H((1, 2))
    h.start()
    h.step(4)  # frame 4; frame 2 was sent at frame 3
    h.s[1].take(), h.s[2].take()
    h.input(2, sid=1, x=-1, y=5)
    h.step()
    expected = [[(4, ((2, 1, -1, 5, 2),))]]
    assert frame_messages(h.s[1].take()) == expected
    assert frame_messages(h.s[2].take()) == expected
    h.step(2)
    assert h.s[1].take() == []
    h.step()
    assert frame_messages(h.s[1].take()) == [[(7, ())]]


def test_one_input_per_player_per_frame() -> None:
    h = H((1, 2))
    h.start()
    h.step(2)
    h.input(2, sid=1)
    h.input(1, sid=2)
    h.input(2, sid=3)  # second of player 2 in frame 2: dropped
    h.input(1, sid=4)
    assert h.room.dropped_inputs == 2
    h.step()
    assert frames_of(h.s[1].take()) == [(2, ((2, 1, 0, 0, 2), (1, 2, 0, 0, 1)))]
    h.s[2].take()
    # the next frame takes a new input from each
    h.input(2, sid=5)
    h.step()
    assert frames_of(h.s[2].take()) == [(3, ((2, 5, 0, 0, 2),))]
    assert h.room.dropped_inputs == 2


def test_a_bad_input_body_is_ignored_and_does_not_use_the_players_turn() -> None:
    h = H((1, 2))
    h.start()
    h.input(1, sid=1)
    h.step()  # frame 0 sent
    h.s[1].take()
    h.send(1, MsgId.MSG_Input, b"\x08")  # truncated varint
    h.step(3)
    assert frames_of(h.s[1].take()) == [(3, ())]
    h.send(1, MsgId.MSG_Input, b"\xff")
    h.input(1, sid=9)
    h.step()
    assert frames_of(h.s[1].take()) == [(4, ((1, 9, 0, 0, 1),))]
    assert h.room.dropped_inputs == 0


def _speak(h: H, pid: int, how: str) -> None:
    if how == "heartbeat":
        h.send(pid, MsgId.MSG_Heartbeat)
    elif how == "input":
        h.input(pid, sid=77)
    elif how == "join":
        h.send(pid, MsgId.MSG_JoinRoom)
    elif how == "progress":
        h.send(pid, MsgId.MSG_Progress, V.PROGRESS_REQUEST_BODY)
    else:
        h.send(pid, 200, b"whatever")  # an unknown id: ignored, but a sign of life


@pytest.mark.parametrize("how", ["heartbeat", "input", "join", "progress", "unknown"])
def test_a_silent_player_gets_no_frames_then_its_backlog(how: str) -> None:
    h = H((1, 2))
    h.start()  # both last seen at T0
    p1_sends: list[int] = []
    p2_last_regular = -1
    for k in range(1, 151):
        if k % 20 == 0:
            h.send(1, MsgId.MSG_Heartbeat)
        if k in (10, 70, 71, 100, 130):
            h.input(1, sid=k)
        h.s[1].packets = [p for p in h.s[1].packets if p[0] == MsgId.MSG_Frame]
        sent = len(h.s[1].packets)
        h.step()
        if len(h.s[1].packets) > sent:
            p1_sends.append(h.room.frame)
        if h.s[2].packets and h.now - T0 < 2.0:
            p2_last_regular = frames_of(h.s[2].packets)[-1][0]
        elif h.now - T0 >= 2.0:
            assert frames_of(h.s[2].packets)[-1][0] == p2_last_regular, "stale player got frames"
    # the others kept their rhythm: never more than three frames between two sends
    assert p1_sends[0] == 3 and p1_sends[-1] >= 148
    assert max(b - a for a, b in zip(p1_sends, p1_sends[1:], strict=False)) == 3
    assert 50 <= p2_last_regular < 60
    p2_before = frames_of(h.s[2].packets)
    _speak(h, 2, how)
    for _ in range(3):
        h.step()
    h.send(1, MsgId.MSG_Heartbeat)
    h.step(3)  # a send both get
    p1 = frames_of(h.s[1].packets)
    p2 = frames_of(h.s[2].packets)
    backlog = p2[len(p2_before) :]
    # the backlog: every frame with inputs the player missed, then the last one
    assert backlog[0][0] > p2_last_regular
    assert all(inputs for _, inputs in backlog[:-2])
    assert nonempty(p2) == nonempty(p1)
    assert p2[-1][0] == p1[-1][0] == h.room._last_send - 1
    p2_ids = [f for f, _ in p2]
    assert p2_ids == sorted(set(p2_ids))


def test_sixteen_players_and_a_long_resync_never_pass_1024_bytes() -> None:
    members = [2**64 - 1 - i for i in range(16)]
    h = H(members)
    h.start()
    leaver = members[-1]
    first = h.s[leaver]
    rng = random.Random(5)
    for k in range(1, 301):
        for pid in members:
            if pid != leaver or k < 30 or k > 285:
                extreme = rng.choice([-(2**31), 2**31 - 1, -1])
                h.input(pid, sid=extreme, x=-(2**31), y=extreme - k if extreme > 0 else k)
        if k == 30:
            h.leave(leaver)
        if k == 280:
            h.reconnect(leaver)
        if k == 283:
            h.send(leaver, MsgId.MSG_Ready)
        h.step()
    second = h.s[leaver]
    assert second is not first
    everyone = [h.s[pid] for pid in members[:-1]] + [first, second]
    assert max(b for s in everyone for b in s.bodies) <= 1024
    reference = frames_of(h.s[members[0]].packets)
    assert [f for f, _ in reference] == list(range(300))  # every frame has inputs
    assert all(len(inputs) in (15, 16) for _, inputs in reference)
    for session in everyone:
        ids = [f for f, _ in frames_of(session.packets)]
        assert ids == sorted(set(ids)), f"{session} got a frame twice or out of order"
    assert frames_of(h.s[members[7]].packets) == reference
    got = frames_of(first.packets) + frames_of(second.packets)
    assert dict(got) == dict(reference)
    # the resync (frames 0..282) really went out in many messages of one frame each
    resync = frame_messages(second.packets)
    assert sum(len(m) for m in resync) >= 283 and max(len(m) for m in resync) == 1


@pytest.mark.parametrize(("max_body", "biggest"), [(1024, 1024), (1 << 16, 60 * 99)])
def test_resync_messages_respect_both_limits(max_body: int, biggest: int) -> None:
    h = H((1, 2), max_body=max_body)
    h.start()
    for _ in range(200):
        h.input(1, sid=3, x=300, y=-1)
        h.step()
    h.leave(2)
    second = FakeSession("again", max_body)
    h.room.bind(second, 2, h.now)
    h.send(2, MsgId.MSG_Ready)
    messages = frame_messages(second.packets)
    sizes = [b for (i, _), b in zip(second.packets, second.bodies, strict=True) if i == 50]
    assert [f for m in messages for f, _ in m] == list(range(200))
    assert all(len(m) <= 60 for m in messages) and max(sizes) <= min(max_body, biggest)
    if max_body == 1024:
        assert max(len(m) for m in messages) < 60  # the byte limit cut them first
    else:
        assert max(len(m) for m in messages) == 60


# ---- reconnect -----------------------------------------------------------------------------


class Replay:
    """What _play_with_a_reconnect saw."""

    def __init__(self, h: H, first: FakeSession, second: FakeSession) -> None:
        self.h, self.first, self.second = h, first, second
        self.resync: list[Frame] = []
        self.last_send_at_ready = -1


def _play_with_a_reconnect(resume: int | str | None) -> Replay:
    """Players 1 and 2 play 200 frames; player 2 drops at frame 40 and comes back at 120.

    ``resume``: None (plain reconnect), a frame id, or "next" (the frame after the last
    one the first session received)."""
    h = H((1, 2))
    h.start()
    first = h.s[2]
    out = Replay(h, first, first)
    for k in range(1, 201):
        away = 40 <= k < 120
        if k % 10 == 0:
            h.send(1, MsgId.MSG_Heartbeat)
            if not away:
                h.send(2, MsgId.MSG_Heartbeat)
        if k % 7 == 0:
            h.input(1, sid=k)
        if k % 11 == 0 and not away and k != 121:
            h.input(2, x=k)
        if k == 40:
            h.leave(2)
        if k == 120:
            frame = frames_of(first.packets)[-1][0] + 1 if resume == "next" else resume
            assert not isinstance(frame, str)
            out.second = h.reconnect(2, frame)
        if k == 125:
            out.last_send_at_ready = h.room._last_send
            h.send(2, MsgId.MSG_Ready)
            packets = out.second.take()
            assert packets[:3] == [CONNECT_OK, READY, start_packet(h.room.start_time)]
            out.resync = frames_of(packets)
            out.second.packets = packets
        h.step()
    h.step(3)  # three quiet ticks: a send reaches both
    return out


def test_reconnect_replays_start_and_the_whole_history_then_regular_frames() -> None:
    h = H((1, 2))
    h.start()
    stamp = h.room.start_time
    h.input(1, sid=1)
    h.step(10)
    first = h.s[2]
    second = h.reconnect(2)  # the old session is still open: it is closed
    assert first.closed == 1 and h.room.players[2].session is second
    assert second.take() == [CONNECT_OK]
    h.clock.skew += 5.0  # wall time moved on: Start must keep the original stamp
    h.step(3)
    assert second.take() == [], "no frames before Ready"
    last_send = h.room._last_send
    h.send(2, MsgId.MSG_Ready)
    packets = second.take()
    assert packets[:2] == [READY, start_packet(stamp)]
    assert int(h.clock.wall()) != stamp
    assert frames_of(packets[2:]) == [(0, ((1, 1, 0, 0, 1),)), (last_send - 1, ())]
    h.step(3)
    assert frames_of(second.take())[-1][0] == h.room._last_send - 1 > last_send - 1
    assert first.sent_after_close == 0 and first.closed == 1


@pytest.mark.parametrize("resume", [None, 0, 60, "next"])
def test_a_reconnected_player_ends_with_the_frames_of_a_player_who_stayed(
    resume: int | str | None,
) -> None:
    r = _play_with_a_reconnect(resume)
    h = r.h
    stayed = frames_of(h.s[1].packets)
    before, after = frames_of(r.first.packets), frames_of(r.second.packets)
    # what the client said it had (resumeFrame 60 past what it got) is not sent again
    claimed = range(before[-1][0] + 1, resume) if isinstance(resume, int) else range(0)
    assert nonempty(before + after) == {
        f: i for f, i in nonempty(stayed).items() if f not in claimed
    }
    assert after[-1][0] == stayed[-1][0] == h.room._last_send - 1
    after_ids = [f for f, _ in after]
    assert after_ids == sorted(set(after_ids))
    # the resync sent after Ready: frames with inputs from where it was asked, then M-1
    m = r.last_send_at_ready
    start = before[-1][0] + 1 if isinstance(resume, str) else resume or 0
    expected = sorted({f for f in nonempty(stayed) if start <= f < m} | {m - 1})
    assert [f for f, _ in r.resync] == expected
    assert nonempty(r.resync) == {f: i for f, i in nonempty(stayed).items() if start <= f < m}
    if resume == "next":
        assert not set(before_ids := [f for f, _ in before]) & set(after_ids), before_ids


def test_bind_alone_then_ready_resyncs_from_frame_zero() -> None:
    h = H((1, 2))
    h.start()
    h.input(1, sid=1)
    h.step(10)  # frames 0..8 sent to both, player 2's cursor is 9
    h.leave(2)
    h.step(5)
    second = h.connect(2, "again")  # Room.bind without a resume frame
    h.send(2, MsgId.MSG_Ready)
    frames = frames_of(second.take())
    assert frames[0] == (0, ((1, 1, 0, 0, 1),))


def test_ready_in_game_from_a_player_who_never_left() -> None:
    h = H((1, 2))
    h.start()
    h.step(6)
    h.s[1].take()
    h.send(1, MsgId.MSG_Ready)
    # no Ready reply (already ready), Start again, nothing it already has
    assert h.s[1].take() == [start_packet(h.room.start_time)]


# ---- the end -------------------------------------------------------------------------------


def test_results_from_every_online_player_end_the_game() -> None:
    h = H((1, 2, 3), ready_timeout=0.0)
    h.start((1, 2))
    h.step(5)
    h.s[1].take(), h.s[2].take()
    h.send(1, MsgId.MSG_Result, V.RESULT_BODY)  # winner 2
    h.send(2, MsgId.MSG_Result, V.RESULT_BODY)
    h.send(2, MsgId.MSG_Result, pb.C2S_ResultMsg(winnerID=1).SerializeToString())
    assert h.s[1].take() == [RESULT_ACK] and h.s[2].take() == [RESULT_ACK, RESULT_ACK]
    assert h.room.result is None
    h.step()
    result = h.room.result
    assert result is not None and result.reason == "results"
    assert result.results == {1: 2, 2: 1}
    assert result.frames == 5 and result.started and result.members == (1, 2, 3)
    assert h.s[1].take() == [CLOSE] and h.s[2].take() == [CLOSE]
    assert result.to_dict()["results"] == {1: 2, 2: 1}


def test_results_from_some_players_do_not_end_it() -> None:
    h = H((1, 2))
    h.start()
    h.send(1, MsgId.MSG_Result, V.RESULT_BODY)
    h.step(10)
    assert h.room.result is None and h.room.state == "gaming"


def test_everyone_leaving_ends_the_game_on_the_next_tick() -> None:
    h = H((1, 2))
    h.start()
    h.step(4)
    h.leave(1)
    h.step()
    assert h.room.result is None
    h.leave(2)
    h.step()
    assert h.room.result is not None and h.room.result.reason == "everyone_left"
    assert CLOSE not in h.s[1].packets + h.s[2].packets


def test_max_frames() -> None:
    h = H((1, 2), max_frames=10)
    h.start()
    h.step(11)
    assert h.room.result is None and h.room.frame == 11
    h.step()
    assert h.room.result is not None and h.room.result.reason == "max_frames"
    assert h.room.result.frames == 11


@pytest.mark.parametrize("started", [True, False])
def test_lifetime_ends_the_room(started: bool) -> None:
    h = H((1, 2), lifetime=2.0, ready_timeout=20.0)
    if started:
        h.start()
    else:
        h.connect(1)
    while h.room.result is None:
        h.step()
    assert h.room.result.reason == "time_limit"
    assert 59 <= h.k <= 61
    assert h.room.result.started == started
    assert h.s[1].packets[-1] == CLOSE


def test_close_once_then_the_close_wait_then_done() -> None:
    h = H((1, 2, 3), ready_timeout=0.0)
    h.start((1, 2))
    h.send(1, MsgId.MSG_Result)
    h.send(2, MsgId.MSG_Result)
    h.step()
    end = h.now
    assert h.room.finishing and not h.room.done
    assert h.s[1].take() == [RESULT_ACK, CLOSE]
    frames = h.room.frame
    # during the close wait: Heartbeat answered, the rest ignored
    for msg_id, body in [
        (MsgId.MSG_Ready, b""),
        (MsgId.MSG_Input, input_body(1)),
        (MsgId.MSG_JoinRoom, b""),
        (MsgId.MSG_Result, V.RESULT_BODY),
        (MsgId.MSG_Progress, V.PROGRESS_REQUEST_BODY),
        (MsgId.MSG_Heartbeat, b""),
    ]:
        h.send(1, msg_id, body)
    assert h.s[1].take() == [HEARTBEAT] and h.s[2].take() == [RESULT_ACK, CLOSE]
    while h.now < end + 3.0 - PERIOD:
        h.step()
        assert not h.room.done
    h.step(2)
    assert h.room.done and h.room.frame == frames
    assert h.s[1].closed == 1 and h.s[2].closed == 1
    assert h.s[1].packets == [] and h.s[2].packets == []
    assert h.room.online() == []
    h.step(10)
    assert h.s[1].closed == 1 and h.s[1].sent_after_close == 0


def test_stop_closes_everything() -> None:
    h = H((1, 2))
    h.start()
    h.step(5)
    h.room.stop(h.now)
    result = h.room.result
    assert result is not None and result.reason == "stopped" and result.frames == 5
    assert h.room.done
    for session in h.s.values():
        assert session.closed == 1 and session.packets[-1] == CLOSE
        assert session.sent_after_close == 0


def test_stop_during_the_close_wait_keeps_the_reason() -> None:
    h = H((1, 2))
    h.start()
    h.leave(2)
    h.send(1, MsgId.MSG_Result)
    h.step()
    assert h.room.result is not None and h.room.result.reason == "results"
    h.room.stop(h.now)
    assert h.room.done and h.room.result.reason == "results"
    assert h.s[1].closed == 1 and h.s[1].ids().count(MsgId.MSG_Close) == 1


def test_an_empty_room_starts_and_ends_at_once() -> None:
    h = H(())
    h.step()
    assert h.room.started
    h.step()
    assert h.room.result is not None and h.room.result.reason == "everyone_left"


# ---- the clock -----------------------------------------------------------------------------


def test_a_late_tick_runs_the_missed_ticks_back_to_back() -> None:
    h = H((1, 2))
    h.start()
    h.room.tick(T0 + 0.5 + 0.01)  # 15 ticks late
    assert h.room.frame == 15 and h.room.skipped_ticks == 0
    assert frame_messages(h.s[1].packets) == [
        [(2, ())],
        [(5, ())],
        [(8, ())],
        [(11, ())],
        [(14, ())],
    ]
    assert h.room.next_tick_at == pytest.approx(T0 + 16 * PERIOD)


def test_the_frame_counter_tracks_elapsed_time() -> None:
    h = H((1, 2))
    h.start()
    rng = random.Random(1)
    now = at(0)
    for _ in range(500):
        now += rng.uniform(0.0, 0.2)
        h.room.tick(now)
        due = int((now - T0) / PERIOD + 1e-9)
        assert h.room.frame in (due, due - 1)  # off by one only on a float boundary
        assert h.room.next_tick_at > now
        assert h.room.next_tick_at == pytest.approx(T0 + (h.room.frame + 1) * PERIOD)
    assert h.room.skipped_ticks == 0


def test_far_behind_the_room_skips_instead_of_bursting() -> None:
    h = H((1, 2), max_catch_up=1.0)
    h.start()
    h.room.tick(T0 + 5.0 + EPS)
    assert h.room.skipped_ticks == pytest.approx(149, abs=1)
    assert h.room.frame == 1
    assert len(frame_messages(h.s[1].packets)) <= 1
    assert h.room.next_tick_at == pytest.approx(T0 + 151 * PERIOD)
    h.room.tick(T0 + 5.0 + 3 * PERIOD + EPS)
    assert h.room.frame == 4 and h.room.skipped_ticks == pytest.approx(149, abs=1)


def test_a_tick_called_a_little_late_does_not_drift() -> None:
    h = H((1, 2))
    h.start()
    for k in range(1, 100):
        h.room.tick(T0 + k * PERIOD + 0.9 * PERIOD)
        assert h.room.next_tick_at == pytest.approx(T0 + (k + 1) * PERIOD)
    assert h.room.frame == 99


# ---- the input log -------------------------------------------------------------------------


def test_input_log() -> None:
    h = H((5, 6), seed=42)
    h.start()
    h.step(2)
    h.input(6, sid=1, x=-3, y=4)
    h.input(5, sid=2)
    h.step(3)
    h.input(5, sid=9, x=9, y=9)
    h.step()
    log = h.room.input_log()
    assert log == {
        "room": 7,
        "members": [5, 6],
        "seed": 42,
        "tick_hz": 30,
        "start_time": h.room.start_time,
        "frames": 6,
        "inputs": [[2, [[6, 1, -3, 4, 2], [5, 2, 0, 0, 1]]], [5, [[5, 9, 9, 9, 1]]]],
        "result": None,
    }
    h.send(5, MsgId.MSG_Result, pb.C2S_ResultMsg(winnerID=5).SerializeToString())
    h.send(6, MsgId.MSG_Result, pb.C2S_ResultMsg(winnerID=5).SerializeToString())
    h.step()
    result = h.room.input_log()["result"]
    assert isinstance(result, dict)
    assert result["reason"] == "results" and result["results"] == {5: 5, 6: 5}
    assert result["frames"] == 6
