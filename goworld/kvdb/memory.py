"""In-memory KVDB for unit tests: same contract as every backend (:mod:`goworld.kvdb.base`).

Operations complete at once, in call order; the returned futures are already done.
:meth:`MemoryKVDB.new_handle` opens a second handle on the same map, as a second process
opening the same database would.
"""

from __future__ import annotations

import asyncio
from typing import TypeVar

from goworld.errors import StorageError
from goworld.kvdb.base import check_str

__all__ = ["MemoryKVDB"]

T = TypeVar("T")


def _done(value: T) -> asyncio.Future[T]:
    future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
    future.set_result(value)
    return future


class MemoryKVDB:
    """:class:`~goworld.kvdb.base.KVDB` kept in a dict."""

    def __init__(self, data: dict[str, str] | None = None) -> None:
        self._data: dict[str, str] = {} if data is None else data  # shared between handles
        self._closed = False

    def new_handle(self) -> MemoryKVDB:
        """Another open KVDB on the same map."""
        return MemoryKVDB(self._data)

    def get(self, key: str) -> asyncio.Future[str | None]:
        self._check_open("get", key)
        return _done(self._data.get(key))

    def put(self, key: str, value: str) -> asyncio.Future[None]:
        self._check_open("put", key, value)
        future = _done(None)
        self._data[key] = value
        return future

    def get_or_put(self, key: str, value: str) -> asyncio.Future[str | None]:
        self._check_open("get_or_put", key, value)
        future = _done(self._data.get(key))
        self._data.setdefault(key, value)
        return future

    def get_range(self, begin: str, end: str | None) -> asyncio.Future[list[tuple[str, str]]]:
        self._check_open("get_range", begin)
        if end is not None:
            check_str("end", end)
        keys = sorted(k for k in self._data if begin <= k and (end is None or k < end))
        return _done([(k, self._data[k]) for k in keys])

    async def close(self) -> None:
        self._closed = True

    def _check_open(self, op: str, key: str, *values: str) -> None:
        check_str("key", key)
        for value in values:
            check_str("value", value)
        if self._closed:
            raise StorageError(f"memory kvdb: {op} {key!r}: the backend is closed")
