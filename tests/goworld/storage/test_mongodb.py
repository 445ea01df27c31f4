"""MongoDB entity storage (goworld/storage/mongodb.py) on a real MongoDB-wire server.

The server comes from tests/goworld/mongo_server.py: mongo-java-server started for this module,
or the MongoDB that ``GOWORLD_TEST_MONGODB_URL`` names. Each test gets its own database, read
back with a plain PyMongo client to check GoWorld's layout ``{_id: id, data: {...}}``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pymongo
import pytest
import pytest_asyncio
from bson import Binary, Decimal128, Int64
from pymongo.errors import ConnectionFailure
from pymongo.monitoring import CommandListener, CommandStartedEvent

from goworld.errors import StorageError
from goworld.storage.base import EntityStorage
from goworld.storage.mongodb import MAP_TAG, MongoDBEntityStorage, decode_data, encode_data
from tests.goworld.mongo_server import fresh_database, mongo_server

RawDB = pymongo.database.Database[dict[str, Any]]


@pytest.fixture(scope="module")
def mongodb_url() -> Iterator[str]:
    with mongo_server() as url:
        yield url


@pytest.fixture
def db_name(request: pytest.FixtureRequest, mongodb_url: str) -> str:
    return fresh_database(request, mongodb_url)


@pytest_asyncio.fixture
async def storage(mongodb_url: str, db_name: str) -> AsyncIterator[MongoDBEntityStorage]:
    handle = MongoDBEntityStorage(mongodb_url, db_name)
    yield handle
    await handle.close()


@pytest.fixture
def raw(mongodb_url: str, db_name: str) -> Iterator[RawDB]:
    """The test's database through a plain (synchronous) PyMongo client, as GoWorld sees it."""
    client: pymongo.MongoClient[dict[str, Any]]
    with pymongo.MongoClient(mongodb_url) as client:
        yield client[db_name]


SAMPLE: dict[str, Any] = {
    "name": "Ünïcødé 名字 😀 \x00 nul",
    "level": 42,
    "ints": [0, 1, -1, 2**31 - 1, 2**31, -(2**31) - 1, 2**53 + 1],
    "int64_min": -(2**63),
    "int64_max": 2**63 - 1,
    "uint64_low": 2**63,
    "uint64_max": 2**64 - 1,
    "floats": [0.0, -0.0, 1.5, -2.25, 1e300, 5e-324, math.inf, -math.inf, 0.1],
    "flags": [True, False, None],
    "bytes": bytes(range(256)),
    "empty": {"dict": {}, "list": [], "str": "", "bytes": b""},
    "nested": {"a": [{"b": [[1, 2, {"c": b"x", "d": [2**64 - 1, -(2**63)]}]]}]},
    "big": "x" * 100_000,
}


# ----------------------------------------------------------------------------- round trips


@pytest.mark.asyncio
async def test_round_trip_keeps_values_and_types(storage: MongoDBEntityStorage) -> None:
    assert isinstance(storage, EntityStorage)
    await storage.save("Avatar", "A1", SAMPLE)
    loaded = await storage.load("Avatar", "A1")
    assert loaded == SAMPLE
    assert loaded is not None
    assert type(loaded["level"]) is int and type(loaded["int64_max"]) is int
    assert (
        type(loaded["uint64_max"]) is int
        and type(loaded["nested"]["a"][0]["b"][0][2]["d"][0]) is int
    )
    assert type(loaded["bytes"]) is bytes and type(loaded["flags"][0]) is bool
    assert math.copysign(1.0, loaded["floats"][1]) == -1.0
    nan = await _round_trip(storage, {"nan": math.nan})
    assert math.isnan(nan["nan"])


async def _round_trip(storage: MongoDBEntityStorage, data: dict[str, Any]) -> dict[str, Any]:
    await storage.save("Avatar", "tmp", data)
    loaded = await storage.load("Avatar", "tmp")
    assert loaded is not None
    return loaded


ODD_KEYS: dict[Any, Any] = {
    "a.b": 1,
    "$set": 2,
    "": 3,
    "nul\x00key": 4,
    MAP_TAG: 5,
    7: "int key",
    -(2**63): "int64 min key",
    2**64 - 1: "uint64 max key",
    1.5: "float key",
    True: "bool key",
    None: "none key",
    b"\xff": "bytes key",
}


