"""The KVDB interface every backend implements: a string -> string map with ranges.

Contract (checked by ``tests/goworld/kvdb/test_kvdb_contract.py`` for every backend)
    * Every operation is **submitted when the method is called** and returns an
      :class:`asyncio.Future`; awaiting it is optional. Operations take effect in call order.
      Do not wrap the result in :func:`asyncio.create_task` (it is not a coroutine).
    * ``get`` returns ``None`` for a missing key. GoWorld returns ``""``; a facade that
      mimics GoWorld maps ``None`` to ``""``. Here ``""`` is an ordinary value, distinct from
      missing.
    * ``get_or_put(key, value)`` is atomic, across processes too: if ``key`` is missing it
      stores ``value`` and returns ``None``; otherwise it returns the current value and writes
      nothing. (GoWorld also overwrites a stored ``""``; we do not.)
    * ``get_range(begin, end)`` returns the ``(key, value)`` pairs with ``begin <= key < end``,
      ascending by key in Unicode code-point order (which is UTF-8 byte order). ``end=None``
      means no upper bound; ``end=""`` is a real bound, so the range is empty, as in GoWorld.
      ``begin >= end`` gives an empty list.
    * :meth:`KVDB.close` waits until every operation called before it is done; operations
      called after it raise :class:`~goworld.errors.StorageError` at once.
    * A backend failure sets :class:`~goworld.errors.StorageError` (chained with ``from``) on
      the returned future. A key or value that is not a ``str`` (``TypeError``) or holds a lone
      surrogate (``ValueError``) raises at call time.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, runtime_checkable

__all__ = ["KVDB", "check_str"]


@runtime_checkable
class KVDB(Protocol):
    """A string -> string store. See the module docs."""

    def get(self, key: str) -> asyncio.Future[str | None]:
        """The value of ``key``, or ``None`` when it is missing."""
        ...

    def put(self, key: str, value: str) -> asyncio.Future[None]:
        """Set ``key`` to ``value``."""
        ...

    def get_or_put(self, key: str, value: str) -> asyncio.Future[str | None]:
        """Atomically: ``None`` after storing ``value`` if ``key`` was missing, else its value."""
        ...

    def get_range(self, begin: str, end: str | None) -> asyncio.Future[list[tuple[str, str]]]:
        """Pairs with ``begin <= key < end`` (no upper bound if ``end`` is None), ascending."""
        ...

    async def close(self) -> None:
        """Finish every queued operation, then release the backend. Idempotent."""
        ...


def check_str(what: str, value: object) -> str:
    """Return ``value`` if it is a ``str`` that UTF-8 can encode, else raise."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{what} is not valid Unicode: {exc}") from exc
    return value
