"""The entity-storage contract (goworld/storage/base.py), run against every backend.

To add a backend, add a maker to ``BACKENDS``: it gets the pytest ``request`` and a private
``tmp_path`` and returns an opener, a function that opens a new handle on the same database
each time it is called (so tests can close and reopen, or simulate two games). A maker for a
server backend isolates each test (a unique database name dropped by a finalizer, or a
database index emptied first). Redis is a real ``redis-server`` started by the
``redis_server`` fixture (tests/goworld/redis_server.py); the tests fail if it is missing.

Backends come from ``open_storage``, so the real ones run behind the resilient wrapper
(goworld/storage/resilient.py), as in a game. The last sections hold backend-specific tests:
SQLite (unusable paths, batching, two processes, kill -9) and Redis (layout, errors).
"""

from __future__ import annotations

import asyncio
import gc
import math
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import goworld
from goworld.config import StorageConfig
from goworld.errors import StorageError
from goworld.storage import EntityStorage, open_storage
from goworld.storage.memory import MemoryEntityStorage
from goworld.storage.redis import RedisEntityStorage
from goworld.storage.resilient import ResilientEntityStorage
from goworld.storage.sqlite import SQLiteEntityStorage
from tests.goworld import mongo_server as mongo_fixtures
from tests.goworld import redis_server as redis_fixtures
from tests.goworld.mongo_server import fresh_database
from tests.goworld.redis_server import RedisServer

redis_server = redis_fixtures.redis_server
mongodb_url = mongo_fixtures.mongodb_url  # a MongoDB-wire server (or GOWORLD_TEST_MONGODB_URL)  # the module-scoped fixture: a real redis-server

Opener = Callable[[], EntityStorage]


def _memory(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    return MemoryEntityStorage().new_handle


def _sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    path = tmp_path / "cluster.db"
    return lambda: open_storage(StorageConfig(type="sqlite", path=path))


REDIS_DB = 1  # the KVDB contract uses another index of its own server


def _redis(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    server: RedisServer = request.getfixturevalue("redis_server")
    server.flushdb(REDIS_DB)
    cfg = StorageConfig(type="redis", url=server.url, db=str(REDIS_DB))
    return lambda: open_storage(cfg)


def _mongodb(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    url: str = request.getfixturevalue("mongodb_url")
    cfg = StorageConfig(type="mongodb", url=url, db=fresh_database(request, url))
    return lambda: open_storage(cfg)


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], Opener]] = {
    "memory": _memory,
    "sqlite": _sqlite,
    "redis": _redis,
    "mongodb": _mongodb,
}


@pytest.fixture(params=sorted(BACKENDS))
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    return BACKENDS[request.param](request, tmp_path)


@pytest_asyncio.fixture
async def storage(opener: Opener) -> AsyncIterator[EntityStorage]:
    handle = opener()
    yield handle
    await handle.close()


SAMPLE: dict[str, Any] = {
    "name": "Ünïcødé 名字 😀",
    "level": 42,
    "ints": [0, 1, -1, 127, 128, 255, 256, 65535, 65536, 2**31, 2**32, -(2**31) - 1],
    "int64_min": -(2**63),
    "uint64_max": 2**64 - 1,
    "int64_max": 2**63 - 1,
    "floats": [0.0, -0.0, 1.5, -2.25, 1e300, -1e-300, math.inf, -math.inf, 0.1],
    "flags": [True, False, None],
    "bytes": b"\x00\x01\xfe\xff" * 10,
    "empty": {"dict": {}, "list": [], "str": "", "bytes": b""},
    "nested": {"a": [{"b": [[1, 2, {"c": b"x"}]]}], "int_keys": {1: "one", -2: "minus two"}},
    "big": "x" * 100_000,
}


# ----------------------------------------------------------------------------- round trips


@pytest.mark.asyncio
async def test_round_trip(storage: EntityStorage) -> None:
    await storage.save("Avatar", "A1", SAMPLE)
    loaded = await storage.load("Avatar", "A1")
    assert loaded == SAMPLE
    assert loaded is not None
    assert type(loaded["bytes"]) is bytes and type(loaded["name"]) is str
    assert type(loaded["flags"][0]) is bool and type(loaded["level"]) is int
    assert math.copysign(1.0, loaded["floats"][1]) == -1.0  # -0.0 survives


