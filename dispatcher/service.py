"""The dispatcher's routing state and rules (PROTOCOL.md §2.4, §8), free of I/O.

The service receives decoded envelopes from games and gates (``handle_game``/``handle_gate``)
and peer lifecycle events, and emits envelopes by calling ``send`` on :class:`Peer` objects.
The gRPC adapter (:mod:`dispatcher.server`) gives each connected game and gate a peer that
queues envelopes and writes one batch per loop iteration; tests give it recording fakes.

State:

* ``entities``: entity id -> :class:`EntityRoute` (its game, and while it loads or migrates a
  block deadline and a queue of at most :data:`ENTITY_QUEUE_LIMIT` messages);
* ``games``: game id -> :class:`GameInfo` (its peer, a frozen flag and a byte-bounded queue
  used while it is frozen for a reload, its reported CPU load, whether it takes boot entities);
* ``gates``: gate id -> peer; ``kvreg``: the first-writer-wins registry services use;
* the deployment-ready latch (§8.5) and the round-robin boot game counter (§8.3).

Bounds and back-pressure (none of them in GoWorld): every peer's outgoing queue is bounded
(``peer_max_backlog_bytes``; past it a message is dropped, counted and logged); a client whose
call goes to a game already ``pause_backlog_bytes`` behind is paused at its gate (PAUSE_CLIENTS)
until that game has caught up (RESUME_CLIENTS from :meth:`DispatcherService.relieve`), so only
the clients of a slow game wait, and position syncs for it are dropped meanwhile; a new client
gets its boot entity on a game that is not behind when there is one; calls held for unknown or
blocked entities are bounded in bytes as well as in count.

Faults (issue 15, none of them in GoWorld):

* **A dead game** (its stream ended without a freeze): its entities are forgotten and every gate
  is told which ones (ENTITIES_LOST, :data:`~goworld.proto.msgtypes.ENTITIES_LOST_CHUNK` ids per
  envelope): the gate closes each client whose player lived there. Each dispatcher tells the
  ids of its own shard, and a client's owner entity is in exactly one shard. The lost ids are
  remembered for :data:`LOST_ENTITY_SECONDS`: messages to them are dropped and counted (one
  summary line per :data:`LOST_LOG_INTERVAL` s), not held as for an entity not created yet.
  A persistent entity loads again (on a live game) at its next ``load_entity_anywhere``.
* **A broken game stream** is not a dead game yet: unless the game had begun an orderly stop
  (its STOP_BARRIER), its entities, routes and clients are kept for ``game_reconnect_grace``
  seconds (:data:`GAME_RECONNECT_GRACE` in the ini; the constructor's default is 0), its
  messages queued as for a frozen game and nothing new placed on it. The same process
  reconnecting (its hello says ``reconnect``) gets the queue and carries on; a new process for
  that game id (a restart), or the end of the grace, makes it a dead game as above.
* **A hung game** (nothing received from it for ``game_hang_timeout`` seconds; games send
  GAME_LBC_INFO every second): it is unhealthy, and new boot entities and create/load
  anywhere go to healthy games; its queue stays bounded by the back-pressure above. The first
  message it sends makes it healthy again. With no healthy boot game, a new client waits
  (at most :data:`BOOT_WAIT_LIMIT` clients, ``boot_wait_timeout`` seconds each) and gets its
  boot entity as soon as a boot game is healthy; past the timeout its gate is told to close it
  (KICK_CLIENT with the reason).

Differences from GoWorld, on purpose: a client that connects before any boot game exists is
held until one connects instead of being lost; a filtered call (1501) is broadcast by the one
dispatcher the game sends it to, so each client gets it exactly once; a frozen game keeps its
queue until it comes back (bounded in bytes) instead of being declared down after 10 s.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from dispatcher.rooms import LockstepRooms
from goworld.cluster.envelopes import Envelope, pack, unpack
from goworld.cluster.streams import ENVELOPE_OVERHEAD, envelope_size
from goworld.proto import positions
from goworld.proto.msgtypes import ENTITIES_LOST_CHUNK, MsgType

__all__ = ["Peer", "DispatcherService", "EntityRoute", "GameInfo", "ENTITY_BLOCK_SECONDS"]

logger = logging.getLogger("goworld.dispatcher")

#: How long an entity stays blocked while it loads or migrates (GoWorld: 60 s).
ENTITY_BLOCK_SECONDS = 60.0
#: Messages queued per blocked entity before new ones are dropped (GoWorld: 1000), and bytes.
ENTITY_QUEUE_LIMIT = 1000
ENTITY_QUEUE_MAX_BYTES = 8 * 1024 * 1024
#: Defaults of the per-peer bounds ([dispatcher] peer_max_backlog_bytes, pause_backlog_bytes).
PEER_MAX_BACKLOG_BYTES = 64 * 1024 * 1024
PAUSE_BACKLOG_BYTES = 1024 * 1024
#: A call can overtake the creation notice of its target: the creating game's NOTIFY_CREATE
#: travels on one stream while a reply chain through another game can be faster. Calls for an
#: unknown entity are therefore held this long (GoWorld drops them at once).
EARLY_HOLD_SECONDS = 5.0
EARLY_QUEUE_LIMIT = 100
EARLY_IDS_LIMIT = 10_000
EARLY_MAX_BYTES = 16 * 1024 * 1024
#: Of those, calls from one client (the hold is for entities a game is creating; a client
#: calling made-up ids must not crowd out the games' calls), and calls from all clients
#: together, in bytes and in ids: the games keep the rest of each budget for themselves
EARLY_PER_CLIENT = 8
EARLY_CLIENTS_MAX_BYTES = EARLY_MAX_BYTES // 4
EARLY_CLIENTS_IDS_LIMIT = EARLY_IDS_LIMIT // 4
_CALL_FROM_CLIENT = int(MsgType.CALL_ENTITY_METHOD_FROM_CLIENT)
#: How long the ids of a dead game's entities are remembered (messages to them are dropped).
LOST_ENTITY_SECONDS = 60.0
LOST_LOG_INTERVAL = 5.0
#: Defaults of [dispatcher] game_hang_timeout and boot_wait_timeout (seconds).
GAME_HANG_TIMEOUT = 3.0
BOOT_WAIT_TIMEOUT = 30.0
#: Clients that may wait for a boot game at once; past it a newcomer is closed at once.
BOOT_WAIT_LIMIT = 10_000
#: A gate whose stream broke keeps its clients this long (the same gate process may reconnect).
GATE_RECONNECT_GRACE = 10.0
#: Default of [dispatcher] game_reconnect_grace: a game whose stream broke keeps its entities'
#: routes and clients this long, its messages queued, for the same process to reconnect.
GAME_RECONNECT_GRACE = 5.0
GATE_AWAY_MAX_BYTES = 16 * 1024 * 1024
#: A restarted dispatcher takes no kvreg claim before the deployment is ready again (every
#: game back, with its view of the registry), or this long after it started.
KVREG_SETTLE_SECONDS = 10.0
KVREG_CLAIMS_MAX = 10_000


class Peer(Protocol):
    """A connected game or gate, as the service sees it."""

    def send(self, env: Envelope) -> None:
        """Queue ``env`` for this peer (delivered in order)."""

    def close(self) -> None:
        """Drop the connection."""

    @property
    def backlog_bytes(self) -> int:
        """Bytes queued for this peer and not yet written (how far behind it is)."""


@dataclass(slots=True)
class EntityRoute:
    game_id: int
    blocked_until: float = 0.0
    pending: deque[Envelope] | None = None
    pending_bytes: int = 0


@dataclass(slots=True)
class GameInfo:
    game_id: int
    peer: Peer | None = None
    ban_boot: bool = False
    frozen: bool = False
    pending: deque[Envelope] = field(default_factory=deque)
    pending_bytes: int = 0
    cpu: float = 0.0
    reported_cpu: float = 0.0
    #: gate id -> clients paused at that gate because their calls wait for this game
    paused: dict[int, set[str]] = field(default_factory=dict)
    #: when its stream last brought something (the server calls ``game_heard``)
    heard_at: float = 0.0
    #: nothing heard for game_hang_timeout: no new entities are placed on it
    hung: bool = False
    #: its stream broke: held (frozen and hung) until then for the same process to reconnect
    away_until: float = 0.0
    #: it sent STOP_BARRIER (an orderly stop): its stream's end is no break, no grace
    stopping: bool = False
    #: taken for dead (its entities forgotten, their clients closed): if the same process
    #: comes back after all, its ack says so ("clients_lost")
    clients_lost: bool = False

    @property
    def alive(self) -> bool:
        return self.peer is not None or self.frozen

    @property
    def healthy(self) -> bool:
        return (self.peer is not None or self.frozen) and not self.hung


_CALL_ENTITY_METHOD = int(MsgType.CALL_ENTITY_METHOD)


class DispatcherService:
    """Routing for one dispatcher of a cluster."""

    def __init__(
        self,
        dispatcher_id: int,
        *,
        desired_games: int,
        desired_gates: int,
        frozen_queue_max_bytes: int = 256 * 1024 * 1024,
        peer_max_backlog_bytes: int = PEER_MAX_BACKLOG_BYTES,
        pause_backlog_bytes: int = PAUSE_BACKLOG_BYTES,
        game_hang_timeout: float = GAME_HANG_TIMEOUT,
        boot_wait_timeout: float = BOOT_WAIT_TIMEOUT,
        game_reconnect_grace: float = 0.0,
        clock: Callable[[], float],
        rng: random.Random | None = None,
    ) -> None:
        self.dispatcher_id = dispatcher_id
        self.desired_games = desired_games
        self.desired_gates = desired_gates
        self.frozen_queue_max_bytes = frozen_queue_max_bytes
        self.peer_max_backlog_bytes = peer_max_backlog_bytes
        self.pause_backlog_bytes = pause_backlog_bytes
        self.resume_backlog_bytes = pause_backlog_bytes // 4
        self.game_hang_timeout = game_hang_timeout
        self.boot_wait_timeout = boot_wait_timeout
        self.game_reconnect_grace = game_reconnect_grace
        self.clock = clock
        self.rng = rng or random.Random()
        self.entities: dict[str, EntityRoute] = {}
        self.games: dict[int, GameInfo] = {}
        self.gates: dict[int, Peer] = {}
        self.kvreg: dict[str, str] = {}
        self.deployment_ready = False
        self._boot_rr = 0
        self._waiting_boot: list[Envelope] = []
        self._early: dict[str, tuple[float, list[Envelope]]] = {}
        self._early_bytes = 0
        #: client id -> its calls in _early (EARLY_PER_CLIENT); their bytes, and the ids held
        #: for clients' calls only (EARLY_CLIENTS_MAX_BYTES, EARLY_CLIENTS_IDS_LIMIT)
        self._early_clients: dict[str, int] = {}
        self._early_client_bytes = 0
        self._early_client_ids: set[str] = set()
        #: client id -> when it stops waiting for a boot game (the clients of _waiting_boot)
        self._waiting_until: dict[str, float] = {}
        #: entity id -> (its dead game, until when it is remembered)
        self._lost: dict[str, tuple[int, float]] = {}
        self._lost_next_expiry = 0.0
        #: dead game id -> messages dropped for its entities since the last summary line
        self._lost_drops: dict[int, int] = {}
        self._lost_log_at = 0.0
        #: kvreg claims (not forced) made before the registry is settled: the deployment is
        #: ready, or KVREG_SETTLE_SECONDS passed since this dispatcher started
        self._kvreg_claims: list[tuple[int, Envelope]] = []
        self._kvreg_settle_at = clock() + KVREG_SETTLE_SECONDS
        self._init_gate_state()
        self._started_at = clock()
        self._last_health_check = 0.0
        self.stats = {"routed": 0, "dropped": 0, "paused": 0, "dropped_syncs": 0}
        self.lockstep = LockstepRooms(self._send_to_entity, clock)  # docs/LOCKSTEP-DESIGN.md
        self._game_handlers = self._game_handler_table()
        self._gate_handlers = self._gate_handler_table()

    def _init_gate_state(self) -> None:
        #: gate id -> the instance name of its process (its SET_GATE_ID's name)
        self._gate_instances: dict[int, str] = {}
        #: gate id -> deadline: gates whose stream broke, whose clients are kept until then
        self._gates_away: dict[int, float] = {}
        #: gates never seen by this dispatcher whose hold expired: told "dropped" if they come
        self._gates_given_up: set[int] = set()
        #: gate id -> (messages, bytes) held for a gate that is away, bounded by GATE_AWAY_MAX_BYTES
        self._away_queues: dict[int, tuple[list[Envelope], int]] = {}
        #: gate id -> its GATE_DRAINED report, for the gates :meth:`drain_gates` asked
        self.drain_reports: dict[int, dict[str, Any]] = {}

    def _game_handler_table(self) -> dict[int, Callable[[int, Envelope], None]]:
        return {
            MsgType.NOTIFY_CREATE_ENTITY: self._on_notify_create,
            MsgType.NOTIFY_DESTROY_ENTITY: self._on_notify_destroy,
            MsgType.KVREG_REGISTER: self._on_kvreg_register,
            MsgType.CALL_ENTITY_METHOD: self._on_call_entity,
            MsgType.CREATE_ENTITY_SOMEWHERE: self._on_create_somewhere,
            MsgType.LOAD_ENTITY_SOMEWHERE: self._on_load_somewhere,
            MsgType.MIGRATE_REQUEST: self._on_migrate_request,
            MsgType.REAL_MIGRATE: self._on_real_migrate,
            MsgType.QUERY_SPACE_GAMEID_FOR_MIGRATE: self._on_query_space_game,
            MsgType.CANCEL_MIGRATE: self._on_cancel_migrate,
            MsgType.CALL_NIL_SPACES: self._on_call_nil_spaces,
            MsgType.GAME_LBC_INFO: self._on_lbc_info,
            MsgType.START_FREEZE_GAME: self._on_start_freeze,
            MsgType.CANCEL_FREEZE_GAME: self._on_cancel_freeze,
            MsgType.CALL_FILTERED_CLIENTS: self._on_filtered_call,
            MsgType.SYNC_POSITION_YAW_ON_CLIENTS: self._to_gate,
            MsgType.KICK_CLIENT: self._to_gate,
            MsgType.STOP_BARRIER: self._on_stop_barrier,
            MsgType.LOCKSTEP_CREATE_ROOM: self._on_lockstep_create_room,
        }

    def _gate_handler_table(self) -> dict[int, Callable[[int, Envelope], None]]:
        return {
            MsgType.NOTIFY_CLIENT_CONNECTED: self._on_client_connected,
            MsgType.NOTIFY_CLIENT_DISCONNECTED: self._on_client_disconnected,
            MsgType.CALL_ENTITY_METHOD_FROM_CLIENT: self._on_call_from_client,
            MsgType.SYNC_POSITION_YAW_FROM_CLIENT: self._on_sync_from_client,
            MsgType.GATE_DRAINED: self._on_gate_drained,
        }

    # ---- peer lifecycle ------------------------------------------------------------------

    def game_connected(self, game_id: int, peer: Peer, hello: Envelope) -> None:
        """A game opened its stream; ``hello`` is its SET_GAME_ID envelope."""
        info = unpack(hello.payload) if hello.payload else {}
        game = self.games.get(game_id)
        late = game is not None and game.clients_lost and bool(info.get("reconnect"))
        if game is not None:
            game = self._settle_previous(game, info)
        if game is None:
            game = self.games[game_id] = GameInfo(game_id)
        game.peer = peer
        game.stopping = False
        game.ban_boot = bool(info.get("ban_boot", False))
        game.heard_at = self.clock()
        game.hung = False
        self._learn_kvreg(game_id, info.get("kvreg", {}))
        rejected = self._adopt_entities(game_id, info.get("eids", ()))
        game.clients_lost = False
        if late:
            logger.warning(
                "game%d reconnected after it was taken for dead: its entities are routed again "
                "and told that their clients are gone", game_id,
            )
        self._ack_game(game_id, peer, rejected, clients_lost=late)
        was_frozen = game.frozen
        game.frozen = False
        if was_frozen:
            logger.info(
                "game%d restored: releasing %d queued messages", game_id, len(game.pending)
            )
        self._release_game_queue(game)
        for eid in [e for e in self._early if e in self.entities]:
            self._release_early(eid)
        logger.info(
            "game%d connected (restore=%s, %d entities, %d rejected)",
            game_id,
            bool(info.get("restore")),
            len(info.get("eids", ())),
            len(rejected),
        )
        note = Envelope(msgtype=MsgType.NOTIFY_GAME_CONNECTED, game_id=game_id)
        for other in self.games.values():
            if other.game_id != game_id:
                self._send_to_game_info(other, note)
        self._check_ready()
        if not game.ban_boot:
            self._release_waiting_boot()

    def _settle_previous(self, game: GameInfo, info: dict[str, Any]) -> GameInfo | None:
        """What becomes of the state a game left, when it (or a new process) connects again:
        kept (the same process within its grace; a frozen game restored), or taken for dead."""
        game_id = game.game_id
        if game.away_until:
            if info.get("reconnect"):
                logger.info(
                    "game%d reconnected within its grace: its entities and clients are kept",
                    game_id,
                )
                game.away_until = 0.0  # still frozen: its queue is released below
            else:
                logger.warning(
                    "game%d is back as a new process: the entities of the one whose stream "
                    "broke are gone", game_id,
                )
                self._game_down(game)
        if game.peer is not None:
            old = game.peer
            if game.frozen and info.get("restore"):
                # The frozen process is gone; its stream's teardown may not have been seen yet.
                game.peer = None
            else:
                logger.warning("game%d connected again: dropping its previous connection", game_id)
                self.game_disconnected(game_id, old, force_down=True)
            old.close()
        return self.games.get(game_id)

    def _release_waiting_boot(self) -> None:
        """A boot game is (again) available: place the clients that wait for one."""
        if self._waiting_boot:
            waiting, self._waiting_boot = self._waiting_boot, []
            for env in waiting:
                self._on_client_connected(env.gate_id, env)

    def _learn_kvreg(self, game_id: int, entries: dict[str, str]) -> None:
        """A restarted dispatcher learns the kvreg back from the games' hellos; what it did
        not know yet goes to the games already back too (their acks lacked it)."""
        for key, value in entries.items():
            if key in self.kvreg:
                continue
            self.kvreg[key] = value
            note = Envelope(msgtype=MsgType.KVREG_REGISTER, name=key, payload=pack([value, False]))
            for game in self.games.values():
                if game.game_id != game_id:
                    self._send_to_game_info(game, note)

    def _ack_game(
        self, game_id: int, peer: Peer, rejected: list[str], *, clients_lost: bool = False
    ) -> None:
        extra = {"clients_lost": True} if clients_lost else {}
        peer.send(
            Envelope(
                msgtype=MsgType.SET_GAME_ID_ACK,
                game_id=game_id,
                payload=pack(
                    {
                        **extra,
                        "disp": self.dispatcher_id,
                        "ready": self.deployment_ready,
                        "games": [g.game_id for g in self.games.values() if g.alive],
                        "rejected": rejected,
                        "kvreg": self.kvreg,
                    }
                ),
            )
        )

    def _adopt_entities(self, game_id: int, eids: list[str]) -> list[str]:
        rejected = []
        lost = self._lost
        for eid in eids:
            route = self.entities.get(eid)
            if route is None:
                self.entities[eid] = EntityRoute(game_id)
                if lost:
                    lost.pop(eid, None)
            elif route.game_id != game_id:
                owner = self.games.get(route.game_id)
                if owner is not None and owner.alive:
                    rejected.append(eid)
                else:
                    route.game_id = game_id
        return rejected

    def game_disconnected(self, game_id: int, peer: Peer, *, force_down: bool = False) -> None:
        """A game's stream ended. A frozen game keeps its state until it is restored."""
        game = self.games.get(game_id)
        if game is None or game.peer is not peer:
            return
        game.peer = None
        if game.frozen and not force_down:
            logger.info("game%d disconnected while frozen: queueing its messages", game_id)
            return
        if self.game_reconnect_grace > 0 and not force_down and not game.stopping:
            # A broken stream, or a dead game: only its reconnecting (the same process, its
            # hello says "reconnect") or a new process tells which; until then nothing is lost.
            game.frozen = True  # its messages queue (frozen_queue_max_bytes)
            game.hung = True  # nothing new is placed on it
            game.away_until = self.clock() + self.game_reconnect_grace
            self._resume_clients(game)  # their calls queue here now, not at their gates
            logger.warning(
                "game%d's stream ended: its entities and their clients are kept %g s for it to "
                "reconnect (game_reconnect_grace); messages for it are queued meanwhile",
                game_id, self.game_reconnect_grace,
            )
            return
        self._game_down(game)

    def _expire_games_away(self, now: float) -> None:
        for game in list(self.games.values()):
            if game.away_until and game.away_until <= now:
                logger.warning(
                    "game%d did not reconnect within %g s: it is down (%d messages queued for "
                    "it dropped)", game.game_id, self.game_reconnect_grace, len(game.pending),
                )
                self._game_down(game)

    def _game_down(self, game: GameInfo) -> None:
        """Forget a game that is gone: its entities, its queue; gates close their clients."""
        game_id = game.game_id
        game.peer = None
        game.clients_lost = True
        game.away_until = 0.0
        game.frozen = False
        game.hung = False
        game.pending.clear()
        game.pending_bytes = 0
        self._resume_clients(game)
        lost = [eid for eid, route in self.entities.items() if route.game_id == game_id]
        for eid in lost:
            del self.entities[eid]
        self._remember_lost(game_id, lost)
        logger.warning(
            "game%d is down: forgot %d entities; telling %d gates to close the clients whose "
            "player lived there", game_id, len(lost), len(self.gates),
        )
        note = Envelope(msgtype=MsgType.NOTIFY_GAME_DISCONNECTED, game_id=game_id)
        for other in self.games.values():
            if other.peer is not None:
                other.peer.send(note)

    def _remember_lost(self, game_id: int, lost: list[str]) -> None:
        """Tell every gate which entities died with ``game_id`` (the ids of this shard, in
        chunks), and drop messages to them for LOST_ENTITY_SECONDS."""
        if not lost:
            return
        until = self.clock() + LOST_ENTITY_SECONDS
        entry = (game_id, until)
        remembered = self._lost
        for eid in lost:
            remembered[eid] = entry
        if not self._lost_next_expiry:
            self._lost_next_expiry = until
        for start in range(0, len(lost), ENTITIES_LOST_CHUNK):
            payload = "".join(lost[start : start + ENTITIES_LOST_CHUNK]).encode("latin-1")
            for gate_id, gate in self.gates.items():
                env = Envelope(msgtype=MsgType.ENTITIES_LOST, game_id=game_id, gate_id=gate_id, payload=payload)
                self._send_to_gate(gate_id, gate, env)
            for gate_id in self._gates_away:  # delivered if it comes back within its grace
                env = Envelope(msgtype=MsgType.ENTITIES_LOST, game_id=game_id, gate_id=gate_id, payload=payload)
                self._hold_for_gate(gate_id, env)

    def _drop_lost(self, eid: str, env: Envelope) -> bool:
        """A message to an entity of a dead game: dropped and counted (True), else False."""
        entry = self._lost.get(eid)
        if entry is None:
            return False
        self.stats["dropped"] += 1
        drops = self._lost_drops
        drops[entry[0]] = drops.get(entry[0], 0) + 1
        return True

    def _expire_lost(self, now: float) -> None:
        if self._lost_drops and now >= self._lost_log_at:
            for game_id, count in self._lost_drops.items():
                logger.warning(
                    "dropped %d messages for entities lost with game%d", count, game_id
                )
            self._lost_drops = {}
            self._lost_log_at = now + LOST_LOG_INTERVAL
        if self._lost_next_expiry and now >= self._lost_next_expiry:
            self._lost = {e: v for e, v in self._lost.items() if v[1] > now}
            self._lost_next_expiry = min((v[1] for v in self._lost.values()), default=0.0)

    def gate_connected(self, gate_id: int, peer: Peer, instance: str = "") -> None:
        """A gate opened its stream; ``instance`` names the gate process (its hello's name).

        The same instance coming back within :data:`GATE_RECONNECT_GRACE` (a broken stream,
        not a dead gate) keeps its clients: the games are never told it left. Later, the games
        have already dropped its clients, so the gate is told to close them (its SET_GATE_ID
        echoed with name "dropped"). Another instance is a new gate process: its predecessor's
        clients are all gone.
        """
        old = self.gates.get(gate_id)
        if old is not None and old is not peer:
            logger.warning("gate%d connected again: dropping its previous connection", gate_id)
            self.gate_disconnected(gate_id, old)
            old.close()
        away = self._gates_away.pop(gate_id, None)
        known = self._gate_instances.get(gate_id)
        self._gate_instances[gate_id] = instance
        given_up = gate_id in self._gates_given_up
        self._gates_given_up.discard(gate_id)
        # known is None: this dispatcher never saw the gate (it was restarted) and held what
        # was for it meanwhile
        if away is not None and known is not None and (not instance or instance != known):
            self._gate_gone(gate_id)  # a new process: tell the games now, not after the grace
            away = None
        self.gates[gate_id] = peer
        if given_up or (instance and instance == known and away is None and old is None):
            logger.warning("gate%d came back after its grace: its clients must log in again", gate_id)
            peer.send(Envelope(msgtype=MsgType.SET_GATE_ID, gate_id=gate_id, name="dropped"))
        elif away is not None:
            held = self._away_queues.pop(gate_id, None)
            logger.info(
                "gate%d reconnected within its grace: its clients are kept, %d messages held for "
                "it delivered", gate_id, len(held[0]) if held else 0,
            )
            if held:
                for env in held[0]:
                    peer.send(env)
        else:
            logger.info("gate%d connected", gate_id)
        self._check_ready()

    def gate_disconnected(self, gate_id: int, peer: Peer) -> None:
        if self.gates.get(gate_id) is not peer:
            return
        del self.gates[gate_id]
        if self._gate_instances.get(gate_id):
            logger.warning(
                "gate%d disconnected: its clients are kept %.0f s for it to come back",
                gate_id, GATE_RECONNECT_GRACE,
            )
            self._gates_away[gate_id] = self.clock() + GATE_RECONNECT_GRACE
        else:
            logger.warning("gate%d disconnected", gate_id)
            self._gate_gone(gate_id)

    def _gate_gone(self, gate_id: int) -> None:
        self._away_queues.pop(gate_id, None)
        self._waiting_boot = [w for w in self._waiting_boot if w.gate_id != gate_id]
        note = Envelope(msgtype=MsgType.NOTIFY_GATE_DISCONNECTED, gate_id=gate_id)
        for game in self.games.values():
            self._send_to_game_info(game, note)

    def _expire_gates_away(self, now: float) -> None:
        for gate_id in [g for g, deadline in self._gates_away.items() if deadline <= now]:
            del self._gates_away[gate_id]
            held = self._away_queues.get(gate_id)
            logger.warning(
                "gate%d did not come back: its clients are gone (%d messages held for it dropped)",
                gate_id, len(held[0]) if held else 0,
            )
            if gate_id not in self._gate_instances:
                self._gates_given_up.add(gate_id)  # if it shows up later, it is told
            self._gate_gone(gate_id)

    def _check_ready(self) -> None:
        if self.deployment_ready:
            return
        alive = sum(1 for g in self.games.values() if g.alive)
        if len(self.gates) >= self.desired_gates and alive >= self.desired_games:
            self.deployment_ready = True
            logger.info("deployment ready: %d games, %d gates", alive, len(self.gates))
            note = Envelope(msgtype=MsgType.NOTIFY_DEPLOYMENT_READY)
            for game in self.games.values():
                self._send_to_game_info(game, note)
            self._settle_kvreg()

    # ---- lockstep processes (dispatcher.rooms) -------------------------------------------

    def lockstep_connected(self, lockstep_id: int, peer: Peer, hello: Envelope) -> None:
        self.lockstep.connected(lockstep_id, peer)

    def lockstep_disconnected(self, lockstep_id: int, peer: Peer) -> None:
        self.lockstep.disconnected(lockstep_id, peer)

    def handle_lockstep(self, lockstep_id: int, env: Envelope) -> None:
        """One envelope from a lockstep process: a call to an entity (room created, result),
        or its load."""
        if env.msgtype == _CALL_ENTITY_METHOD:
            self._send_to_entity(env.entity_id, env)
        elif not self.lockstep.handle(lockstep_id, env):
            self.stats["dropped"] += 1

    def _on_lockstep_create_room(self, game_id: int, env: Envelope) -> None:
        self.lockstep.place(env)

    # ---- incoming messages ---------------------------------------------------------------

    def handle_game(self, game_id: int, env: Envelope) -> None:
        """Route one envelope received from game ``game_id``."""
        msgtype = env.msgtype
        if msgtype == _CALL_ENTITY_METHOD:
            # The hot path, inlined: a call to an entity whose route is open on a live game.
            # Everything else (unknown, blocked, frozen, dead) takes _send_to_entity's way.
            eid = env.entity_id
            route = self.entities.get(eid)
            if route is not None and not route.blocked_until:
                game = self.games.get(route.game_id)
                peer = game.peer if game is not None and not game.frozen else None
                if peer is not None and peer.backlog_bytes < self.peer_max_backlog_bytes:
                    peer.send(env)
                    self.stats["routed"] += 1
                    return
            self._send_to_entity(eid, env)
            return
        if 1001 <= msgtype <= 1499:
            self._to_gate(game_id, env)
            return
        handler = self._game_handlers.get(msgtype)
        if handler is None:
            logger.error("game%d sent unexpected message type %d: dropped", game_id, msgtype)
            self.stats["dropped"] += 1
            return
        handler(game_id, env)

    def _on_stop_barrier(self, game_id: int, env: Envelope) -> None:
        """A stopping game's barrier goes back on its own stream, after all that was queued
        for it: then it knows it has everything routed to it before (game.shutdown)."""
        game = self.games.get(game_id)
        if game is not None and game.peer is not None:
            game.stopping = True
            game.peer.send(env)

    def handle_gate(self, gate_id: int, env: Envelope) -> None:
        """Route one envelope received from gate ``gate_id``."""
        handler = self._gate_handlers.get(env.msgtype)
        if handler is None:
            logger.error("gate%d sent unexpected message type %d: dropped", gate_id, env.msgtype)
            self.stats["dropped"] += 1
            return
        handler(gate_id, env)

    def drain_gates(self) -> list[int]:
        """``goworld stop --cluster``: ask every connected gate to drain (DRAIN_GATE); their
        answers land in :attr:`drain_reports`. Returns the gates asked."""
        self.drain_reports.clear()
        asked = sorted(self.gates)
        for gate_id in asked:
            self.gates[gate_id].send(Envelope(msgtype=MsgType.DRAIN_GATE, gate_id=gate_id))
        logger.info("asked %d gates to drain: %s", len(asked), ", ".join(f"gate{g}" for g in asked) or "none")
        return asked

    def _on_gate_drained(self, gate_id: int, env: Envelope) -> None:
        try:
            report = unpack(env.payload)
        except ValueError:
            report = None
        self.drain_reports[gate_id] = report if isinstance(report, dict) else {}

    def tick(self) -> None:
        """Release entities whose block expired (a load or migration that never finished)."""
        now = self.clock()
        if self._early:
            self._expire_early(now)
        if self._lost:
            self._expire_lost(now)
        self._check_health(now)
        if self._waiting_until:
            self._expire_waiting_boot(now)
        if self._gates_away:
            self._expire_gates_away(now)
        if self.game_reconnect_grace:
            self._expire_games_away(now)
        self.lockstep.expire(now)
        if self._kvreg_claims:
            self._settle_kvreg()
        for eid, route in list(self.entities.items()):
            if route.blocked_until and route.blocked_until <= now:
                logger.warning("entity %s: block expired, releasing its queue", eid)
                self._unblock(eid, route)

    # ---- routing primitives --------------------------------------------------------------

    def _send_to_game_info(self, game: GameInfo, env: Envelope) -> None:
        if game.peer is not None and not game.frozen:
            if game.peer.backlog_bytes >= self.peer_max_backlog_bytes:
                self._drop_behind(f"game{game.game_id}", game.peer, env)
                return
            game.peer.send(env)
            self.stats["routed"] += 1
        elif game.frozen:
            size = len(env.payload) + ENVELOPE_OVERHEAD
            if game.pending_bytes + size > self.frozen_queue_max_bytes:
                logger.error(
                    "game%d is frozen and its queue is full (%d bytes, frozen_queue_max_bytes = "
                    "%d): dropping message type %d",
                    game.game_id,
                    game.pending_bytes,
                    self.frozen_queue_max_bytes,
                    env.msgtype,
                )
                self.stats["dropped"] += 1
                return
            game.pending.append(env)
            game.pending_bytes += size
        else:
            self.stats["dropped"] += 1

    def _drop_behind(self, name: str, peer: Peer, env: Envelope) -> None:
        self.stats["dropped"] += 1
        logger.error(
            "%s is %d bytes behind (peer_max_backlog_bytes = %d): dropped message type %d",
            name, peer.backlog_bytes, self.peer_max_backlog_bytes, env.msgtype,
        )

    def _send_to_game(self, game_id: int, env: Envelope) -> None:
        game = self.games.get(game_id)
        if game is None:
            logger.warning("no game%d: dropping message type %d", game_id, env.msgtype)
            self.stats["dropped"] += 1
            return
        self._send_to_game_info(game, env)

    def _release_game_queue(self, game: GameInfo) -> None:
        pending, game.pending = game.pending, deque()
        game.pending_bytes = 0
        for env in pending:
            self._send_to_game_info(game, env)

    def _send_to_entity(self, eid: str, env: Envelope) -> None:
        route = self.entities.get(eid)
        if route is None:
            if self._lost and self._drop_lost(eid, env):
                return
            self._hold_early(eid, env)
            return
        if route.blocked_until:
            if route.blocked_until > self.clock():
                queue = route.pending
                if queue is None:
                    queue = route.pending = deque()
                size = envelope_size(env)
                if len(queue) >= ENTITY_QUEUE_LIMIT or route.pending_bytes + size > ENTITY_QUEUE_MAX_BYTES:
                    logger.error(
                        "entity %s: queue full (%d messages, %d bytes), dropping message type %d",
                        eid, len(queue), route.pending_bytes, env.msgtype,
                    )
                    self.stats["dropped"] += 1
                else:
                    queue.append(env)
                    route.pending_bytes += size
                return
            self._unblock(eid, route)
        self._send_to_game(route.game_id, env)

    def _hold_early(self, eid: str, env: Envelope) -> None:
        client = env.client_id if env.msgtype == _CALL_FROM_CLIENT else ""
        if client and not self._client_may_hold(client, eid, envelope_size(env)):
            logger.warning(
                "unknown entity %r: clients' calls already hold their share of the places for "
                "unknown entities (client %s): dropped", eid, client,
            )
            self.stats["dropped"] += 1
            return
        held = self._early.get(eid)
        if held is None:
            if len(self._early) >= EARLY_IDS_LIMIT:
                logger.warning("unknown entity %r: dropping message type %d", eid, env.msgtype)
                self.stats["dropped"] += 1
                return
            held = self._early[eid] = (self.clock() + EARLY_HOLD_SECONDS, [])
        size = envelope_size(env)
        if len(held[1]) >= EARLY_QUEUE_LIMIT or self._early_bytes + size > EARLY_MAX_BYTES:
            logger.warning(
                "unknown entity %r: %d bytes already held for unknown entities (max %d): "
                "dropping message type %d", eid, self._early_bytes, EARLY_MAX_BYTES, env.msgtype,
            )
            self.stats["dropped"] += 1
            if not held[1]:
                del self._early[eid]
            return
        held[1].append(env)
        self._early_bytes += size
        if client:
            self._early_clients[client] = self._early_clients.get(client, 0) + 1
            self._early_client_bytes += size
            self._early_client_ids.add(eid)

    def _client_may_hold(self, client: str, eid: str, size: int) -> bool:
        return (
            self._early_clients.get(client, 0) < EARLY_PER_CLIENT
            and self._early_client_bytes + size <= EARLY_CLIENTS_MAX_BYTES
            and (eid in self._early_client_ids or len(self._early_client_ids) < EARLY_CLIENTS_IDS_LIMIT)
        )

    def _unhold_early(self, envs: list[Envelope]) -> None:
        """``envs`` leave the hold (delivered or dropped): their bytes and clients' counts."""
        self._early_bytes -= sum(envelope_size(e) for e in envs)
        counts = self._early_clients
        for env in envs:
            if env.msgtype == _CALL_FROM_CLIENT and env.client_id in counts:
                self._early_client_bytes -= envelope_size(env)
                self._early_client_ids.discard(env.entity_id)
                left = counts[env.client_id] - 1
                if left > 0:
                    counts[env.client_id] = left
                else:
                    del counts[env.client_id]

    def _release_early(self, eid: str) -> None:
        """The entity is known now: deliver what arrived for it before its creation notice."""
        held = self._early.pop(eid, None)
        if held is not None:
            self._unhold_early(held[1])
            for env in held[1]:
                self._send_to_entity(eid, env)

    def _expire_early(self, now: float) -> None:
        for eid in [e for e, (deadline, _) in self._early.items() if deadline <= now]:
            _, envs = self._early.pop(eid)
            self._unhold_early(envs)
            self.stats["dropped"] += len(envs)
            logger.warning(
                "unknown entity %r: dropped %d message(s) (types %s) after %.0f s",
                eid, len(envs), sorted({e.msgtype for e in envs}), EARLY_HOLD_SECONDS,
            )

    def _block(self, route: EntityRoute) -> None:
        route.blocked_until = self.clock() + ENTITY_BLOCK_SECONDS

    def _unblock(self, eid: str, route: EntityRoute) -> None:
        route.blocked_until = 0.0
        pending, route.pending = route.pending, None
        route.pending_bytes = 0
        if pending:
            for env in pending:
                self._send_to_game(route.game_id, env)

    def _is_down(self, game_id: int) -> bool:
        game = self.games.get(game_id)
        return game is None or not game.alive

    def _choose_game(self) -> int:
        """The least loaded healthy game (§8.3; a live one if none is healthy); each choice
        adds 0.1 % to spread bursts."""
        games = self.games.values()
        candidates = [g for g in games if g.healthy] or [g for g in games if g.alive]
        best = min(candidates, key=lambda g: g.cpu, default=None)
        if best is None:
            return 0
        best.cpu = min(best.cpu + 0.1, best.reported_cpu + 10.0)
        return best.game_id

    # ---- handlers: games -----------------------------------------------------------------

    def _on_notify_create(self, game_id: int, env: Envelope) -> None:
        route = self.entities.get(env.entity_id)
        if route is None:
            self.entities[env.entity_id] = EntityRoute(game_id)
            if self._lost:
                self._lost.pop(env.entity_id, None)  # a lost persistent entity loaded again
        else:
            route.game_id = game_id
            if route.blocked_until:
                self._unblock(env.entity_id, route)
        if self._early:
            self._release_early(env.entity_id)

    def _on_notify_destroy(self, game_id: int, env: Envelope) -> None:
        route = self.entities.get(env.entity_id)
        if route is not None and route.game_id == game_id:
            del self.entities[env.entity_id]

    def _on_kvreg_register(self, game_id: int, env: Envelope) -> None:
        """``[value, force]``: first writer wins unless forced; ``[value, force, expected]``:
        set only while the key holds ``expected`` (a game taking over a dead game's service
        shard: of several such claims the first wins), and only while that game is down here
        too (connected to this dispatcher, it keeps its keys). A claim that loses is answered
        with the value the key holds."""
        value, force, *rest = unpack(env.payload)
        expected = rest[0] if rest else None
        if expected is not None and not self._owner_is_down(str(expected)):
            expected = None  # an ordinary claim then: refused, since the key is held
        if not force and not self._kvreg_settled:
            # A restarted dispatcher learns the registry back from the games' hellos: a claim
            # before they are all back could take a key another game holds. Held until then.
            if len(self._kvreg_claims) < KVREG_CLAIMS_MAX:
                self._kvreg_claims.append((game_id, env))
            return
        existing = self.kvreg.get(env.name)
        if not force and existing is not None and existing != expected:
            # taken already: tell the claimer who holds it (itself, maybe: a restarted game
            # that has not heard of its own key yet)
            self._send_to_game(
                game_id,
                Envelope(msgtype=MsgType.KVREG_REGISTER, name=env.name, payload=pack([existing, False])),
            )
            return
        self.kvreg[env.name] = value
        for game in self.games.values():
            self._send_to_game_info(game, env)

    def _owner_is_down(self, owner: str) -> bool:
        """``owner`` (a kvreg value, ``game<id>``) names a game that is down here."""
        digits = owner[4:] if owner.startswith("game") else ""
        return digits.isdigit() and self._is_down(int(digits))

    @property
    def _kvreg_settled(self) -> bool:
        return self.deployment_ready or self.clock() >= self._kvreg_settle_at

    def _settle_kvreg(self) -> None:
        if self._kvreg_claims and self._kvreg_settled:
            claims, self._kvreg_claims = self._kvreg_claims, []
            for game_id, env in claims:
                self._on_kvreg_register(game_id, env)

    def _on_call_entity(self, game_id: int, env: Envelope) -> None:
        self._send_to_entity(env.entity_id, env)

    def _on_create_somewhere(self, game_id: int, env: Envelope) -> None:
        target = env.game_id or self._choose_game()
        if not target or self._is_down(target):
            logger.error("no game to create %s %s on (game%d): dropped", env.name, env.entity_id, target)
            return
        env.game_id = target
        self.entities[env.entity_id] = EntityRoute(target)
        self._send_to_game(target, env)
        if self._early:
            self._release_early(env.entity_id)

    def _on_load_somewhere(self, game_id: int, env: Envelope) -> None:
        if env.entity_id in self.entities:
            return  # already loaded (or loading) somewhere
        target = env.game_id or self._choose_game()
        if not target or self._is_down(target):
            logger.error("no game to load %s %s on (game%d): dropped", env.name, env.entity_id, target)
            return
        env.game_id = target
        route = self.entities[env.entity_id] = EntityRoute(target)
        if self._lost:
            self._lost.pop(env.entity_id, None)  # a lost persistent entity loads again
        self._block(route)
        self._send_to_game(target, env)
        if self._early:
            self._release_early(env.entity_id)  # queued behind the load, like later calls

    def _on_migrate_request(self, game_id: int, env: Envelope) -> None:
        route = self.entities.get(env.entity_id)
        if route is None or route.game_id != game_id:
            logger.warning("migrate request for %s from game%d ignored", env.entity_id, game_id)
            return
        self._block(route)
        self._send_to_game(game_id, env)

    def _on_real_migrate(self, game_id: int, env: Envelope) -> None:
        if self._is_down(env.game_id):
            # Its state left the source game and has nowhere to go: lost, like the target's.
            self.entities.pop(env.entity_id, None)
            logger.warning("entity %s migrated to game%d, which is down: lost", env.entity_id, env.game_id)
            self._remember_lost(env.game_id, [env.entity_id])
            return
        route = self.entities.get(env.entity_id)
        if route is None:
            route = self.entities[env.entity_id] = EntityRoute(env.game_id)
        route.game_id = env.game_id
        self._send_to_game(env.game_id, env)
        self._unblock(env.entity_id, route)
        if self._early:
            self._release_early(env.entity_id)

    def _on_query_space_game(self, game_id: int, env: Envelope) -> None:
        route = self.entities.get(env.entity_id)
        env.game_id = route.game_id if route is not None else 0
        self._send_to_game(game_id, env)

    def _on_cancel_migrate(self, game_id: int, env: Envelope) -> None:
        route = self.entities.get(env.entity_id)
        if route is not None:
            self._unblock(env.entity_id, route)

    def _on_call_nil_spaces(self, game_id: int, env: Envelope) -> None:
        for game in self.games.values():
            if game.game_id != env.game_id:
                self._send_to_game_info(game, env)

    def _on_lbc_info(self, game_id: int, env: Envelope) -> None:
        game = self.games.get(game_id)
        if game is not None:
            cpu = float(unpack(env.payload))
            game.reported_cpu = cpu
            game.cpu = cpu * (1.0 + self.rng.random() * 0.1)

    def _on_start_freeze(self, game_id: int, env: Envelope) -> None:
        game = self.games.get(game_id)
        if game is None or game.peer is None:
            return
        peer = game.peer
        game.frozen = True
        logger.info("game%d is freezing: queueing its messages", game_id)
        peer.send(
            Envelope(
                msgtype=MsgType.START_FREEZE_GAME_ACK,
                game_id=game_id,
                payload=pack(self.dispatcher_id),
            )
        )

    def _on_cancel_freeze(self, game_id: int, env: Envelope) -> None:
        game = self.games.get(game_id)
        if game is None or not game.frozen:
            return
        logger.warning("game%d cancelled its freeze: delivering %d queued messages", game_id, len(game.pending))
        game.frozen = False
        self._release_game_queue(game)

    def _on_filtered_call(self, game_id: int, env: Envelope) -> None:
        for gate_id, gate in self.gates.items():
            self._send_to_gate(gate_id, gate, env)
        for gate_id in self._gates_away:
            self._hold_for_gate(gate_id, env)

    def _to_gate(self, game_id: int, env: Envelope) -> None:
        gate = self.gates.get(env.gate_id)
        if gate is None:
            gate_id = env.gate_id
            if gate_id not in self._gates_away and gate_id not in self._gate_instances:
                # a restarted dispatcher, its gates not back yet: hold for them as for a gate
                # whose stream broke, until the grace after this dispatcher started
                deadline = self._started_at + GATE_RECONNECT_GRACE
                young = self.clock() < deadline and gate_id not in self._gates_given_up
                if 0 < gate_id <= self.desired_gates and young:
                    self._gates_away[gate_id] = deadline
            if gate_id in self._gates_away:
                self._hold_for_gate(gate_id, env)
            else:
                self.stats["dropped"] += 1
                logger.warning("no gate%d: dropped message type %d", gate_id, env.msgtype)
            return
        self._send_to_gate(env.gate_id, gate, env)

    def requeue(self, peer_name: str, envs: list[Envelope]) -> None:
        """What a broken stream's writer had not written yet (``peer_name``: ``game1``,
        ``gate2``...), called right after the peer left: held again, first, if the peer is
        held for (a game within its grace or frozen, a gate within its grace); else dropped.
        The queue it joins keeps its bound (``frozen_queue_max_bytes``, GATE_AWAY_MAX_BYTES):
        what would pass it goes, newest first, with one log line."""
        if not envs:
            return
        if peer_name.startswith("game"):
            game = self.games.get(int(peer_name[4:]))
            if game is not None and game.frozen:
                kept, size = self._within(peer_name, [*envs, *game.pending], self.frozen_queue_max_bytes)
                game.pending.clear()
                game.pending.extend(kept)
                game.pending_bytes = size
                return
        elif peer_name.startswith("gate") and int(peer_name[4:]) in self._gates_away:
            gate_id = int(peer_name[4:])
            held, _ = self._away_queues.get(gate_id) or ([], 0)
            self._away_queues[gate_id] = self._within(peer_name, envs + held, GATE_AWAY_MAX_BYTES)
            return
        self.stats["dropped"] += len(envs)

    def _within(self, peer_name: str, envs: list[Envelope], limit: int) -> tuple[list[Envelope], int]:
        """The oldest of ``envs`` (in order) that fit in ``limit`` bytes, and their size."""
        size = 0
        for index, env in enumerate(envs):
            add = envelope_size(env)
            if size + add > limit:
                self.stats["dropped"] += len(envs) - index
                logger.error(
                    "%s is held for and its queue would pass %d bytes: dropped the %d newest "
                    "messages of %d", peer_name, limit, len(envs) - index, len(envs),
                )
                return envs[:index], size
            size += add
        return envs, size

    def _hold_for_gate(self, gate_id: int, env: Envelope) -> None:
        held, size = self._away_queues.get(gate_id) or ([], 0)
        add = envelope_size(env)
        if size + add > GATE_AWAY_MAX_BYTES:
            self.stats["dropped"] += 1
            logger.error(
                "gate%d is away and %d bytes are held for it (max %d): dropped message type %d",
                gate_id, size, GATE_AWAY_MAX_BYTES, env.msgtype,
            )
            return
        held.append(env)
        self._away_queues[gate_id] = (held, size + add)

    def _send_to_gate(self, gate_id: int, gate: Peer, env: Envelope) -> None:
        if gate.backlog_bytes >= self.peer_max_backlog_bytes:
            self._drop_behind(f"gate{gate_id}", gate, env)
            return
        gate.send(env)
        self.stats["routed"] += 1

    # ---- handlers: gates -----------------------------------------------------------------

    def _on_client_connected(self, gate_id: int, env: Envelope) -> None:
        env.gate_id = gate_id
        healthy = [g for g in self.games.values() if g.healthy and not g.ban_boot]
        keeping_up = [g.game_id for g in healthy if not self._behind(g)]
        boot_games = keeping_up or [g.game_id for g in healthy]
        if not boot_games:
            self._wait_for_boot(gate_id, env)
            return
        if self._waiting_until:
            self._waiting_until.pop(env.client_id, None)
        self._boot_rr = (self._boot_rr + 1) % len(boot_games)
        game_id = boot_games[self._boot_rr]
        self.entities[env.entity_id] = EntityRoute(game_id)
        self._send_to_game(game_id, env)
        if self._early:
            self._release_early(env.entity_id)

    def _wait_for_boot(self, gate_id: int, env: Envelope) -> None:
        """No healthy boot game: the client waits (bounded in number and time)."""
        if len(self._waiting_boot) >= BOOT_WAIT_LIMIT:
            self._kick(gate_id, env.client_id, f"no game server is available ({BOOT_WAIT_LIMIT} clients wait already): try again later")
            return
        if env.client_id not in self._waiting_until:
            logger.warning("no healthy boot game: client %s waits (at most %.0f s)", env.client_id, self.boot_wait_timeout)
            self._waiting_until[env.client_id] = self.clock() + self.boot_wait_timeout
        self._waiting_boot.append(env)

    def _expire_waiting_boot(self, now: float) -> None:
        waiting_until = self._waiting_until
        keep = []
        for env in self._waiting_boot:
            until = waiting_until.get(env.client_id)
            if until is not None and until <= now:
                del waiting_until[env.client_id]
                self._kick(
                    env.gate_id, env.client_id,
                    f"no game server took this client within {self.boot_wait_timeout:.0f} s "
                    "(boot_wait_timeout): try again later",
                )
            else:
                keep.append(env)
        self._waiting_boot = keep
        if len(waiting_until) > len(keep):  # clients gone with their gate
            ids = {e.client_id for e in keep}
            self._waiting_until = {c: t for c, t in waiting_until.items() if c in ids}

    def _kick(self, gate_id: int, client_id: str, reason: str) -> None:
        """Ask a gate to close one of its clients, with ``reason`` (it tells our clients)."""
        gate = self.gates.get(gate_id)
        if gate is not None:
            env = Envelope(msgtype=MsgType.KICK_CLIENT, gate_id=gate_id, client_id=client_id, name=reason)
            self._send_to_gate(gate_id, gate, env)

    def _on_client_disconnected(self, gate_id: int, env: Envelope) -> None:
        env.gate_id = gate_id
        if self._waiting_until.pop(env.client_id, None) is not None:
            # It waited for a boot game: its boot entity was never created anywhere.
            self._waiting_boot = [w for w in self._waiting_boot if w.client_id != env.client_id]
            return
        self._send_to_entity(env.entity_id, env)

    def _on_call_from_client(self, gate_id: int, env: Envelope) -> None:
        env.gate_id = gate_id
        self._send_to_entity(env.entity_id, env)
        route = self.entities.get(env.entity_id)
        game = self.games.get(route.game_id) if route is not None else None
        if game is not None and self._behind(game):
            self._pause_client(game, gate_id, env.client_id)

    def _on_sync_from_client(self, gate_id: int, env: Envelope) -> None:
        """Regroup position records per game; records of unknown or blocked entities, and
        those for a game that is behind (the next sync supersedes them), are dropped."""
        per_game: dict[int, bytearray] = {}
        entities = self.entities
        for eid, record in positions.split_records(env.payload):
            route = entities.get(eid)
            if route is None or route.blocked_until:
                continue
            buf = per_game.get(route.game_id)
            if buf is None:
                buf = per_game[route.game_id] = bytearray()
            buf += record
        for game_id, buf in per_game.items():
            game = self.games.get(game_id)
            if game is None or game.peer is None or game.frozen:
                continue
            if self._behind(game):
                self.stats["dropped_syncs"] += 1
                continue
            game.peer.send(Envelope(msgtype=MsgType.SYNC_POSITION_YAW_FROM_CLIENT, payload=bytes(buf)))

    # ---- health --------------------------------------------------------------------------

    def game_heard(self, game_id: int) -> None:
        """Something arrived from game ``game_id`` (the server calls this once per batch)."""
        game = self.games.get(game_id)
        if game is None:
            return
        game.heard_at = self.clock()
        if game.hung:
            game.hung = False
            logger.warning("game%d sends again: healthy, new entities may go to it again", game_id)
            if not game.ban_boot:
                self._release_waiting_boot()

    def _check_health(self, now: float) -> None:
        """Mark unhealthy the games that sent nothing for ``game_hang_timeout`` (0: never)."""
        timeout = self.game_hang_timeout
        if not timeout:
            return
        last, self._last_health_check = self._last_health_check, now
        if last and now - last > timeout:
            # this dispatcher itself did not run (stopped, starved): the games' silence is
            # ours; they get a fresh timeout from now
            for game in self.games.values():
                game.heard_at = max(game.heard_at, now)
            return
        for game in self.games.values():
            if game.hung or game.peer is None or game.frozen or now - game.heard_at <= timeout:
                continue
            game.hung = True
            logger.warning(
                "game%d sent nothing for %.1f s (game_hang_timeout %.1f s): unhealthy, new "
                "entities go to other games until it sends again",
                game.game_id, now - game.heard_at, timeout,
            )

    # ---- back-pressure -------------------------------------------------------------------

    def _behind(self, game: GameInfo) -> bool:
        peer = game.peer
        return peer is not None and peer.backlog_bytes >= self.pause_backlog_bytes

    def _pause_client(self, game: GameInfo, gate_id: int, client_id: str) -> None:
        clients = game.paused.setdefault(gate_id, set())
        if client_id in clients:
            return
        gate = self.gates.get(gate_id)
        if gate is None:
            return
        clients.add(client_id)
        self.stats["paused"] += 1
        if len(clients) == 1 and len(game.paused) == 1:
            logger.warning(
                "game%d is %d bytes behind: pausing the clients whose calls wait for it",
                game.game_id, game.peer.backlog_bytes if game.peer is not None else 0,
            )
        gate.send(Envelope(msgtype=MsgType.PAUSE_CLIENTS, gate_id=gate_id, payload=client_id.encode("latin-1")))

    def _resume_clients(self, game: GameInfo) -> None:
        paused, game.paused = game.paused, {}
        for gate_id, clients in paused.items():
            gate = self.gates.get(gate_id)
            if gate is not None and clients:
                gate.send(
                    Envelope(
                        msgtype=MsgType.RESUME_CLIENTS,
                        gate_id=gate_id,
                        payload=b"".join(c.encode("latin-1") for c in clients),
                    )
                )
        if paused:
            logger.info(
                "game%d caught up: resuming %d paused clients",
                game.game_id, sum(len(c) for c in paused.values()),
            )

    def held(self) -> dict[str, tuple[int, int]]:
        """What this dispatcher holds instead of routing, per queue: (messages, bytes). For
        /metrics (it walks every entity, as :meth:`tick` does: not for a hot path)."""
        frozen = [g for g in self.games.values() if g.pending]
        blocked = [r for r in self.entities.values() if r.pending]
        away = self._away_queues.values()
        return {
            "frozen_game": (sum(len(g.pending) for g in frozen), sum(g.pending_bytes for g in frozen)),
            "blocked_entity": (
                sum(len(r.pending) for r in blocked if r.pending is not None),
                sum(r.pending_bytes for r in blocked),
            ),
            "unknown_entity": (sum(len(h[1]) for h in self._early.values()), self._early_bytes),
            "away_gate": (sum(len(q[0]) for q in away), sum(q[1] for q in away)),
            "boot_wait": (
                len(self._waiting_boot), sum(envelope_size(e) for e in self._waiting_boot)
            ),
        }

    def paused_clients(self) -> int:
        """Clients paused at their gates now (PAUSE_CLIENTS) because a game is behind."""
        return sum(len(ids) for game in self.games.values() for ids in game.paused.values())

    def relieve(self) -> None:
        """Resume the clients paused for a game that has caught up (or gone); called often
        (every 50 ms) by the server."""
        for game in self.games.values():
            if game.paused and (
                game.peer is None or game.peer.backlog_bytes < self.resume_backlog_bytes
            ):
                self._resume_clients(game)
