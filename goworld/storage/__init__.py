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

Backends are imported lazily, so ``import goworld.storage`` loads no driver. The contract
every backend keeps is in :mod:`goworld.storage.base`.
"""

from __future__ import annotations

from typing import Any

from goworld.config import StorageConfig
from goworld.errors import StorageError
from goworld.storage.base import EntityData, EntityStorage

__all__ = ["EntityData", "EntityStorage", "open_storage"]


def open_storage(cfg: StorageConfig, **resilience: Any) -> EntityStorage:
    """Create the backend ``cfg.type`` names. It connects on first use, so this never blocks.

    ``resilience`` goes to the wrapper (``read_timeout``, ``close_timeout``, ``backoff_min``,
    ``backoff_max``; see :class:`~goworld.storage.resilient.RetryQueue`).

    Raises:
        StorageError: the type is unknown or not available yet, or its settings are unusable.
    """
    inner: EntityStorage
    if cfg.type == "sqlite":
        if cfg.path is None:
            raise StorageError("[storage] type = sqlite needs a path")
        from goworld.storage.sqlite import SQLiteEntityStorage

        inner = SQLiteEntityStorage(cfg.path)
        describe = f"sqlite storage {cfg.path}"
    elif cfg.type == "redis":
        from goworld.storage.redis import RedisEntityStorage

        try:
            redis_storage = RedisEntityStorage(cfg.url, cfg.redis_db)
        except ValueError as exc:
            raise StorageError(f"[storage] type = redis: url {cfg.url!r}: {exc}") from exc
        inner, describe = redis_storage, redis_storage.describe
    elif cfg.type == "memory":
        from goworld.storage.memory import MemoryEntityStorage

        return MemoryEntityStorage()
    elif cfg.type == "mongodb":
        from goworld.storage.mongodb import MongoDBEntityStorage

        mongo_storage = MongoDBEntityStorage(cfg.url, cfg.db)
        inner, describe = mongo_storage, mongo_storage.describe
    else:
        raise StorageError(f"[storage] type = {cfg.type!r}: unknown storage type")
    from goworld.storage.resilient import ResilientEntityStorage

    return ResilientEntityStorage(inner, describe=describe, **resilience)
