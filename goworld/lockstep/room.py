"""One lockstep room: members, the ready/gaming/over states and the frames (no I/O).

The room is driven from outside: :meth:`Room.bind` when a session's Connect names one of its
players, :meth:`Room.receive` for each packet of a bound session, :meth:`Room.session_closed`,
and :meth:`Room.tick` whenever :attr:`Room.next_tick_at` has passed. It writes packets straight
to its sessions (anything with ``send(bytes)`` and ``close()``), so the server's only job is
moving bytes. Times are the caller's monotonic seconds; ``wall`` gives the Unix time for
StartMsg's timestamp.

Behaviour is lockstepserver's (LOCKSTEP.md §6–§9) except where docs/LOCKSTEP-DESIGN.md says we
differ: any packet is a sign of life, one input per player per frame, seat-ordered player
lists, bodies never over 1024 bytes, resume from a named frame, drift-free ticks with bounded
catch-up, results reported, a close wait that still answers heartbeats.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from goworld.lockstep import lockstep_pb2 as pb
from goworld.lockstep.codec import MsgId, encode
from goworld.lockstep.frames import InputTuple, frame_entry, pack_frames

if TYPE_CHECKING:
    from goworld.lockstep.journal import RoomImage

__all__ = ["Room", "RoomSettings", "RoomResult", "Session", "MAX_PLAYERS"]

logger = logging.getLogger("goworld.lockstep")

#: one frame of 16 inputs fits one 1024-byte message: 777 bytes with every value at its longest
#: (921 even with negative seats, which rooms never give)
MAX_PLAYERS = 16

_OK, _NO_PLAYER, _NO_ROOM, _ROOM_STATE, _TOKEN = range(5)
READY, GAMING, OVER, CLOSING, DONE = "ready", "gaming", "over", "closing", "done"


class Session(Protocol):
    """What a room needs of a client connection."""

    def send(self, data: bytes) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class RoomSettings:
    tick_hz: int = 30
    ready_timeout: float = 20.0  # s after creation: start with whoever is there, or give up
    frames_per_send: int = 3  # frames between two sends when nobody sends input
    max_frames_per_message: int = 60
    max_body: int = 1024  # the clients' read limit
    stale_after: float = 2.0  # s without any packet: no frames until it speaks again
    max_frames: int = 5500
    lifetime: float = 300.0  # s from creation to a forced end
    close_wait: float = 3.0  # s between Close and dropping the sessions
    max_catch_up: float = 1.0  # s of missed ticks run back to back; older ones are skipped


@dataclass(slots=True)
class RoomResult:
    room_id: int
    reason: str  # results | everyone_left | max_frames | time_limit | nobody_came | stopped
    results: dict[int, int]  # player -> the winner it reported
    frames: int  # frames played
    members: tuple[int, ...]
    started: bool
    dropped_inputs: int = 0
    owner: object = None  # whoever asked for the room (game code's callback address)

    def to_dict(self) -> dict[str, object]:
        return {
            "room": self.room_id,
            "reason": self.reason,
            "results": dict(self.results),
            "frames": self.frames,
            "members": list(self.members),
            "started": self.started,
            "dropped_inputs": self.dropped_inputs,
        }


@dataclass(slots=True, eq=False)
class Player:
    id: int
    seat: int  # 1-based position in the member list
    session: Session | None = None
    ready: bool = False
    progress: int = 0
    last_seen: float = 0.0
    cursor: int = 0  # first frame id this player has not been sent
    result: int | None = None
    input_frame: int = -1  # the frame of its last accepted input


@dataclass(slots=True)
class _Frames:
    """Closed frames with inputs, their encoded entries, and the open frame's inputs."""

    ids: list[int] = field(default_factory=list)  # frame ids that have inputs, increasing
    inputs: dict[int, list[InputTuple]] = field(default_factory=dict)
    entries: dict[int, bytes] = field(default_factory=dict)  # encoded, for every frame sent

    def entry(self, frame_id: int) -> bytes:
        cached = self.entries.get(frame_id)
        if cached is None:
            cached = self.entries[frame_id] = frame_entry(frame_id, self.inputs.get(frame_id, ()))
        return cached


