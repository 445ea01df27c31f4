"""MongoDB KVDB (goworld/kvdb/mongodb.py) on a real MongoDB-wire server.

The server comes from tests/goworld/mongo_server.py: mongo-java-server started for this module,
or the MongoDB that ``GOWORLD_TEST_MONGODB_URL`` names. Each test gets its own database, read
back with a plain PyMongo client to check GoWorld's layout ``{_id: key, "_": value}``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pymongo
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo.errors import ConnectionFailure

from goworld.errors import StorageError
from goworld.kvdb.base import KVDB
from goworld.kvdb.mongodb import MongoDBKVDB, range_filter
from tests.goworld.mongo_server import fresh_database, mongo_server

COLLECTION = "__kv__"
Collection = pymongo.collection.Collection[dict[str, Any]]


@pytest.fixture(scope="module")
def mongodb_url() -> Iterator[str]:
    with mongo_server() as url:
        yield url


@pytest.fixture
def db_name(request: pytest.FixtureRequest, mongodb_url: str) -> str:
    return fresh_database(request, mongodb_url)


@pytest_asyncio.fixture
async def kvdb(mongodb_url: str, db_name: str) -> AsyncIterator[MongoDBKVDB]:
    handle = MongoDBKVDB(mongodb_url, db_name, COLLECTION)
    yield handle
    await handle.close()


@pytest.fixture
def raw(mongodb_url: str, db_name: str) -> Iterator[Collection]:
    """The KVDB collection through a plain (synchronous) PyMongo client, as GoWorld sees it."""
    client: pymongo.MongoClient[dict[str, Any]]
    with pymongo.MongoClient(mongodb_url) as client:
        yield client[db_name][COLLECTION]


# ----------------------------------------------------------------------------- get / put


@pytest.mark.asyncio
async def test_get_put_overwrite_and_missing(kvdb: MongoDBKVDB) -> None:
    assert isinstance(kvdb, KVDB)
    assert await kvdb.get("nope") is None
    values = {
        "k": "v",
        "名字": "Ünïcødé 😀",
        "empty": "",
        "nul\x00key": "a\x00b",
        "big": "x" * 100_000,
    }
    await asyncio.gather(*(kvdb.put(k, v) for k, v in values.items()))
    assert {k: await kvdb.get(k) for k in values} == values
    await kvdb.put("k", "v2")
    assert await kvdb.get("k") == "v2"
    assert await kvdb.get("empty") == ""  # "" is a value, not "missing"
    assert await kvdb.get("K") is None


@pytest.mark.asyncio
async def test_documents_have_goworld_layout(
    kvdb: MongoDBKVDB, raw: Collection, mongodb_url: str, db_name: str
) -> None:
    await kvdb.put("lastMailID", "41")
    await kvdb.put("lastMailID", "42")
    await kvdb.get_or_put("service$Online", "game1")
    assert list(raw.find().sort("_id", 1)) == [
        {"_id": "lastMailID", "_": "42"},
        {"_id": "service$Online", "_": "game1"},
    ]
    client: pymongo.MongoClient[dict[str, Any]]
    with pymongo.MongoClient(mongodb_url) as client:
        assert client[db_name].list_collection_names() == [COLLECTION]
    assert kvdb.collection == COLLECTION and kvdb.describe.endswith(f"collection {COLLECTION}")


@pytest.mark.asyncio
async def test_goworld_written_documents_are_read(kvdb: MongoDBKVDB, raw: Collection) -> None:
    # What GoWorld's mgo writes: UpsertId(key, map[string]string{"_": val}).
    raw.update_one({"_id": "mail$e1$01"}, {"$set": {"_": "hello"}}, upsert=True)
    raw.insert_one({"_id": "mail$e1$02"})  # no "_": GoWorld reads "" (a zero value)
    raw.insert_one({"_id": 42, "_": "not a string key"})  # outside every string range
    assert await kvdb.get("mail$e1$01") == "hello"
    assert await kvdb.get("mail$e1$02") == ""
    assert await kvdb.get_or_put("mail$e1$02", "x") == ""  # exists: not overwritten
    assert await kvdb.get_range("", None) == [("mail$e1$01", "hello"), ("mail$e1$02", "")]
    raw.insert_one({"_id": "bad", "_": 12})
    with pytest.raises(StorageError, match="get 'bad'") as info:
        await kvdb.get("bad")
    assert isinstance(info.value.__cause__, ValueError)
    results = await asyncio.gather(
        kvdb.get("mail$e1$01"), kvdb.get("bad"), kvdb.get("nope"), return_exceptions=True
    )  # one merged $in query: only the bad key fails
    assert results[0] == "hello" and isinstance(results[1], StorageError) and results[2] is None


@pytest.mark.asyncio
async def test_operations_apply_in_call_order(kvdb: MongoDBKVDB) -> None:
    futures: list[asyncio.Future[Any]] = []
    for version in range(5):
        futures.append(kvdb.put("k", f"v{version}"))
        futures.append(kvdb.get("k"))
        futures.append(kvdb.get_or_put("k", "never"))
        futures.append(kvdb.get_range("k", "l"))
    results = await asyncio.gather(*futures)
    assert results[1::4] == [f"v{v}" for v in range(5)] == results[2::4]
    assert results[3::4] == [[("k", f"v{v}")] for v in range(5)]


# ----------------------------------------------------------------------------- get_or_put


def _one_winner(results: list[str | None], values: list[str], final: str | None) -> int:
    winners = [i for i, result in enumerate(results) if result is None]
    assert len(winners) == 1, results
    assert final == values[winners[0]]
    assert all(r == final for i, r in enumerate(results) if i != winners[0])
    return winners[0]


@pytest.mark.asyncio
async def test_get_or_put_race_on_one_client(kvdb: MongoDBKVDB) -> None:
    assert await kvdb.get_or_put("once", "1") is None
    assert await kvdb.get_or_put("once", "2") == "1"
    values = [f"value-{i}" for i in range(50)]
    results = await asyncio.gather(*(kvdb.get_or_put("race", v) for v in values))
    assert _one_winner(list(results), values, await kvdb.get("race")) == 0  # call order decides


@pytest.mark.asyncio
async def test_get_or_put_race_between_two_clients(mongodb_url: str, db_name: str) -> None:
    game1 = MongoDBKVDB(mongodb_url, db_name, COLLECTION)
    game2 = MongoDBKVDB(mongodb_url, db_name, COLLECTION)
    try:
        for key in ("a", "b", "c", "d"):
            values = [f"{key}-{i}" for i in range(50)]
            handles = [game1 if i % 2 else game2 for i in range(50)]
            results = await asyncio.gather(
                *(h.get_or_put(key, v) for h, v in zip(handles, values, strict=True))
            )
            _one_winner(list(results), values, await game1.get(key))
            assert await game2.get(key) == await game1.get(key)
    finally:
        await asyncio.gather(game1.close(), game2.close())


# ----------------------------------------------------------------------------- get_range

KEYS = [
    "a", "ab", "abc", "abc\x00", "b", "ba", "c", "é", "中",
    "\ud7ff", "\ue000", "\ufffd", "\uffff", "😀", "😀x", "\U0010ffff",
    "mail$e1$0000000001", "mail$e1$0000000002", "mail$e2$0000000001",
]  # fmt: skip


@pytest_asyncio.fixture
async def filled(kvdb: MongoDBKVDB) -> MongoDBKVDB:
    await asyncio.gather(*(kvdb.put(k, f"v:{k}") for k in reversed(KEYS)))
    return kvdb


def _pairs(*keys: str) -> list[tuple[str, str]]:
    return [(k, f"v:{k}") for k in keys]


@pytest.mark.asyncio
async def test_get_range_order_is_code_point_order(filled: MongoDBKVDB) -> None:
    everything = await filled.get_range("", None)
    assert everything == _pairs(*sorted(KEYS))
    assert [k for k, _ in everything][-7:] == [
        "\ud7ff", "\ue000", "\ufffd", "\uffff", "😀", "😀x", "\U0010ffff"
    ]  # fmt: skip


@pytest.mark.asyncio
async def test_get_range_bounds(filled: MongoDBKVDB) -> None:
    assert await filled.get_range("ab", "b") == _pairs("ab", "abc", "abc\x00")  # [begin, end)
    assert await filled.get_range("a", "ab") == _pairs("a")
    assert await filled.get_range("abc", "abc\x00") == _pairs("abc")
    assert await filled.get_range("abc\x00", "abd") == _pairs("abc\x00")
    assert await filled.get_range("b", "c") == _pairs("b", "ba")
    assert await filled.get_range("mail$e1$", "mail$e1%") == _pairs(
        "mail$e1$0000000001", "mail$e1$0000000002"
    )
    # bounds where UTF-16 order (mongo-java-server) and code-point order disagree
    assert await filled.get_range("\ufffd", "😀") == _pairs("\ufffd", "\uffff")
    assert await filled.get_range("\ue000", None) == _pairs(
        "\ue000", "\ufffd", "\uffff", "😀", "😀x", "\U0010ffff"
    )
    assert await filled.get_range("😀", "\U0010ffff") == _pairs("😀", "😀x")
    assert await filled.get_range("中", "\ue000") == _pairs("中", "\ud7ff")
    assert await filled.get_range("\ud7ff", "\ud7ff\x00") == _pairs("\ud7ff")


@pytest.mark.asyncio
async def test_get_range_empty(filled: MongoDBKVDB) -> None:
    assert await filled.get_range("b", "b") == []
    assert await filled.get_range("c", "b") == []  # begin > end
    assert await filled.get_range("a", "") == []  # "" is a bound, not "no bound"
    assert await filled.get_range("bb", "bz") == []
    assert await filled.get_range("\U0010ffff\x00", None) == []


def test_range_filter() -> None:
    assert range_filter("a", "b") == {"_id": {"$gte": "a", "$lt": "b"}}
    assert range_filter("a", None) == {"_id": {"$gte": "a"}}
    assert range_filter("x\ufffdy", "x😀") == {"_id": {"$gte": "x", "$lt": "y"}}
    assert range_filter("", "\ud7ff\ue000") == {"_id": {"$gte": "", "$lt": "\ue000"}}
    assert range_filter("", "😀") == {"_id": {"$gte": ""}}  # no safe prefix: no upper bound


_ALPHABET = st.sampled_from(
    ["", "a", "b", "\x00", "é", "\ud7ff", "\ue000", "\uffff", "😀", "\U0010ffff"]
)
_KEYS = st.lists(_ALPHABET, max_size=3).map("".join)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(keys=st.sets(_KEYS, max_size=12), begin=_KEYS, end=st.none() | _KEYS)
def test_get_range_matches_a_model(
    mongodb_url: str, db_name: str, keys: set[str], begin: str, end: str | None
) -> None:
    async def body() -> None:
        handle = MongoDBKVDB(mongodb_url, db_name, COLLECTION)
        try:
            stale = await handle.get_range("", None)  # earlier examples
            model = dict(stale) | {k: k for k in keys}
            await asyncio.gather(*(handle.put(k, k) for k in keys))
            expected = sorted(
                (k, v) for k, v in model.items() if begin <= k and (end is None or k < end)
            )
            assert await handle.get_range(begin, end) == expected
        finally:
            await handle.close()

    asyncio.run(body())


# ----------------------------------------------------------------------------- lifecycle


@pytest.mark.asyncio
async def test_close_waits_for_queued_operations(mongodb_url: str, db_name: str) -> None:
    handle = MongoDBKVDB(mongodb_url, db_name, COLLECTION, max_batch=50)
    for version in range(4):
        for i in range(250):  # none awaited
            handle.put(f"key{i:04d}", f"v{version}")
    late = handle.get_or_put("late", "yes")
    ranged = handle.get_range("key", "kez")
    await handle.close()
    await handle.close()  # idempotent
    assert late.result() is None and len(ranged.result()) == 250
    for call in (
        lambda: handle.get("k"),
        lambda: handle.put("k", "v"),
        lambda: handle.get_or_put("k", "v"),
        lambda: handle.get_range("a", None),
    ):
        with pytest.raises(StorageError, match="closed"):
            call()
    reopened = MongoDBKVDB(mongodb_url, db_name, COLLECTION)
    try:
        assert await reopened.get_range("key", "kez") == [(f"key{i:04d}", "v3") for i in range(250)]
        assert await reopened.get("late") == "yes"
    finally:
        await reopened.close()


@pytest.mark.asyncio
async def test_bad_arguments_raise_at_call_time(kvdb: MongoDBKVDB) -> None:
    with pytest.raises(TypeError):
        kvdb.get(1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        kvdb.put("k", None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        kvdb.get_range("a", 5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        kvdb.get_or_put("lone\udc80surrogate", "v")
    assert await kvdb.get_range("", None) == []  # nothing was written


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.asyncio
async def test_unreachable_server_is_a_storage_error(caplog: pytest.LogCaptureFixture) -> None:
    url = f"mongodb://127.0.0.1:{_unused_port()}/"
    handle = MongoDBKVDB(url, "goworld", COLLECTION, serverSelectionTimeoutMS=200)
    caplog.set_level(logging.WARNING, logger="goworld.storage")
    try:
        results = await asyncio.gather(
            handle.put("k", "v"), handle.get("k"), handle.get_or_put("k", "v"),
            handle.get_range("", None), return_exceptions=True,
        )  # fmt: skip
        for result in results:
            assert isinstance(result, StorageError), result
            assert isinstance(result.__cause__, ConnectionFailure)
        assert "put 'k' failed" in str(results[0]) and url in str(results[0])
    finally:
        await handle.close()
    assert sum("cannot reach MongoDB" in r.getMessage() for r in caplog.records) == 1


def test_unusable_settings_are_storage_errors() -> None:
    with pytest.raises(StorageError, match="url"):
        MongoDBKVDB("", "goworld", COLLECTION)
    with pytest.raises(StorageError, match="collection"):
        MongoDBKVDB("mongodb://127.0.0.1:27017/", "goworld", "")
    with pytest.raises(StorageError, match="collection"):
        MongoDBKVDB("mongodb://127.0.0.1:27017/", "goworld", "bad$name")
    with pytest.raises(StorageError, match="database"):
        MongoDBKVDB("mongodb://127.0.0.1:27017/", "bad/name", COLLECTION)
    default = MongoDBKVDB("mongodb://127.0.0.1:27017/", "")
    assert default.describe.endswith("db goworld collection __kv__")
