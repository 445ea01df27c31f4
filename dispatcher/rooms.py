"""Where a game's request for a lockstep room goes (docs/LOCKSTEP-DESIGN.md).

Every lockstep process holds a stream to every dispatcher and reports, once a second, how many
players its rooms hold. A LOCKSTEP_CREATE_ROOM from a game goes to the process with the fewest
(counting the requests sent to it since its last report). With no lockstep process connected,
requests wait (:data:`WAIT` seconds, at most :data:`WAIT_LIMIT` of them: a cluster starts its
lockstep process after its games) and are then refused: the owner's ``on_created`` method is
called with ``{"error": reason}``.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from goworld.cluster.envelopes import Envelope, unpack
from goworld.proto.msgtypes import MsgType

__all__ = ["LockstepRooms", "WAIT", "WAIT_LIMIT"]

logger = logging.getLogger("goworld.dispatcher")

WAIT = 30.0
WAIT_LIMIT = 10_000


class _Peer(Protocol):
    def send(self, env: Envelope) -> None: ...

    def close(self) -> None: ...


@dataclass(slots=True)
class _Process:
    peer: _Peer
    players: int = 0  # in its rooms, as it last reported (plus requests sent since)


class LockstepRooms:
    def __init__(self, send_to_entity: Callable[[str, Envelope], None], clock: Callable[[], float]) -> None:
        self._send_to_entity = send_to_entity
        self._clock = clock
        self.processes: dict[int, _Process] = {}
        self._waiting: deque[tuple[float, Envelope]] = deque()

    def connected(self, lockstep_id: int, peer: _Peer) -> None:
        old = self.processes.get(lockstep_id)
        if old is not None and old.peer is not peer:
            logger.warning("lockstep%d connected again: dropping its previous connection", lockstep_id)
            old.peer.close()
        self.processes[lockstep_id] = _Process(peer)
        logger.info("lockstep%d connected", lockstep_id)
        waiting, self._waiting = self._waiting, deque()
        for _, env in waiting:
            self.place(env)

    def disconnected(self, lockstep_id: int, peer: _Peer) -> None:
        process = self.processes.get(lockstep_id)
        if process is not None and process.peer is peer:
            del self.processes[lockstep_id]
            logger.warning("lockstep%d disconnected", lockstep_id)

    def handle(self, lockstep_id: int, env: Envelope) -> bool:
        """A LOCKSTEP_LOAD report (True), or anything else (False: dropped, logged)."""
        if env.msgtype != MsgType.LOCKSTEP_LOAD:
            logger.error("lockstep%d sent unexpected message type %d: dropped", lockstep_id, env.msgtype)
            return False
        process = self.processes.get(lockstep_id)
        if process is not None:
            try:
                process.players = int(unpack(env.payload)["players"])
            except (ValueError, KeyError, TypeError):
                logger.error("lockstep%d sent an unreadable load", lockstep_id)
        return True

    def place(self, env: Envelope) -> None:
        """A game's LOCKSTEP_CREATE_ROOM: to the least loaded process, or wait for one."""
        if self.processes:
            process = min(self.processes.values(), key=lambda p: p.players)
            process.peer.send(env)
            process.players += 1
            return
        if len(self._waiting) >= WAIT_LIMIT:
            self.refuse(env, f"no lockstep process, and {WAIT_LIMIT} requests wait")
            return
        self._waiting.append((self._clock() + WAIT, env))

    def refuse(self, env: Envelope, reason: str) -> None:
        """The owner's on_created method (the request's name) hears ``{"error": reason}``."""
        from goworld.proto.codec import encode_args  # only on this rare path

        logger.warning("lockstep room request of %s refused: %s", env.entity_id, reason)
        self._send_to_entity(
            env.entity_id,
            Envelope(
                msgtype=MsgType.CALL_ENTITY_METHOD,
                entity_id=env.entity_id,
                name=env.name,
                payload=encode_args(({"error": reason},)),
            ),
        )

    def expire(self, now: float) -> None:
        waiting = self._waiting
        while waiting and waiting[0][0] <= now:
            self.refuse(waiting.popleft()[1], f"no lockstep process within {WAIT:g} s")
