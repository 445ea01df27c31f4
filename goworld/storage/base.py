"""The entity-storage interface every backend implements, and the shared record codec.

Contract (checked by ``tests/goworld/storage/test_storage_contract.py`` for every backend)
    * Every operation is **submitted when the method is called** and returns an
      :class:`asyncio.Future`; awaiting it is optional. So plain (non-``async``) game code can
      call ``storage.save(...)`` and move on, or attach ``add_done_callback``. Do not wrap the
      result in :func:`asyncio.create_task` (it is not a coroutine); ``await``,
      :func:`asyncio.gather` and :func:`asyncio.ensure_future` all work.
    * Operations take effect **in call order**: a ``load`` called after a ``save`` of the same
      record sees that save even if nobody awaited it. Cancelling a returned future does not
      cancel the operation.
    * ``save`` snapshots ``data`` when it is called (it is serialised on the spot), so the
      caller may mutate it afterwards; ``load`` returns a fresh structure each time.
    * Each ``(type_name, entity_id)`` record is replaced atomically: after a crash it holds
      either the old or the new data, never a mix.
    * Entity types are separate namespaces; ``list_ids`` returns ids in ascending order.
    * :meth:`EntityStorage.close` waits until every operation called before it is done;
      operations called after it raise :class:`~goworld.errors.StorageError` at once.
    * A backend failure sets :class:`~goworld.errors.StorageError` (chained with ``from``) on
      the returned future. Bad arguments (a non-``str`` or empty name, data that msgpack
      cannot encode) raise ``TypeError``/``ValueError`` at call time instead.

Data is a nested plain structure: dict/list/tuple of ``int`` (-2**63 .. 2**64-1), ``float``,
``str``, ``bool``, ``bytes``, ``None``. It is stored as msgpack (``use_bin_type=True``), so
bytes stay bytes, str stays str, ints round-trip exactly, and tuples come back as lists.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, Protocol, runtime_checkable

import msgpack

__all__ = ["EntityData", "EntityStorage", "check_name", "pack_data", "redact_url", "unpack_data"]

#: A record as saved and loaded: attribute name -> nested plain value.
EntityData = dict[str, Any]


@runtime_checkable
class EntityStorage(Protocol):
    """Persistent entity records keyed by ``(type_name, entity_id)``. See the module docs."""

    def save(self, type_name: str, entity_id: str, data: EntityData) -> asyncio.Future[None]:
        """Insert or replace the record."""
        ...

    def load(self, type_name: str, entity_id: str) -> asyncio.Future[EntityData | None]:
        """The record, or ``None`` when there is none."""
        ...

    def exists(self, type_name: str, entity_id: str) -> asyncio.Future[bool]:
        """Whether the record exists."""
        ...

    def list_ids(self, type_name: str) -> asyncio.Future[list[str]]:
        """Every entity id saved under ``type_name``, ascending."""
        ...

    async def close(self) -> None:
        """Finish every queued operation, then release the backend. Idempotent."""
        ...


def check_name(what: str, value: object) -> str:
    """Return ``value`` if it is a non-empty ``str`` that UTF-8 can encode, else raise."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    if not value:
        raise ValueError(f"{what} must not be empty")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{what} {value!r} is not valid Unicode: {exc}") from exc
    return value


def pack_data(data: EntityData) -> bytes:
    """Serialise a record. ``TypeError`` for unsupported types, ``ValueError`` for big ints."""
    if not isinstance(data, dict):
        raise TypeError(f"entity data must be a dict, not {type(data).__name__}")
    try:
        packed: bytes = msgpack.packb(data, use_bin_type=True)
    except OverflowError as exc:
        raise ValueError(f"entity data holds an int outside -2**63..2**64-1: {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"entity data cannot be serialised: {exc}") from exc
    return packed


def unpack_data(blob: bytes) -> EntityData:
    """Deserialise a record written by :func:`pack_data`; ``ValueError`` if it is not one."""
    try:
        data = msgpack.unpackb(blob, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types on corrupt input
        raise ValueError(f"corrupt entity record ({len(blob)} bytes): {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"corrupt entity record: a {type(data).__name__}, not a map")
    return data


def redact_url(url: str) -> str:
    """``url`` without its ``user:password@`` (log lines and errors must not carry a password)."""
    return re.sub(r"//[^/@]*@", "//", url)
