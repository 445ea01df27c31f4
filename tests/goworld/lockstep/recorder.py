"""A session that records what a room sends it (shared by the room tests)."""

from __future__ import annotations

from goworld.lockstep import lockstep_pb2 as pb
from goworld.lockstep.codec import MsgId, PacketReader

Frame = tuple[int, tuple[tuple[int, int, int, int, int], ...]]


class Recorder:
    def __init__(self) -> None:
        self.reader = PacketReader()
        self.packets: list[tuple[int, bytes]] = []
        self.frames: list[Frame] = []
        self.closed = False

    def send(self, data: bytes) -> None:
        for msg_id, body in self.reader.feed(data):
            self.packets.append((msg_id, body))
            if msg_id == MsgId.MSG_Frame:
                for frame in pb.S2C_FrameMsg.FromString(body).frames:
                    inputs = tuple((i.id, i.sid, i.x, i.y, i.roomseatid) for i in frame.input)
                    self.frames.append((frame.frameID, inputs))

    def close(self) -> None:
        self.closed = True
