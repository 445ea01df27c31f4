"""In-place reload: new code for live entities without restarting the game (``goworld reload --in-place``).

Between two loop callbacks, the game re-imports its package into a fresh registry, checks it
against what is alive, and only if every check passes rebinds each live entity to its new
class (``entity.__class__``). Anything failing — a syntax error, an import error, a bad
registration, an incompatible change — leaves the old code running untouched.

Compatible changes: method bodies, new methods and RPCs, new entity types, hooks, class
constants. Changes that need a full ``goworld reload`` (freeze and restart) instead, because
live state was built under the old declaration: a type that has live entities disappearing,
its attribute flags, ``persistent``, ``aoi_distance``, a service's shard count, or the space type.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TYPE_CHECKING

from game.loader import GamePackageError, load_game_package
from goworld.entity.registry import EntityTypeDesc, Registry

if TYPE_CHECKING:
    from game.runtime import GameRuntime

__all__ = ["reload_in_place", "HotSwapError"]

logger = logging.getLogger("goworld.game")


class HotSwapError(GamePackageError):
    """The new code cannot replace the old one in place."""


def _incompatibility(old: EntityTypeDesc, new: EntityTypeDesc) -> str | None:
    if old.attr_flags != new.attr_flags:
        return f"{old.name}: attribute flags changed ({_diff(old, new)})"
    if old.persistent != new.persistent:
        return f"{old.name}: persistent changed"
    if old.aoi_distance != new.aoi_distance:
        return f"{old.name}: aoi_distance changed"
    if old.service_shards != new.service_shards:
        return f"{old.name}: service shard count changed"
    return None


def _diff(old: EntityTypeDesc, new: EntityTypeDesc) -> str:
    keys = sorted(set(old.attr_flags) | set(new.attr_flags))
    return ", ".join(
        f"{k}: {old.attr_flags.get(k, 0)!s} -> {new.attr_flags.get(k, 0)!s}"
        for k in keys
        if old.attr_flags.get(k) != new.attr_flags.get(k)
    )


def check_compatible(rt: GameRuntime, registry: Registry) -> None:
    live = {entity.desc.name for entity in rt.entities.values()}
    for name in sorted(live):
        new = registry.types.get(name)
        if new is None:
            raise HotSwapError(f"type {name!r} has live entities but the new code does not register it")
        problem = _incompatibility(rt.registry.types[name], new)
        if problem is not None:
            raise HotSwapError(f"{problem}: this change needs a full `goworld reload`")
    for name in rt.registry.services:
        if name not in registry.services:
            raise HotSwapError(f"service {name!r} is no longer registered: needs a full reload")


def reload_in_place(rt: GameRuntime, app: str) -> str:
    """Swap in the package's new code; returns a summary, raises GamePackageError/HotSwapError."""
    started = time.perf_counter()
    package = str(app).rstrip("/").split("/")[-1]
    saved = {m: mod for m, mod in sys.modules.items() if m == package or m.startswith(package + ".")}
    try:
        registry = load_game_package(app, boot_entity=rt.boot_entity)
        check_compatible(rt, registry)
    except GamePackageError:
        for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
            del sys.modules[name]
        sys.modules.update(saved)  # the old modules stay the ones later imports see
        raise
    swapped = 0
    for entity in rt.entities.values():
        desc = registry.types[entity.desc.name]
        if entity.__class__ is not desc.cls:
            entity.__class__ = desc.cls
            swapped += 1
        entity.desc = desc
    rt.registry = registry
    summary = f"{len(registry.types)} types, {swapped} live entities rebound"
    rt.stats.reload.observe(time.perf_counter() - started)
    logger.info("in-place reload: %s", summary)
    return summary
