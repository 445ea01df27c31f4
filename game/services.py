"""Service entities: sharded singletons placed through the dispatchers' kvreg (PROTOCOL.md §8.4).

For service ``Name`` with N shards, shard ``i`` is claimed by writing
``Service/Name#i = game<id>`` (first writer wins at the dispatcher). The game that owns a shard
creates the entity and publishes ``Service/Name#i/EntityID = <id>`` (force). Every game keeps a
mirror of the kvreg, so calls to a service resolve to an entity id locally. Checks run when the
deployment becomes ready, every 60 s, and shortly after any kvreg change.

A call to a shard whose entity is not known yet (the cluster is still starting, or the game
that had it died and has not created it again yet: :meth:`ServiceManager.game_lost`) waits in
a queue, in order, and goes out as soon as the shard's ``EntityID`` arrives. The queue holds at
most ``PENDING_CALLS_MAX`` calls for the whole game; a call beyond that is refused with an
ERROR naming the service and the bound. Queued calls are part of a reload's freeze state.

Once the deployment is ready and every registered service has all its shards, the manager
calls ``on_serving`` once: ``goworld start`` waits for that from every game.

**Failover.** A game that is down (not frozen) keeps its shards while the supervisor restarts
it: its new process creates them again. If it is still down ``failover_timeout`` seconds later
(``[game_common] service_failover_timeout``, 30 s; 0 = never: its host is gone, say), every
other game claims each of its shards *from it*: a KVREG_REGISTER carrying the owner it expects
(``[value, force, expected]``), which the dispatcher applies only while the key still names that
owner, so exactly one game wins each shard; it creates the entity (state that only lived in the
old entity is lost, as in a restart) and publishes the new id, which releases the calls queued
for it. The old game, when it comes back, finds its shards owned elsewhere and leaves them.
"""

from __future__ import annotations

import asyncio
import logging
import random
import zlib
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from game.runtime import GameRuntime

__all__ = ["ServiceManager", "shard_of_key"]

logger = logging.getLogger("goworld.game")

CHECK_INTERVAL = 60.0
#: seconds a game may stay down before the others take its service shards over (the default
#: of ``service_failover_timeout``)
FAILOVER_TIMEOUT = 30.0
#: Calls queued for not-yet-ready service shards, over all services of one game.
PENDING_CALLS_MAX = 10_000


def shard_of_key(key: str, shards: int) -> int:
    return zlib.crc32(key.encode("utf-8")) % shards


