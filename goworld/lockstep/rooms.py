"""The rooms of one lockstep process and the sessions not yet in one (no I/O).

:class:`RoomManager` is what the server drives: :meth:`~RoomManager.receive` for every packet
of every session, :meth:`~RoomManager.session_closed`, and :meth:`~RoomManager.tick` when
:meth:`~RoomManager.next_due` has passed. A session is anything with ``send(bytes)`` and
``close()`` (:class:`goworld.lockstep.room.Session`).

Before its Connect succeeds a session may send Heartbeat (answered), MSG_END (echoed, a debug
aid) and Connect; anything else closes it (LOCKSTEP.md §6.1). Connect is checked in
lockstepserver's order: the room exists, is not finishing, has that player, and (ours) the
token matches when the room has tokens or ``require_token`` is set.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import heapq
import hmac
import logging
import math
import secrets
import time
from collections.abc import Callable, Sequence
from urllib.parse import parse_qs

from goworld.address import address_key
from goworld.errors import GoWorldError
from goworld.lockstep import lockstep_pb2 as pb
from goworld.lockstep.codec import MsgId, encode
from goworld.lockstep.journal import RoomJournal
from goworld.lockstep.room import MAX_PLAYERS, Player, Room, RoomSettings, Session

__all__ = ["RoomManager", "RoomRefused", "parse_u64"]

logger = logging.getLogger("goworld.lockstep")

_OK, _NO_PLAYER, _NO_ROOM, _ROOM_STATE, _TOKEN = range(5)
_ERRORS = {
    code: encode(
        MsgId.MSG_Connect,
        pb.S2C_ConnectMsg(errorCode=code).SerializeToString(),  # type: ignore[arg-type]
    )
    for code in (_NO_PLAYER, _NO_ROOM, _ROOM_STATE, _TOKEN)
}
_HEARTBEAT = encode(MsgId.MSG_Heartbeat)
_U64_MAX = (1 << 64) - 1
#: Rooms tick on TICK_SLOTS grids of the tick period, offset by period / TICK_SLOTS, each new
#: room on the emptiest: the server wakes TICK_SLOTS times per period (not once per room), and
#: the rooms of one wake-up are a quarter of them, so the last one served is not late by the
#: cost of ticking every room (its first tick moves < 1 period).
TICK_SLOTS = 4


class RoomRefused(GoWorldError):
    """A room cannot be created: its id is taken, or a limit would be passed."""

    def __init__(self, message: str, *, exists: bool = False) -> None:
        super().__init__(message)
        self.exists = exists


def parse_u64(text: str) -> int:
    """A base-10 u64 as Go's strconv.ParseUint reads it; anything else is 0 (LOCKSTEP §11)."""
    if not text or not text.isascii() or not text.isdigit():
        return 0
    value = int(text)
    return value if value <= _U64_MAX else 0


