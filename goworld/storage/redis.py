"""Redis entity storage through ``redis.asyncio``, and the worker the Redis KVDB shares.

Layout
    One Redis **hash per entity type**, named ``_ENT_<type>``: field = entity id, value = the
    record as msgpack (the same bytes the SQLite backend stores, see
    :mod:`goworld.storage.base`). So:

    * ``save`` is one ``HSET`` — a single command, so a record is replaced atomically;
    * ``load`` / ``exists`` are ``HGET`` / ``HEXISTS``;
    * ``list_ids`` is ``HKEYS`` on that one hash (sorted here): no ``SCAN`` over the key space
      and no secondary index to keep consistent with the records.

    A hash per type keeps type and id apart without any escaping (GoWorld's ``<type>$<id>``
    string keys collide when a name holds a ``$``), and it cannot collide with the KVDB's keys
    (``_KV_<key>`` and ``_KVKEYS_``, :mod:`goworld.kvdb.redis`), so both may share a database.
    A very large type lives in one hash on one server, which suits a single Redis (Redis
    Cluster is not supported).

Connection
    ``url`` is a ``redis://``, ``rediss://`` or ``unix://`` URL; the ``db`` index comes from
    ``[storage] db`` and wins over a database named in the URL (GoWorld also ``SELECT``\\ s it
    after dialling). The client is created on first use inside the running event loop.
    redis-py's own retries are switched off: a failed command fails at once with
    :class:`~goworld.errors.StorageError` (chained to the redis-py error), and the resilient
    wrapper (:mod:`goworld.storage.resilient`), which :func:`goworld.storage.open_storage`
    puts around this backend, decides whether and when to retry.

Ordering and batching
    One worker task per backend instance sends the queued operations in **pipelines** of up to
    ``max_batch`` commands on one connection, one pipeline at a time, so operations apply in
    call order and a burst costs a few round trips. Each pipeline is a ``MULTI``/``EXEC``
    transaction: Redis applies it entirely or not at all, so a server killed while a batch is
    on the wire leaves none of it half-applied (a command failing inside it, e.g. with
    ``WRONGTYPE``, fails alone). If the connection fails, every operation of that pipeline
    fails, and so does every operation queued behind it, untried: failures are a suffix of the
    queue. (The one ambiguous case is a reply lost after ``EXEC`` ran; writes here are
    idempotent, and the wrapper re-runs them all in order.)

Durability
    Acknowledged is only as durable as the server is configured: with ``appendonly yes`` and
    ``appendfsync always`` a write Redis acknowledged survives the server being killed; with
    ``everysec`` (Redis's default for the AOF) the last second or so may be lost, and without
    persistence everything is lost on restart. The retry machinery cannot bring back a write
    the server acknowledged and then lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.connection import ConnectionPool, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from goworld.errors import StorageError
from goworld.storage.base import EntityData, check_name, pack_data, redact_url, unpack_data

__all__ = ["RedisEntityStorage", "RedisWorker", "entity_key"]

T = TypeVar("T")

#: Prefix of the hash holding every record of one entity type.
ENTITY_PREFIX = "_ENT_"


def entity_key(type_name: str) -> str:
    """The Redis hash holding the records of ``type_name``."""
    return ENTITY_PREFIX + type_name


@dataclass(slots=True, eq=False)
class _Op(Generic[T]):
    add: Callable[[Any], object]  # queues this operation's one command on a pipeline
    convert: Callable[[Any], T]  # reply -> result (may raise ValueError for corrupt data)
    what: str
    future: asyncio.Future[T]


class RedisWorker:
    """Runs submitted commands in order, pipelined, on one connection of one Redis client.

    Args:
        url: ``redis://host:port``, ``rediss://…`` or ``unix://…``.
        db: the database index (overrides one in the URL).
        label: names the backend in error messages ("redis storage").
        socket_timeout: seconds a command (a whole pipeline's reply) may take.
        connect_timeout: seconds connecting may take.
        max_batch: the most commands sent in one pipeline.
    """

    def __init__(
        self,
        url: str,
        db: int = 0,
        *,
        label: str,
        socket_timeout: float = 10.0,
        connect_timeout: float = 5.0,
        max_batch: int = 256,
    ) -> None:
        options = parse_url(url)  # raises ValueError for a malformed URL: fail at once
        options["db"] = db
        self._options = options
        self.url = url
        self.db = db
        self._label = label
        self._socket_timeout = socket_timeout
        self._connect_timeout = connect_timeout
        self._max_batch = max_batch
        self._queue: deque[_Op[Any]] = deque()
        self._client: aioredis.Redis | None = None
        self._task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Event | None = None
        self._closing = False
        self._closed: asyncio.Future[None] | None = None
        self._failing = False

    @property
    def describe(self) -> str:
        """``<label> <url> db <n>``, for log lines and errors."""
        return f"{self._label} {redact_url(self.url)} db {self.db}"

    @property
    def closed(self) -> bool:
        return self._closing

    @property
    def failing(self) -> bool:
        """True from a connection failure until a pipeline goes through again."""
        return self._failing

    def submit(
        self, add: Callable[[Any], object], convert: Callable[[Any], T], what: str
    ) -> asyncio.Future[T]:
        """Queue one command (``add(pipeline)``); ``convert(reply)`` completes the future."""
        if self._closing:
            raise StorageError(f"{self.describe}: {what}: the backend is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.append(_Op(add, convert, what, future))
        if self._task is None:
            self._wakeup = asyncio.Event()
            self._task = loop.create_task(self._run(), name=f"goworld-{self._label}")
        assert self._wakeup is not None
        self._wakeup.set()
        return future

    def client(self) -> aioredis.Redis:
        """The redis-py client (created on first use; for tests and tools)."""
        if self._client is None:
            pool = ConnectionPool(
                **self._options,
                socket_timeout=self._socket_timeout,
                socket_connect_timeout=self._connect_timeout,
                retry=Retry(NoBackoff(), 0),
                max_connections=4,
            )
            self._client = aioredis.Redis.from_pool(pool)  # closing the client closes the pool
        return self._client

    async def close(self) -> None:
        """Run every queued command, then close the connection. Idempotent."""
        if self._closed is None:
            self._closing = True
            self._closed = asyncio.get_running_loop().create_future()
            try:
                if self._task is not None:
                    assert self._wakeup is not None
                    self._wakeup.set()
                    await asyncio.shield(self._task)
                if self._client is not None:
                    await self._client.aclose()
            finally:
                self._closed.set_result(None)
        await asyncio.shield(self._closed)

    async def _run(self) -> None:
        assert self._wakeup is not None
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = [self._queue.popleft() for _ in range(min(len(self._queue), self._max_batch))]
            try:
                pipe = self.client().pipeline(transaction=True)
                for op in batch:
                    op.add(pipe)
                replies = await pipe.execute(raise_on_error=False)
            except Exception as exc:
                # The connection failed: every command of the batch fails, and so does every
                # command queued behind it, without being tried. Failures are thus a suffix of
                # what was queued, never a hole followed by commands that went through after
                # the server came back (the wrapper re-runs them all, in order).
                batch += self._queue
                self._queue.clear()
                self._failing = True
                for op in batch:
                    self._fail(op, exc)
                await self._drop_client()
                continue
            self._failing = False
            for op, reply in zip(batch, replies, strict=True):
                if isinstance(reply, Exception):
                    self._fail(op, reply)
                    continue
                try:
                    result = op.convert(reply)
                except Exception as exc:
                    self._fail(op, exc)
                    continue
                if not op.future.done():  # a cancelled future: the operation still happened
                    op.future.set_result(result)

    async def _drop_client(self) -> None:
        """After a connection failure, close every connection of the client ourselves (redis-py
        can leave the broken socket to the garbage collector); the next command makes a new
        client."""
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):  # it is broken: closing is best effort
                await client.aclose()

    def _fail(self, op: _Op[Any], exc: BaseException) -> None:
        if op.future.done():
            return
        kind = "" if isinstance(exc, (RedisError, OSError)) else f"{type(exc).__name__}: "
        error = StorageError(f"{self.describe}: {op.what} failed: {kind}{exc}")
        error.__cause__ = exc
        op.future.set_exception(error)


def _ok(reply: Any) -> None:
    return None


def _unpack(reply: bytes | None) -> EntityData | None:
    return None if reply is None else unpack_data(reply)


def _ids(reply: list[bytes]) -> list[str]:
    return sorted(key.decode("utf-8") for key in reply)


class RedisEntityStorage:
    """:class:`~goworld.storage.base.EntityStorage` in Redis hashes (see the module docs).

    Keyword arguments go to :class:`RedisWorker` (``socket_timeout``, ``connect_timeout``,
    ``max_batch``).
    """

    def __init__(self, url: str, db: int = 0, **worker_options: Any) -> None:
        self._worker = RedisWorker(url, db, label="redis storage", **worker_options)

    @property
    def describe(self) -> str:
        return self._worker.describe

    @property
    def failing(self) -> bool:
        """True from a connection failure until a command goes through again."""
        return self._worker.failing

    def client(self) -> aioredis.Redis:
        """The underlying redis-py client (tests and tools)."""
        return self._worker.client()

    def save(self, type_name: str, entity_id: str, data: EntityData) -> asyncio.Future[None]:
        check_name("type_name", type_name)
        check_name("entity_id", entity_id)
        return self.save_packed(type_name, entity_id, pack_data(data))

    def save_packed(self, type_name: str, entity_id: str, blob: bytes) -> asyncio.Future[None]:
        """:meth:`save` of a record already packed by :func:`~goworld.storage.base.pack_data`."""
        key = entity_key(type_name)
        return self._worker.submit(
            lambda pipe: pipe.hset(key, entity_id, blob), _ok, f"save {type_name}/{entity_id}"
        )

    def load(self, type_name: str, entity_id: str) -> asyncio.Future[EntityData | None]:
        check_name("type_name", type_name)
        check_name("entity_id", entity_id)
        key = entity_key(type_name)
        return self._worker.submit(
            lambda pipe: pipe.hget(key, entity_id), _unpack, f"load {type_name}/{entity_id}"
        )

    def exists(self, type_name: str, entity_id: str) -> asyncio.Future[bool]:
        check_name("type_name", type_name)
        check_name("entity_id", entity_id)
        key = entity_key(type_name)
        return self._worker.submit(
            lambda pipe: pipe.hexists(key, entity_id), bool, f"exists {type_name}/{entity_id}"
        )

    def list_ids(self, type_name: str) -> asyncio.Future[list[str]]:
        check_name("type_name", type_name)
        key = entity_key(type_name)
        return self._worker.submit(lambda pipe: pipe.hkeys(key), _ids, f"list_ids {type_name}")

    async def close(self) -> None:
        await self._worker.close()
