"""MongoDB entity storage in GoWorld's layout, through PyMongo's asyncio API.

Layout (GoWorld's ``engine/storage/backend/mongodb``, so either side reads the other's data)
    Database ``db`` (``goworld`` when empty, as in GoWorld), **one collection per entity type
    name**, one document per entity: ``{_id: entity_id, data: {attribute: value, ...}}``,
    written by an upsert that replaces the whole document (GoWorld's ``UpsertId``). ``load``
    returns ``data``; ``list_ids`` returns the ``_id`` strings, sorted here in code-point order.

Values (:func:`encode_data` / :func:`decode_data`)
    * ``None``, ``bool``, ``float`` (also ``inf`` and ``-0.0``), ``str``: the BSON types.
    * ``int`` in -2**63 .. 2**63-1: BSON int64, as GoWorld (whose attributes hold int64) writes
      them. BSON has no uint64, so an int in **2**63 .. 2**64-1 is stored as BSON Decimal128**
      (exact to 34 digits, a number to every MongoDB tool). Loading turns int32, int64 and
      integral Decimal128 into ``int``, other Decimal128 into ``float``.
    * ``bytes``/``bytearray``: BSON binary subtype 0 (Go's ``[]byte``); any binary subtype
      loads as ``bytes``.
    * ``list``/``tuple``: BSON arrays (tuples load as lists).
    * ``dict`` whose keys are all *plain* strings (non-empty, without ``.`` or NUL, not starting
      with ``$``, not :data:`MAP_TAG`): a BSON subdocument, as GoWorld writes attribute maps.
      **Any other dict** (a key that BSON or older servers forbid, an ``int``/``float``/
      ``bool``/``bytes``/``None`` key) is stored as ``{"__goworld_map__": [[key, value], ...]}``
      and loads back as the same dict. A plain dict never holds that key, so the form is
      unambiguous. GoWorld itself only writes plain maps, so it never meets the tagged form.
    * Anything else raises ``TypeError``, an int out of range ``ValueError``, at call time.
    Values of other BSON types in a document written by someone else (dates, ObjectIds...) load
    as PyMongo decodes them.

Execution (:class:`MongoBackend`, shared with :mod:`goworld.kvdb.mongodb`)
    Every method queues a job and returns an :class:`asyncio.Future`. One asyncio task per
    instance runs the jobs in call order on the loop (the driver is asynchronous, so the loop
    is never blocked). It takes every job already queued (up to ``max_batch``) and merges runs
    of consecutive saves into one ordered ``bulk_write`` per collection, and runs of consecutive
    loads/exists into one ``$in`` query per collection, so a burst costs a few round trips. If
    a merged run fails, its jobs are retried one by one so only the bad ones fail. When the
    server cannot be reached (``ConnectionFailure``, e.g. after ``serverSelectionTimeoutMS``)
    every job of the current batch fails at once, and one warning is logged per outage. Errors
    reach the futures as :class:`~goworld.errors.StorageError` chained from the driver's.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bson import Decimal128, Int64
from pymongo import AsyncMongoClient, ReplaceOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConnectionFailure, InvalidName, PyMongoError

from goworld.errors import StorageError
from goworld.log import get_logger
from goworld.storage.base import EntityData, check_name, redact_url

__all__ = ["MAP_TAG", "MongoBackend", "MongoDBEntityStorage", "decode_data", "encode_data"]

logger = get_logger("storage")

#: The key of the tagged form of a dict that BSON cannot hold as a subdocument.
MAP_TAG = "__goworld_map__"
#: GoWorld's database name when ``db`` is empty.
DEFAULT_DB = "goworld"

Document = dict[str, Any]
_INT64_MIN, _INT64_MAX, _UINT64_MAX = -(2**63), 2**63 - 1, 2**64 - 1


# ------------------------------------------------------------------------------------ codec


def _is_plain_key(key: object) -> bool:
    return (
        type(key) is str
        and key != ""
        and key[0] != "$"
        and "." not in key
        and "\x00" not in key
        and key != MAP_TAG
    )


def _check_utf8(text: str) -> str:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"entity data holds a str that is not valid Unicode: {exc}") from exc
    return text


def _encode(value: Any) -> Any:
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, str):
        return _check_utf8(value)
    if isinstance(value, int):
        if _INT64_MIN <= value <= _INT64_MAX:
            return Int64(value)
        if _INT64_MAX < value <= _UINT64_MAX:
            return Decimal128(str(int(value)))
        raise ValueError(f"entity data holds an int outside -2**63..2**64-1: {value}")
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, dict):
        if all(_is_plain_key(key) for key in value):
            return {_check_utf8(key): _encode(item) for key, item in value.items()}
        pairs = []
        for key, item in value.items():
            if not (key is None or isinstance(key, bool | int | float | str | bytes)):
                raise TypeError(f"entity data cannot be serialised: a {type(key).__name__} key")
            pairs.append([_encode(key), _encode(item)])
        return {MAP_TAG: pairs}
    if isinstance(value, list | tuple):
        return [_encode(item) for item in value]
    raise TypeError(f"entity data cannot be serialised: a {type(value).__name__} value")


def encode_data(data: EntityData) -> Document:
    """The BSON-ready copy of a record. ``TypeError``/``ValueError`` for what cannot be stored."""
    if not isinstance(data, dict):
        raise TypeError(f"entity data must be a dict, not {type(data).__name__}")
    try:
        encoded: Document = _encode(data)
    except RecursionError as exc:
        raise ValueError("entity data is nested too deeply (or holds a cycle)") from exc
    return encoded


def _decode(value: Any) -> Any:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)  # Int64 -> int
    if isinstance(value, float):
        return value
    if isinstance(value, bytes):
        return bytes(value)  # Binary of any subtype -> bytes
    if isinstance(value, dict):
        if MAP_TAG not in value:
            return {key: _decode(item) for key, item in value.items()}
        pairs = value[MAP_TAG]
        if len(value) != 1 or not isinstance(pairs, list):
            raise ValueError(f"corrupt {MAP_TAG} map: {value!r:.200}")
        out = {}
        for pair in pairs:
            if not isinstance(pair, list) or len(pair) != 2 or isinstance(pair[0], dict | list):
                raise ValueError(f"corrupt {MAP_TAG} entry: {pair!r:.200}")
            out[_decode(pair[0])] = _decode(pair[1])
        return out
    if isinstance(value, list):
        return [_decode(item) for item in value]
    if isinstance(value, Decimal128):
        number = value.to_decimal()
        if number.is_finite() and number == number.to_integral_value():
            return int(number)
        return float(number)
    return value


def decode_data(document: Document) -> EntityData:
    """The record held by a ``{_id, data}`` document; ``ValueError`` if it holds none."""
    if "data" not in document:
        raise ValueError(f"document {document.get('_id')!r} has no 'data' field")
    data = _decode(document["data"])
    if not isinstance(data, dict):
        raise ValueError(f"document {document.get('_id')!r}: 'data' is a {type(data).__name__}")
    return data


# ------------------------------------------------------------------------------------ worker


@dataclass(slots=True)
class MongoJob:
    """One queued operation. Consecutive jobs with the same non-None ``group`` run merged."""

    op: str
    args: tuple[Any, ...]
    group: str | None
    what: str  # for messages: "save Avatar/1234"
    future: asyncio.Future[Any]


class MongoBackend:
    """The client, the job queue and the task that runs it, for one backend instance.

    Subclasses implement :meth:`_run_one` and :meth:`_run_group`.
    """

    def __init__(
        self, label: str, url: str, db: str, *, max_batch: int, client_options: dict[str, Any]
    ) -> None:
        where = redact_url(url) if isinstance(url, str) else repr(url)
        if not isinstance(url, str) or not url:
            raise StorageError(f"{label}: a mongodb url is required")
        try:
            self._client: AsyncMongoClient[Document] = AsyncMongoClient(url, **client_options)
        except (PyMongoError, TypeError, ValueError) as exc:
            raise StorageError(f"{label} {where}: {exc}") from exc
        try:
            self._db: AsyncDatabase[Document] = self._client[db or DEFAULT_DB]
        except (InvalidName, TypeError) as exc:
            raise StorageError(f"{label} {where}: bad database name {db!r}: {exc}") from exc
        #: ``<label> <url without credentials> db <name>``, for log lines and errors.
        self.describe = f"{label} {where} db {self._db.name}"
        self._max_batch = max_batch
        self._jobs: deque[MongoJob] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._current: list[MongoJob] = []
        self._closed = False
        self._closing: asyncio.Future[None] | None = None
        self._down = False

    def _submit(
        self, op: str, args: tuple[Any, ...], group: str | None, what: str
    ) -> asyncio.Future[Any]:
        if self._closed:
            raise StorageError(f"{self.describe}: {what}: the backend is closed")
        if self._task is not None and self._task.done():
            raise StorageError(f"{self.describe}: {what}: the worker task died")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._jobs.append(MongoJob(op, args, group, what, future))
        if self._task is None:
            self._task = loop.create_task(self._consume(), name=f"goworld {self.describe}")
        self._wakeup.set()
        return future

    async def close(self) -> None:
        """Run every job already queued, then close the client. Idempotent."""
        if self._closing is None:
            self._closed = True
            self._closing = asyncio.ensure_future(self._shutdown())
        await asyncio.shield(self._closing)

    async def _shutdown(self) -> None:
        if self._task is not None:
            self._wakeup.set()
            await asyncio.wait([self._task])
        await self._client.close()

    # ------------------------------------------------------------------ the task

    async def _consume(self) -> None:
        try:
            while True:
                if not self._jobs:
                    if self._closed:
                        return
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                count = min(len(self._jobs), self._max_batch)
                self._current = [self._jobs.popleft() for _ in range(count)]
                await self._execute(self._current)
                self._current = []
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                logger.exception("%s: the worker task crashed", self.describe)
            for job in [*self._current, *self._jobs]:
                self._fail(job, exc if isinstance(exc, Exception) else RuntimeError("cancelled"))
            self._jobs.clear()
            raise

    async def _execute(self, batch: list[MongoJob]) -> None:
        start = 0
        while start < len(batch):
            group, end = batch[start].group, start + 1
            while group is not None and end < len(batch) and batch[end].group == group:
                end += 1
            try:
                await self._run_segment(batch[start:end])
            except ConnectionFailure as exc:
                if not self._down:
                    self._down = True
                    logger.warning("%s: cannot reach MongoDB: %s", self.describe, exc)
                for job in batch[start:]:
                    self._fail(job, exc)
                return
            if self._down:
                self._down = False
                logger.info("%s: MongoDB is reachable again", self.describe)
            start = end

    async def _run_segment(self, jobs: list[MongoJob]) -> None:
        if len(jobs) > 1:
            try:
                results = await self._run_group(jobs[0].group or "", jobs)
            except ConnectionFailure:
                raise
            except Exception as exc:  # run them one by one, so only the bad ones fail
                logger.debug("%s: merged run failed: %s", self.describe, exc)
            else:
                for job, result in zip(jobs, results, strict=True):
                    if isinstance(result, Exception):
                        self._fail(job, result)
                    elif not job.future.done():
                        job.future.set_result(result)
                return
        for job in jobs:
            try:
                result = await self._run_one(job)
            except ConnectionFailure:
                raise
            except Exception as exc:
                self._fail(job, exc)
            else:
                if not job.future.done():  # a cancelled future: the operation still ran
                    job.future.set_result(result)

    def _fail(self, job: MongoJob, exc: BaseException) -> None:
        if job.future.done():
            return
        error = StorageError(f"{self.describe}: {job.what} failed: {exc}")
        error.__cause__ = exc
        job.future.set_exception(error)

    async def _run_one(self, job: MongoJob) -> Any:
        raise NotImplementedError

    async def _run_group(self, group: str, jobs: list[MongoJob]) -> list[Any]:
        """Results in job order; an ``Exception`` in the list fails that job alone."""
        raise NotImplementedError


def _by_key(jobs: list[MongoJob], key: Callable[[MongoJob], str]) -> dict[str, list[MongoJob]]:
    groups: dict[str, list[MongoJob]] = {}
    for job in jobs:
        groups.setdefault(key(job), []).append(job)
    return groups


# ------------------------------------------------------------------------------------ storage


class MongoDBEntityStorage(MongoBackend):
    """:class:`~goworld.storage.base.EntityStorage` in GoWorld's MongoDB layout.

    Args:
        url: a MongoDB connection string (``[storage] url``).
        db: the database (``[storage] db``); ``goworld`` when empty.
        max_batch: the most queued jobs taken together.
        client_options: passed to :class:`pymongo.AsyncMongoClient`
            (e.g. ``serverSelectionTimeoutMS=2000``).

    Raises:
        StorageError: the url, an option or the database name is unusable. Nothing connects
            before the first operation.
    """

    def __init__(
        self, url: str, db: str = DEFAULT_DB, *, max_batch: int = 1000, **client_options: Any
    ) -> None:
        super().__init__(
            "mongodb storage", url, db, max_batch=max_batch, client_options=client_options
        )
        self._collections: dict[str, AsyncCollection[Document]] = {}

    def save(self, type_name: str, entity_id: str, data: EntityData) -> asyncio.Future[None]:
        self._collection(type_name)
        check_name("entity_id", entity_id)
        document = {"data": encode_data(data)}
        what = f"save {type_name}/{entity_id}"
        return self._submit("save", (type_name, entity_id, document), "w", what)

    def load(self, type_name: str, entity_id: str) -> asyncio.Future[EntityData | None]:
        self._collection(type_name)
        check_name("entity_id", entity_id)
        what = f"load {type_name}/{entity_id}"
        return self._submit("load", (type_name, entity_id), "r", what)

    def exists(self, type_name: str, entity_id: str) -> asyncio.Future[bool]:
        self._collection(type_name)
        check_name("entity_id", entity_id)
        what = f"exists {type_name}/{entity_id}"
        return self._submit("exists", (type_name, entity_id), "r", what)

    def list_ids(self, type_name: str) -> asyncio.Future[list[str]]:
        self._collection(type_name)
        return self._submit("list_ids", (type_name,), None, f"list_ids {type_name}")

    def _collection(self, type_name: str) -> AsyncCollection[Document]:
        collection = self._collections.get(type_name)
        if collection is None:
            check_name("type_name", type_name)
            if type_name.startswith("system."):
                raise ValueError(f"type_name {type_name!r}: MongoDB reserves system.* names")
            try:
                collection = self._db[type_name]
            except InvalidName as exc:
                raise ValueError(
                    f"type_name {type_name!r} is not a collection name: {exc}"
                ) from exc
            self._collections[type_name] = collection
        return collection

    async def _run_one(self, job: MongoJob) -> Any:
        collection = self._collections[job.args[0]]
        if job.op == "save":
            _, entity_id, document = job.args
            await collection.replace_one({"_id": entity_id}, document, upsert=True)
            return None
        if job.op == "load":
            found = await collection.find_one({"_id": job.args[1]})
            return None if found is None else decode_data(found)
        if job.op == "exists":
            return await collection.find_one({"_id": job.args[1]}, {"_id": 1}) is not None
        ids = [doc["_id"] async for doc in collection.find({}, {"_id": 1})]
        return sorted(entity_id for entity_id in ids if isinstance(entity_id, str))

    async def _run_group(self, group: str, jobs: list[MongoJob]) -> list[Any]:
        by_type = _by_key(jobs, lambda job: str(job.args[0]))
        if group == "w":
            for type_name, saves in by_type.items():
                requests = [ReplaceOne({"_id": j.args[1]}, j.args[2], upsert=True) for j in saves]
                await self._collections[type_name].bulk_write(requests, ordered=True)
            return [None] * len(jobs)
        found: dict[tuple[str, str], Document] = {}
        for type_name, reads in by_type.items():
            ids = list(dict.fromkeys(job.args[1] for job in reads))
            projection = None if any(job.op == "load" for job in reads) else {"_id": 1}
            cursor = self._collections[type_name].find({"_id": {"$in": ids}}, projection)
            async for document in cursor:
                found[(type_name, document["_id"])] = document
        results: list[Any] = []
        for job in jobs:
            record = found.get((job.args[0], job.args[1]))
            if job.op == "exists":
                results.append(record is not None)
                continue
            try:
                results.append(None if record is None else decode_data(record))
            except ValueError as exc:
                results.append(exc)
        return results
