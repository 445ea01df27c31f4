"""goworld.lockstep.journal: rooms that outlive their process (files in tmp_path, no sockets).

A "crash" here is a RoomManager dropped without stop(): its journal files stay, and a new
manager (another secret, as a new process has) brings the rooms back from them."""

from __future__ import annotations

from pathlib import Path

from goworld.lockstep import lockstep_pb2 as pb
from goworld.lockstep.codec import MsgId
from goworld.lockstep.journal import RoomJournal, read
from tests.goworld.lockstep.test_room import (
    CONNECT_OK,
    READY,
    FakeSession,
    at,
    frames_of,
    input_body,
    nonempty,
    start_packet,
)
from tests.goworld.lockstep.test_rooms import M

#: a Result saying player 2 won
RESULT_2: bytes = pb.C2S_ResultMsg(winnerID=2).SerializeToString()


def _playing(tmp_path: Path) -> tuple[M, FakeSession, FakeSession, dict[int, tuple]]:
    """Room 7 (players 1 and 2, with tokens) 60 ticks into its game, inputs on every 5th."""
    m = M(journal=RoomJournal(tmp_path), secret=b"a" * 32)
    room = m.mgr.create(7, [1, 2], at(0) - 1e-6, with_tokens=True, seed=42, owner=("E" * 16, "OnRoomResult"))
    assert room.tokens is not None
    s1, s2 = m.connect(1, 7, room.tokens[1]), m.connect(2, 7, room.tokens[2])
    m.recv(s1, MsgId.MSG_Ready)
    m.recv(s2, MsgId.MSG_Ready)
    m.tick(at(0))
    assert room.state == "gaming"
    inputs: dict[int, tuple] = {}
    for k in range(1, 61):
        if k % 5 == 0:
            m.recv(s1, MsgId.MSG_Input, input_body(sid=k, x=1))
            m.recv(s2, MsgId.MSG_Input, input_body(sid=k, x=2))
            inputs[room.frame] = ((1, k, 1, 0, 1), (2, k, 2, 0, 2))
        m.tick(at(k))
    m.recv(s2, MsgId.MSG_Result, RESULT_2)  # player 2 says player 2 won
    return m, s1, s2, inputs


def test_a_room_brought_back_gives_every_client_the_frames_it_had_then_goes_on(tmp_path: Path) -> None:
    m, s1, s2, inputs = _playing(tmp_path)
    room = m.mgr.rooms[7]
    seen = frames_of(s1.packets)
    assert nonempty(frames_of(s2.packets)) == nonempty(seen)
    last_seen = seen[-1][0]
    sent, start_time, tokens = room._last_send, room.start_time, dict(room.tokens or {})
    assert last_seen == sent - 1
    # the process dies here (no stop): a new one, with another secret, reads the journal
    m2 = M(journal=RoomJournal(tmp_path), secret=b"b" * 32)
    m2.clock.now = m.clock.now + 3.0  # down for 3 s
    (back,) = m2.mgr.restore(m2.now)
    assert back.id == 7 and back.state == "gaming" and back.seed == 42
    assert back.owner == ("E" * 16, "OnRoomResult") and back.tokens == tokens
    assert back.frame == sent and back.players[2].result == 2 and back.players[1].result is None
    assert m2.mgr.stats["rooms_restored"] == 1
    # nobody back yet: the room waits (ready_timeout), its frames do not advance
    for k in range(1, 30):
        m2.tick(m2.now + k / 30)
    assert back.frame == sent and back.result is None
    # the players reconnect with their tokens (the old secret is gone: the journal kept them)
    n1 = m2.connect(1, 7, tokens[1])
    n2 = m2.connect(2, 7, tokens[2], resume=last_seen + 1)
    m2.recv(n1, MsgId.MSG_Ready)
    m2.recv(n2, MsgId.MSG_Ready)
    p1, p2 = n1.take(), n2.take()
    assert p1[:3] == [CONNECT_OK, READY, start_packet(start_time)]  # the original start
    assert p2[:3] == [CONNECT_OK, READY, start_packet(start_time)]
    # player 1 asked for everything: the same frames, entry for entry; player 2 only what
    # comes after what it had (nothing yet)
    assert frames_of(p1) == [f for f in seen if f[1]] + ([seen[-1]] if not seen[-1][1] else [])
    assert nonempty(frames_of(p1)) == {f: i for f, i in inputs.items() if f < sent}
    assert frames_of(p2) == []
    # the game goes on from the last frame sent: new inputs land after it
    now = m2.now
    for k in range(1, 10):
        if k == 2:
            m2.recv(n1, MsgId.MSG_Input, input_body(sid=99))
        m2.tick(now + k / 30)
    later = frames_of(n1.take())
    assert later and later[0][0] >= sent and all(f > last_seen for f, _ in later)
    assert [i for _, i in later if i] == [((1, 99, 0, 0, 1),)]
    assert frames_of(n2.take()) == later  # both players, the same frames