@pytest.mark.asyncio
async def test_odd_keys_round_trip_in_the_tagged_form(
    storage: MongoDBEntityStorage, raw: RawDB
) -> None:
    data = {"odd": ODD_KEYS, "plain": {"x": {"a.b": [1]}}, "top.level": "dotted"}
    assert await _round_trip(storage, data) == data
    stored = raw["Avatar"].find_one({"_id": "tmp"})
    assert stored is not None and set(stored["data"]) == {MAP_TAG}  # "top.level" tags the root
    pairs = {repr(k): v for k, v in stored["data"][MAP_TAG]}
    assert set(pairs) == {"'odd'", "'plain'", "'top.level'"}
    assert set(pairs["'plain'"]) == {"x"}  # a plain dict stays a plain subdocument...
    assert set(pairs["'plain'"]["x"]) == {MAP_TAG}  # ...down to the one that is not
    assert [type(k) for k, _ in pairs["'odd'"][MAP_TAG]][5:7] == [Int64, Int64]


@pytest.mark.asyncio
async def test_tuples_come_back_as_lists_and_data_is_a_snapshot(
    storage: MongoDBEntityStorage,
) -> None:
    data: dict[str, Any] = {"pos": (1.0, 2.0), "items": [1], "raw": bytearray(b"ab")}
    saving = storage.save("Avatar", "A1", data)
    data["items"].append(2)
    data["raw"][0] = 0
    await saving
    assert await storage.load("Avatar", "A1") == {"pos": [1.0, 2.0], "items": [1], "raw": b"ab"}


# ----------------------------------------------------------------------------- GoWorld's layout


@pytest.mark.asyncio
async def test_documents_have_goworld_layout(storage: MongoDBEntityStorage, raw: RawDB) -> None:
    await storage.save("Avatar", "WbZJvbYW8igEAAAB", SAMPLE)
    await storage.save("Account", "acc1", {"password": "x"})
    assert sorted(raw.list_collection_names()) == ["Account", "Avatar"]  # one per type
    document = raw["Avatar"].find_one({"_id": "WbZJvbYW8igEAAAB"})
    assert document is not None and set(document) == {"_id", "data"}
    data = document["data"]
    assert set(data) == set(SAMPLE)  # attributes are plain fields of a subdocument
    assert data["name"] == SAMPLE["name"] and data["big"] == SAMPLE["big"]
    assert type(data["level"]) is Int64 and data["level"] == 42  # int64, as GoWorld's attrs
    assert type(data["int64_min"]) is Int64 and data["int64_min"] == -(2**63)
    assert data["uint64_low"] == Decimal128(str(2**63))  # BSON has no uint64
    assert data["uint64_max"] == Decimal128(str(2**64 - 1))
    assert type(data["bytes"]) is bytes  # binary subtype 0
    assert data["floats"][4] == 1e300 and data["flags"] == [True, False, None]
    assert data["nested"]["a"][0]["b"][0][2]["c"] == b"x"
    assert raw["Account"].find_one({"_id": "acc1"}) == {"_id": "acc1", "data": {"password": "x"}}


@pytest.mark.asyncio
async def test_a_goworld_written_document_loads(storage: MongoDBEntityStorage, raw: RawDB) -> None:
    # What GoWorld's mgo writes: UpsertId(id, bson.M{"data": attrs}).
    raw["Avatar"].update_one(
        {"_id": "WbZJvbYW8igEAAAB"},
        {
            "$set": {
                "data": {
                    "name": "goworld",
                    "level": 3,  # int32
                    "exp": Int64(10**12),
                    "hp": 99.5,
                    "online": False,
                    "pos": {"x": 1.0, "y": 0.0, "z": -3.5},
                    "items": ["sword", Int64(2), {"id": 7}],
                    "icon": Binary(b"\x89PNG", 0),
                    "uuid": Binary(b"0123456789abcdef", 4),
                    "exact": Decimal128("12345678901234567890"),
                    "price": Decimal128("1.25"),
                }
            }
        },
        upsert=True,
    )
    loaded = await storage.load("Avatar", "WbZJvbYW8igEAAAB")
    assert loaded == {
        "name": "goworld",
        "level": 3,
        "exp": 10**12,
        "hp": 99.5,
        "online": False,
        "pos": {"x": 1.0, "y": 0.0, "z": -3.5},
        "items": ["sword", 2, {"id": 7}],
        "icon": b"\x89PNG",
        "uuid": b"0123456789abcdef",
        "exact": 12345678901234567890,
        "price": 1.25,
    }
    assert loaded is not None and type(loaded["exp"]) is int and type(loaded["uuid"]) is bytes
    assert await storage.exists("Avatar", "WbZJvbYW8igEAAAB") is True
    assert await storage.list_ids("Avatar") == ["WbZJvbYW8igEAAAB"]


