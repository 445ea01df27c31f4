"""MongoDB KVDB in GoWorld's layout, through PyMongo's asyncio API.

Layout (GoWorld's ``engine/kvdb/backend/kvdb_mongodb``)
    Database ``db`` (``goworld`` when empty), collection ``collection`` (``[kvdb] collection``;
    GoWorld ships ``__kv__``), one document per key: ``{_id: key, "_": value}``. ``put`` is an
    upsert replacing the document (GoWorld's ``UpsertId``). A document without ``"_"`` reads
    as ``""``, as in GoWorld.

Operations
    * ``get`` and runs of consecutive ``get``\\s: one ``$in`` query; runs of consecutive
      ``put``\\s: one ordered ``bulk_write`` (see :class:`~goworld.storage.mongodb.MongoBackend`
      for the queue, the batching and the errors).
    * ``get_or_put``: ``find_one_and_update({_id: key}, {$setOnInsert: {"_": value}},
      upsert=True, return_document=BEFORE)``, one atomic server operation: ``None`` when it
      inserted, else the stored value, untouched. Two clients racing to insert the same key may
      see a duplicate-key error; the loser retries and reads the winner's value.
    * ``get_range(begin, end)``: an ``_id`` range query (``$gte``/``$lt``) sorted by ``_id``,
      then filtered and sorted again here in code-point order. MongoDB compares strings as
      UTF-8 bytes, which is code-point order, so the query is exact there; some MongoDB-wire
      servers (mongo-java-server) compare UTF-16 code units, which orders U+E000..U+FFFF after
      supplementary characters. When a bound holds a character from U+E000 on, the query is
      widened (:func:`range_filter`) so such a server still returns every key in range.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pymongo import ReplaceOne, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, InvalidName

from goworld.errors import StorageError
from goworld.kvdb.base import check_str
from goworld.storage.mongodb import DEFAULT_DB, Document, MongoBackend, MongoJob

__all__ = ["DEFAULT_COLLECTION", "MongoDBKVDB", "range_filter"]

#: The collection GoWorld's shipped goworld.ini uses.
DEFAULT_COLLECTION = "__kv__"
_VALUE = "_"
_UTF16_DIFFERS = "\ue000"  # from here on, UTF-16 and code-point order can disagree


def _before_differing(bound: str) -> str:
    for index, char in enumerate(bound):
        if char >= _UTF16_DIFFERS:
            return bound[:index]
    return bound


def range_filter(begin: str, end: str | None) -> Document:
    """An ``_id`` query holding every key of [begin, end) in code-point order.

    Exact when neither bound holds a character from U+E000 on. Otherwise each such bound is
    cut before that character (the lower bound kept as the prefix, the upper bound raised to the
    prefix's successor), so servers comparing UTF-8 bytes or UTF-16 code units return a
    superset, which :class:`MongoDBKVDB` filters.
    """
    condition: Document = {"$gte": _before_differing(begin)}
    if end is not None:
        prefix = _before_differing(end)
        if prefix == end:
            condition["$lt"] = end
        elif prefix:
            last = prefix[-1]
            successor = _UTF16_DIFFERS if last == "\ud7ff" else chr(ord(last) + 1)
            condition["$lt"] = prefix[:-1] + successor
    return {"_id": condition}


def _value_of(document: Document) -> str:
    value = document.get(_VALUE, "")
    if not isinstance(value, str):
        raise ValueError(f"key {document.get('_id')!r}: '_' holds a {type(value).__name__}")
    return value


class MongoDBKVDB(MongoBackend):
    """:class:`~goworld.kvdb.base.KVDB` in GoWorld's MongoDB layout.

    Args:
        url: a MongoDB connection string (``[kvdb] url``).
        db: the database (``[kvdb] db``); ``goworld`` when empty.
        collection: the collection (``[kvdb] collection``).
        max_batch: the most queued jobs taken together.
        client_options: passed to :class:`pymongo.AsyncMongoClient`.

    Raises:
        StorageError: the url, an option, the database or the collection name is unusable.
            Nothing connects before the first operation.
    """

    def __init__(
        self,
        url: str,
        db: str = DEFAULT_DB,
        collection: str = DEFAULT_COLLECTION,
        *,
        max_batch: int = 1000,
        **client_options: Any,
    ) -> None:
        super().__init__(
            "mongodb kvdb", url, db, max_batch=max_batch, client_options=client_options
        )
        try:
            if not isinstance(collection, str) or not collection:
                raise InvalidName("a collection name is required")
            self._collection: AsyncCollection[Document] = self._db[collection]
        except InvalidName as exc:
            raise StorageError(f"{self.describe}: collection {collection!r}: {exc}") from exc
        self.describe += f" collection {collection}"

    @property
    def collection(self) -> str:
        return self._collection.name

    def get(self, key: str) -> asyncio.Future[str | None]:
        check_str("key", key)
        return self._submit("get", (key,), "r", f"get {key!r}")

    def put(self, key: str, value: str) -> asyncio.Future[None]:
        check_str("key", key)
        check_str("value", value)
        return self._submit("put", (key, value), "w", f"put {key!r}")

    def get_or_put(self, key: str, value: str) -> asyncio.Future[str | None]:
        check_str("key", key)
        check_str("value", value)
        what = f"get_or_put {key!r}"
        return self._submit("get_or_put", (key, value), None, what)

    def get_range(self, begin: str, end: str | None) -> asyncio.Future[list[tuple[str, str]]]:
        check_str("begin", begin)
        if end is not None:
            check_str("end", end)
        what = f"get_range [{begin!r}, {end!r})"
        return self._submit("get_range", (begin, end), None, what)

    async def _run_one(self, job: MongoJob) -> Any:
        if job.op == "get":
            found = await self._collection.find_one({"_id": job.args[0]})
            return None if found is None else _value_of(found)
        if job.op == "put":
            key, value = job.args
            await self._collection.replace_one({"_id": key}, {_VALUE: value}, upsert=True)
            return None
        if job.op == "get_or_put":
            return await self._get_or_put(*job.args)
        return await self._get_range(*job.args)

    async def _get_or_put(self, key: str, value: str) -> str | None:
        for attempt in range(3):
            try:
                before = await self._collection.find_one_and_update(
                    {"_id": key},
                    {"$setOnInsert": {_VALUE: value}},
                    upsert=True,
                    return_document=ReturnDocument.BEFORE,
                )
            except DuplicateKeyError:  # another client inserted it first: read its value
                if attempt == 2:
                    raise
                continue
            return None if before is None else _value_of(before)
        raise AssertionError("unreachable")

    async def _get_range(self, begin: str, end: str | None) -> list[tuple[str, str]]:
        if end is not None and begin >= end:
            return []
        pairs = []
        async for document in self._collection.find(range_filter(begin, end)).sort("_id", 1):
            key = document["_id"]
            if isinstance(key, str) and begin <= key and (end is None or key < end):
                pairs.append((key, _value_of(document)))
        pairs.sort()
        return pairs

    async def _run_group(self, group: str, jobs: list[MongoJob]) -> list[Any]:
        if group == "w":
            requests = [
                ReplaceOne({"_id": j.args[0]}, {_VALUE: j.args[1]}, upsert=True) for j in jobs
            ]
            await self._collection.bulk_write(requests, ordered=True)
            return [None] * len(jobs)
        keys = list(dict.fromkeys(job.args[0] for job in jobs))
        found = {doc["_id"]: doc async for doc in self._collection.find({"_id": {"$in": keys}})}
        results: list[Any] = []
        for job in jobs:
            document = found.get(job.args[0])
            try:
                results.append(None if document is None else _value_of(document))
            except ValueError as exc:
                results.append(exc)
        return results
