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
that before calling :func:`open_kvdb`. The table of backends is :data:`BACKENDS`, opened by
the factory shared with entity storage (:mod:`goworld.storage.factory`); backends are imported
lazily. The contract every backend keeps is in :mod:`goworld.kvdb.base`.
"""

from __future__ import annotations

from typing import Any

from goworld.config import KVDBConfig
from goworld.kvdb.base import KVDB
from goworld.storage.factory import Backend, open_backend

__all__ = ["BACKENDS", "KVDB", "open_kvdb"]


def _mongodb_args(cfg: KVDBConfig) -> tuple[str, str, str]:
    return cfg.url, cfg.db, cfg.collection


#: ``[kvdb] type`` -> how to build it (see :mod:`goworld.storage.factory`).
BACKENDS: dict[str, Backend] = {
    "sqlite": Backend("goworld.kvdb.sqlite:SQLiteKVDB", lambda c: (c.path,), needs_path=True),
    "redis": Backend(
        "goworld.kvdb.redis:RedisKVDB", lambda c: (c.url, c.redis_db), checks_url=True
    ),
    "memory": Backend("goworld.kvdb.memory:MemoryKVDB", resilient=False),
    "mongodb": Backend("goworld.kvdb.mongodb:MongoDBKVDB", _mongodb_args),
}


def open_kvdb(cfg: KVDBConfig, **resilience: Any) -> KVDB:
    """Create the backend ``cfg.type`` names. It connects on first use, so this never blocks.

    ``resilience`` goes to the wrapper (``read_timeout``, ``close_timeout``, ``backoff_min``,
    ``backoff_max``; see :class:`~goworld.storage.resilient.RetryQueue`).

    Raises:
        StorageError: the type is unknown or not available yet, or its settings are unusable.
    """
    kvdb: KVDB = open_backend(
        "kvdb", cfg, BACKENDS, "goworld.kvdb.resilient:ResilientKVDB", **resilience
    )
    return kvdb
