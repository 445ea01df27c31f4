"""The game process's runtime: the lifecycle of entities, calls, posted callbacks.

:class:`GameRuntime` implements :class:`goworld.entity.runtime.Runtime`, the whole surface that
entities and the ``goworld`` facade reach. It is built from parts, in this order, by its
constructor: the entity table (:mod:`game.entity_table`), the outbox that routes everything the
game sends (:mod:`game.outbox`), the limits on calls from clients (:mod:`game.call_limits`,
``client_calls``), the entity timers (:mod:`game.timers`, clock injected), then
the parts that use the runtime itself: migration (:mod:`game.migration`), services
(:mod:`game.services`) and the crontab (:mod:`game.crontab`). It never awaits: storage calls
return futures whose callbacks run back on the loop. Incoming dispatcher traffic is handled in
:mod:`game.handlers`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from game.call_limits import CallPolicy, ClientCallLimiter
from game.crontab import Crontab
from game.entity_table import EntityTable
from game.migration import Migration
from game.outbox import Outbox
from game.services import ServiceManager
from game.stats import GameStats
from game.timers import EntityTimers, GlobalTimer, run_logged
from goworld.cluster.envelopes import Envelope
from goworld.entity.client import GameClient
from goworld.entity.entity import Entity
from goworld.entity.registry import SPACE_TYPE_NAME, Registry, RpcMethod
from goworld.entity.space import Space
from goworld.entity.vector import Vector3
from goworld.errors import EntityError
from goworld.proto.ids import new_entity_id, nil_space_id

__all__ = ["GameRuntime"]

logger = logging.getLogger("goworld.game")


class GameRuntime:
    def __init__(
        self,
        game_id: int,
        registry: Registry,
        *,
        num_dispatchers: int,
        send: Callable[[int, Envelope], None],
        storage: Any = None,
        kvdb: Any = None,
        boot_entity: str = "Boot",
        clock: Callable[[], float] = time.time,
        service_rng: random.Random | None = None,
        on_serving: Callable[[], None] | None = None,
        call_policy: CallPolicy | None = None,
        call_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.game_id = game_id
        self.registry = registry
        self.storage = storage
        self.kvdb = kvdb
        self.boot_entity = boot_entity
        self.loop = asyncio.get_running_loop()
        self.online_games: set[int] = {game_id}
        self.kvreg: dict[str, str] = {}
        self.deployment_ready = False
        self.halted = False  # set once a freeze has taken its snapshot
        self.pending_saves: set[asyncio.Future[Any]] = set()
        #: storage/KVDB operations whose callbacks have not run yet (a freeze waits for them)
        self.pending_async: set[asyncio.Future[Any]] = set()
        self._sync_dirty: list[Entity] = []
        self._posted: deque[Callable[[], Any]] = deque()
        self._drain_scheduled = False
        #: counters read by /metrics (RPCs run per type and method, freeze/restore times)
        self.stats = GameStats()
        # the parts, in dependency order
        self.table = EntityTable(registry)
        self.entities: Mapping[str, Entity] = self.table.entities
        self.spaces: Mapping[str, Space] = self.table.spaces
        self.outbox = Outbox(game_id, num_dispatchers, send)
        self.client_calls = ClientCallLimiter(
            call_policy or CallPolicy(),
            kick=self.outbox.kick_client,
            schedule=self.loop.call_later,
            clock=call_clock,
        )
        self.timers = EntityTimers(self.loop, clock, halted=lambda: self.halted)
        self.migration = Migration(self)
        self.services = ServiceManager(self, service_rng, on_serving=on_serving)
        self.crontab = Crontab(self.loop, clock)

    @property
    def nil_space(self) -> Space | None:
        return self.table.nil_space

    @property
    def num_dispatchers(self) -> int:
        return self.outbox.num_dispatchers

    # ---- client messages (the Runtime protocol; the outbox routes them) -------------------

    def send_client(self, client: GameClient, msgtype: int, body: bytes) -> None:
        self.outbox.send_client(client, msgtype, body)

    def send_clients(self, clients: Iterable[GameClient], msgtype: int, body: bytes) -> None:
        self.outbox.send_clients(clients, msgtype, body)

    def set_filter_prop(self, client: GameClient, key: str, value: str) -> None:
        self.outbox.set_filter_prop(client, key, value)

    def clear_filter_props(self, client: GameClient) -> None:
        self.outbox.clear_filter_props(client)

    def call_filtered_clients(
        self, key: str, op: str, value: str, method: str, args: tuple[Any, ...]
    ) -> None:
        self.outbox.call_filtered_clients(key, op, value, method, args)

    def client_bound(self, entity: Entity, client: GameClient) -> None:
        pass

    def client_unbound(self, entity: Entity, client: GameClient) -> None:
        pass

    # ---- creating and loading ------------------------------------------------------------

    def get_entity(self, entity_id: str) -> Entity | None:
        return self.table.entities.get(entity_id)

    def create_entity_locally(
        self,
        type_name: str,
        *,
        entity_id: str | None = None,
        space: Space | None = None,
        pos: Vector3 | None = None,
        attrs: dict[str, Any] | None = None,
        client: GameClient | None = None,
        loaded: bool = False,
    ) -> Entity:
        """A new entity here: hooks, its space, its client. A persistent one that was not
        ``loaded`` from storage is saved at once (as GoWorld does), so that an id handed out
        now (a KVDB record, a service registration) can always be loaded later."""
        if type_name == SPACE_TYPE_NAME:
            kind = int((attrs or {}).get("_K", 0))
            return self.create_space_locally(kind, entity_id=entity_id, attrs=attrs)
        entity_id = entity_id or new_entity_id()
        if entity_id in self.table:
            raise EntityError(f"entity {entity_id} already exists on game{self.game_id}")
        entity = self.table.instantiate(self, type_name, entity_id, attrs)
        self.outbox.entity_created(entity_id)
        entity.run_hook("on_init")
        entity.run_hook("on_attrs_ready")
        entity.run_hook("on_created")
        if entity.desc.persistent and not loaded and not entity.destroyed:
            self._save(entity)
        if not entity.destroyed:
            target = space if space is not None and not space.destroyed else self.nil_space
            if target is not None:
                target.add_member(entity, pos or Vector3())
        if client is not None and not entity.destroyed:
            entity.set_client(client)
        return entity

    def create_space_locally(
        self, kind: int, *, entity_id: str | None = None, attrs: dict[str, Any] | None = None
    ) -> Space:
        if self.registry.space_desc is None:
            self.registry.register_space(Space)
        entity_id = entity_id or new_entity_id()
        attrs = dict(attrs or {})
        attrs["_K"] = int(kind)
        space = self.table.instantiate(self, SPACE_TYPE_NAME, entity_id, attrs)
        assert isinstance(space, Space)
        self.outbox.entity_created(entity_id)
        for hook in ("on_init", "on_attrs_ready", "on_space_init", "on_created", "on_space_created"):
            space.run_hook(hook)
        return space

    def create_nil_space(self) -> Space:
        return self.create_space_locally(0, entity_id=nil_space_id(self.game_id))

    def create_entity_somewhere(
        self, game_id: int, type_name: str, attrs: dict[str, Any] | None = None
    ) -> str:
        """Have the dispatcher create an entity on ``game_id`` (0: the least loaded game);
        returns its id at once."""
        return self.outbox.create_somewhere(game_id, type_name, attrs)

    def load_entity_somewhere(self, type_name: str, entity_id: str, game_id: int) -> None:
        """Have the dispatcher load a persistent entity on ``game_id`` (0: any game); a no-op
        if it already exists anywhere."""
        self.outbox.load_somewhere(type_name, entity_id, game_id)

    def load_entity_locally(
        self, type_name: str, entity_id: str, *, space: Space | None = None, pos: Vector3 | None = None
    ) -> None:
        if entity_id in self.table:
            return
        if self.storage is None:
            logger.error("load %s %s: no storage configured", type_name, entity_id)
            return
        future = self.track(self.storage.load(type_name, entity_id))

        def loaded(fut: asyncio.Future[Any]) -> None:
            try:
                data = fut.result()
            except Exception as exc:
                logger.error("load %s %s failed: %s", type_name, entity_id, exc)
                data = None
            if entity_id in self.table:
                return
            if data is None:
                logger.error("load %s %s: not found in storage", type_name, entity_id)
                self.outbox.entity_destroyed(entity_id)  # the dispatcher drops its queued calls
                return
            self.create_entity_locally(
                type_name, entity_id=entity_id, space=space, pos=pos, attrs=data, loaded=True
            )

        future.add_done_callback(loaded)

    # ---- endings -------------------------------------------------------------------------

    def destroy_entity(self, entity: Entity) -> None:
        """GoWorld's destroy sequence (§4.12), without the re-entrant second on_destroy."""
        if entity.destroyed or entity.destroying:
            return
        entity.destroying = True
        if isinstance(entity, Space):
            entity.run_hook("on_space_destroy")
            for member in list(entity.entities):
                self.destroy_entity(member)
        elif entity.space is not None:
            entity.space.remove_member(entity)
        entity.run_hook("on_destroy")
        if entity.client is not None:
            entity.set_client(None)
        if entity.desc.persistent:
            self._save(entity)
        self.retire(entity)
        self.outbox.entity_destroyed(entity.id)

    def discard_entity(self, entity: Entity) -> None:
        """Drop a local copy that another game owns: leave the space (neighbours' clients see
        it go), no hooks, no save (the copy is stale), no NOTIFY_DESTROY (the route is not ours)."""
        if entity.space is not None:
            entity.space.remove_member(entity, quiet=True)
        self.retire(entity)

    def retire(self, entity: Entity) -> None:
        """This process is done with ``entity`` (destroyed, migrated away, or not ours)."""
        entity.destroyed = True
        self.timers.cancel_all(entity)
        entity.attrs.unbind()
        self.table.forget(entity)

    # ---- persistence ---------------------------------------------------------------------

    def save_entity(self, entity: Entity) -> None:
        self._save(entity)

    def _save(self, entity: Entity) -> None:
        if self.storage is None or not entity.desc.persistent:
            return
        try:
            future = self.storage.save(entity.desc.name, entity.id, entity.persistent_data())
        except Exception:
            logger.exception("save %r failed", entity)
            return
        self.pending_saves.add(future)
        future.add_done_callback(self._save_done)

    def _save_done(self, future: asyncio.Future[Any]) -> None:
        self.pending_saves.discard(future)
        if not future.cancelled() and future.exception() is not None:
            logger.error("save failed: %s", future.exception())

    def save_all(self) -> int:
        count = 0
        for entity in list(self.entities.values()):
            if entity.desc.persistent and not entity.destroyed:
                self._save(entity)
                count += 1
        return count

    def storage_exists(self, type_name: str, entity_id: str) -> asyncio.Future[Any]:
        if self.storage is None:
            raise EntityError("no storage configured")
        return self.track(self.storage.exists(type_name, entity_id))

    # ---- spaces and position sync ---------------------------------------------------------

    def enter_space(self, entity: Entity, space_id: str, pos: Vector3) -> None:
        space = self.spaces.get(space_id)
        if space is not None:
            self.post(lambda: self.switch_space(entity, space, pos))
        else:
            self.migration.start(entity, space_id, pos)

    def switch_space(self, entity: Entity, space: Space, pos: Vector3) -> None:
        """Local space change: leave the old space and enter the new one in one step (§4.8)."""
        if entity.destroyed or space.destroyed:
            return
        if entity.space is space:
            entity.set_position(pos)
            return
        if entity.space is not None:
            entity.space.remove_member(entity)
        space.add_member(entity, pos)

    def mark_sync(self, entity: Entity) -> None:
        self._sync_dirty.append(entity)

    def collect_syncs(self) -> None:
        """Send pending position/yaw changes to the clients that see them (§4.6)."""
        dirty, self._sync_dirty = self._sync_dirty, []
        if dirty:
            self.outbox.position_syncs(dirty)

    # ---- calls ---------------------------------------------------------------------------

    def call(self, entity_id: str, method: str, args: tuple[Any, ...]) -> None:
        entity = self.entities.get(entity_id)
        if entity is not None:
            self.post(lambda: self.invoke(entity, method, list(args), None))
        else:
            self.outbox.call(entity_id, method, args)

    def create_lockstep_room(
        self, owner_id: str, members: list[int], on_created: str, on_result: str, seed: int
    ) -> None:
        self.outbox.lockstep_create_room(
            owner_id, members, on_created=on_created, on_result=on_result, seed=seed
        )

    def call_nil_spaces(self, method: str, args: tuple[Any, ...]) -> None:
        """Call ``method`` on every game's nil space: dispatcher 1 sends it to the other games,
        this game's own is posted."""
        self.outbox.call_nil_spaces(method, args)
        nil = self.nil_space
        if nil is not None:
            self.post(lambda: self.invoke(nil, method, list(args), None))

    def invoke(
        self, entity: Entity, method_name: str, args: list[Any] | tuple[Any, ...], client_id: str | None
    ) -> str | None:
        """Run an RPC on a local entity; ``client_id`` is set for calls from clients. Returns
        None if the method ran (a method that raises is logged), else why the call was refused:
        logged for calls between servers, not for calls from clients (the caller counts those,
        :mod:`game.call_limits`)."""
        if client_id is not None:
            found = self.client_rpc(entity, method_name, client_id)
            if isinstance(found, str):
                return found
            return self.run_rpc(entity, found, args, client_id)
        if entity.destroyed:
            logger.warning("call %s on destroyed %r: dropped", method_name, entity)
            return "the entity is destroyed"
        method: RpcMethod | None = entity.desc.rpcs.get(method_name)
        if method is None:
            logger.warning("%r has no RPC %r: call dropped", entity, method_name)
            return "no such RPC"
        return self.run_rpc(entity, method, args, None)

    def client_rpc(self, entity: Entity, method_name: str, client_id: str) -> RpcMethod | str:
        """The RPC ``client_id`` may call on ``entity`` (its own entity's ``client=True``
        methods, any entity's ``all_clients=True`` ones), or why it may not."""
        if entity.destroyed:
            return f"{entity!r} is destroyed"
        method = entity.desc.rpcs.get(method_name)
        if method is None:
            return f"{entity!r} has no RPC {method_name!r}"
        if method.all_clients:
            return method
        if not method.client:
            return f"{entity!r}.{method_name} is not client-callable"
        client = entity.client
        if client is None or client.client_id != client_id:
            return f"{entity!r} is not the client's own entity"
        return method

    def run_rpc(
        self, entity: Entity, method: RpcMethod, args: list[Any] | tuple[Any, ...], client_id: str | None
    ) -> str | None:
        """Bind ``args`` and run the method: None, or why the arguments do not fit (logged
        for calls between servers only)."""
        try:
            bound = method.bind_args(args)
        except EntityError as exc:
            if client_id is None:
                logger.warning("call %r.%s dropped: %s", entity, method.wire_name, exc)
            return f"bad arguments: {exc}"
        counts = self.stats.rpcs
        key = (entity.desc.name, method.wire_name, client_id is not None)
        counts[key] = counts.get(key, 0) + 1
        try:
            getattr(entity, method.attr_name)(*bound)
        except Exception:
            logger.exception("%r.%s raised", entity, method.wire_name)
            errors, where = self.stats.rpc_errors, (key[0], key[1])
            errors[where] = errors.get(where, 0) + 1
        return None

    # ---- posted callbacks and asynchronous operations --------------------------------------

    def post(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` after the current callback, in posting order (a freeze drains these)."""
        if self.halted:
            return
        self._posted.append(fn)
        if not self._drain_scheduled:
            self._drain_scheduled = True
            self.loop.call_soon(self._drain)

    def _drain(self) -> None:
        self._drain_scheduled = False
        self.drain_posts(len(self._posted))
        if self._posted and not self._drain_scheduled:
            self._drain_scheduled = True
            self.loop.call_soon(self._drain)

    def drain_posts(self, limit: int = 100_000) -> int:
        """Run up to ``limit`` posted callbacks now; returns how many ran."""
        ran = 0
        posted = self._posted
        while posted and ran < limit and not self.halted:
            run_logged(posted.popleft())
            ran += 1
        return ran

    def track(self, future: asyncio.Future[Any]) -> asyncio.Future[Any]:
        """Remember an asynchronous operation until its callbacks have run."""
        self.pending_async.add(future)
        future.add_done_callback(lambda f: self.loop.call_soon(self.pending_async.discard, f))
        return future

    # ---- timers --------------------------------------------------------------------------

    def add_entity_timer(
        self, entity: Entity, interval: float, method: str, args: tuple[Any, ...], *, repeat: bool
    ) -> int:
        return self.timers.add(entity, interval, method, args, repeat=repeat)

    def cancel_entity_timer(self, entity: Entity, timer_id: int) -> None:
        self.timers.cancel(entity, timer_id)

    def add_global_timer(self, interval: float, fn: Callable[[], Any]) -> GlobalTimer:
        return GlobalTimer(self.loop, interval, fn)

    def add_callback(self, delay: float, fn: Callable[[], Any]) -> asyncio.TimerHandle:
        return self.loop.call_later(delay, fn)

    def register_crontab(
        self, minute: int, hour: int, day: int, month: int, dow: int, fn: Callable[[], Any]
    ) -> None:
        self.crontab.register(minute, hour, day, month, dow, fn)
