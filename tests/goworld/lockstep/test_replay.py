"""Input logs: what a room saves replays to the frames its members received."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from goworld.lockstep import lockstep_pb2 as pb
from goworld.lockstep.codec import MsgId
from goworld.lockstep.replay import ReplayError, check, digest, load, main, replay
from goworld.lockstep.room import Room, RoomSettings
from tests.goworld.lockstep.recorder import Recorder


def _play(seed: int, members: list[int], ticks: int) -> tuple[Room, dict[int, Recorder]]:
    rng = random.Random(seed)
    room = Room(77, members, 0.0, settings=RoomSettings(), seed=seed, wall=lambda: 1_700_000_000.0)
    sessions = {m: Recorder() for m in members}
    players = {m: room.bind(sessions[m], m, 0.0) for m in members}
    for player in players.values():
        room.receive(player, MsgId.MSG_Ready, b"", 0.0)
    now = 0.0
    for _ in range(ticks):
        now += 1 / 30
        for player in players.values():
            room.receive(player, MsgId.MSG_Heartbeat, b"", now)
            if rng.random() < 0.3:
                body = pb.C2S_InputMsg(sid=rng.randrange(-5, 5), x=rng.randrange(-1000, 1000),
                                       y=rng.randrange(100)).SerializeToString()
                room.receive(player, MsgId.MSG_Input, body, now)
        room.tick(now)
    for player in players.values():
        room.receive(player, MsgId.MSG_Result, pb.C2S_ResultMsg(winnerID=members[0]).SerializeToString(), now)
    for _ in range(5):
        now += 1 / 30
        room.tick(now)
    assert room.result is not None and room.result.reason == "results"
    return room, sessions


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_saved_log_replays_to_the_frames_the_members_received(seed: int, tmp_path: Path) -> None:
    room, sessions = _play(seed, [4, 5, 6], 200)
    path = tmp_path / "room.json"
    path.write_text(json.dumps(room.input_log()))
    log = load(path)
    live = [f for f in sessions[4].frames if f[1]]
    assert live and live == [f for f in sessions[5].frames if f[1]]
    assert check(log) == live
    assert digest(check(log)) == digest(live)
    replayed = replay(log)
    assert sorted(replayed) == [4, 5, 6]
    assert log.result is not None and log.result["reason"] == "results"


def test_a_log_whose_inputs_name_a_stranger_does_not_replay(tmp_path: Path) -> None:
    room, _ = _play(9, [1, 2], 60)
    data = room.input_log()
    frames = data["inputs"]
    assert isinstance(frames, list) and frames
    frames[0][1][0][0] = 99  # an input from nobody in the room
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises((ReplayError, KeyError)):
        check(load(path))


def test_unreadable_logs_are_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"room": 1}')
    with pytest.raises(ReplayError, match="not a lockstep input log"):
        load(path)
    assert main([str(path)]) == 1
    assert "replay:" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.json")]) == 1


def test_the_command_prints_the_match(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    room, sessions = _play(4, [8, 9], 90)
    path = tmp_path / "room.json"
    path.write_text(json.dumps(room.input_log()))
    assert main([str(path), "--frames"]) == 0
    out = capsys.readouterr().out
    live = [f for f in sessions[8].frames if f[1]]
    assert f"digest: {digest(live)}" in out
    assert "room 77: members [8, 9], seed 4, 30 Hz" in out
