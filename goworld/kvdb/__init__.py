"""KVDB: a string -> string store with get / put / get-or-put / range, behind one interface.

:func:`open_kvdb` picks the backend named by ``[kvdb] type``:

* ``sqlite`` — the embedded default (:mod:`goworld.kvdb.sqlite`);
* ``memory`` — a dict, for tests (:mod:`goworld.kvdb.memory`; not accepted in goworld.ini);
* ``mongodb``, ``redis`` — not available yet (:class:`~goworld.errors.StorageError`).

A missing ``[kvdb]`` section disables KVDB (``ClusterConfig.kvdb is None``): callers check
that before calling :func:`open_kvdb`. Backends are imported lazily. The contract every
backend keeps is in :mod:`goworld.kvdb.base`.
"""

from __future__ import annotations

from goworld.config import KVDBConfig
from goworld.errors import StorageError
from goworld.kvdb.base import KVDB

__all__ = ["KVDB", "open_kvdb"]


def open_kvdb(cfg: KVDBConfig) -> KVDB:
    """Create the backend ``cfg.type`` names. It connects on first use, so this never blocks.

    Raises:
        StorageError: the type is unknown or not available yet.
    """
    if cfg.type == "sqlite":
        if cfg.path is None:
            raise StorageError("[kvdb] type = sqlite needs a path")
        from goworld.kvdb.sqlite import SQLiteKVDB

        return SQLiteKVDB(cfg.path)
    if cfg.type == "memory":
        from goworld.kvdb.memory import MemoryKVDB

        return MemoryKVDB()
    if cfg.type in ("mongodb", "redis"):
        raise StorageError(f"[kvdb] type = {cfg.type}: that backend is not available yet")
    raise StorageError(f"[kvdb] type = {cfg.type!r}: unknown kvdb type")
