"""In-memory entity storage for unit tests of the game runtime.

Same contract as every backend (:mod:`goworld.storage.base`): records are kept as msgpack
bytes, so what comes back is exactly what the SQLite backend would return (a deep copy,
tuples as lists, bytes as bytes), and unserialisable data fails the same way. Operations
complete at once, in call order; the returned futures are already done.

:meth:`MemoryEntityStorage.new_handle` opens a second handle on the same records, as a
second process opening the same database would (for "close, then reopen" tests or several
games in one process).
"""

from __future__ import annotations

import asyncio
from typing import TypeVar

from goworld.errors import StorageError
from goworld.storage.base import EntityData, check_name, pack_data, unpack_data

__all__ = ["MemoryEntityStorage"]

T = TypeVar("T")


def _done(value: T) -> asyncio.Future[T]:
    future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
    future.set_result(value)
    return future


class MemoryEntityStorage:
    """:class:`~goworld.storage.base.EntityStorage` kept in dicts."""

    def __init__(self, records: dict[str, dict[str, bytes]] | None = None) -> None:
        # type name -> entity id -> msgpack record; shared between handles
        self._records: dict[str, dict[str, bytes]] = {} if records is None else records
        self._closed = False

    def new_handle(self) -> MemoryEntityStorage:
        """Another open storage on the same records."""
        return MemoryEntityStorage(self._records)

    def save(self, type_name: str, entity_id: str, data: EntityData) -> asyncio.Future[None]:
        self._check_open("save", type_name, entity_id)
        blob = pack_data(data)
        future = _done(None)
        self._records.setdefault(type_name, {})[entity_id] = blob
        return future

    def load(self, type_name: str, entity_id: str) -> asyncio.Future[EntityData | None]:
        self._check_open("load", type_name, entity_id)
        blob = self._records.get(type_name, {}).get(entity_id)
        return _done(None if blob is None else unpack_data(blob))

    def exists(self, type_name: str, entity_id: str) -> asyncio.Future[bool]:
        self._check_open("exists", type_name, entity_id)
        return _done(entity_id in self._records.get(type_name, {}))

    def list_ids(self, type_name: str) -> asyncio.Future[list[str]]:
        self._check_open("list_ids", type_name)
        return _done(sorted(self._records.get(type_name, {})))

    async def close(self) -> None:
        self._closed = True

    def _check_open(self, op: str, type_name: str, entity_id: str | None = None) -> None:
        check_name("type_name", type_name)
        if entity_id is not None:
            check_name("entity_id", entity_id)
        if self._closed:
            raise StorageError(f"memory storage: {op} {type_name}: the backend is closed")
