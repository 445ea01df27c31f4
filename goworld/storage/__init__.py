"""Entity storage: persistent attributes per entity type and id, behind one interface.

:func:`open_storage` picks the backend named by ``[storage] type``:

* ``sqlite`` — the embedded default (:mod:`goworld.storage.sqlite`);
* ``memory`` — dicts, for tests (:mod:`goworld.storage.memory`; not accepted in goworld.ini);
* ``mongodb``, ``redis`` — not available yet (:class:`~goworld.errors.StorageError`).

Backends are imported lazily, so ``import goworld.storage`` loads no driver. The contract
every backend keeps is in :mod:`goworld.storage.base`.
"""

from __future__ import annotations

from goworld.config import StorageConfig
from goworld.errors import StorageError
from goworld.storage.base import EntityData, EntityStorage

__all__ = ["EntityData", "EntityStorage", "open_storage"]


def open_storage(cfg: StorageConfig) -> EntityStorage:
    """Create the backend ``cfg.type`` names. It connects on first use, so this never blocks.

    Raises:
        StorageError: the type is unknown or not available yet.
    """
    if cfg.type == "sqlite":
        if cfg.path is None:
            raise StorageError("[storage] type = sqlite needs a path")
        from goworld.storage.sqlite import SQLiteEntityStorage

        return SQLiteEntityStorage(cfg.path)
    if cfg.type == "memory":
        from goworld.storage.memory import MemoryEntityStorage

        return MemoryEntityStorage()
    if cfg.type in ("mongodb", "redis"):
        raise StorageError(f"[storage] type = {cfg.type}: that backend is not available yet")
    raise StorageError(f"[storage] type = {cfg.type!r}: unknown storage type")