@pytest.mark.asyncio
async def test_tuples_come_back_as_lists(storage: EntityStorage) -> None:
    await storage.save("Avatar", "A1", {"pos": (1.0, 2.0, 3.0)})
    assert await storage.load("Avatar", "A1") == {"pos": [1.0, 2.0, 3.0]}


_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
)
_values = st.recursive(
    _leaves,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=25,
)
_records = st.dictionaries(st.text(max_size=10), _values, max_size=8)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(record=_records)
def test_round_trip_property(opener: Opener, record: dict[str, Any]) -> None:
    async def body() -> None:
        handle = opener()
        try:
            await handle.save("Prop", "one", record)
            assert await handle.load("Prop", "one") == record
        finally:
            await handle.close()

    asyncio.run(body())


@pytest.mark.asyncio
async def test_saved_data_is_a_snapshot(storage: EntityStorage) -> None:
    data: dict[str, Any] = {"items": [1, 2], "attrs": {"hp": 10}}
    saving = storage.save("Avatar", "A1", data)
    data["items"].append(3)
    data["attrs"]["hp"] = 0
    await saving
    loaded = await storage.load("Avatar", "A1")
    assert loaded == {"items": [1, 2], "attrs": {"hp": 10}}
    assert loaded is not None
    loaded["items"].clear()
    assert await storage.load("Avatar", "A1") == {"items": [1, 2], "attrs": {"hp": 10}}


# ----------------------------------------------------------------------------- keys and types


@pytest.mark.asyncio
async def test_missing(storage: EntityStorage) -> None:
    assert await storage.load("Avatar", "nope") is None
    assert await storage.exists("Avatar", "nope") is False
    assert await storage.list_ids("Avatar") == []


@pytest.mark.asyncio
async def test_overwrite(storage: EntityStorage) -> None:
    await storage.save("Avatar", "A1", {"v": 1, "old": True})
    await storage.save("Avatar", "A1", {"v": 2})
    assert await storage.load("Avatar", "A1") == {"v": 2}
    assert await storage.list_ids("Avatar") == ["A1"]


@pytest.mark.asyncio
async def test_types_are_separate_namespaces(storage: EntityStorage) -> None:
    await asyncio.gather(
        storage.save("Avatar", "X", {"t": "avatar"}),
        storage.save("Avatar", "B", {"t": "avatar"}),
        storage.save("Account", "X", {"t": "account"}),
        storage.save("Avatar", "A", {"t": "avatar"}),
    )
    assert await storage.list_ids("Avatar") == ["A", "B", "X"]
    assert await storage.list_ids("Account") == ["X"]
    assert await storage.list_ids("Mail") == []
    assert await storage.load("Account", "X") == {"t": "account"}
    assert await storage.load("Avatar", "X") == {"t": "avatar"}
    assert await storage.exists("Account", "A") is False
    assert await storage.exists("Avatar", "A") is True


@pytest.mark.asyncio
async def test_unicode_names(storage: EntityStorage) -> None:
    await storage.save("Héros", "ид-1", {"ok": 1})
    assert await storage.load("Héros", "ид-1") == {"ok": 1}
    assert await storage.list_ids("Héros") == ["ид-1"]


@pytest.mark.asyncio
async def test_operations_apply_in_call_order(storage: EntityStorage) -> None:
    # Nothing awaited in between: submission order alone decides.
    first = storage.save("Avatar", "A1", {"v": 1})
    loaded_early = storage.load("Avatar", "A1")
    second = storage.save("Avatar", "A1", {"v": 2})
    loaded_late = storage.load("Avatar", "A1")
    exists = storage.exists("Avatar", "A1")
    assert await loaded_late == {"v": 2}
    assert await loaded_early == {"v": 1}
    assert await exists is True
    await asyncio.gather(first, second)


@pytest.mark.asyncio
async def test_bad_arguments_raise_at_call_time(storage: EntityStorage) -> None:
    with pytest.raises(ValueError, match="int"):
        storage.save("Avatar", "A1", {"too_big": 2**64})
    with pytest.raises(ValueError, match="int"):
        storage.save("Avatar", "A1", {"too_small": -(2**63) - 1})
    with pytest.raises(TypeError):
        storage.save("Avatar", "A1", {"obj": object()})
    with pytest.raises(TypeError):
        storage.save("Avatar", "A1", ["not", "a", "dict"])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        storage.save("Avatar", "", {})
    with pytest.raises(ValueError):
        storage.load("", "A1")
    with pytest.raises(TypeError):
        storage.exists("Avatar", 12)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        storage.list_ids("bad\udc80surrogate")
    assert await storage.exists("Avatar", "A1") is False  # nothing was written


