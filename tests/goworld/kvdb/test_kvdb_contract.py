"""The KVDB contract (goworld/kvdb/base.py), run against every backend.

To add a backend, add a maker to ``BACKENDS``: it gets the pytest ``request`` and a private
``tmp_path`` and returns an opener, a function that opens a new handle on the same database
each time it is called (to close and reopen, or to simulate two games). A maker for a server
backend isolates each test (its own database, emptied first). Redis is a real
``redis-server`` started by the ``redis_server`` fixture (tests/goworld/redis_server.py); the
tests fail if it is missing.

Backends come from ``open_kvdb``, so the real ones run behind the resilient wrapper, as in a
game. The last sections hold backend-specific tests: unusable SQLite paths, a get_or_put race
between processes (SQLite and Redis), the Redis layout and its errors.
"""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import goworld
from goworld.config import KVDBConfig
from goworld.errors import StorageError
from goworld.kvdb import KVDB, open_kvdb
from goworld.kvdb.memory import MemoryKVDB
from goworld.kvdb.redis import RedisKVDB
from goworld.kvdb.resilient import ResilientKVDB
from goworld.kvdb.sqlite import SQLiteKVDB
from tests.goworld import mongo_server as mongo_fixtures
from tests.goworld import redis_server as redis_fixtures
from tests.goworld.mongo_server import fresh_database
from tests.goworld.redis_server import RedisServer

redis_server = redis_fixtures.redis_server
mongodb_url = mongo_fixtures.mongodb_url  # a MongoDB-wire server (or GOWORLD_TEST_MONGODB_URL)

Opener = Callable[[], KVDB]


