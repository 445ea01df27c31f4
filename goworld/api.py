"""The functions game code calls (GoWorld's ``goworld.go`` in Pythonic form, PROTOCOL.md §12.2).

Registration functions work at import time of the game package (the loader activates a
:class:`~goworld.entity.registry.Registry` first). Everything else needs the running game's
runtime, bound by ``python -m game``. Callbacks (KVDB, ``exists``) run on the game loop.

Messages to the cluster are the runtime's to build and send (``create_entity_somewhere``,
``load_entity_somewhere``, ``call_nil_spaces`` on :class:`~goworld.entity.runtime.Runtime`), so
``import goworld`` loads neither gRPC nor protobuf.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from goworld.entity import runtime as _runtime
from goworld.entity.attrs import ListAttr, MapAttr
from goworld.entity.entity import Entity
from goworld.entity.registry import SPACE_TYPE_NAME, EntityTypeDesc, Registry
from goworld.entity.space import Space
from goworld.errors import EntityError
from goworld.proto.ids import nil_space_id

if TYPE_CHECKING:
    from goworld.entity.runtime import KeyValueStore, Runtime

logger = logging.getLogger("goworld.game")

_registry: Registry | None = None


# ---- registration --------------------------------------------------------------------------


def activate_registry(registry: Registry | None) -> None:
    """Used by the loader: registrations go to ``registry`` while a package is imported."""
    global _registry
    _registry = registry


def _reg() -> Registry:
    if _registry is None:
        raise EntityError("register_* must run while the game package is loaded by goworld")
    return _registry


def register_entity(cls: type, name: str | None = None) -> EntityTypeDesc:
    """Register an Entity subclass under ``name`` (default: the class name)."""
    return _reg().register_entity(cls, name)


def register_space(cls: type) -> EntityTypeDesc:
    """Register the game's Space subclass (at most one)."""
    return _reg().register_space(cls)


def register_service(cls: type, shards: int, name: str | None = None) -> EntityTypeDesc:
    """Register a sharded service entity type; the cluster creates each shard once."""
    return _reg().register_service(cls, shards, name)


# ---- entities and spaces -------------------------------------------------------------------


def _rt() -> Runtime:
    return _runtime.current()


def create_entity_locally(type_name: str, attrs: dict[str, Any] | None = None) -> Entity:
    return _rt().create_entity_locally(type_name, attrs=attrs)


def create_entity_on_game(game_id: int, type_name: str, attrs: dict[str, Any] | None = None) -> str:
    """Create an entity on game ``game_id`` (0: the least loaded game); returns its id at once."""
    return _rt().create_entity_somewhere(game_id, type_name, attrs)


def create_entity_anywhere(type_name: str, attrs: dict[str, Any] | None = None) -> str:
    """Create an entity on the least loaded game; returns its id at once."""
    return create_entity_on_game(0, type_name, attrs)


def create_space_locally(kind: int) -> Space:
    _check_kind(kind)
    return _rt().create_space_locally(kind)


def create_space_on_game(game_id: int, kind: int) -> str:
    _check_kind(kind)
    return create_entity_on_game(game_id, SPACE_TYPE_NAME, {"_K": kind})


def create_space_anywhere(kind: int) -> str:
    _check_kind(kind)
    return create_entity_on_game(0, SPACE_TYPE_NAME, {"_K": kind})


def _check_kind(kind: int) -> None:
    if kind == 0:
        raise EntityError("space kind 0 is the nil space; use a kind != 0")


def load_entity_on_game(type_name: str, entity_id: str, game_id: int) -> None:
    _rt().load_entity_somewhere(type_name, entity_id, game_id)


def load_entity_anywhere(type_name: str, entity_id: str) -> None:
    """Load a persistent entity on some game; a no-op if it already exists anywhere."""
    load_entity_on_game(type_name, entity_id, 0)


def load_entity_locally(type_name: str, entity_id: str) -> None:
    _rt().load_entity_locally(type_name, entity_id)


def exists(type_name: str, entity_id: str, callback: Callable[[bool, Exception | None], Any]) -> None:
    """Ask storage whether the entity was ever saved; ``callback(found, error)``."""
    _with_callback(_rt().storage_exists(type_name, entity_id), callback)


def get_entity(entity_id: str) -> Entity | None:
    return _rt().entities.get(entity_id)


def get_space(space_id: str) -> Space | None:
    return _rt().spaces.get(space_id)


def entities() -> dict[str, Entity]:
    return dict(_rt().entities)


def get_game_id() -> int:
    return _rt().game_id


def get_online_games() -> set[int]:
    return set(_rt().online_games)


def get_nil_space_id(game_id: int) -> str:
    return nil_space_id(game_id)


def get_nil_space() -> Space | None:
    return _rt().nil_space


def call(entity_id: str, method: str, *args: Any) -> None:
    """Call an ``@rpc`` method of an entity wherever it is (local calls are posted)."""
    _rt().call(entity_id, method, args)


def call_nil_spaces(method: str, *args: Any) -> None:
    """Call ``method`` on the nil space of every game, this one included."""
    _rt().call_nil_spaces(method, args)


# ---- lockstep rooms ------------------------------------------------------------------------


