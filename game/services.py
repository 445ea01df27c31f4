"""Service entities: sharded singletons placed through the dispatchers' kvreg (PROTOCOL.md §8.4).

For service ``Name`` with N shards, shard ``i`` is claimed by writing
``Service/Name#i = game<id>`` (first writer wins at the dispatcher). The game that owns a shard
creates the entity and publishes ``Service/Name#i/EntityID = <id>`` (force). Every game keeps a
mirror of the kvreg, so calls to a service resolve to an entity id locally. Checks run when the
deployment becomes ready, every 60 s, and shortly after any kvreg change.
"""

from __future__ import annotations

import logging
import random
import zlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from game.runtime import GameRuntime

__all__ = ["ServiceManager", "shard_of_key"]

logger = logging.getLogger("goworld.game")

CHECK_INTERVAL = 60.0


def shard_of_key(key: str, shards: int) -> int:
    return zlib.crc32(key.encode("utf-8")) % shards


class ServiceManager:
    def __init__(self, rt: GameRuntime, rng: random.Random | None = None) -> None:
        self.rt = rt
        self.rng = rng or random.Random()
        self.local: dict[tuple[str, int], str] = {}  # (name, shard) -> entity id on this game
        self._check_scheduled = False
        self._claiming: set[str] = set()
        self.started = False

    def start(self) -> None:
        """Begin the checks (idempotent: a restored game calls it when a dispatcher is back)."""
        if self.started:
            return
        self.started = True
        self.check()
        self.rt.loop.call_later(CHECK_INTERVAL, self._periodic)

    def _periodic(self) -> None:
        self.check()
        self.rt.loop.call_later(CHECK_INTERVAL, self._periodic)

    def kvreg_changed(self, key: str) -> None:
        if not key.startswith("Service/") or not self.rt.deployment_ready:
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
                    rt.kvreg_register(f"{key}/EntityID", entity.id, force=True)
                    logger.info("service %s#%d created here: %s", name, shard, entity.id)
        for (name, shard), eid in list(self.local.items()):
            if rt.kvreg.get(f"Service/{name}#{shard}") not in (None, me):
                logger.warning("service %s#%d is owned elsewhere: destroying ours", name, shard)
                del self.local[(name, shard)]
                entity = rt.entities.get(eid)
                if entity is not None:
                    entity.destroy()

    def _claim(self, key: str, me: str) -> None:
        self._claiming.discard(key)
        if key not in self.rt.kvreg:
            self.rt.kvreg_register(key, me, force=False)

    # ---- calls ---------------------------------------------------------------------------

    def entity_id(self, name: str, shard: int) -> str | None:
        return self.rt.kvreg.get(f"Service/{name}#{shard}/EntityID")

    def shard_count(self, name: str) -> int:
        desc = self.rt.registry.services.get(name)
        return desc.service_shards if desc is not None else 0

    def ready(self, name: str) -> bool:
        n = self.shard_count(name)
        return n > 0 and all(self.entity_id(name, i) for i in range(n))

    def call_shard(self, name: str, shard: int, method: str, args: tuple[Any, ...]) -> None:
        eid = self.entity_id(name, shard)
        if eid is None:
            logger.error("service %s#%d is not ready: call %s dropped", name, shard, method)
            return
        self.rt.call(eid, method, args)

    def call_any(self, name: str, method: str, args: tuple[Any, ...]) -> None:
        n = self.shard_count(name)
        if n == 0:
            logger.error("unknown service %r: call %s dropped", name, method)
            return
        self.call_shard(name, self.rng.randrange(n), method, args)

    def call_all(self, name: str, method: str, args: tuple[Any, ...]) -> None:
        for shard in range(self.shard_count(name)):
            self.call_shard(name, shard, method, args)

    def call_shard_key(self, name: str, key: str, method: str, args: tuple[Any, ...]) -> None:
        n = self.shard_count(name)
        if n == 0:
            logger.error("unknown service %r: call %s dropped", name, method)
            return
        self.call_shard(name, shard_of_key(key, n), method, args)