# ----------------------------------------------------------------------------- lifecycle


@pytest.mark.asyncio
async def test_close_waits_for_queued_saves(opener: Opener) -> None:
    handle = opener()
    for version in range(4):
        for i in range(250):  # 1000 saves, none awaited
            handle.save("Avatar", f"{i:04d}", {"i": i, "version": version, "pad": b"p" * 200})
    await handle.close()
    await handle.close()  # idempotent

    reopened = opener()
    try:
        ids = await reopened.list_ids("Avatar")
        assert ids == [f"{i:04d}" for i in range(250)]
        records = await asyncio.gather(*(reopened.load("Avatar", i) for i in ids))
        assert all(r is not None and r["version"] == 3 for r in records)
        assert [r["i"] for r in records if r is not None] == list(range(250))
    finally:
        await reopened.close()


@pytest.mark.asyncio
async def test_closed_storage_refuses_operations(opener: Opener) -> None:
    handle = opener()
    await handle.close()
    with pytest.raises(StorageError, match="closed"):
        handle.save("Avatar", "A1", {})
    with pytest.raises(StorageError, match="closed"):
        handle.load("Avatar", "A1")
    with pytest.raises(StorageError, match="closed"):
        handle.exists("Avatar", "A1")
    with pytest.raises(StorageError, match="closed"):
        handle.list_ids("Avatar")


@pytest.mark.asyncio
async def test_two_handles_see_each_other(opener: Opener) -> None:
    game1, game2 = opener(), opener()
    try:
        await game1.save("Avatar", "A1", {"by": 1})
        assert await game2.load("Avatar", "A1") == {"by": 1}
        await game2.save("Avatar", "A1", {"by": 2})
        assert await game1.load("Avatar", "A1") == {"by": 2}
    finally:
        await asyncio.gather(game1.close(), game2.close())


@pytest.mark.asyncio
async def test_the_loop_is_not_blocked(storage: EntityStorage) -> None:
    loop = asyncio.get_running_loop()
    gaps: list[float] = []
    running = True

    async def ticker() -> None:
        last = loop.time()
        while running:
            await asyncio.sleep(0.001)
            now = loop.time()
            gaps.append(now - last)
            last = now

    # The property: storage work happens off the loop. A gap is what the loop itself spent, so
    # the collector (a full pass over a big test-suite heap) is kept out of the measurement, and
    # the bound is loose: a loop blocked on disk for 10k operations stalls for seconds.
    gc.disable()
    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    payload = {"name": "x" * 100, "items": list(range(100)), "blob": b"b" * 400}
    saves = []
    for chunk in range(10):  # a game saving 5000 entities, 500 per tick
        saves += [storage.save("Avatar", f"{chunk}-{i:03d}", payload) for i in range(500)]
        await asyncio.sleep(0)
    await asyncio.gather(*saves)
    loads = []
    for chunk in range(10):
        loads += [storage.load("Avatar", f"{chunk}-{i:03d}") for i in range(500)]
        await asyncio.sleep(0)
    assert all(r == payload for r in await asyncio.gather(*loads))
    running = False
    await ticking
    gc.enable()
    assert gaps and max(gaps) < 0.5, f"the loop stalled for {max(gaps):.3f} s"


# ----------------------------------------------------------------------------- factory


def test_factory_rejects_bad_backends(tmp_path: Path) -> None:
    with pytest.raises(StorageError):
        open_storage(StorageConfig(type="mongodb", url="http://not-mongo/", db="goworld"))
    with pytest.raises(StorageError, match="url"):
        open_storage(StorageConfig(type="redis", url="http://127.0.0.1:6379", db="0"))
    with pytest.raises(StorageError, match="unknown"):
        open_storage(StorageConfig(type="cassandra"))
    with pytest.raises(StorageError, match="path"):
        open_storage(StorageConfig(type="sqlite"))


@pytest.mark.asyncio
async def test_factory_builds_the_right_backends(tmp_path: Path) -> None:
    sqlite = open_storage(StorageConfig(type="sqlite", path=tmp_path / "x.db"))
    redis = open_storage(StorageConfig(type="redis", url="redis://127.0.0.1:1/7", db="3"))
    memory = open_storage(StorageConfig(type="memory"))
    try:
        for real, kind in ((sqlite, SQLiteEntityStorage), (redis, RedisEntityStorage)):
            assert isinstance(real, ResilientEntityStorage) and isinstance(real, EntityStorage)
            assert isinstance(real.inner, kind) and isinstance(real.inner, EntityStorage)
        assert "db 3" in redis.describe  # [storage] db wins over a database in the URL
        assert isinstance(memory, MemoryEntityStorage) and isinstance(memory, EntityStorage)
    finally:
        await asyncio.gather(sqlite.close(), redis.close(), memory.close())