def create_lockstep_room(
    owner: Entity,
    members: list[int],
    *,
    on_created: str = "OnLockstepRoom",
    on_result: str = "OnLockstepResult",
    seed: int = 0,
) -> None:
    """Ask the cluster's lockstep service (``[lockstep]`` in goworld.ini) for a frame-sync room
    for the player ids ``members`` (seat order; 1 to ``max_players`` of them).

    ``owner.<on_created>(info)`` is called with ``{"room": id, "tokens": {player: token},
    "kcp": "host:port", "ws": "ws://host:port/path"}`` (each player connects with its token),
    or ``{"error": reason}``. When the room ends, ``owner.<on_result>(result)`` with
    ``{"room", "reason", "results": {player: winner}, "frames", "members", "started",
    "dropped_inputs"}``. Both are ordinary entity calls: they follow the owner if it migrates
    and wait while its game reloads, so the methods must be ``@rpc`` methods.
    """
    if not members:
        raise EntityError("a lockstep room needs at least one member")
    ids = [int(m) for m in members]
    if any(not 0 <= m < 1 << 64 for m in ids):
        raise EntityError("lockstep player ids are unsigned 64-bit integers")
    _rt().create_lockstep_room(owner.id, ids, on_created, on_result, int(seed))


# ---- services ------------------------------------------------------------------------------


def call_service_any(name: str, method: str, *args: Any) -> None:
    _rt().services.call_any(name, method, args)


def call_service_all(name: str, method: str, *args: Any) -> None:
    _rt().services.call_all(name, method, args)


def call_service_shard_index(name: str, shard: int, method: str, *args: Any) -> None:
    _rt().services.call_shard(name, shard, method, args)


def call_service_shard_key(name: str, key: str, method: str, *args: Any) -> None:
    _rt().services.call_shard_key(name, key, method, args)


def get_service_entity_id(name: str, shard: int) -> str | None:
    return _rt().services.entity_id(name, shard)


def get_service_shard_count(name: str) -> int:
    return _rt().services.shard_count(name)


def check_service_entities_ready(name: str) -> bool:
    return _rt().services.ready(name)


# ---- KVDB ----------------------------------------------------------------------------------


def _with_callback(future: Any, callback: Callable[..., Any] | None) -> None:
    if callback is None:
        return
    rt = _rt()
    rt.track(future)

    def done(fut: Any) -> None:
        if rt.halted:
            return  # the game froze: this process no longer runs game logic
        try:
            result, error = fut.result(), None
        except Exception as exc:
            result, error = None, exc
        try:
            callback(result, error)
        except Exception:
            logger.exception("callback %r raised", callback)

    future.add_done_callback(done)


def _kvdb() -> KeyValueStore:
    kvdb = _rt().kvdb
    if kvdb is None:
        raise EntityError("KVDB is disabled: configure [kvdb] in goworld.ini")
    return kvdb


def kvdb_get(key: str, callback: Callable[[str | None, Exception | None], Any]) -> None:
    """``callback(value or None, error)``."""
    _with_callback(_kvdb().get(key), callback)


def kvdb_put(key: str, value: str, callback: Callable[[None, Exception | None], Any] | None = None) -> None:
    _with_callback(_kvdb().put(key, value), callback)


def kvdb_get_or_put(
    key: str, value: str, callback: Callable[[str | None, Exception | None], Any]
) -> None:
    """Put ``value`` if ``key`` is missing; ``callback(previous value or None, error)``."""
    _with_callback(_kvdb().get_or_put(key, value), callback)


def kvdb_get_range(
    begin: str, end: str, callback: Callable[[list[tuple[str, str]] | None, Exception | None], Any]
) -> None:
    """Keys in ``[begin, end)`` in order; ``callback(items, error)``."""
    _with_callback(_kvdb().get_range(begin, end), callback)


# ---- time ----------------------------------------------------------------------------------


def post(fn: Callable[[], Any]) -> None:
    """Run ``fn`` on the game loop soon (after the current callback)."""
    _rt().post(fn)


def add_callback(delay: float, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` once after ``delay`` seconds (not frozen by reload: use entity timers)."""
    return _rt().add_callback(delay, fn)


def add_timer(interval: float, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` every ``interval`` seconds; returns a handle with ``cancel()``."""
    return _rt().add_global_timer(interval, fn)


def register_crontab(
    minute: int, hour: int, day: int, month: int, dow: int, fn: Callable[[], Any]
) -> None:
    """Run ``fn`` when the wall clock matches (a negative value ``-n`` means "every n")."""
    _rt().register_crontab(minute, hour, day, month, dow, fn)


def map_attr() -> MapAttr:
    return MapAttr()


def list_attr() -> ListAttr:
    return ListAttr()


__all__ = [
    "activate_registry",
    "register_entity",
    "register_space",
    "register_service",
    "create_entity_locally",
    "create_entity_on_game",
    "create_entity_anywhere",
    "create_space_locally",
    "create_space_on_game",
    "create_space_anywhere",
    "load_entity_on_game",
    "load_entity_anywhere",
    "load_entity_locally",
    "exists",
    "get_entity",
    "get_space",
    "entities",
    "get_game_id",
    "get_online_games",
    "get_nil_space_id",
    "get_nil_space",
    "call",
    "call_nil_spaces",
    "create_lockstep_room",
    "call_service_any",
    "call_service_all",
    "call_service_shard_index",
    "call_service_shard_key",
    "get_service_entity_id",
    "get_service_shard_count",
    "check_service_entities_ready",
    "kvdb_get",
    "kvdb_put",
    "kvdb_get_or_put",
    "kvdb_get_range",
    "post",
    "add_callback",
    "add_timer",
    "register_crontab",
    "map_attr",
    "list_attr",
]
