"""KVDB: a string -> string store with get / put / get-or-put / range, behind one interface.

:func:`open_kvdb` picks the backend named by ``[kvdb] type``:

* ``sqlite`` — the embedded default (:mod:`goworld.kvdb.sqlite`);
* ``redis`` — ``url`` and ``db`` index (:mod:`goworld.kvdb.redis`), with ``get_range``;
* ``memory`` — a dict, for tests (:mod:`goworld.kvdb.memory`; not accepted in goworld.ini);
* ``mongodb`` — ``url``, ``db`` and ``collection``, GoWorld's layout (:mod:`goworld.kvdb.mongodb`).

Every real backend (all but ``memory``) comes wrapped in
:class:`~goworld.kvdb.resilient.ResilientKVDB`: an outage never blocks the game loop, writes
queue and are retried with backoff in call order, reads wait up to a deadline (see
:mod:`goworld.storage.resilient`). The wrapped backend is its ``inner`` attribute.

A missing ``[kvdb]`` section disables KVDB (``ClusterConfig.kvdb is None``): callers check
that before calling :func:`open_kvdb`. Backends are imported lazily. The contract every
backend keeps is in :mod:`goworld.kvdb.base`.
"""

from __future__ import annotations

from typing import Any

from goworld.config import KVDBConfig
from goworld.errors import StorageError
from goworld.kvdb.base import KVDB

__all__ = ["KVDB", "open_kvdb"]


def open_kvdb(cfg: KVDBConfig, **resilience: Any) -> KVDB:
    """Create the backend ``cfg.type`` names. It connects on first use, so this never blocks.

    ``resilience`` goes to the wrapper (``read_timeout``, ``close_timeout``, ``backoff_min``,
    ``backoff_max``; see :class:`~goworld.storage.resilient.RetryQueue`).

    Raises:
        StorageError: the type is unknown or not available yet, or its settings are unusable.
    """
    inner: KVDB
    if cfg.type == "sqlite":
        if cfg.path is None:
            raise StorageError("[kvdb] type = sqlite needs a path")
        from goworld.kvdb.sqlite import SQLiteKVDB

        inner = SQLiteKVDB(cfg.path)
        describe = f"sqlite kvdb {cfg.path}"
    elif cfg.type == "redis":
        from goworld.kvdb.redis import RedisKVDB

        try:
            redis_kvdb = RedisKVDB(cfg.url, cfg.redis_db)
        except ValueError as exc:
            raise StorageError(f"[kvdb] type = redis: url {cfg.url!r}: {exc}") from exc
        inner, describe = redis_kvdb, redis_kvdb.describe
    elif cfg.type == "memory":
        from goworld.kvdb.memory import MemoryKVDB

        return MemoryKVDB()
    elif cfg.type == "mongodb":
        from goworld.kvdb.mongodb import MongoDBKVDB

        mongo_kvdb = MongoDBKVDB(cfg.url, cfg.db, cfg.collection)
        inner, describe = mongo_kvdb, mongo_kvdb.describe
    else:
        raise StorageError(f"[kvdb] type = {cfg.type!r}: unknown kvdb type")
    from goworld.kvdb.resilient import ResilientKVDB

    return ResilientKVDB(inner, describe=describe, **resilience)