@pytest.mark.asyncio
async def test_a_document_without_data_fails_alone(
    storage: MongoDBEntityStorage, raw: RawDB
) -> None:
    raw["Avatar"].insert_many(
        [{"_id": "no-data"}, {"_id": "str-data", "data": "x"}, {"_id": "ok", "data": {"v": 1}}]
    )
    raw["Avatar"].insert_one({"_id": "bad-tag", "data": {MAP_TAG: [[1]]}})
    for bad in ("no-data", "str-data", "bad-tag"):
        with pytest.raises(StorageError, match=f"load Avatar/{bad}") as info:
            await storage.load("Avatar", bad)
        assert isinstance(info.value.__cause__, ValueError)
    # merged into one $in query with good loads: only the bad ones fail
    futures: list[asyncio.Future[Any]] = [
        storage.load("Avatar", i) for i in ("ok", "no-data", "ok", "missing")
    ]
    futures.append(storage.exists("Avatar", "no-data"))
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert results[0] == {"v": 1} and isinstance(results[1], StorageError)
    assert results[2:] == [{"v": 1}, None, True]


# ----------------------------------------------------------------------------- operations


@pytest.mark.asyncio
async def test_missing_overwrite_exists_and_list_ids_per_type(
    storage: MongoDBEntityStorage, raw: RawDB
) -> None:
    assert await storage.load("Avatar", "nope") is None
    assert await storage.exists("Avatar", "nope") is False
    assert await storage.list_ids("Avatar") == []
    await storage.save("Avatar", "A1", {"v": 1, "old": True})
    await storage.save("Avatar", "A1", {"v": 2})
    assert await storage.load("Avatar", "A1") == {"v": 2}
    assert raw["Avatar"].find_one({"_id": "A1"}) == {"_id": "A1", "data": {"v": 2}}
    ids = ["b", "a", "\ufffd", "😀", "é", "B", "a\x00"]  # code-point order, not UTF-16 order
    await asyncio.gather(*(storage.save("Mail", i, {"i": i}) for i in ids))
    await storage.save("Héros", "ид-1", {})
    assert await storage.list_ids("Mail") == sorted(ids)
    assert await storage.list_ids("Avatar") == ["A1"]
    assert await storage.list_ids("Héros") == ["ид-1"]
    assert await storage.exists("Mail", "A1") is False
    assert await storage.exists("Mail", "😀") is True
    raw["Mail"].insert_one({"_id": 12345, "data": {}})  # not an entity id: ignored
    assert await storage.list_ids("Mail") == sorted(ids)


@pytest.mark.asyncio
async def test_operations_apply_in_call_order(storage: MongoDBEntityStorage) -> None:
    futures: list[asyncio.Future[Any]] = []
    for version in range(5):
        futures.append(storage.save("Avatar", "A1", {"v": version}))
        futures.append(storage.load("Avatar", "A1"))
        futures.append(storage.list_ids("Avatar"))
        futures.append(storage.exists("Avatar", "A1"))
    results = await asyncio.gather(*futures)
    assert results[1::4] == [{"v": v} for v in range(5)]
    assert results[2::4] == [["A1"]] * 5 and results[3::4] == [True] * 5


class _Commands(CommandListener):
    def __init__(self) -> None:
        self.names: list[str] = []

    def started(self, event: CommandStartedEvent) -> None:
        self.names.append(event.command_name)

    def succeeded(self, event: Any) -> None:
        pass

    def failed(self, event: Any) -> None:
        pass


@pytest.mark.asyncio
async def test_bursts_are_merged_into_few_commands(mongodb_url: str, db_name: str) -> None:
    commands = _Commands()
    handle = MongoDBEntityStorage(mongodb_url, db_name, event_listeners=[commands])
    try:
        saves = [handle.save("Avatar", f"{i:04d}", {"i": i}) for i in range(2000)]
        saves += [handle.save("Account", f"{i:04d}", {"i": i}) for i in range(10)]
        await asyncio.gather(*saves)
        loads = [handle.load("Avatar", f"{i:04d}") for i in range(2000)]
        assert [r["i"] for r in await asyncio.gather(*loads) if r is not None] == list(range(2000))
        assert commands.names.count("update") < 20, commands.names.count("update")
        assert commands.names.count("find") < 20, commands.names.count("find")
    finally:
        await handle.close()


@pytest.mark.asyncio
async def test_bad_arguments_raise_at_call_time(storage: MongoDBEntityStorage) -> None:
    with pytest.raises(ValueError, match="int"):
        storage.save("Avatar", "A1", {"too_big": 2**64})
    with pytest.raises(ValueError, match="int"):
        storage.save("Avatar", "A1", {"deep": [{"too_small": -(2**63) - 1}]})
    with pytest.raises(TypeError):
        storage.save("Avatar", "A1", {"obj": object()})
    with pytest.raises(TypeError):
        storage.save("Avatar", "A1", {(1, 2): "tuple key"})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        storage.save("Avatar", "A1", [1])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Unicode"):
        storage.save("Avatar", "A1", {"lone": ["\udc80"]})
    with pytest.raises(ValueError, match="Unicode"):
        storage.save("Avatar", "A1", {"lone\ud800": 1})
    cycle: dict[str, Any] = {}
    cycle["self"] = cycle
    with pytest.raises(ValueError, match="deeply"):
        storage.save("Avatar", "A1", cycle)
    for bad_type in ("", "a$b", "system.users", ".x", "a\x00b"):
        with pytest.raises(ValueError):
            storage.save(bad_type, "A1", {})
    with pytest.raises(ValueError):
        storage.load("Avatar", "")
    with pytest.raises(TypeError):
        storage.exists("Avatar", 12)  # type: ignore[arg-type]
    assert await storage.list_ids("Avatar") == []  # nothing was written


