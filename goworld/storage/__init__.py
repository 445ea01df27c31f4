"""Entity storage: persistent attributes per entity type and id, behind one interface.

:func:`open_storage` picks the backend named by ``[storage] type``:

* ``sqlite`` — the embedded default (:mod:`goworld.storage.sqlite`);
* ``redis`` — ``url`` and ``db`` index (:mod:`goworld.storage.redis`);
* ``memory`` — dicts, for tests (:mod:`goworld.storage.memory`; not accepted in goworld.ini);
* ``mongodb`` — ``url`` and ``db``, GoWorld's layout (:mod:`goworld.storage.mongodb`).

Every real backend (all but ``memory``) comes wrapped in
:class:`~goworld.storage.resilient.ResilientEntityStorage`: an outage never blocks the game
loop, saves queue and are retried with backoff in call order, reads wait up to a deadline, one
log line marks the start and the end of an outage (see :mod:`goworld.storage.resilient`). The
wrapped backend is its ``inner`` attribute.

The table of backends is :data:`BACKENDS`, opened by the factory shared with KVDB
(:mod:`goworld.storage.factory`). Backends are imported lazily, so ``import goworld.storage``
loads no driver. The contract every backend keeps is in :mod:`goworld.storage.base`.
"""

from __future__ import annotations

from typing import Any

from goworld.config import StorageConfig
from goworld.storage.base import EntityData, EntityStorage
from goworld.storage.factory import Backend, open_backend

__all__ = ["BACKENDS", "EntityData", "EntityStorage", "open_storage"]

#: ``[storage] type`` -> how to build it (see :mod:`goworld.storage.factory`).
BACKENDS: dict[str, Backend] = {
    "sqlite": Backend(
        "goworld.storage.sqlite:SQLiteEntityStorage", lambda c: (c.path,), needs_path=True
    ),
    "redis": Backend(
        "goworld.storage.redis:RedisEntityStorage", lambda c: (c.url, c.redis_db), checks_url=True
    ),
    "memory": Backend("goworld.storage.memory:MemoryEntityStorage", resilient=False),
    "mongodb": Backend("goworld.storage.mongodb:MongoDBEntityStorage", lambda c: (c.url, c.db)),
}


def open_storage(cfg: StorageConfig, **resilience: Any) -> EntityStorage:
    """Create the backend ``cfg.type`` names. It connects on first use, so this never blocks.

    ``resilience`` goes to the wrapper (``read_timeout``, ``close_timeout``, ``backoff_min``,
    ``backoff_max``; see :class:`~goworld.storage.resilient.RetryQueue`).

    Raises:
        StorageError: the type is unknown or not available yet, or its settings are unusable.
    """
    storage: EntityStorage = open_backend(
        "storage", cfg, BACKENDS, "goworld.storage.resilient:ResilientEntityStorage", **resilience
    )
    return storage
