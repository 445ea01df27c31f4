"""A room's input log: saved when the room ends, read back and replayed.

With ``[lockstep] replay_dir`` set, the lockstep process writes one JSON file per ended room
(``room-<id>-<creation unix time>.json``, :meth:`goworld.lockstep.room.Room.input_log`):
members, seed, tick rate, start time, frames played, every input with its frame, and the
result. That is all a deterministic client needs to play the match again.

:func:`replay` feeds the log through a fresh :class:`~goworld.lockstep.room.Room` (the same
code the server runs), with one recording session per member that is always ready and never
stale, and returns the frames each member would have received. The inputs come out in the
frames the log names, so a log and its replay agree frame for frame (:func:`check`); a digest
of the frames identifies the match.

``python -m goworld.lockstep.replay FILE`` prints the match: members, frames, result, digest,
and with ``--frames`` every frame that carries inputs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from goworld.errors import GoWorldError
from goworld.lockstep import lockstep_pb2 as pb
from goworld.lockstep.codec import MsgId, PacketReader
from goworld.lockstep.frames import InputTuple
from goworld.lockstep.room import Player, Room, RoomSettings

__all__ = ["InputLog", "ReplayError", "load", "replay", "check", "digest", "main"]

Frame = tuple[int, tuple[InputTuple, ...]]


class ReplayError(GoWorldError):
    """An input log that cannot be read or does not replay to itself."""


@dataclass(frozen=True, slots=True)
class InputLog:
    room: int
    members: tuple[int, ...]
    seed: int
    tick_hz: int
    start_time: int
    frames: int  # frames played (the last frame id + 1)
    inputs: dict[int, tuple[InputTuple, ...]]  # frame id -> inputs in arrival order
    result: dict[str, Any] | None

    @classmethod
    def from_json(cls, data: Any) -> InputLog:
        try:
            inputs = {
                int(frame): tuple(
                    (int(p), int(s), int(x), int(y), int(seat)) for p, s, x, y, seat in items
                )
                for frame, items in data["inputs"]
            }
            return cls(
                room=int(data["room"]),
                members=tuple(int(m) for m in data["members"]),
                seed=int(data["seed"]),
                tick_hz=int(data["tick_hz"]),
                start_time=int(data["start_time"]),
                frames=int(data["frames"]),
                inputs=inputs,
                result=data.get("result"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ReplayError(f"not a lockstep input log: {exc!r}") from exc

    def recorded_frames(self) -> list[Frame]:
        """The frames that carry inputs, in order (the frame still open when the room ended
        was never sent: left out)."""
        return [(f, self.inputs[f]) for f in sorted(self.inputs) if f < self.frames]


def load(path: str | Path) -> InputLog:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ReplayError(f"{path}: {exc}") from exc
    return InputLog.from_json(data)


class _Recorder:
    """A member's session that keeps every FrameData it is sent."""

    def __init__(self) -> None:
        self.reader = PacketReader()
        self.frames: list[Frame] = []

    def send(self, data: bytes) -> None:
        for msg_id, body in self.reader.feed(data):
            if msg_id == MsgId.MSG_Frame:
                for frame in pb.S2C_FrameMsg.FromString(body).frames:
                    inputs = tuple((i.id, i.sid, i.x, i.y, i.roomseatid) for i in frame.input)
                    self.frames.append((frame.frameID, inputs))

    def close(self) -> None:
        pass


def replay(log: InputLog) -> dict[int, list[Frame]]:
    """Play ``log`` through a room again; every member's received frames (empty ones
    included, as the room batches them)."""
    settings = RoomSettings(tick_hz=log.tick_hz, ready_timeout=1e9, lifetime=1e12,
                            max_frames=max(log.frames + 1, 1), stale_after=1e12)
    room = Room(log.room, log.members, 0.0, settings=settings, seed=log.seed,
                wall=lambda: float(log.start_time))
    sessions = {member: _Recorder() for member in log.members}
    players: dict[int, Player] = {}
    for member, session in sessions.items():
        players[member] = room.bind(session, member, 0.0)
        room.receive(players[member], MsgId.MSG_Ready, b"", 0.0)
    period = 1.0 / log.tick_hz
    tick = 0
    room.tick(0.0)  # everyone is ready: the game starts, frame 0 is open
    while room.frame < log.frames:
        for player_id, sid, x, y, _seat in log.inputs.get(room.frame, ()):
            body = pb.C2S_InputMsg(sid=sid, x=x, y=y).SerializeToString()
            room.receive(players[player_id], MsgId.MSG_Input, body, tick * period)
        tick += 1
        room.tick(tick * period)
    return {member: session.frames for member, session in sessions.items()}


def check(log: InputLog) -> list[Frame]:
    """Replay ``log`` and return its frames with inputs; ReplayError if any member's replay
    differs from the log."""
    expected = log.recorded_frames()
    for member, frames in replay(log).items():
        got = [f for f in frames if f[1]]
        if got != expected:
            raise ReplayError(f"member {member}: the replay differs from the log")
    return expected


def digest(frames: Sequence[Frame]) -> str:
    """A short hash of a frame sequence (identifies the match)."""
    h = hashlib.sha256()
    for frame_id, inputs in frames:
        h.update(f"{frame_id}:{inputs};".encode())
    return h.hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m goworld.lockstep.replay", description=__doc__)
    parser.add_argument("file", type=Path)
    parser.add_argument("--frames", action="store_true", help="print every frame with inputs")
    args = parser.parse_args(argv)
    try:
        log = load(args.file)
        frames = check(log)
    except ReplayError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 1
    print(f"room {log.room}: members {list(log.members)}, seed {log.seed}, {log.tick_hz} Hz")
    print(f"{log.frames} frames, {sum(len(f[1]) for f in frames)} inputs in {len(frames)} frames")
    print(f"result: {json.dumps(log.result)}")
    print(f"digest: {digest(frames)} (replayed through a room: identical)")
    if args.frames:
        for frame_id, inputs in frames:
            print(f"  {frame_id}: {list(inputs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
