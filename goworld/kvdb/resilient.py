"""A KVDB that survives its backend's outages: queue, retry with backoff, keep call order.

The behaviour is that of the resilient entity storage (:mod:`goworld.storage.resilient`, which
holds the shared :class:`~goworld.storage.resilient.RetryQueue`): :func:`goworld.kvdb.open_kvdb`
wraps every real backend in :class:`ResilientKVDB`. ``put`` and ``get_or_put`` are writes (retried
until they land), ``get`` and ``get_range`` are reads (they fail with
:class:`~goworld.errors.StorageError` once ``read_timeout`` old). One WARNING line when an outage
starts and one INFO line when it ends, on the ``goworld.storage`` logger.
"""

from __future__ import annotations

import asyncio
from typing import Any

from goworld.kvdb.base import KVDB, check_str
from goworld.storage.resilient import (
    READ,
    SCAN,
    UPDATE,
    WRITE,
    RetryQueue,
    RetryStatistics,
    failing_probe,
)

__all__ = ["ResilientKVDB"]


class ResilientKVDB:
    """A :class:`~goworld.kvdb.base.KVDB` wrapper; ``inner`` is the real backend.

    Keyword arguments go to :class:`~goworld.storage.resilient.RetryQueue` (``read_timeout``,
    ``close_timeout``, ``backoff_min``, ``backoff_max``).
    """

    def __init__(self, inner: KVDB, *, describe: str | None = None, **options: Any) -> None:
        self.inner = inner
        name = describe or getattr(inner, "describe", None) or type(inner).__name__
        self._queue = RetryQueue(
            describe=str(name), close_inner=inner.close, failing=failing_probe(inner), **options
        )

    @property
    def describe(self) -> str:
        return self._queue.describe

    def statistics(self) -> RetryStatistics:
        return self._queue.statistics()

    def get(self, key: str) -> asyncio.Future[str | None]:
        check_str("key", key)
        return self._queue.submit(
            f"get {key!r}", kind=READ, key=key, fn=self.inner.get, args=(key,)
        )

    def put(self, key: str, value: str) -> asyncio.Future[None]:
        check_str("key", key)
        check_str("value", value)
        return self._queue.submit(
            f"put {key!r}", kind=WRITE, key=key, fn=self.inner.put, args=(key, value)
        )

    def get_or_put(self, key: str, value: str) -> asyncio.Future[str | None]:
        check_str("key", key)
        check_str("value", value)

        def adapt(result: str | None) -> str | None:
            # A re-run finding our own value: an earlier attempt stored it (see the module docs
            # of goworld.storage.resilient).
            return None if result == value else result

        return self._queue.submit(
            f"get_or_put {key!r}",
            kind=UPDATE,
            key=key,
            fn=self.inner.get_or_put,
            args=(key, value),
            adapt=adapt,
        )

    def get_range(self, begin: str, end: str | None) -> asyncio.Future[list[tuple[str, str]]]:
        check_str("begin", begin)
        if end is not None:
            check_str("end", end)
        return self._queue.submit(
            f"get_range [{begin!r}, {end!r})",
            kind=SCAN,
            key=None,
            fn=self.inner.get_range,
            args=(begin, end),
        )

    async def close(self) -> None:
        await self._queue.close()
