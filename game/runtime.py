"""The game process's runtime: entity table, creation and destruction, timers, outgoing traffic.

:class:`GameRuntime` implements :class:`goworld.entity.runtime.Runtime` for the entities and
the facade. It never awaits: everything it sends goes into the dispatcher links' batch queues
(``send(dispatcher_id, envelope)``), and storage calls return futures whose callbacks run back
on the loop. Incoming dispatcher traffic is handled in :mod:`game.handlers`, migration in
:mod:`game.migration`, services in :mod:`game.services`.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from goworld.cluster.envelopes import Envelope, pack
from goworld.entity.attrs import MapAttr
from goworld.entity.client import GameClient, header
from goworld.entity.entity import SYNC_NEIGHBOURS, SYNC_OWN, Entity
from goworld.entity.registry import SPACE_TYPE_NAME, Registry, RpcMethod
from goworld.entity.space import Space
from goworld.entity.vector import Vector3
from goworld.errors import EntityError
from goworld.proto import codec
from goworld.proto.ids import dispatcher_shard, new_entity_id, nil_space_id
from goworld.proto.messages import CallFilteredClients, FilterOp
from goworld.proto.msgtypes import MsgType

__all__ = ["GameRuntime", "TimerRecord"]

logger = logging.getLogger("goworld.game")

_OPS = {"=": FilterOp.EQ, "!=": FilterOp.NE, ">": FilterOp.GT, "<": FilterOp.LT, ">=": FilterOp.GE, "<=": FilterOp.LE}
_POS = struct.Struct("<ffff")
MIN_TIMER_INTERVAL = 0.01


@dataclass(slots=True)
class TimerRecord:
    """An entity timer: fires ``entity.<method>(*args)``; ``fire_at`` is wall-clock time."""

    method: str
    args: tuple[Any, ...]
    fire_at: float
    interval: float
    repeat: bool
    handle: asyncio.TimerHandle | None = None


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
    ) -> None:
        self.game_id = game_id
        self.registry = registry
        self.num_dispatchers = num_dispatchers
        self._send = send
        self.storage = storage
        self.kvdb = kvdb
        self.boot_entity = boot_entity
        self.entities: dict[str, Entity] = {}
        self.spaces: dict[str, Space] = {}
        self.nil_space: Space | None = None
        self.online_games: set[int] = {game_id}
        self.kvreg: dict[str, str] = {}
        self.deployment_ready = False
        self._sync_dirty: list[Entity] = []
        self._timer_seq = 0
        self.loop = asyncio.get_running_loop()
        self.services: Any = None  # set by game.services.ServiceManager
        self.migration: Any = None  # set by game.migration.Migration
        self.crontab: Any = None  # set by game.crontab.Crontab
        self.pending_saves: set[asyncio.Future[Any]] = set()
        #: storage/KVDB operations whose callbacks have not run yet (a freeze waits for them)
        self.pending_async: set[asyncio.Future[Any]] = set()
        self._posted: deque[Callable[[], Any]] = deque()
        self._drain_scheduled = False
        self.halted = False  # set once a freeze has taken its snapshot

    # ---- sending ------------------------------------------------------------------------

    def shard(self, entity_id: str) -> int:
        return dispatcher_shard(entity_id, self.num_dispatchers)

    def send_to_entity_dispatcher(self, entity_id: str, env: Envelope) -> None:
        self._send(dispatcher_shard(entity_id, self.num_dispatchers), env)

    def send_to_dispatcher(self, dispatcher_id: int, env: Envelope) -> None:
        self._send(dispatcher_id, env)

    def send_to_all_dispatchers(self, env: Envelope) -> None:
        for did in range(1, self.num_dispatchers + 1):
            self._send(did, env)

    def send_client(self, client: GameClient, msgtype: int, body: bytes) -> None:
        self._send(
            dispatcher_shard(client.owner_id, self.num_dispatchers),
            Envelope(
                msgtype=msgtype,
                gate_id=client.gate_id,
                client_id=client.client_id,
                payload=header(msgtype, client) + body,
            ),
        )

    def send_clients(self, clients: Iterable[GameClient], msgtype: int, body: bytes) -> None:
        for client in clients:
            self.send_client(client, msgtype, body)

    def set_filter_prop(self, client: GameClient, key: str, value: str) -> None:
        self._send(
            dispatcher_shard(client.owner_id, self.num_dispatchers),
            Envelope(
                msgtype=MsgType.SET_CLIENTPROXY_FILTER_PROP,
                gate_id=client.gate_id,
                client_id=client.client_id,
                name=key,
                payload=value.encode("utf-8"),
            ),
        )

    def clear_filter_props(self, client: GameClient) -> None:
        self._send(
            dispatcher_shard(client.owner_id, self.num_dispatchers),
            Envelope(
                msgtype=MsgType.CLEAR_CLIENTPROXY_FILTER_PROPS,
                gate_id=client.gate_id,
                client_id=client.client_id,
            ),
        )

    def call_filtered_clients(
        self, key: str, op: str, value: str, method: str, args: tuple[Any, ...]
    ) -> None:
        code = _OPS.get(op)
        if code is None:
            raise EntityError(f"call_filtered_clients: unknown operator {op!r}")
        payload = codec.encode_payload(CallFilteredClients(code, key, value, method, args))
        # One dispatcher broadcasts it to every gate: each client gets it exactly once.
        self._send(1, Envelope(msgtype=MsgType.CALL_FILTERED_CLIENTS, payload=payload))

    def client_bound(self, entity: Entity, client: GameClient) -> None:
        pass

    def client_unbound(self, entity: Entity, client: GameClient) -> None:
        pass

    # ---- entity table --------------------------------------------------------------------

    def get_entity(self, entity_id: str) -> Entity | None:
        return self.entities.get(entity_id)

    def _instantiate(
        self, type_name: str, entity_id: str, attrs: dict[str, Any] | None, *,
        trusted: bool = False,
    ) -> Entity:
        """A new entity object in the table, no hook run. ``trusted``: ``attrs`` is our own
        ``to_builtin()`` output (a freeze snapshot) and is rebuilt without re-checking."""
        desc = self.registry.get(type_name)
        entity: Entity = desc.cls.__new__(desc.cls)
        entity._setup(self, desc, entity_id)
        if trusted:
            entity.attrs = MapAttr._from_trusted(attrs or {}, entity)
        else:
            if attrs:
                entity.attrs = MapAttr(attrs)
            entity.attrs.bind(entity)
        self.entities[entity_id] = entity
        return entity

    def create_entity_locally(
        self,
        type_name: str,
        *,
        entity_id: str | None = None,
        space: Space | None = None,
        pos: Vector3 | None = None,
        attrs: dict[str, Any] | None = None,
        client: GameClient | None = None,
    ) -> Entity:
        if type_name == SPACE_TYPE_NAME:
            kind = int((attrs or {}).get("_K", 0))
            return self.create_space_locally(kind, entity_id=entity_id, attrs=attrs)
        entity_id = entity_id or new_entity_id()
        if entity_id in self.entities:
            raise EntityError(f"entity {entity_id} already exists on game{self.game_id}")
        entity = self._instantiate(type_name, entity_id, attrs)
        self.send_to_entity_dispatcher(
            entity_id, Envelope(msgtype=MsgType.NOTIFY_CREATE_ENTITY, entity_id=entity_id)
        )
        entity._safe_hook("on_init")
        entity._safe_hook("on_attrs_ready")
        entity._safe_hook("on_created")
        if not entity.destroyed:
            target = space if space is not None and not space.destroyed else self.nil_space
            if target is not None:
                target._enter(entity, pos or Vector3())
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
        space = self._instantiate(SPACE_TYPE_NAME, entity_id, attrs)
        assert isinstance(space, Space)
        self.spaces[entity_id] = space
        if kind == 0:
            self.nil_space = space
        self.send_to_entity_dispatcher(
            entity_id, Envelope(msgtype=MsgType.NOTIFY_CREATE_ENTITY, entity_id=entity_id)
        )
        space._safe_hook("on_init")
        space._safe_hook("on_attrs_ready")
        space._safe_hook("on_space_init")
        space._safe_hook("on_created")
        space._safe_hook("on_space_created")
        return space

    def create_nil_space(self) -> Space:
        return self.create_space_locally(0, entity_id=nil_space_id(self.game_id))

    def create_entity_somewhere(
        self, game_id: int, type_name: str, attrs: dict[str, Any] | None = None
    ) -> str:
        """Have the dispatcher create an entity on ``game_id`` (0: the least loaded game);
        returns its id at once."""
        entity_id = new_entity_id()
        self.send_to_entity_dispatcher(
            entity_id,
            Envelope(
                msgtype=MsgType.CREATE_ENTITY_SOMEWHERE,
                game_id=game_id,
                entity_id=entity_id,
                name=type_name,
                payload=pack(attrs or {}),
            ),
        )
        return entity_id

    def load_entity_somewhere(self, type_name: str, entity_id: str, game_id: int) -> None:
        """Have the dispatcher load a persistent entity on ``game_id`` (0: any game); a no-op
        if it already exists anywhere."""
        self.send_to_entity_dispatcher(
            entity_id,
            Envelope(
                msgtype=MsgType.LOAD_ENTITY_SOMEWHERE,
                game_id=game_id,
                entity_id=entity_id,
                name=type_name,
            ),
        )

    def load_entity_locally(
        self, type_name: str, entity_id: str, *, space: Space | None = None, pos: Vector3 | None = None
    ) -> None:
        if entity_id in self.entities:
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
            if entity_id in self.entities:
                return
            if data is None:
                logger.error("load %s %s: not found in storage", type_name, entity_id)
                # Unblock the dispatcher: calls queued for this id are dropped as unknown.
                self.send_to_entity_dispatcher(
                    entity_id, Envelope(msgtype=MsgType.NOTIFY_DESTROY_ENTITY, entity_id=entity_id)
                )
                return
            self.create_entity_locally(type_name, entity_id=entity_id, space=space, pos=pos, attrs=data)

        future.add_done_callback(loaded)

    def destroy_entity(self, entity: Entity) -> None:
        """GoWorld's destroy sequence (§4.12), without the re-entrant second on_destroy."""
        if entity.destroyed or getattr(entity, "_destroying", False):
            return
        entity._destroying = True
        if isinstance(entity, Space):
            entity._safe_hook("on_space_destroy")
            for member in list(entity.entities):
                self.destroy_entity(member)
        elif entity.space is not None:
            entity.space._leave(entity)
        entity._safe_hook("on_destroy")
        if entity.client is not None:
            entity.set_client(None)
        if entity.desc.persistent:
            self._save(entity)
        self.retire(entity)
        self.send_to_entity_dispatcher(
            entity.id, Envelope(msgtype=MsgType.NOTIFY_DESTROY_ENTITY, entity_id=entity.id)
        )

    def discard_entity(self, entity: Entity) -> None:
        """Drop a local copy that another game owns: leave the space (neighbours' clients see
        it go), no hooks, no save (the copy is stale), no NOTIFY_DESTROY (the route is not ours)."""
        if entity.space is not None:
            entity.space._leave(entity, quiet=True)
        self.retire(entity)

    def retire(self, entity: Entity) -> None:
        """This process is done with ``entity`` (destroyed, migrated away, or not ours)."""
        entity.destroyed = True
        for record in entity._timers.values():
            if record.handle is not None:
                record.handle.cancel()
        entity._timers.clear()
        entity.attrs.unbind()
        self._forget(entity)

    def _forget(self, entity: Entity) -> None:
        self.entities.pop(entity.id, None)
        if isinstance(entity, Space):
            self.spaces.pop(entity.id, None)
            if self.nil_space is entity:
                self.nil_space = None

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
            entity.space._leave(entity)
        space._enter(entity, pos)

    def mark_sync(self, entity: Entity) -> None:
        self._sync_dirty.append(entity)

    def collect_syncs(self) -> None:
        """Send pending position/yaw changes to the clients that see them (§4.6)."""
        dirty, self._sync_dirty = self._sync_dirty, []
        if not dirty:
            return
        per_gate: dict[int, bytearray] = {}
        pack_pos = _POS.pack
        for entity in dirty:
            flags = entity._sync
            entity._sync = 0
            if not flags or entity.destroyed:
                continue
            p = entity.position
            record = entity.id.encode("latin-1") + pack_pos(p.x, p.y, p.z, entity.yaw)
            if flags & SYNC_OWN and entity.client is not None:
                c = entity.client
                buf = per_gate.get(c.gate_id)
                if buf is None:
                    buf = per_gate[c.gate_id] = bytearray()
                buf += c.id_bytes
                buf += record
            if flags & SYNC_NEIGHBOURS:
                for other in entity.interested_in:
                    oc = other.client
                    if oc is None:
                        continue
                    buf = per_gate.get(oc.gate_id)
                    if buf is None:
                        buf = per_gate[oc.gate_id] = bytearray()
                    buf += oc.id_bytes
                    buf += record
        for gate_id, buf in per_gate.items():
            self._send(
                (gate_id - 1) % self.num_dispatchers + 1,
                Envelope(
                    msgtype=MsgType.SYNC_POSITION_YAW_ON_CLIENTS, gate_id=gate_id, payload=bytes(buf)
                ),
            )

    # ---- calls ---------------------------------------------------------------------------

    def call(self, entity_id: str, method: str, args: tuple[Any, ...]) -> None:
        entity = self.entities.get(entity_id)
        if entity is not None:
            self.post(lambda: self.invoke(entity, method, list(args), None))
            return
        self.send_to_entity_dispatcher(
            entity_id,
            Envelope(
                msgtype=MsgType.CALL_ENTITY_METHOD,
                entity_id=entity_id,
                name=method,
                payload=codec.encode_args(args),
            ),
        )

    def call_nil_spaces(self, method: str, args: tuple[Any, ...]) -> None:
        """Call ``method`` on every game's nil space: dispatcher 1 sends it to the other games,
        this game's own is posted."""
        self.send_to_dispatcher(
            1,
            Envelope(
                msgtype=MsgType.CALL_NIL_SPACES,
                game_id=self.game_id,
                name=method,
                payload=codec.encode_args(args),
            ),
        )
        if self.nil_space is not None:
            nil = self.nil_space
            self.post(lambda: self.invoke(nil, method, list(args), None))

    def invoke(
        self, entity: Entity, method_name: str, args: list[Any] | tuple[Any, ...], client_id: str | None
    ) -> None:
        """Run an RPC on a local entity. ``client_id`` is set for calls from clients."""
        if entity.destroyed:
            logger.warning("call %s on destroyed %r: dropped", method_name, entity)
            return
        method: RpcMethod | None = entity.desc.rpcs.get(method_name)
        if method is None:
            logger.warning("%r has no RPC %r: call dropped", entity, method_name)
            return
        if client_id is not None:
            own = entity.client is not None and entity.client.client_id == client_id
            if not (method.all_clients or (own and method.client)):
                logger.warning(
                    "client %s may not call %r.%s: dropped", client_id, entity, method_name
                )
                return
        try:
            bound = method.bind_args(args)
        except EntityError as exc:
            logger.warning("call %r.%s dropped: %s", entity, method_name, exc)
            return
        try:
            getattr(entity, method.attr_name)(*bound)
        except Exception:
            logger.exception("%r.%s raised", entity, method_name)

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
            _run_posted(posted.popleft())
            ran += 1
        return ran

    def track(self, future: asyncio.Future[Any]) -> asyncio.Future[Any]:
        """Remember an asynchronous operation until its callbacks have run."""
        self.pending_async.add(future)
        future.add_done_callback(lambda f: self.loop.call_soon(self.pending_async.discard, f))
        return future

    def add_global_timer(self, interval: float, fn: Callable[[], Any]) -> GlobalTimer:
        return GlobalTimer(self.loop, interval, fn)

    # ---- timers --------------------------------------------------------------------------

    def add_entity_timer(
        self, entity: Entity, interval: float, method: str, args: tuple[Any, ...], *, repeat: bool
    ) -> int:
        if not callable(getattr(entity, method, None)):
            raise EntityError(f"{entity!r} has no method {method!r} for a timer")
        interval = max(float(interval), MIN_TIMER_INTERVAL if repeat else 0.0)
        self._timer_seq += 1
        tid = self._timer_seq
        record = TimerRecord(method, tuple(args), time.time() + interval, interval, repeat)
        entity._timers[tid] = record
        self._arm(entity, tid, record)
        return tid

    def _arm(self, entity: Entity, tid: int, record: TimerRecord) -> None:
        delay = max(0.0, record.fire_at - time.time())
        record.handle = self.loop.call_later(delay, self._fire, entity, tid)

    def _fire(self, entity: Entity, tid: int) -> None:
        record = entity._timers.get(tid)
        if record is None or entity.destroyed or self.halted:
            return
        if record.repeat:
            record.fire_at += record.interval
            now = time.time()
            if record.fire_at < now:  # fell behind: skip missed periods, keep the phase
                missed = int((now - record.fire_at) // record.interval) + 1
                record.fire_at += missed * record.interval
            self._arm(entity, tid, record)
        else:
            del entity._timers[tid]
        try:
            getattr(entity, record.method)(*record.args)
        except Exception:
            logger.exception("%r timer %s raised", entity, record.method)

    def cancel_entity_timer(self, entity: Entity, timer_id: int) -> None:
        record = entity._timers.pop(timer_id, None)
        if record is not None and record.handle is not None:
            record.handle.cancel()

    # ---- kvreg ---------------------------------------------------------------------------

    def kvreg_register(self, key: str, value: str, *, force: bool) -> None:
        did = zlib.crc32(key.encode("utf-8")) % self.num_dispatchers + 1
        self._send(
            did, Envelope(msgtype=MsgType.KVREG_REGISTER, name=key, payload=pack([value, force]))
        )


def _run_posted(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except Exception:
        logger.exception("posted callback %r raised", fn)


class GlobalTimer:
    """A repeating timer for a plain function (not saved by freeze: use entity timers)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float, fn: Callable[[], Any]) -> None:
        self._loop = loop
        self._interval = max(interval, MIN_TIMER_INTERVAL)
        self._fn = fn
        self._handle: asyncio.TimerHandle | None = loop.call_later(self._interval, self._fire)

    def _fire(self) -> None:
        self._handle = self._loop.call_later(self._interval, self._fire)
        _run_posted(self._fn)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