def _memory(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    return MemoryKVDB().new_handle


def _sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    path = tmp_path / "kv.db"
    return lambda: open_kvdb(KVDBConfig(type="sqlite", path=path))


REDIS_DB = 2  # the storage contract uses another index of its own server


def _redis(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    server: RedisServer = request.getfixturevalue("redis_server")
    server.flushdb(REDIS_DB)
    cfg = KVDBConfig(type="redis", url=server.url, db=str(REDIS_DB))
    return lambda: open_kvdb(cfg)


def _mongodb(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    url: str = request.getfixturevalue("mongodb_url")
    cfg = KVDBConfig(type="mongodb", url=url, db=fresh_database(request, url), collection="__kv__")
    return lambda: open_kvdb(cfg)


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
async def kvdb(opener: Opener) -> AsyncIterator[KVDB]:
    handle = opener()
    yield handle
    await handle.close()


# ----------------------------------------------------------------------------- get / put


@pytest.mark.asyncio
async def test_get_missing_is_none(kvdb: KVDB) -> None:
    assert await kvdb.get("nope") is None


@pytest.mark.asyncio
async def test_put_get_overwrite(kvdb: KVDB) -> None:
    await kvdb.put("password$alice", "secret")
    assert await kvdb.get("password$alice") == "secret"
    await kvdb.put("password$alice", "changed")
    assert await kvdb.get("password$alice") == "changed"
    assert await kvdb.get("password$bob") is None


@pytest.mark.asyncio
async def test_empty_string_is_a_value(kvdb: KVDB) -> None:
    await kvdb.put("", "")
    assert await kvdb.get("") == ""
    assert await kvdb.get_or_put("", "other") == ""
    assert await kvdb.get("") == ""


@pytest.mark.asyncio
async def test_unicode_and_large_values(kvdb: KVDB) -> None:
    pairs = {"名字": "值 😀", "ключ": "значение", "tab\tnew\nline": "x" * 200_000}
    await asyncio.gather(*(kvdb.put(k, v) for k, v in pairs.items()))
    assert {k: await kvdb.get(k) for k in pairs} == pairs


@pytest.mark.asyncio
async def test_operations_apply_in_call_order(kvdb: KVDB) -> None:
    first = kvdb.put("k", "1")
    early = kvdb.get("k")
    second = kvdb.put("k", "2")
    late = kvdb.get("k")
    kept = kvdb.get_or_put("k", "3")
    assert (await early, await late, await kept) == ("1", "2", "2")
    await asyncio.gather(first, second)


@pytest.mark.asyncio
async def test_bad_arguments_raise_at_call_time(kvdb: KVDB) -> None:
    with pytest.raises(TypeError):
        kvdb.get(1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        kvdb.put("k", None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        kvdb.get_or_put(b"k", "v")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        kvdb.get_range("a", 5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        kvdb.put("lone\udc80surrogate", "v")
    with pytest.raises(ValueError):
        kvdb.put("k", "\ud800")
    assert await kvdb.get("k") is None  # nothing was written


# ----------------------------------------------------------------------------- get_or_put


@pytest.mark.asyncio
async def test_get_or_put(kvdb: KVDB) -> None:
    assert await kvdb.get_or_put("lastMailID", "1") is None
    assert await kvdb.get("lastMailID") == "1"
    assert await kvdb.get_or_put("lastMailID", "2") == "1"
    assert await kvdb.get("lastMailID") == "1"  # not overwritten


def _check_one_winner(results: list[str | None], values: list[str], final: str | None) -> None:
    winners = [i for i, result in enumerate(results) if result is None]
    assert len(winners) == 1, results
    winner_value = values[winners[0]]
    assert final == winner_value
    assert all(r == winner_value for i, r in enumerate(results) if i != winners[0])


@pytest.mark.asyncio
async def test_get_or_put_race_on_one_handle(kvdb: KVDB) -> None:
    values = [f"value-{i}" for i in range(50)]
    results = await asyncio.gather(*(kvdb.get_or_put("race", v) for v in values))
    _check_one_winner(list(results), values, await kvdb.get("race"))
    assert results[0] is None  # on one handle, call order decides


@pytest.mark.asyncio
async def test_get_or_put_race_between_two_games(opener: Opener) -> None:
    game1, game2 = opener(), opener()
    try:
        for key in ("a", "b", "c"):
            values = [f"{key}-{i}" for i in range(50)]
            handles = [game1 if i % 2 else game2 for i in range(50)]
            results = await asyncio.gather(
                *(h.get_or_put(key, v) for h, v in zip(handles, values, strict=True))
            )
            _check_one_winner(list(results), values, await game1.get(key))
            assert await game2.get(key) == await game1.get(key)
    finally:
        await asyncio.gather(game1.close(), game2.close())


# ----------------------------------------------------------------------------- get_range

KEYS = [
    "a",
    "ab",
    "abc",
    "b",
    "ba",
    "c",
    "é",
    "中",
    "\ufffd",
    "😀",
    "mail$e1$0000000001",
    "mail$e1$0000000002",
    "mail$e2$0000000001",
]


@pytest_asyncio.fixture
async def filled(kvdb: KVDB) -> KVDB:
    await asyncio.gather(*(kvdb.put(k, f"v:{k}") for k in reversed(KEYS)))
    return kvdb


def _pairs(*keys: str) -> list[tuple[str, str]]:
    return [(k, f"v:{k}") for k in keys]


@pytest.mark.asyncio
async def test_get_range_everything_in_code_point_order(filled: KVDB) -> None:
    everything = await filled.get_range("", None)
    assert everything == _pairs(*sorted(KEYS))
    # code point order, not UTF-16 order: U+FFFD sorts before U+1F600
    assert [k for k, _ in everything][-4:] == ["é", "中", "\ufffd", "😀"]


@pytest.mark.asyncio
async def test_get_range_bounds(filled: KVDB) -> None:
    assert await filled.get_range("ab", "b") == _pairs("ab", "abc")  # [begin, end)
    assert await filled.get_range("a", "ab") == _pairs("a")
    assert await filled.get_range("abc", "abc\x00") == _pairs("abc")
    assert await filled.get_range("b", "c") == _pairs("b", "ba")
    assert await filled.get_range("é", None) == _pairs("é", "中", "\ufffd", "😀")
    assert await filled.get_range("\ufffd", "😀") == _pairs("\ufffd")
    assert await filled.get_range("mail$e1$", "mail$e1%") == _pairs(
        "mail$e1$0000000001", "mail$e1$0000000002"
    )


@pytest.mark.asyncio
async def test_get_range_empty(filled: KVDB) -> None:
    assert await filled.get_range("b", "b") == []
    assert await filled.get_range("c", "b") == []  # begin > end
    assert await filled.get_range("a", "") == []  # "" is a bound, not "no bound"
    assert await filled.get_range("bb", "bz") == []
    assert await filled.get_range("😀\x00", None) == []


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=20),
    begin=st.text(max_size=3),
    end=st.none() | st.text(max_size=3),
)
def test_get_range_matches_a_model(
    opener: Opener, data: dict[str, str], begin: str, end: str | None
) -> None:
    async def body() -> None:
        handle = opener()
        try:
            stale = await handle.get_range("", None)
            await asyncio.gather(*(handle.put(k, "") for k, _ in stale))  # earlier examples
            model = {k: "" for k, _ in stale} | data
            await asyncio.gather(*(handle.put(k, v) for k, v in data.items()))
            expected = sorted(
                (k, v) for k, v in model.items() if begin <= k and (end is None or k < end)
            )
            assert await handle.get_range(begin, end) == expected
        finally:
            await handle.close()

    asyncio.run(body())


# ----------------------------------------------------------------------------- lifecycle


@pytest.mark.asyncio
async def test_close_waits_for_queued_puts(opener: Opener) -> None:
    handle = opener()
    for version in range(4):
        for i in range(250):  # 1000 puts, none awaited
            handle.put(f"key{i:04d}", f"v{version}")
    handle.get_or_put("late", "yes")
    await handle.close()
    await handle.close()  # idempotent

    reopened = opener()
    try:
        expected = [(f"key{i:04d}", "v3") for i in range(250)]
        assert await reopened.get_range("key", "kez") == expected
        assert await reopened.get("late") == "yes"
    finally:
        await reopened.close()


@pytest.mark.asyncio
async def test_closed_kvdb_refuses_operations(opener: Opener) -> None:
    handle = opener()
    await handle.close()
    with pytest.raises(StorageError, match="closed"):
        handle.get("k")
    with pytest.raises(StorageError, match="closed"):
        handle.put("k", "v")
    with pytest.raises(StorageError, match="closed"):
        handle.get_or_put("k", "v")
    with pytest.raises(StorageError, match="closed"):
        handle.get_range("a", "b")


@pytest.mark.asyncio
async def test_the_loop_is_not_blocked(kvdb: KVDB) -> None:
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
    ops: list[asyncio.Future[Any]] = []
    for chunk in range(10):
        ops += [kvdb.put(f"k{chunk}-{i:04d}", "v" * 100) for i in range(1000)]
        ops += [kvdb.get(f"k{chunk}-{i:04d}") for i in range(0, 1000, 10)]
        await asyncio.sleep(0)
    await asyncio.gather(*ops)
    assert len(await kvdb.get_range("k", None)) == 10_000
    running = False
    await ticking
    gc.enable()
    assert gaps and max(gaps) < 0.5, f"the loop stalled for {max(gaps):.3f} s"


# ----------------------------------------------------------------------------- factory


def test_factory_rejects_bad_backends() -> None:
    with pytest.raises(StorageError, match="collection"):
        open_kvdb(KVDBConfig(type="mongodb", url="mongodb://h/", db="goworld", collection=""))
    with pytest.raises(StorageError, match="url"):
        open_kvdb(KVDBConfig(type="redis", url="http://127.0.0.1:6379", db="0"))
    with pytest.raises(StorageError, match="unknown"):
        open_kvdb(KVDBConfig(type="redis_cluster"))
    with pytest.raises(StorageError, match="path"):
        open_kvdb(KVDBConfig(type="sqlite"))


@pytest.mark.asyncio
async def test_factory_builds_the_right_backends(tmp_path: Path) -> None:
    sqlite = open_kvdb(KVDBConfig(type="sqlite", path=tmp_path / "kv.db"))
    redis = open_kvdb(KVDBConfig(type="redis", url="redis://127.0.0.1:1", db="5"))
    memory = open_kvdb(KVDBConfig(type="memory"))
    try:
        for real, kind in ((sqlite, SQLiteKVDB), (redis, RedisKVDB)):
            assert isinstance(real, ResilientKVDB) and isinstance(real, KVDB)
            assert isinstance(real.inner, kind) and isinstance(real.inner, KVDB)
        assert "db 5" in redis.describe
        assert isinstance(memory, MemoryKVDB) and isinstance(memory, KVDB)
    finally:
        await asyncio.gather(sqlite.close(), redis.close(), memory.close())


# ----------------------------------------------------------------------------- SQLite only


@pytest.mark.asyncio
async def test_sqlite_unusable_path_raises_storage_error(tmp_path: Path) -> None:
    handle = SQLiteKVDB(tmp_path)  # a directory
    try:
        with pytest.raises(StorageError, match="get_or_put 'k'") as info:
            await handle.get_or_put("k", "v")
        assert str(tmp_path) in str(info.value) and info.value.__cause__ is not None
        with pytest.raises(StorageError):
            await handle.get_range("", None)
    finally:
        await handle.close()


_RACING_GAME = """
import asyncio, json, random, sys, time
from pathlib import Path
from goworld.config import KVDBConfig
from goworld.kvdb import open_kvdb

async def main():
    kind, where, db = sys.argv[1].split("|")
    if kind == "sqlite":
        kvdb = open_kvdb(KVDBConfig(type="sqlite", path=Path(where)))
    else:
        kvdb = open_kvdb(KVDBConfig(type=kind, url=where, db=db))
    me = sys.argv[2]
    await kvdb.get("warm-up")  # connected, schema in place
    print("ready", flush=True)
    start = float(sys.stdin.readline())
    await asyncio.sleep(start - time.time())  # all games start at the same instant
    keys = [f"key{i:03d}" for i in range(KEYS)]
    random.Random(me).shuffle(keys)
    results = {key: await kvdb.get_or_put(key, me) for key in keys}  # one transaction each
    await kvdb.close()
    print(json.dumps(results), flush=True)

KEYS = int(sys.argv[3])
asyncio.run(main())
"""


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_get_or_put_is_atomic_across_processes(
    tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    if kind == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        server.flushdb(REDIS_DB)
        where = f"redis|{server.url}|{REDIS_DB}"
    else:
        where = f"sqlite|{tmp_path / 'kv.db'}|"
    names = ["game1", "game2", "game3"]
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _RACING_GAME, where, name, "300"],
            cwd=Path(goworld.__path__[0]).parent,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in names
    ]
    try:
        for child in children:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        start = time.time() + 0.1
        for child in children:
            assert child.stdin is not None
            child.stdin.write(f"{start}\n")
            child.stdin.flush()
        outputs = [child.communicate(timeout=30)[0] for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.communicate()
    results = {name: json.loads(out) for name, out in zip(names, outputs, strict=True)}
    for i in range(300):
        key = f"key{i:03d}"
        winners = [name for name in names if results[name][key] is None]
        assert len(winners) == 1, (key, {name: results[name][key] for name in names})
        assert all(results[name][key] == winners[0] for name in names if name != winners[0])


# ----------------------------------------------------------------------------- Redis only


@pytest.mark.asyncio
async def test_redis_layout(redis_server: RedisServer) -> None:
    server = redis_server
    server.flushdb(REDIS_DB)
    handle = open_kvdb(KVDBConfig(type="redis", url=server.url, db=str(REDIS_DB)))
    try:
        await asyncio.gather(handle.put("password$bob", "pw"), handle.get_or_put("名", "v"))
        raw = server.client(REDIS_DB)
        try:
            assert sorted(raw.keys()) == sorted(
                [b"_KV_password$bob", "_KV_名".encode(), b"_KVKEYS_"]
            )
            assert raw.get("_KV_password$bob") == b"pw"  # GoWorld's value layout
            assert raw.zrangebylex("_KVKEYS_", "-", "+") == [b"password$bob", "名".encode()]
            raw.set("_KV_goworld-written", "old")  # a value without an index entry
        finally:
            raw.close()
        assert await handle.get("goworld-written") == "old"
        assert [k for k, _ in await handle.get_range("", None)] == ["password$bob", "名"]
    finally:
        await handle.close()


@pytest.mark.asyncio
async def test_redis_wrong_type_fails_at_once(redis_server: RedisServer) -> None:
    server = redis_server
    server.flushdb(REDIS_DB)
    handle = open_kvdb(KVDBConfig(type="redis", url=server.url, db=str(REDIS_DB)))
    assert isinstance(handle, ResilientKVDB)
    raw = server.client(REDIS_DB)
    try:
        raw.rpush("_KV_list", "x")  # not a string: WRONGTYPE for GET/SET
        ops: list[asyncio.Future[Any]] = [
            handle.get("list"),
            handle.get_or_put("list", "v"),
            handle.put("ok", "1"),
            handle.get("ok"),
        ]
        results = await asyncio.wait_for(asyncio.gather(*ops, return_exceptions=True), 5)
        assert all(isinstance(r, StorageError) and "WRONGTYPE" in str(r) for r in results[:2])
        assert results[2:] == [None, "1"]
        assert handle.statistics().outages == 0
    finally:
        raw.close()
        await handle.close()