class RoomManager:
    def __init__(
        self,
        settings: RoomSettings | None = None,
        *,
        max_rooms: int = 1000,
        max_players: int = 8,
        require_token: bool = False,
        secret: bytes | None = None,
        wall: Callable[[], float] = time.time,
        journal: RoomJournal | None = None,
        http_max_rooms: int | None = None,
        http_rooms_per_ip: int = 0,
    ) -> None:
        if not 1 <= max_players <= MAX_PLAYERS:
            raise ValueError(f"max_players must be 1..{MAX_PLAYERS}")
        self.settings = settings or RoomSettings()
        self.max_rooms = max_rooms
        #: live rooms GET /create may make (0: it makes none), and per host (0: no limit):
        #: strangers must not fill max_rooms and crowd out the rooms game code asks for
        self.http_max_rooms = max_rooms if http_max_rooms is None else http_max_rooms
        self.http_rooms_per_ip = http_rooms_per_ip
        #: room id -> the host (address_key) whose GET /create made it
        self._http_made: dict[int, str] = {}
        self.max_players = max_players
        self.require_token = require_token
        self._secret = secret or secrets.token_bytes(32)
        self.wall = wall
        self.rooms: dict[int, Room] = {}
        #: every room's write-ahead journal (None: rooms die with the process)
        self.journal = journal
        self._bound: dict[Session, tuple[Room, Player]] = {}
        self._due: list[tuple[float, int, Room]] = []
        self._seq = 0
        #: rooms per tick slot; room id -> its slot (see TICK_SLOTS)
        self._slot_rooms = [0] * TICK_SLOTS
        self._slot_of: dict[int, int] = {}
        self.stats = {
            "rooms_created": 0,
            "rooms_restored": 0,
            "rooms_ended": 0,
            "connects_refused": 0,
            "sessions_closed_bad_packet": 0,
        }

    # ---- rooms ---------------------------------------------------------------------------

    def token(self, room_id: int, player_id: int) -> str:
        """The token of ``player_id`` in a room made with tokens (a MAC under our secret)."""
        mac = hmac.new(self._secret, f"{room_id}:{player_id}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()[:18]).decode()

    def create(
        self,
        room_id: int,
        members: Sequence[int],
        now: float,
        *,
        seed: int = 0,
        with_tokens: bool = False,
        owner: object = None,
    ) -> Room:
        if room_id in self.rooms:
            raise RoomRefused(f"room id[{room_id}] exists", exists=True)
        if len(self.rooms) >= self.max_rooms:
            raise RoomRefused(f"too many rooms ({self.max_rooms})")
        if len(set(members)) > self.max_players:
            raise RoomRefused(f"too many players ({len(set(members))} > {self.max_players})")
        tokens = {m: self.token(room_id, m) for m in members} if with_tokens else None
        slot = min(range(TICK_SLOTS), key=self._slot_rooms.__getitem__)
        room = Room(
            room_id,
            members,
            self._slot_start(slot, now),
            settings=self.settings,
            seed=seed,
            tokens=tokens,
            owner=owner,
            wall=self.wall,
        )
        self._add(room, slot)
        self.stats["rooms_created"] += 1
        logger.info("room %d created for players %s", room_id, list(room.members))
        return room

    def _add(self, room: Room, slot: int) -> None:
        self.rooms[room.id] = room
        self._slot_rooms[slot] += 1
        self._slot_of[room.id] = slot
        self._schedule(room)
        journal = self.journal
        if journal is not None and journal.open(room.id, room.journal_records()):
            room.journal = functools.partial(journal.write, room.id)

    def restore(self, now: float) -> list[Room]:
        """Bring back the rooms the journal holds (a previous process of this lockstep
        server died with them): every player offline, each room's clock on a tick slot from
        ``now``. Rooms that had ended, or are older than their lifetime, are dropped."""
        journal = self.journal
        if journal is None:
            return []
        restored = []
        wall_now = self.wall()
        for image in journal.load_all():
            if image.ended is not None:
                why = f"it had ended ({image.ended})"
            elif wall_now - image.created_wall > self.settings.lifetime:
                why = "it is older than a room's lifetime"
            elif image.room_id in self.rooms:
                why = "its id is taken"
            else:
                why = ""
            if why:
                logger.info("room %d is not brought back from its journal: %s", image.room_id, why)
                journal.remove(image.room_id)
                continue
            slot = min(range(TICK_SLOTS), key=self._slot_rooms.__getitem__)
            room = Room.restore(image, self._slot_start(slot, now), settings=self.settings,
                                wall=self.wall)
            self._add(room, slot)
            if room.owner is None:  # made over HTTP: it counts against http_max_rooms again
                self._http_made[room.id] = ""
            restored.append(room)
            self.stats["rooms_restored"] += 1
            logger.warning(
                "room %d brought back from its journal: %s, frame %d, players %s (they "
                "reconnect: Connect, then Ready)", room.id, room.state, room.frame,
                list(room.members),
            )
        return restored

    def new_room_id(self) -> int:
        """A random free id for rooms made by game code (63 bits: safe in every language)."""
        while True:
            room_id = secrets.randbits(63) or 1
            if room_id not in self.rooms:
                return room_id

    def http_create(self, query: str, now: float, origin: str = "") -> tuple[int, str]:
        """``GET /create?<query>`` from host ``origin``: (HTTP status, body) as lockstepserver
        answers it, within ``http_max_rooms`` and ``http_rooms_per_ip`` (503 beyond)."""
        params = parse_qs(query, keep_blank_values=True)
        room_id = parse_u64(params.get("room", [""])[0])
        member_text = params.get("member", [None])[0]
        members = [parse_u64(m) for m in member_text.split(",")] if member_text is not None else []
        host = address_key(origin)
        if room_id in self.rooms:
            return 200, f"room id[{room_id}] exists"
        if len(self._http_made) >= self.http_max_rooms:
            return 503, (f"too many rooms made over HTTP (http_max_rooms = {self.http_max_rooms})"
                         if self.http_max_rooms else "the HTTP room API is off (http_max_rooms = 0)")
        per_ip = self.http_rooms_per_ip
        if per_ip and sum(1 for h in self._http_made.values() if h == host) >= per_ip:
            return 503, f"too many rooms from {host} (http_rooms_per_ip = {per_ip})"
        try:
            room = self.create(room_id, members, now)
        except RoomRefused as exc:
            return 503, str(exc)
        self._http_made[room_id] = host
        return 200, (
            f"room.ID=[{room_id}] room.Secret=[test_room] room.Time=[{room.created_wall}], "
            f"room.Member=[{member_text or ''}]"
        )

    def _schedule(self, room: Room) -> None:
        self._seq += 1
        heapq.heappush(self._due, (room.next_tick_at, self._seq, room))

    def next_due(self) -> float | None:
        """When the earliest room wants its next tick (None: no rooms)."""
        return self._due[0][0] if self._due else None

    def tick(self, now: float) -> list[Room]:
        """Tick every room that is due; returns the rooms whose game ended in this call
        (their ``result`` is set). Rooms whose close wait is over are forgotten."""
        ended: list[Room] = []
        due = self._due
        while due and due[0][0] <= now:
            _, _, room = heapq.heappop(due)
            if self.rooms.get(room.id) is not room:
                continue
            had_result = room.result is not None
            room.tick(now)
            if room.result is not None and not had_result:
                ended.append(room)
                self.stats["rooms_ended"] += 1
                logger.info(
                    "room %d ended (%s) after %d frames: results %s",
                    room.id,
                    room.result.reason,
                    room.result.frames,
                    room.result.results,
                )
            if room.done:
                self._forget(room)
                continue
            if room.next_tick_at <= now:  # never expected: a room that would spin the loop
                logger.error("room %d did not move its clock past %.3f: next tick forced", room.id, now)
                room.next_tick_at = now + 1.0 / self.settings.tick_hz
            self._schedule(room)
        return ended

    def _slot_start(self, slot: int, now: float) -> float:
        """The first time >= ``now`` on ``slot``'s grid: k * period + slot * period / slots."""
        period = 1.0 / self.settings.tick_hz
        offset = slot * period / TICK_SLOTS
        return math.ceil((now - offset) / period - 1e-6) * period + offset

    def _forget(self, room: Room) -> None:
        del self.rooms[room.id]
        self._http_made.pop(room.id, None)
        if self.journal is not None:
            self.journal.remove(room.id)
        self._slot_rooms[self._slot_of.pop(room.id)] -= 1
        for player in room.players.values():
            if player.session is not None:
                self._bound.pop(player.session, None)
        self._bound = {s: b for s, b in self._bound.items() if b[0] is not room}

    def stop(self, now: float) -> list[Room]:
        """End every room now (shutdown); returns those that had not ended yet."""
        ended = []
        for room in list(self.rooms.values()):
            if room.result is None:
                ended.append(room)
            room.stop(now)
            if self.journal is not None:
                self.journal.remove(room.id)
        self.rooms.clear()
        self._slot_rooms = [0] * TICK_SLOTS
        self._slot_of.clear()
        self._bound.clear()
        self._due.clear()
        return ended

    # ---- sessions ------------------------------------------------------------------------

    def receive(self, session: Session, msg_id: int, body: bytes, now: float) -> None:
        """One packet from ``session``."""
        bound = self._bound.get(session)
        if bound is not None:
            room, player = bound
            if player.session is session:
                room.receive(player, msg_id, body, now)
            return
        if msg_id == MsgId.MSG_Connect:
            self._connect(session, body, now)
        elif msg_id == MsgId.MSG_Heartbeat:
            session.send(_HEARTBEAT)
        elif msg_id == MsgId.MSG_END:
            session.send(encode(MsgId.MSG_END, body))
        else:
            self.stats["sessions_closed_bad_packet"] += 1
            logger.info(
                "closed lockstep session %s: message %d before Connect",
                getattr(session, "peer", "?"), msg_id,
            )
            session.close()

    def _connect(self, session: Session, body: bytes, now: float) -> None:
        msg = pb.C2S_ConnectMsg()
        try:
            msg.ParseFromString(body)
        except Exception:  # noqa: BLE001 - protobuf's DecodeError
            self.stats["sessions_closed_bad_packet"] += 1
            logger.info("closed lockstep session %s: unreadable Connect", getattr(session, "peer", "?"))
            session.close()
            return
        room = self.rooms.get(msg.battleID)
        code = _OK
        if room is None:
            code = _NO_ROOM
        elif room.finishing:
            code = _ROOM_STATE
        elif msg.playerID not in room.players:
            code = _NO_PLAYER
        elif room.tokens is not None:
            expected = room.tokens[msg.playerID]
            token = msg.token  # bytes, not str, when the client sent invalid UTF-8
            if not isinstance(token, str) or not hmac.compare_digest(
                token.encode(), expected.encode()
            ):
                code = _TOKEN
        elif self.require_token:
            code = _TOKEN
        if code != _OK:
            self.stats["connects_refused"] += 1
            session.send(_ERRORS[code])
            return
        assert room is not None
        player = room.players[msg.playerID]
        # A session it replaces stays mapped, detached: its late packets are ignored (not
        # taken as an unbound session's), until it is closed (room.bind closes it).
        resume = msg.resumeFrame if msg.HasField("resumeFrame") else None
        room.bind(session, player.id, now, resume)
        self._bound[session] = (room, player)

    def is_bound(self, session: Session) -> bool:
        """``session`` joined a room (a Connect that was taken) and the room is still here."""
        return session in self._bound

    def session_closed(self, session: Session) -> None:
        bound = self._bound.pop(session, None)
        if bound is not None:
            room, player = bound
            room.session_closed(player, session)

    # ---- figures -------------------------------------------------------------------------

    @property
    def sessions(self) -> int:
        return len(self._bound)

    def players_in_rooms(self) -> int:
        return sum(len(room.players) for room in self.rooms.values())