class ServiceManager:
    def __init__(
        self,
        rt: GameRuntime,
        rng: random.Random | None = None,
        *,
        pending_max: int = PENDING_CALLS_MAX,
        on_serving: Callable[[], None] | None = None,
        failover_timeout: float = FAILOVER_TIMEOUT,
    ) -> None:
        self.rt = rt
        self.rng = rng or random.Random()
        self.local: dict[tuple[str, int], str] = {}  # (name, shard) -> entity id on this game
        self._check_scheduled = False
        self._claiming: set[str] = set()
        self.started = False
        #: (name, shard) -> calls (method, args) waiting for the shard's entity id, in order
        self.pending: dict[tuple[str, int], deque[tuple[str, tuple[Any, ...]]]] = {}
        self.pending_count = 0
        self.pending_max = pending_max
        self._refused = 0
        self.on_serving = on_serving
        self.serving = False
        #: seconds a game stays down before its shards are claimed from it (0: never)
        self.failover_timeout = failover_timeout
        #: game id -> the failover timer armed when it went down
        self._failovers: dict[int, asyncio.TimerHandle] = {}

    def start(self) -> None:
        """Begin the checks (idempotent: a restored game calls it when a dispatcher is back)."""
        if self.started:
            return
        self.started = True
        self.check()
        self.check_serving()
        self.rt.loop.call_later(CHECK_INTERVAL, self._periodic)

    def _periodic(self) -> None:
        self.check()
        self.rt.loop.call_later(CHECK_INTERVAL, self._periodic)

    def kvreg_changed(self, key: str) -> None:
        if not key.startswith("Service/"):
            return
        if key.endswith("/EntityID"):
            if self.pending:
                self._release(key)
            self.check_serving()
        if not self.rt.deployment_ready:
            return
        if not self._check_scheduled:
            self._check_scheduled = True
            self.rt.loop.call_later(self.rng.uniform(0, 0.5), self._scheduled_check)

    def _scheduled_check(self) -> None:
        self._check_scheduled = False
        self.check()

    def check(self) -> None:
        rt = self.rt
        me = f"game{rt.game_id}"
        for name, desc in rt.registry.services.items():
            for shard in range(desc.service_shards):
                key = f"Service/{name}#{shard}"
                owner = rt.kvreg.get(key)
                if owner is None:
                    if key not in self._claiming:
                        self._claiming.add(key)
                        rt.loop.call_later(self.rng.uniform(0, 1.0), self._claim, key, me)
                elif owner == me and (name, shard) not in self.local:
                    entity = rt.create_entity_locally(name)
                    self.local[(name, shard)] = entity.id
                    rt.outbox.kvreg_register(f"{key}/EntityID", entity.id, force=True)
                    logger.info("service %s#%d created here: %s", name, shard, entity.id)
        self._arm_failovers()
        for (name, shard), eid in list(self.local.items()):
            if rt.kvreg.get(f"Service/{name}#{shard}") not in (None, me):
                logger.warning("service %s#%d is owned elsewhere: destroying ours", name, shard)
                del self.local[(name, shard)]
                stale = rt.entities.get(eid)
                if stale is not None:
                    stale.destroy()

    def game_lost(self, game_id: int) -> None:
        """Game ``game_id`` is down (not frozen): the shards it owned have no entity until it
        (restarted by the supervisor) creates them again and publishes their new ids. Until
        then calls to them wait in the queue instead of going to the dead ids, which the
        dispatcher would drop."""
        owner = f"game{game_id}"
        kvreg = self.rt.kvreg
        for key in self._keys_of(owner):
            if kvreg.pop(f"{key}/EntityID", None) is not None:
                logger.warning(
                    "%s was on %s, which is down: its calls wait for it to come back%s",
                    key[len("Service/"):], owner,
                    f" (or for another game to take it over in {self.failover_timeout:.0f} s)"
                    if self.failover_timeout else "",
                )
        self._arm(game_id)

    def _arm(self, game_id: int) -> None:
        """The failover timer for ``game_id``, unless one runs or failover is off."""
        if self.failover_timeout > 0 and game_id not in self._failovers:
            self._failovers[game_id] = self.rt.loop.call_later(
                self.failover_timeout, self._failover, game_id
            )

    def _arm_failovers(self) -> None:
        """A failover timer for every game that holds shards and is not connected: a game
        that started, or was restored, after that game went down heard no
        NOTIFY_GAME_DISCONNECTED about it."""
        rt = self.rt
        for name, desc in rt.registry.services.items():
            for shard in range(desc.service_shards):
                owner = rt.kvreg.get(f"Service/{name}#{shard}", "")
                if owner.startswith("game") and owner[4:].isdigit():
                    game_id = int(owner[4:])
                    if game_id not in rt.online_games:
                        self._arm(game_id)

    def game_back(self, game_id: int) -> None:
        """Game ``game_id`` is connected again: its shards stay with it."""
        timer = self._failovers.pop(game_id, None)
        if timer is not None:
            timer.cancel()

    def _keys_of(self, owner: str) -> list[str]:
        """``Service/Name#shard`` of every registered shard the kvreg says ``owner`` holds."""
        kvreg = self.rt.kvreg
        return [
            key
            for name, desc in self.rt.registry.services.items()
            for key in (f"Service/{name}#{shard}" for shard in range(desc.service_shards))
            if kvreg.get(key) == owner
        ]

    def _failover(self, game_id: int) -> None:
        self._failovers.pop(game_id, None)
        rt = self.rt
        if game_id in rt.online_games or rt.halted:
            return
        owner, me = f"game{game_id}", f"game{rt.game_id}"
        keys = self._keys_of(owner)
        for key in keys:
            # the dispatcher applies the first of these claims only (the key still names owner)
            rt.outbox.kvreg_register(key, me, force=False, expected=owner)
        if keys:
            logger.warning(
                "%s has been down for %.0f s: claiming its service shards %s",
                owner, self.failover_timeout, ", ".join(k[len("Service/"):] for k in keys),
            )

    def _claim(self, key: str, me: str) -> None:
        self._claiming.discard(key)
        if key not in self.rt.kvreg:
            self.rt.outbox.kvreg_register(key, me, force=False)

    # ---- calls ---------------------------------------------------------------------------

    def entity_id(self, name: str, shard: int) -> str | None:
        return self.rt.kvreg.get(f"Service/{name}#{shard}/EntityID")

    def shard_count(self, name: str) -> int:
        desc = self.rt.registry.services.get(name)
        return desc.service_shards if desc is not None else 0

    def ready(self, name: str) -> bool:
        n = self.shard_count(name)
        return n > 0 and all(self.entity_id(name, i) for i in range(n))

    def missing(self) -> list[str]:
        """``Name#shard`` of every registered service shard whose entity is not known yet."""
        return [
            f"{name}#{shard}"
            for name, desc in self.rt.registry.services.items()
            for shard in range(desc.service_shards)
            if self.entity_id(name, shard) is None
        ]

    def check_serving(self) -> None:
        """Call ``on_serving`` once the deployment is ready and every service shard is known."""
        if self.serving or not self.rt.deployment_ready or self.missing():
            return
        self.serving = True
        if self.on_serving is not None:
            self.on_serving()

    def call_shard(self, name: str, shard: int, method: str, args: tuple[Any, ...]) -> None:
        eid = self.entity_id(name, shard)
        if eid is None:
            n = self.shard_count(name)
            if not 0 <= shard < n:
                what = f"unknown service {name!r}" if n == 0 else f"service {name} has {n} shards, not #{shard}"
                logger.error("%s: call %s dropped", what, method)
                return
            self._enqueue(name, shard, method, args)
            return
        self.rt.call(eid, method, args)

    def _enqueue(self, name: str, shard: int, method: str, args: tuple[Any, ...]) -> None:
        if self.pending_count >= self.pending_max:
            self._refused += 1
            if self._refused == 1 or self._refused % 1000 == 0:
                logger.error(
                    "service %s#%d is not ready and %d calls already wait for services (the "
                    "bound): call %s refused (%d refused so far)",
                    name, shard, self.pending_count, method, self._refused,
                )
            return
        queue = self.pending.get((name, shard))
        if queue is None:
            queue = self.pending[(name, shard)] = deque()
            logger.info("service %s#%d is not ready yet: queueing its calls", name, shard)
        queue.append((method, args))
        self.pending_count += 1

    def _release(self, key: str) -> None:
        """``key`` is ``Service/Name#shard/EntityID``: send what waited for that shard."""
        head = key[len("Service/") : -len("/EntityID")]
        name, _, shard_text = head.rpartition("#")
        try:
            queue = self.pending.pop((name, int(shard_text)), None)
        except ValueError:
            return
        if not queue:
            return
        self.pending_count -= len(queue)
        eid = self.rt.kvreg[key]
        logger.info("service %s is ready: sending %d queued calls", head, len(queue))
        for method, args in queue:
            self.rt.call(eid, method, args)

    def pending_state(self) -> list[list[Any]]:
        """The queued calls as plain data (for the freeze file)."""
        return [
            [name, shard, method, args]
            for (name, shard), queue in self.pending.items()
            for method, args in queue
        ]

    def restore_pending(self, calls: list[list[Any]]) -> None:
        for name, shard, method, args in calls:
            self.pending.setdefault((name, shard), deque()).append((method, tuple(args)))
        self.pending_count = sum(len(q) for q in self.pending.values())

    def call_any(self, name: str, method: str, args: tuple[Any, ...]) -> None:
        n = self.shard_count(name)
        if n == 0:
            logger.error("unknown service %r: call %s dropped", name, method)
            return
        self.call_shard(name, self.rng.randrange(n), method, args)

    def call_all(self, name: str, method: str, args: tuple[Any, ...]) -> None:
        n = self.shard_count(name)
        if n == 0:
            logger.error("unknown service %r: call %s dropped", name, method)
        for shard in range(n):
            self.call_shard(name, shard, method, args)

    def call_shard_key(self, name: str, key: str, method: str, args: tuple[Any, ...]) -> None:
        n = self.shard_count(name)
        if n == 0:
            logger.error("unknown service %r: call %s dropped", name, method)
            return
        self.call_shard(name, shard_of_key(key, n), method, args)