class Room:
    """A room for a fixed list of members (seat order = list order, duplicates collapse into
    the last position as in lockstepserver)."""

    def __init__(
        self,
        room_id: int,
        members: Sequence[int],
        now: float,
        *,
        settings: RoomSettings | None = None,
        seed: int = 0,
        tokens: dict[int, str] | None = None,
        owner: object = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.id = room_id
        self.settings = s = settings or RoomSettings()
        self.seed = seed
        self.tokens = tokens  # None: any token (rooms from the HTTP API)
        self.owner = owner
        self.wall = wall
        seats: dict[int, int] = {}
        for index, member in enumerate(members, 1):
            seats.pop(member, None)
            seats[member] = index
        if len(seats) > MAX_PLAYERS:
            raise ValueError(f"a room holds at most {MAX_PLAYERS} players, not {len(seats)}")
        self.players: dict[int, Player] = {
            pid: Player(pid, seat) for pid, seat in sorted(seats.items(), key=lambda kv: kv[1])
        }
        self.members = tuple(self.players)
        self.created = now
        self.created_wall = int(wall())
        self.state = READY
        self.start_time = 0  # Unix seconds, as StartMsg carries it
        self.started = False
        self.frame = 0  # the open frame's id
        self._frames = _Frames()
        self._last_send = 0  # frame counter at the last send
        self._input_pending = False
        self._tick_period = 1.0 / s.tick_hz
        self._ticks = 0  # ticks run since creation (tick k is due at created + k / tick_hz)
        self.next_tick_at = now
        self._close_at = 0.0
        self.result: RoomResult | None = None
        self.dropped_inputs = 0
        self.skipped_ticks = 0
        #: where the room writes what clients will see, before they see it
        #: (:mod:`goworld.lockstep.journal`); None: no journal
        self.journal: Callable[[list[Any]], object] | None = None
        #: a room brought back from its journal waits this long (monotonic) for a player
        #: before "everyone_left"; its frames do not advance meanwhile
        self._resume_until = 0.0

    @classmethod
    def restore(
        cls,
        image: RoomImage,
        now: float,
        *,
        settings: RoomSettings | None = None,
        wall: Callable[[], float] = time.time,
    ) -> Room:
        """The room ``image`` (its journal) describes, its next tick due at ``now``, every
        player offline. A started room goes on from the last frame sent, with the frames and
        results it had; it waits ``ready_timeout`` for a player to come back. A room not
        started keeps its creation time (its ready timeout runs on)."""
        room = cls(image.room_id, image.members, now, settings=settings, seed=image.seed,
                   tokens=image.tokens, owner=image.owner, wall=wall)
        room.created_wall = int(image.created_wall)
        period = room._tick_period
        if image.start_time:
            ticks = image.ticks
            room.state = GAMING
            room.started = True
            room.start_time = image.start_time
            room.frame = room._last_send = image.sent
            frames = room._frames
            for frame_id in sorted(image.inputs):
                frames.ids.append(frame_id)
                frames.inputs[frame_id] = list(image.inputs[frame_id])
            for player in room.players.values():
                player.progress = 100
            room._resume_until = now + room.settings.ready_timeout
        else:
            ticks = max(0, int((wall() - image.created_wall) / period))
        for player_id, winner in image.results.items():
            if player_id in room.players:
                room.players[player_id].result = winner
        room._ticks = ticks
        room.created = now - ticks * period
        room.next_tick_at = now
        return room

    def journal_records(self) -> list[list[Any]]:
        """The records a fresh journal of this room starts with (its state so far)."""
        owner = list(self.owner) if isinstance(self.owner, tuple) else self.owner
        records: list[list[Any]] = [
            ["new", self.id, list(self.members), self.seed, self.tokens, owner, self.created_wall]
        ]
        if self.started:
            records.append(["start", self.start_time, self._ticks])
            frames = self._frames
            records.append(["send", self._last_send, self._ticks,
                            [[f, [list(i) for i in frames.inputs[f]]] for f in frames.ids
                             if f < self._last_send]])
        records += [["result", p.id, p.result] for p in self.players.values() if p.result is not None]
        return records

    def _note(self, record: list[Any]) -> None:
        journal = self.journal
        if journal is not None:
            journal(record)

    # ---- sessions ------------------------------------------------------------------------

    @property
    def finishing(self) -> bool:
        """New Connects get ERR_RoomState (the game is over, the room not gone yet)."""
        return self.state in (OVER, CLOSING, DONE)

    def bind(
        self, session: Session, player_id: int, now: float, resume_frame: int | None = None
    ) -> Player:
        """A Connect for ``player_id`` passed the checks: ``session`` becomes its connection
        and is answered ERR_Ok. A previous session of that player is closed. Its next resync
        (Ready during the game) starts at ``resume_frame`` (None: frame 0, what
        lockstepserver's clients expect)."""
        player = self.players[player_id]
        old = player.session
        player.session = session
        player.ready = False
        player.last_seen = now
        player.cursor = 0 if resume_frame is None else max(0, resume_frame)
        if old is not None and old is not session:
            old.close()
        session.send(_CONNECT_OK)
        return player

    def session_closed(self, player: Player, session: Session) -> None:
        if player.session is session:
            player.session = None
            player.ready = False

    def online(self) -> list[Player]:
        return [p for p in self.players.values() if p.session is not None]

    # ---- messages from bound sessions ----------------------------------------------------

    def receive(self, player: Player, msg_id: int, body: bytes, now: float) -> None:
        """One packet from ``player``'s current session."""
        player.last_seen = now
        session = player.session
        if session is None:
            return
        if self.state == CLOSING:
            if msg_id == MsgId.MSG_Heartbeat:
                session.send(_HEARTBEAT)
            return
        if msg_id == MsgId.MSG_Input:
            self._on_input(player, body)
        elif msg_id == MsgId.MSG_Heartbeat:
            session.send(_HEARTBEAT)
        elif msg_id == MsgId.MSG_JoinRoom:
            self._on_join(player, session)
        elif msg_id == MsgId.MSG_Progress:
            self._on_progress(player, body)
        elif msg_id == MsgId.MSG_Ready:
            self._on_ready(player, session)
        elif msg_id == MsgId.MSG_Result:
            self._on_result(player, session, body)
        # anything else is ignored, as lockstepserver does

    def _on_input(self, player: Player, body: bytes) -> None:
        if self.state != GAMING:
            self.dropped_inputs += 1  # lockstepserver stores them and wipes them at Start
            return
        if player.input_frame == self.frame:
            self.dropped_inputs += 1  # one input per player per frame
            return
        msg = pb.C2S_InputMsg()
        try:
            msg.ParseFromString(body)
        except Exception:  # noqa: BLE001 - protobuf's DecodeError; lockstepserver ignores it
            return
        player.input_frame = self.frame
        frames = self._frames
        inputs = frames.inputs.get(self.frame)
        if inputs is None:
            inputs = frames.inputs[self.frame] = []
            frames.ids.append(self.frame)
        inputs.append((player.id, msg.sid, msg.x, msg.y, player.seat))
        self._input_pending = True

    def _on_join(self, player: Player, session: Session) -> None:
        others = [p for p in self.players.values() if p is not player]
        reply = pb.S2C_JoinRoomMsg(
            roomseatid=player.seat,
            others=[p.id for p in others],
            pros=[p.progress for p in others],
            randomSeed=self.seed,
        )
        session.send(encode(MsgId.MSG_JoinRoom, reply.SerializeToString()))

    def _on_progress(self, player: Player, body: bytes) -> None:
        if self.state != READY:
            return
        msg = pb.C2S_ProgressMsg()
        try:
            msg.ParseFromString(body)
        except Exception:  # noqa: BLE001 - ignored, as lockstepserver does
            return
        note = pb.S2C_ProgressMsg(id=player.id)
        if msg.HasField("pro"):
            player.progress = msg.pro
            note.pro = msg.pro
        data = encode(MsgId.MSG_Progress, note.SerializeToString())
        for other in self.players.values():
            if other is not player and other.session is not None:
                other.session.send(data)

    def _on_ready(self, player: Player, session: Session) -> None:
        if self.state not in (READY, GAMING):
            return
        if not player.ready:
            player.ready = True
            session.send(_READY)
        if self.state == GAMING:
            self._resync(player, session)

    def _on_result(self, player: Player, session: Session, body: bytes) -> None:
        msg = pb.C2S_ResultMsg()
        try:
            msg.ParseFromString(body)
        except Exception:  # noqa: BLE001 - a bad body reports winner 0
            msg = pb.C2S_ResultMsg()
        player.result = msg.winnerID
        self._note(["result", player.id, msg.winnerID])
        session.send(_RESULT)

    def _resync(self, player: Player, session: Session) -> None:
        """Start (original time) and every frame from the player's cursor up to the last send.

        The cursor is 0 after a plain Connect (lockstepserver's full history), the frame a
        reconnecting client named in ``resumeFrame``, or where a player who never left is.
        """
        session.send(self._start_packet())
        end = self._last_send
        if player.cursor < end:
            self._send_frames(session, player.cursor, end)
            player.cursor = end

    # ---- frames --------------------------------------------------------------------------

    def _send_frames(self, session: Session, start: int, end: int) -> None:
        """Frames start..end-1 that have inputs, plus end-1 always."""
        frames = self._frames
        ids = frames.ids
        lo = bisect.bisect_left(ids, start)
        hi = bisect.bisect_left(ids, end - 1)
        wanted = ids[lo:hi]
        wanted.append(end - 1)
        entry = frames.entry
        s = self.settings
        for body in pack_frames((entry(f) for f in wanted), s.max_frames_per_message, s.max_body):
            session.send(_frame_packet(body))

    def _send_step(self, now: float) -> None:
        n = self.frame
        if not self._input_pending and n - self._last_send < self.settings.frames_per_send:
            return
        if self.journal is not None:  # written before any client can see these frames
            frames = self._frames
            ids = frames.ids
            closing = ids[bisect.bisect_left(ids, self._last_send) : bisect.bisect_left(ids, n)]
            self.journal(["send", n, self._ticks + 1,
                          [[f, [list(i) for i in frames.inputs[f]]] for f in closing]])
        stale = self.settings.stale_after
        for player in self.players.values():
            session = player.session
            if session is None or not player.ready or now - player.last_seen >= stale:
                continue
            if player.cursor < n:
                self._send_frames(session, player.cursor, n)
                player.cursor = n
        self._last_send = n
        self._input_pending = False

    # ---- the clock -----------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Run every tick due by ``now`` (missed ones back to back, up to max_catch_up)."""
        period = self._tick_period
        if now - self.next_tick_at > self.settings.max_catch_up:
            # too far behind: skip to the present and say so, rather than burst for seconds
            due = int((now - self.created) / period)
            self.skipped_ticks += due - self._ticks
            logger.warning("room %d: %d ticks late, skipped them", self.id, due - self._ticks)
            self._ticks = due
            self.next_tick_at = self.created + due * period
        while self.next_tick_at <= now and self.state != DONE:
            self._tick_once(self.next_tick_at, now)
            self._ticks += 1
            self.next_tick_at = self.created + self._ticks * period
        if self.state == CLOSING:
            self.next_tick_at = max(self.next_tick_at, self._close_at)

    def _tick_once(self, due: float, now: float) -> None:
        s = self.settings
        state = self.state
        if state == CLOSING:
            if now >= self._close_at:
                self._drop_sessions()
            return
        if due - self.created >= s.lifetime:
            self._end("time_limit", now)
            return
        if state == READY:
            players = self.players.values()
            if all(p.ready for p in players):
                self._start()
            elif due - self.created >= s.ready_timeout:
                if any(p.session is not None for p in players):
                    self._start()
                else:
                    self._end("nobody_came", now)
        elif state == GAMING:
            online = self.online()
            if not online:
                if now < self._resume_until:
                    return  # back from the journal: the clock waits for the players
                self._end("everyone_left", now)
            elif all(p.result is not None for p in online):
                self._end("results", now)
            elif self.frame > s.max_frames:
                self._end("max_frames", now)
            else:
                self.frame += 1
                self._send_step(now)

    def _start(self) -> None:
        self.state = GAMING
        self.started = True
        self.frame = 0
        self.start_time = int(self.wall())
        self._note(["start", self.start_time, self._ticks + 1])
        for player in self.players.values():
            player.ready = True
            player.progress = 100
            player.cursor = 0
        packet = self._start_packet()
        for player in self.online():
            assert player.session is not None
            player.session.send(packet)

    def _start_packet(self) -> bytes:
        return encode(
            MsgId.MSG_Start, pb.S2C_StartMsg(timeStamp=self.start_time).SerializeToString()
        )

    def _end(self, reason: str, now: float) -> None:
        """Game over: Close to everyone online, then sessions dropped after close_wait."""
        self.result = RoomResult(
            self.id,
            reason,
            {p.id: p.result for p in self.players.values() if p.result is not None},
            self.frame,
            self.members,
            self.started,
            self.dropped_inputs,
            self.owner,
        )
        self._note(["end", reason])
        self.state = CLOSING
        for player in self.online():
            assert player.session is not None
            player.session.send(_CLOSE)
        self._close_at = now + self.settings.close_wait

    def stop(self, now: float) -> None:
        """End the room now (server shutdown): Close to everyone, sessions closed at once."""
        if self.state not in (CLOSING, DONE):
            self._end("stopped", now)
        self._drop_sessions()

    def _drop_sessions(self) -> None:
        for player in self.players.values():
            session, player.session = player.session, None
            if session is not None:
                session.close()
        self.state = DONE

    @property
    def done(self) -> bool:
        return self.state == DONE

    # ---- the input log -------------------------------------------------------------------

    def input_log(self) -> dict[str, object]:
        """Everything needed to replay the room: members, seed, rate and every input."""
        frames = self._frames
        return {
            "room": self.id,
            "members": list(self.members),
            "seed": self.seed,
            "tick_hz": self.settings.tick_hz,
            "start_time": self.start_time,
            "frames": self.frame,
            "inputs": [[f, [list(i) for i in frames.inputs[f]]] for f in frames.ids],
            "result": self.result.to_dict() if self.result is not None else None,
        }


def _frame_packet(body: bytes) -> bytes:
    return encode(MsgId.MSG_Frame, body)


_HEARTBEAT = encode(MsgId.MSG_Heartbeat)
_READY = encode(MsgId.MSG_Ready)
_RESULT = encode(MsgId.MSG_Result)
_CLOSE = encode(MsgId.MSG_Close)
_CONNECT_OK = encode(MsgId.MSG_Connect, pb.S2C_ConnectMsg(errorCode=pb.ERR_Ok).SerializeToString())