def test_the_journal_of_an_ended_or_stopped_room_is_gone(tmp_path: Path) -> None:
    m, s1, s2, _ = _playing(tmp_path)
    journal = tmp_path / "7.journal"
    assert journal.exists()
    m.recv(s1, MsgId.MSG_Result, RESULT_2)
    ended = m.mgr.rooms[7]
    m.tick(m.now + 0.05)  # every online player reported: the game ends
    assert ended.result is not None and ended.result.reason == "results"
    assert read(journal).ended == "results"  # a crash now would not bring it back ...
    assert M(journal=RoomJournal(tmp_path)).mgr.restore(m.now) == []
    assert not journal.exists()  # ... and the successor drops the file
    # a room forgotten after its close wait removes its file; stop() removes every file
    m3 = M(journal=RoomJournal(tmp_path))
    m3.mgr.create(8, [1], m3.now)
    assert (tmp_path / "8.journal").exists()
    m3.mgr.stop(m3.now)
    assert list(tmp_path.glob("*.journal")) == []


def test_a_torn_last_record_is_dropped_and_an_unreadable_file_set_aside(tmp_path: Path) -> None:
    m, _, _, inputs = _playing(tmp_path)
    sent = m.mgr.rooms[7]._last_send
    journal = tmp_path / "7.journal"
    with journal.open("ab") as f:  # the process died in the middle of a write
        f.write(b"\x40\x00\x00\x00\x94\xa4se")
    (tmp_path / "9.journal").write_bytes(b"\xff" * 40)
    m2 = M(journal=RoomJournal(tmp_path))
    (back,) = m2.mgr.restore(m2.now)
    assert back.frame == sent
    assert {f: tuple(i) for f, i in back._frames.inputs.items()} == {f: i for f, i in inputs.items() if f < sent}
    assert (tmp_path / "9.bad").exists() and not (tmp_path / "9.journal").exists()
    # the restored room's journal was written again, whole: a second crash reads it back
    assert read(journal).sent == sent


def test_a_restored_room_nobody_returns_to_ends_everyone_left(tmp_path: Path) -> None:
    m, _, _, _ = _playing(tmp_path)
    m2 = M(journal=RoomJournal(tmp_path))
    (back,) = m2.mgr.restore(m2.now)
    frame = back.frame
    timeout = back.settings.ready_timeout
    m2.tick(m2.now + timeout / 2)
    assert back.result is None and back.frame == frame
    m2.tick(m2.now + timeout / 2 + 0.1)
    assert back.result is not None and back.result.reason == "everyone_left"
    assert back.result.frames == frame and back.result.results == {2: 2}


def test_a_room_not_started_comes_back_ready_with_its_ready_timeout_running(tmp_path: Path) -> None:
    m = M(journal=RoomJournal(tmp_path))
    m.mgr.create(5, [1, 2], m.now)
    m2 = M(journal=RoomJournal(tmp_path))
    m2.clock.now = m.clock.now + 4.0
    (back,) = m2.mgr.restore(m2.now)
    assert back.state == "ready" and back.created_wall == m.mgr.rooms[5].created_wall
    s = m2.connect(1, 5)
    assert s.take() == [CONNECT_OK]
    m2.tick(m2.now + back.settings.ready_timeout - 4.0 + 0.1)  # 20 s after creation in all
    assert back.state == "gaming"  # started with whoever was there
