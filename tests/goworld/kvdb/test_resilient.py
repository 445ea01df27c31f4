"""KVDB under trouble, on real servers: Redis killed and restarted, SQLite locked.

Same wrapper as the entity storage (goworld/storage/resilient.py, through
goworld/kvdb/resilient.py): the loop keeps ticking, writes wait and land in call order, reads
wait up to a deadline, get_or_put stays atomic, one WARNING per outage and one INFO line when
it ends.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from goworld.config import KVDBConfig
from goworld.errors import StorageError
from goworld.kvdb import open_kvdb
from goworld.kvdb.resilient import ResilientKVDB
from goworld.kvdb.sqlite import SQLiteKVDB
from tests.goworld.redis_server import RedisServer, start_redis

FAST = {"backoff_min": 0.05, "backoff_max": 0.4, "close_timeout": 5.0}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server with an append-only file (these tests kill and restart it)."""
    redis = start_redis(tmp_path, appendonly=True)
    try:
        yield redis
    finally:
        redis.stop()


def _open(server: RedisServer, **options: Any) -> ResilientKVDB:
    handle = open_kvdb(KVDBConfig(type="redis", url=server.url, db="0"), **{**FAST, **options})
    assert isinstance(handle, ResilientKVDB)
    return handle


def _lines(caplog: pytest.LogCaptureFixture) -> tuple[list[str], list[str]]:
    records = [r for r in caplog.records if r.name == "goworld.storage"]
    warnings = [r.getMessage() for r in records if r.levelno >= logging.WARNING]
    recoveries = [r.getMessage() for r in records if "available again" in r.getMessage()]
    return warnings, recoveries


@pytest.mark.asyncio
async def test_redis_outage_writes_wait_and_land_in_order(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="goworld.storage")
    kvdb = _open(server)
    loop = asyncio.get_running_loop()
    try:
        await kvdb.put("before", "kept")
        writes: list[asyncio.Future[Any]] = []
        for i in range(200):  # a burst in flight when the server dies
            writes.append(kvdb.put(f"mail$e1${i:04d}", f"v{i}"))
        server.kill()
        started = loop.time()
        writes += [kvdb.put(f"mail$e1${i:04d}", f"w{i}") for i in range(0, 200, 2)]
        first = kvdb.get_or_put("lastMailID", "1")  # called during the outage
        second = kvdb.get_or_put("lastMailID", "2")
        seen = kvdb.get("mail$e1$0002")
        for _ in range(30):  # the loop keeps ticking while the writes wait
            await asyncio.sleep(0.01)
        assert loop.time() - started < 1.5
        assert not first.done() and not seen.done()
        warnings, recoveries = _lines(caplog)
        assert len(warnings) == 1 and "unavailable" in warnings[0], warnings
        server.start()
        await asyncio.wait_for(asyncio.gather(*writes), 15)
        assert await first is None and await second == "1"
        assert await seen == "w2"  # the put called before it, not the one before that
        pairs = await kvdb.get_range("mail$e1$", "mail$e1%")
        assert pairs == [
            (f"mail$e1${i:04d}", f"w{i}" if i % 2 == 0 else f"v{i}") for i in range(200)
        ]
        assert await kvdb.get("before") == "kept"
        warnings, recoveries = _lines(caplog)
        assert len(warnings) == 1 and len(recoveries) == 1, (warnings, recoveries)
    finally:
        await kvdb.close()


@pytest.mark.asyncio
async def test_successive_puts_of_one_key_are_merged_during_an_outage(
    server: RedisServer,
) -> None:
    kvdb = _open(server)
    try:
        await kvdb.put("counter", "0")
        server.kill()
        puts = [kvdb.put("counter", str(i)) for i in range(1, 501)]
        read = kvdb.get("counter")  # a read after them all: sees the newest
        await asyncio.sleep(0.2)
        server.start()
        raw = server.client()
        try:
            before = raw.info("commandstats").get("cmdstat_eval", {}).get("calls", 0)
            await asyncio.wait_for(asyncio.gather(*puts), 10)
            assert await read == "500"
            after = raw.info("commandstats").get("cmdstat_eval", {}).get("calls", 0)
        finally:
            raw.close()
        assert after - before <= 5, "500 queued puts of one key should be sent as one"
        assert await kvdb.get("counter") == "500"
    finally:
        await kvdb.close()


@pytest.mark.asyncio
async def test_reads_give_up_after_the_deadline(server: RedisServer) -> None:
    kvdb = _open(server, read_timeout=0.5)
    try:
        await kvdb.put("k", "v")
        server.kill()
        get, scan = kvdb.get("k"), kvdb.get_range("", None)
        put = kvdb.put("k", "w")
        for read in (get, scan):
            with pytest.raises(StorageError, match="gave up after"):
                await asyncio.wait_for(read, 5)
        assert not put.done()
        server.start()
        await asyncio.wait_for(put, 10)
        assert await kvdb.get("k") == "w"
    finally:
        await kvdb.close()


@pytest.mark.asyncio
async def test_close_waits_for_queued_puts(server: RedisServer) -> None:
    kvdb = _open(server)
    await kvdb.put("k0", "x")
    server.kill()
    for i in range(50):
        kvdb.put(f"k{i}", "queued")
    closing = asyncio.ensure_future(kvdb.close())
    await asyncio.sleep(0.3)
    assert not closing.done()
    server.start()
    await asyncio.wait_for(closing, 10)
    reopened = _open(server)
    try:
        assert len(await reopened.get_range("k", "l")) == 50
        assert {v for _, v in await reopened.get_range("k", "l")} == {"queued"}
    finally:
        await reopened.close()


@pytest.mark.asyncio
async def test_sqlite_locked_for_a_while(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="goworld.storage")
    path = tmp_path / "kv.db"
    inner = SQLiteKVDB(path, busy_timeout=0.02, retry_for=0.05)
    kvdb = ResilientKVDB(inner, describe=f"sqlite kvdb {path}", **FAST)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        await kvdb.put("k", "0")
        other.execute("BEGIN IMMEDIATE")
        puts = [kvdb.put("k", str(i)) for i in range(1, 21)]
        won = kvdb.get_or_put("new", "mine")
        await asyncio.sleep(0.8)
        assert not any(p.done() for p in puts) and not won.done()
        other.execute("COMMIT")
        await asyncio.wait_for(asyncio.gather(*puts), 10)
        assert await won is None
        assert await kvdb.get("k") == "20" and await kvdb.get("new") == "mine"
    finally:
        other.close()
        await kvdb.close()
    warnings, recoveries = _lines(caplog)
    ours = [w for w in warnings if "busy, retrying" not in w]  # sqlite_worker logs its own
    assert len(ours) == 1 and "unavailable" in ours[0], ours
    assert len(recoveries) == 1
