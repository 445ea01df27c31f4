"""Golden packets of the lockstep protocol, written out byte by byte from LOCKSTEP.md §3 and §5.

Every packet is ``[u16 BE body length][u8 id][proto2 body]``. The bytes below are literals
derived by hand from the wire format (tag = field number << 3 | wire type; varints 7 bits per
byte, low group first; negative int32 sign-extended to a 10-byte varint; repeated scalars one
tag per element, not packed), never produced by the code under test. Server tests import them
to check byte-exact output.

``make`` builds a fresh message equal to the body (``None`` for body-less packets), with every
field a lockstepserver server always writes set explicitly, zeros included.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from goworld.lockstep import lockstep_pb2 as pb

# Ids (LOCKSTEP.md §4), spelled as bytes so the packets below read like a hex dump.
CONNECT = 0x01
HEARTBEAT = 0x02
JOIN_ROOM = 0x0A
PROGRESS = 0x14
READY = 0x1E
START = 0x28
FRAME = 0x32
INPUT = 0x3C
RESULT = 0x46
CLOSE = 0x64
END = 0xFF


@dataclass(frozen=True)
class Vector:
    name: str
    direction: str  # "c2s" (a client sends it) or "s2c" (a server sends it)
    msg_id: int
    make: Callable[[], Any] | None
    packet: bytes

    @property
    def body(self) -> bytes:
        return self.packet[3:]


def _hex(text: str) -> bytes:
    return bytes.fromhex(text)


# --- body-less packets: exactly three bytes -------------------------------------------------

HEARTBEAT_PACKET = _hex("00 00 02")
JOIN_ROOM_REQUEST = _hex("00 00 0a")
READY_PACKET = _hex("00 00 1e")
RESULT_ACK = _hex("00 00 46")
CLOSE_PACKET = _hex("00 00 64")

# --- bodies ---------------------------------------------------------------------------------

# S2C_ConnectMsg{errorCode=ERR_Ok}: field 1 varint (tag 08), value 0 written anyway.
CONNECT_OK_BODY = _hex("08 00")
# S2C_ConnectMsg{errorCode=ERR_NoRoom}
CONNECT_NO_ROOM_BODY = _hex("08 02")
# C2S_ConnectMsg{playerID=1, battleID=1}: what the Go example client sends (no token).
CONNECT_REQUEST_BODY = _hex("08 01 10 01")
# C2S_ConnectMsg{playerID=1, battleID=7, token="ab", resumeFrame=300}:
# field 10 length-delimited -> tag 0x52; field 11 varint -> tag 0x58; 300 -> ac 02.
CONNECT_RESUME_BODY = _hex("08 01 10 07 52 02 61 62 58 ac 02")
# S2C_JoinRoomMsg observed from lockstepserver: seat 1 of members {1, 2}, seed 0.
JOIN_ROOM_OBSERVED_BODY = _hex("08 01 10 02 18 00 20 00")
# S2C_JoinRoomMsg{roomseatid=2, others=[1, 3], pros=[100, 50], randomSeed=12345}:
# one tag per element (10 xx, 18 xx), not packed; 12345 -> b9 60.
JOIN_ROOM_THREE_BODY = _hex("08 02 10 01 10 03 18 64 18 32 20 b9 60")
# S2C_StartMsg{timeStamp=1765000000}: c0 86 cf c9 06.
START_BODY = _hex("08 c0 86 cf c9 06")
# C2S_ProgressMsg{pro=50}
PROGRESS_REQUEST_BODY = _hex("08 32")
# S2C_ProgressMsg{id=2, pro=50}
PROGRESS_RELAY_BODY = _hex("08 02 10 32")
# C2S_InputMsg{sid=1, x=-1, y=5}: -1 as int32 is ten bytes ff ff ff ff ff ff ff ff ff 01.
INPUT_BODY = _hex("08 01 10 ff ff ff ff ff ff ff ff ff 01 18 05")
# C2S_ResultMsg{winnerID=2}
RESULT_BODY = _hex("08 02")
# S2C_FrameMsg{frames=[FrameData{frameID=2}]}: an empty frame (field 1 length 2).
EMPTY_FRAME_BODY = _hex("0a 02 08 02")
# S2C_FrameMsg{frames=[FrameData{frameID=0}]}: frame 0 still carries its id.
FRAME_ZERO_BODY = _hex("0a 02 08 00")
# InputData{id=1, sid=-2, x=0, y=0, roomseatid=0}: 19 bytes, all five fields present.
INPUT_DATA_BODY = _hex("08 01 10 fe ff ff ff ff ff ff ff ff 01 18 00 20 00 28 00")
# FrameData{frameID=7, input=[that]}: 08 07, then field 2 (tag 12) of length 0x13.
FRAME_WITH_INPUT_BODY = _hex("0a 17 08 07 12 13") + INPUT_DATA_BODY
# Two frames in one message: 5 (empty) and 6 with two inputs from seats 1 and 2.
INPUT_SEAT1 = _hex("08 0b 10 01 18 02 20 03 28 01")  # id 11, sid 1, x 2, y 3, seat 1
INPUT_SEAT2 = _hex("08 0c 10 00 18 7f 20 80 01 28 02")  # id 12, sid 0, x 127, y 128, seat 2
TWO_FRAMES_BODY = (
    _hex("0a 02 08 05")
    + _hex("0a 1b 08 06")
    + _hex("12 0a")
    + INPUT_SEAT1
    + _hex("12 0b")
    + INPUT_SEAT2
)


def _packet(msg_id: int, body: bytes) -> bytes:
    assert len(body) < 256  # every golden body here is short: the high length byte is 00
    return bytes([0, len(body), msg_id]) + body


VECTORS: list[Vector] = [
    Vector("heartbeat", "c2s", HEARTBEAT, None, HEARTBEAT_PACKET),
    Vector("heartbeat reply", "s2c", HEARTBEAT, None, HEARTBEAT_PACKET),
    Vector("join room request", "c2s", JOIN_ROOM, None, JOIN_ROOM_REQUEST),
    Vector("ready", "c2s", READY, None, READY_PACKET),
    Vector("ready ack", "s2c", READY, None, READY_PACKET),
    Vector("result ack", "s2c", RESULT, None, RESULT_ACK),
    Vector("close", "s2c", CLOSE, None, CLOSE_PACKET),
    Vector(
        "connect request",
        "c2s",
        CONNECT,
        lambda: pb.C2S_ConnectMsg(playerID=1, battleID=1),
        _packet(CONNECT, CONNECT_REQUEST_BODY),
    ),
    Vector(
        "connect with token and resumeFrame",
        "c2s",
        CONNECT,
        lambda: pb.C2S_ConnectMsg(playerID=1, battleID=7, token="ab", resumeFrame=300),
        _packet(CONNECT, CONNECT_RESUME_BODY),
    ),
    Vector(
        "connect ok",
        "s2c",
        CONNECT,
        lambda: pb.S2C_ConnectMsg(errorCode=pb.ERR_Ok),
        _packet(CONNECT, CONNECT_OK_BODY),
    ),
    Vector(
        "connect no room",
        "s2c",
        CONNECT,
        lambda: pb.S2C_ConnectMsg(errorCode=pb.ERR_NoRoom),
        _packet(CONNECT, CONNECT_NO_ROOM_BODY),
    ),
    Vector(
        "join room reply (observed)",
        "s2c",
        JOIN_ROOM,
        lambda: pb.S2C_JoinRoomMsg(roomseatid=1, others=[2], pros=[0], randomSeed=0),
        _packet(JOIN_ROOM, JOIN_ROOM_OBSERVED_BODY),
    ),
    Vector(
        "join room reply, three members",
        "s2c",
        JOIN_ROOM,
        lambda: pb.S2C_JoinRoomMsg(roomseatid=2, others=[1, 3], pros=[100, 50], randomSeed=12345),
        _packet(JOIN_ROOM, JOIN_ROOM_THREE_BODY),
    ),
    Vector(
        "start",
        "s2c",
        START,
        lambda: pb.S2C_StartMsg(timeStamp=1765000000),
        _packet(START, START_BODY),
    ),
    Vector(
        "progress",
        "c2s",
        PROGRESS,
        lambda: pb.C2S_ProgressMsg(pro=50),
        _packet(PROGRESS, PROGRESS_REQUEST_BODY),
    ),
    Vector(
        "progress relay",
        "s2c",
        PROGRESS,
        lambda: pb.S2C_ProgressMsg(id=2, pro=50),
        _packet(PROGRESS, PROGRESS_RELAY_BODY),
    ),
    Vector(
        "input with a negative x",
        "c2s",
        INPUT,
        lambda: pb.C2S_InputMsg(sid=1, x=-1, y=5),
        _packet(INPUT, INPUT_BODY),
    ),
    Vector(
        "result",
        "c2s",
        RESULT,
        lambda: pb.C2S_ResultMsg(winnerID=2),
        _packet(RESULT, RESULT_BODY),
    ),
    Vector(
        "empty frame",
        "s2c",
        FRAME,
        lambda: pb.S2C_FrameMsg(frames=[pb.FrameData(frameID=2)]),
        _packet(FRAME, EMPTY_FRAME_BODY),
    ),
    Vector(
        "frame 0",
        "s2c",
        FRAME,
        lambda: pb.S2C_FrameMsg(frames=[pb.FrameData(frameID=0)]),
        _packet(FRAME, FRAME_ZERO_BODY),
    ),
    Vector(
        "frame with a negative sid, zeros present",
        "s2c",
        FRAME,
        lambda: pb.S2C_FrameMsg(
            frames=[
                pb.FrameData(
                    frameID=7,
                    input=[pb.InputData(id=1, sid=-2, x=0, y=0, roomseatid=0)],
                )
            ]
        ),
        _packet(FRAME, FRAME_WITH_INPUT_BODY),
    ),
    Vector(
        "two frames, two inputs",
        "s2c",
        FRAME,
        lambda: pb.S2C_FrameMsg(
            frames=[
                pb.FrameData(frameID=5),
                pb.FrameData(
                    frameID=6,
                    input=[
                        pb.InputData(id=11, sid=1, x=2, y=3, roomseatid=1),
                        pb.InputData(id=12, sid=0, x=127, y=128, roomseatid=2),
                    ],
                ),
            ]
        ),
        _packet(FRAME, TWO_FRAMES_BODY),
    ),
]

#: MSG_END's body is raw bytes (echoed before Connect), not a message.
END_ECHO = _hex("00 03 ff 01 02 03")

#: Every golden packet back to back, as one stream (client-bound and server-bound mixed).
STREAM = b"".join(v.packet for v in VECTORS) + END_ECHO