# ----------------------------------------------------------------------------- SQLite only


@pytest.mark.asyncio
async def test_sqlite_unusable_path_raises_storage_error(tmp_path: Path) -> None:
    for bad in (tmp_path, tmp_path / "missing-dir" / "x.db"):  # a directory; no parent dir
        handle = SQLiteEntityStorage(bad)
        try:
            with pytest.raises(StorageError, match="save Avatar/A1") as info:
                await handle.save("Avatar", "A1", {"v": 1})
            assert str(bad) in str(info.value)
            assert info.value.__cause__ is not None
            with pytest.raises(StorageError):
                await handle.load("Avatar", "A1")  # every operation reports it
        finally:
            await handle.close()


@pytest.mark.asyncio
async def test_sqlite_corrupt_record_fails_alone(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "x.db"
    handle = SQLiteEntityStorage(path)
    try:
        await handle.save("Avatar", "good", {"v": 1})
        raw = sqlite3.connect(path)
        with raw:
            raw.execute("INSERT INTO entities VALUES ('Avatar', 'bad', x'c1')")  # 0xc1: never used
        raw.close()
        ops: list[asyncio.Future[Any]] = [
            handle.load("Avatar", "bad"),
            handle.load("Avatar", "good"),
            handle.save("A", "b", {}),
        ]
        results = await asyncio.gather(*ops, return_exceptions=True)
        assert isinstance(results[0], StorageError) and "load Avatar/bad" in str(results[0])
        assert results[1:] == [{"v": 1}, None]
    finally:
        await handle.close()


@pytest.mark.asyncio
async def test_sqlite_batches_a_burst_of_saves(tmp_path: Path) -> None:
    handle = SQLiteEntityStorage(tmp_path / "x.db")
    try:
        await handle.exists("Avatar", "warm-up")
        before = handle.statistics()
        await asyncio.gather(*(handle.save("Avatar", f"{i:05d}", {"i": i}) for i in range(4000)))
        after = handle.statistics()
        assert after.jobs - before.jobs == 4000 and after.queued == 0
        assert after.transactions - before.transactions < 400, after
        assert after.largest_batch > 10
    finally:
        await handle.close()


@pytest.mark.asyncio
async def test_sqlite_waits_for_another_writer(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "x.db"
    handle = SQLiteEntityStorage(path, busy_timeout=0.05, retry_for=5.0)
    other = sqlite3.connect(path, isolation_level=None)  # another game holding the write lock
    try:
        await handle.save("Avatar", "A1", {"v": 0})
        other.execute("BEGIN IMMEDIATE")
        saving = handle.save("Avatar", "A1", {"v": 1})
        await asyncio.sleep(0.3)
        assert not saving.done()
        other.execute("COMMIT")
        await saving
        assert await handle.load("Avatar", "A1") == {"v": 1}
        assert handle.statistics().busy_retries > 0
    finally:
        other.close()
        await handle.close()


@pytest.mark.asyncio
async def test_sqlite_gives_up_on_a_lock_held_too_long(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "x.db"
    handle = SQLiteEntityStorage(path, busy_timeout=0.02, retry_for=0.1)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        await handle.exists("Avatar", "A1")
        other.execute("BEGIN IMMEDIATE")
        saves = [handle.save("Avatar", f"A{i}", {"v": i}) for i in range(3)]
        for outcome in await asyncio.gather(*saves, return_exceptions=True):
            assert isinstance(outcome, StorageError) and "locked" in str(outcome)
        other.execute("ROLLBACK")
        await handle.save("Avatar", "A1", {"v": 2})  # usable again once the lock is gone
        assert await handle.list_ids("Avatar") == ["A1"]
    finally:
        other.close()
        await handle.close()


@pytest.mark.asyncio
async def test_sqlite_storage_and_kvdb_share_a_file(tmp_path: Path) -> None:
    from goworld.kvdb.sqlite import SQLiteKVDB

    path = tmp_path / "cluster.db"
    storage, kvdb = SQLiteEntityStorage(path), SQLiteKVDB(path)
    try:
        await asyncio.gather(
            *(storage.save("Avatar", f"{i}", {"i": i}) for i in range(200)),
            *(kvdb.put(f"k{i}", f"v{i}") for i in range(200)),
        )
        assert len(await storage.list_ids("Avatar")) == 200
        assert len(await kvdb.get_range("k", "l")) == 200
    finally:
        await asyncio.gather(storage.close(), kvdb.close())


_CRASHING_GAME = """
import asyncio, sys
from pathlib import Path
from goworld.config import StorageConfig
from goworld.storage import open_storage
from goworld.storage.sqlite import SQLiteEntityStorage

async def main():
    if sys.argv[2] == "open_storage":  # as a game opens it: behind the resilient wrapper
        storage = open_storage(StorageConfig(type="sqlite", path=Path(sys.argv[1])))
    else:
        storage = SQLiteEntityStorage(sys.argv[1])
    version = 0
    while True:
        version += 1
        for i in range(200):
            last = storage.save("Avatar", f"{i:03d}", {"v": version, "all": [version] * 64,
                                                          "blob": bytes([version % 256]) * 512})
            if i % 10 == 9:
                await last  # small batches, so the kill lands in the middle of a version
        if version == 1:
            print("committed", flush=True)

asyncio.run(main())
"""


def _repo_root() -> Path:
    return Path(goworld.__path__[0]).parent


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["direct", "open_storage"])
async def test_sqlite_kill_9_leaves_old_or_new_records(tmp_path: Path, how: str) -> None:
    path = tmp_path / "crash.db"
    child = subprocess.Popen(
        [sys.executable, "-c", _CRASHING_GAME, str(path), how],
        cwd=_repo_root(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "committed"
        await asyncio.sleep(0.15)  # let it write a few more versions, then kill it mid-stream
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        assert child.stdout is not None
        child.stdout.close()

    handle = SQLiteEntityStorage(path)
    try:
        ids = await handle.list_ids("Avatar")
        assert ids == [f"{i:03d}" for i in range(200)]
        records = await asyncio.gather(*(handle.load("Avatar", i) for i in ids))
        versions = []
        for record in records:
            assert record is not None
            version = record["v"]
            assert record["all"] == [version] * 64  # each record is whole: old or new
            assert record["blob"] == bytes([version % 256]) * 512
            versions.append(version)
        # Batches commit in submission order: the file holds a prefix of the saves.
        assert versions == sorted(versions, reverse=True)
        assert versions[0] - versions[-1] <= 1
    finally:
        await handle.close()


@pytest.mark.asyncio
async def test_sqlite_corrupt_record_fails_at_once_behind_the_wrapper(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "x.db"
    handle = open_storage(StorageConfig(type="sqlite", path=path))
    assert isinstance(handle, ResilientEntityStorage)
    try:
        await handle.save("Avatar", "good", {"v": 1})
        raw = sqlite3.connect(path)
        with raw:
            raw.execute("INSERT INTO entities VALUES ('Avatar', 'bad', x'c1')")
        raw.close()
        bad, good = handle.load("Avatar", "bad"), handle.load("Avatar", "good")
        with pytest.raises(StorageError, match="corrupt"):
            await asyncio.wait_for(bad, 5)  # not transient: no retry, no outage
        assert await good == {"v": 1}
        assert handle.statistics().outages == 0
    finally:
        await handle.close()


# ----------------------------------------------------------------------------- Redis only


@pytest.mark.asyncio
async def test_redis_layout_is_one_hash_per_type(redis_server: RedisServer) -> None:
    from goworld.storage.base import pack_data

    server = redis_server
    server.flushdb(REDIS_DB)
    handle = open_storage(StorageConfig(type="redis", url=server.url, db=str(REDIS_DB)))
    try:
        await asyncio.gather(
            handle.save("Avatar", "A1", {"name": "é", "lv": 3}),
            handle.save("Avatar", "A$2", {"x": b"y"}),
            handle.save("Avatar$A", "1", {"t": "other type"}),  # no collision with Avatar/A$...
        )
        raw = server.client(REDIS_DB)
        try:
            assert sorted(raw.keys()) == [b"_ENT_Avatar", b"_ENT_Avatar$A"]
            assert raw.type("_ENT_Avatar") == b"hash"
            assert raw.hget("_ENT_Avatar", "A1") == pack_data({"name": "é", "lv": 3})
            assert sorted(raw.hkeys("_ENT_Avatar")) == [b"A$2", b"A1"]
        finally:
            raw.close()
        assert await handle.list_ids("Avatar") == ["A$2", "A1"]
        assert await handle.list_ids("Avatar$A") == ["1"]
    finally:
        await handle.close()


@pytest.mark.asyncio
async def test_redis_bad_data_fails_at_once(redis_server: RedisServer) -> None:
    server = redis_server
    server.flushdb(REDIS_DB)
    handle = open_storage(StorageConfig(type="redis", url=server.url, db=str(REDIS_DB)))
    assert isinstance(handle, ResilientEntityStorage)
    raw = server.client(REDIS_DB)
    try:
        raw.hset("_ENT_Avatar", "bad", b"\xc1")  # not msgpack
        raw.set("_ENT_Mail", "a string, not a hash")
        ops: list[asyncio.Future[Any]] = [
            handle.load("Avatar", "bad"),
            handle.save("Mail", "M1", {"v": 1}),  # WRONGTYPE
            handle.save("Avatar", "good", {"v": 2}),
            handle.load("Avatar", "good"),
        ]
        results = await asyncio.wait_for(asyncio.gather(*ops, return_exceptions=True), 5)
        assert isinstance(results[0], StorageError) and "load Avatar/bad" in str(results[0])
        assert isinstance(results[0].__cause__, ValueError)
        assert isinstance(results[1], StorageError) and "WRONGTYPE" in str(results[1])
        assert results[2:] == [None, {"v": 2}]
        assert handle.statistics().outages == 0
    finally:
        raw.close()
        await handle.close()


@pytest.mark.asyncio
async def test_redis_unreachable_server_raises_storage_error() -> None:
    from goworld.testing import free_port

    handle = RedisEntityStorage(f"redis://127.0.0.1:{free_port()}", 0)  # unwrapped: no retry
    try:
        with pytest.raises(StorageError, match="save Avatar/A1") as info:
            await asyncio.wait_for(handle.save("Avatar", "A1", {"v": 1}), 10)
        assert info.value.__cause__ is not None
        from goworld.storage.resilient import is_transient

        assert is_transient(info.value)
    finally:
        await handle.close()


@pytest.mark.asyncio
async def test_redis_refusing_writes_misconf_is_an_outage_and_the_save_lands_after(tmp_path: Path) -> None:
    """MISCONF (Redis stops taking writes when its snapshot to disk fails): a save is held and
    retried, not failed, and lands once the server takes writes again. redis-py reports it as
    "Command # 1 (HSET ...) of pipeline caused error: MISCONF ..." inside a MULTI."""
    import shutil

    from goworld.testing import free_port

    good, doomed = tmp_path / "good", tmp_path / "doomed"
    good.mkdir()
    doomed.mkdir()
    port = free_port()
    server = subprocess.Popen(
        [redis_fixtures.redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1",
         "--save", "3600 1", "--stop-writes-on-bgsave-error", "yes", "--dir", str(good),
         "--enable-protected-configs", "yes"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    import redis

    raw = redis.Redis(port=port)
    handle = open_storage(StorageConfig(type="redis", url=f"redis://127.0.0.1:{port}", db="0"))
    try:
        for _ in range(200):
            try:
                raw.ping()
                break
            except redis.ConnectionError:
                await asyncio.sleep(0.02)
        raw.config_set("dir", str(doomed))
        raw.set("seed", "1")
        shutil.rmtree(doomed)  # the next snapshot cannot be written
        raw.bgsave()
        for _ in range(200):
            if raw.info("persistence")["rdb_last_bgsave_status"] == "err":
                break
            await asyncio.sleep(0.02)
        saved = handle.save("Avatar", "A1", {"hp": 7})
        await asyncio.sleep(1.0)
        assert not saved.done(), saved  # held, not failed
        assert handle.statistics().outages == 1
        raw.config_set("dir", str(good))
        raw.bgsave()  # a snapshot that works: writes are taken again
        await asyncio.wait_for(saved, 20)
        assert await asyncio.wait_for(handle.load("Avatar", "A1"), 10) == {"hp": 7}
    finally:
        raw.close()
        server.kill()
        server.wait(10)
        await asyncio.wait_for(handle.close(), 10)


@pytest.mark.asyncio
async def test_redis_errors_and_log_lines_leave_the_password_out() -> None:
    handle = RedisEntityStorage("redis://:s3cret-pw@127.0.0.1:1/0", 0)
    try:
        assert "s3cret-pw" not in handle.describe and "127.0.0.1:1" in handle.describe
    finally:
        await handle.close()