def test_codec_is_pure() -> None:
    encoded = encode_data({"a": 2**63, "b": {1: 2}})
    assert encoded == {"a": Decimal128(str(2**63)), "b": {MAP_TAG: [[Int64(1), Int64(2)]]}}
    assert decode_data({"_id": "x", "data": encoded}) == {"a": 2**63, "b": {1: 2}}


# ----------------------------------------------------------------------------- lifecycle


@pytest.mark.asyncio
async def test_close_waits_for_queued_operations(mongodb_url: str, db_name: str) -> None:
    handle = MongoDBEntityStorage(mongodb_url, db_name, max_batch=64)
    for version in range(3):
        for i in range(200):  # none awaited
            handle.save("Avatar", f"{i:03d}", {"i": i, "version": version})
    last_load = handle.load("Avatar", "199")
    await asyncio.gather(handle.close(), handle.close())  # concurrent and idempotent
    await handle.close()
    assert last_load.done() and last_load.result() == {"i": 199, "version": 2}
    for call in (
        lambda: handle.save("Avatar", "A", {}),
        lambda: handle.load("Avatar", "A"),
        lambda: handle.exists("Avatar", "A"),
        lambda: handle.list_ids("Avatar"),
    ):
        with pytest.raises(StorageError, match="closed"):
            call()
    reopened = MongoDBEntityStorage(mongodb_url, db_name)
    try:
        assert await reopened.list_ids("Avatar") == [f"{i:03d}" for i in range(200)]
        records = await asyncio.gather(*(reopened.load("Avatar", f"{i:03d}") for i in range(200)))
        assert all(r == {"i": i, "version": 2} for i, r in enumerate(records))
    finally:
        await reopened.close()


@pytest.mark.asyncio
async def test_two_clients_see_each_other(mongodb_url: str, db_name: str) -> None:
    game1, game2 = (
        MongoDBEntityStorage(mongodb_url, db_name),
        MongoDBEntityStorage(mongodb_url, db_name),
    )
    try:
        await game1.save("Avatar", "A1", {"by": 1})
        assert await game2.load("Avatar", "A1") == {"by": 1}
        await game2.save("Avatar", "A1", {"by": 2})
        assert await game1.load("Avatar", "A1") == {"by": 2}
    finally:
        await asyncio.gather(game1.close(), game2.close())


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.asyncio
async def test_unreachable_server_is_a_storage_error(caplog: pytest.LogCaptureFixture) -> None:
    url = f"mongodb://127.0.0.1:{_unused_port()}/"
    handle = MongoDBEntityStorage(url, "goworld", serverSelectionTimeoutMS=200)
    caplog.set_level(logging.WARNING, logger="goworld.storage")
    try:
        futures: list[asyncio.Future[Any]] = [
            handle.save("Avatar", "A1", {"v": 1}),
            handle.load("Avatar", "A1"),
            handle.list_ids("Avatar"),
        ]
        results = await asyncio.gather(*futures, return_exceptions=True)
        for result in results:
            assert isinstance(result, StorageError), result
            assert isinstance(result.__cause__, ConnectionFailure)
        assert "save Avatar/A1 failed" in str(results[0]) and url in str(results[0])
        with pytest.raises(StorageError, match="exists Avatar/A1"):
            await handle.exists("Avatar", "A1")
    finally:
        await handle.close()
    outage_lines = [r for r in caplog.records if "cannot reach MongoDB" in r.getMessage()]
    assert len(outage_lines) == 1  # one line per outage, not per failure


def test_unusable_settings_are_storage_errors() -> None:
    with pytest.raises(StorageError, match="url"):
        MongoDBEntityStorage("")
    with pytest.raises(StorageError):
        MongoDBEntityStorage("http://127.0.0.1:27017/")
    with pytest.raises(StorageError, match="database name"):
        MongoDBEntityStorage("mongodb://127.0.0.1:27017/", "bad.name")
    with pytest.raises(StorageError):
        MongoDBEntityStorage("mongodb://127.0.0.1:27017/", "goworld", no_such_option=1)
    hidden = MongoDBEntityStorage("mongodb://user:secret@127.0.0.1:27017/", "")
    assert "secret" not in hidden.describe and hidden.describe.endswith("db goworld")
