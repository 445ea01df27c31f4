"""Entity storage under trouble, on real servers: Redis killed and restarted, SQLite locked.

The wrapper (goworld/storage/resilient.py) must keep the game loop ticking while the backend is
down, queue saves and retry them with backoff, log one WARNING when an outage starts and one
INFO line when it ends, land every queued save in call order (newest value last), let reads
wait up to a deadline, and make ``close`` wait for queued saves (or log what it loses).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from goworld.config import StorageConfig
from goworld.errors import StorageError
from goworld.storage import open_storage
from goworld.storage.resilient import ResilientEntityStorage
from goworld.storage.sqlite import SQLiteEntityStorage
from tests.goworld.redis_server import RedisServer, start_redis

# Short pauses between attempts keep the tests quick; the defaults are 0.1 s -> 5 s.
FAST = {"backoff_min": 0.05, "backoff_max": 0.4, "close_timeout": 5.0}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server (these tests kill it) keeping an append-only file, so what it
    acknowledged before a kill is still there after the restart."""
    redis = start_redis(tmp_path, appendonly=True)
    try:
        yield redis
    finally:
        redis.stop()


@pytest_asyncio.fixture
async def storage(server: RedisServer) -> AsyncIterator[ResilientEntityStorage]:
    handle = open_storage(StorageConfig(type="redis", url=server.url, db="0"), **FAST)
    assert isinstance(handle, ResilientEntityStorage)
    yield handle
    await handle.close()


def _outage_lines(caplog: pytest.LogCaptureFixture) -> tuple[list[str], list[str]]:
    records = [r for r in caplog.records if r.name == "goworld.storage"]
    warnings = [r.getMessage() for r in records if r.levelno >= logging.WARNING]
    recoveries = [r.getMessage() for r in records if "available again" in r.getMessage()]
    return warnings, recoveries


class Ticker:
    """The game loop's heartbeat: records the longest gap between 5 ms ticks."""

    def __init__(self) -> None:
        self.gaps: list[float] = []
        self._task: asyncio.Task[None] | None = None
        self._running = False

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while self._running:
            await asyncio.sleep(0.005)
            now = loop.time()
            self.gaps.append(now - last)
            last = now

    def start(self) -> None:
        gc.disable()  # a full collection of a big test heap is not the backend's doing
        self._running = True
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> float:
        self._running = False
        assert self._task is not None
        await self._task
        gc.enable()
        return max(self.gaps)


@pytest.mark.asyncio
async def test_redis_outage_saves_wait_and_land_in_order(
    server: RedisServer, storage: ResilientEntityStorage, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="goworld.storage")
    # Saved once before the outage only: must survive it (the server keeps an AOF).
    await asyncio.gather(*(storage.save("Keep", f"k{i}", {"i": i}) for i in range(50)))

    ticker = Ticker()
    ticker.start()
    saves: list[asyncio.Future[None]] = []
    checks: list[tuple[int, asyncio.Future[Any]]] = []
    version = 0

    def tick() -> None:  # what a game does each tick: save 20 entities, sometimes load one
        nonlocal version
        version += 1
        for i in range(20):
            saves.append(storage.save("Avatar", f"a{i:02d}", {"v": version, "pad": "x" * 200}))
        checks.append((version, storage.load("Avatar", f"a{version % 20:02d}")))

    for _ in range(10):
        tick()
        await asyncio.sleep(0.01)
    server.kill()  # with saves in flight
    for _ in range(60):  # ~0.6 s of ticks with the server down
        tick()
        await asyncio.sleep(0.01)
    assert storage.statistics().in_outage
    warnings, recoveries = _outage_lines(caplog)
    assert len(warnings) == 1 and "unavailable" in warnings[0], warnings
    assert recoveries == []
    queued = storage.statistics().queued
    assert queued > 60 * 20

    await asyncio.to_thread(server.start)  # the same port; the loop keeps ticking meanwhile
    for _ in range(10):
        tick()
        await asyncio.sleep(0.01)
    await asyncio.wait_for(asyncio.gather(*saves), 15)
    loaded = await asyncio.wait_for(asyncio.gather(*(f for _, f in checks)), 15)
    longest = await ticker.stop()
    assert longest < 0.5, f"the loop stalled for {longest:.3f} s"

    # Every load saw the save called just before it (call order kept across retries) ...
    assert [record["v"] for record in loaded] == [v for v, _ in checks]
    # ... and every record holds its newest value.
    records = await asyncio.gather(*(storage.load("Avatar", f"a{i:02d}") for i in range(20)))
    assert [r["v"] for r in records if r is not None] == [version] * 20
    assert await storage.list_ids("Keep") == sorted(f"k{i}" for i in range(50))
    warnings, recoveries = _outage_lines(caplog)
    assert len(warnings) == 1, warnings
    assert len(recoveries) == 1, recoveries
    assert "operations waited" in recoveries[0]
    waited = int(recoveries[0].split("operations waited")[0].rsplit(":", 1)[1])
    assert waited >= queued
    stats = storage.statistics()
    assert stats.outages == 1 and not stats.in_outage and stats.queued == 0


@pytest.mark.asyncio
async def test_redis_reads_wait_then_give_up_after_the_deadline(server: RedisServer) -> None:
    handle = open_storage(
        StorageConfig(type="redis", url=server.url, db="0"), read_timeout=0.6, **FAST
    )
    try:
        await handle.save("Avatar", "A1", {"v": 1})
        server.kill()
        saving = handle.save("Avatar", "A1", {"v": 2})
        loading = handle.load("Avatar", "A1")
        await asyncio.sleep(0.3)
        assert not loading.done() and not saving.done()  # waiting, not failed
        with pytest.raises(StorageError, match="gave up after"):
            await asyncio.wait_for(loading, 5)
        assert not saving.done()  # writes keep waiting
        # A read called later waits for its own deadline, and succeeds if the server is back.
        late = handle.load("Avatar", "A1")
        server.start()
        assert await asyncio.wait_for(late, 10) == {"v": 2}
        await saving
    finally:
        await handle.close()


@pytest.mark.asyncio
async def test_bad_arguments_raise_at_call_time_during_an_outage(
    server: RedisServer, storage: ResilientEntityStorage
) -> None:
    await storage.save("Avatar", "A1", {"v": 1})
    server.kill()
    pending = storage.save("Avatar", "A1", {"v": 2})
    await asyncio.sleep(0.1)
    assert storage.statistics().in_outage
    with pytest.raises(TypeError):
        storage.save("Avatar", "A1", {"obj": object()})
    with pytest.raises(ValueError):
        storage.save("Avatar", "", {})
    data: dict[str, Any] = {"items": [1]}
    snapshot = storage.save("Avatar", "A2", data)  # held: must still be a snapshot
    data["items"].append(2)
    server.start()
    await asyncio.wait_for(asyncio.gather(pending, snapshot), 10)
    assert await storage.load("Avatar", "A2") == {"items": [1]}
    assert await storage.load("Avatar", "A1") == {"v": 2}


@pytest.mark.asyncio
async def test_close_waits_for_queued_saves(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="goworld.storage")
    handle = open_storage(StorageConfig(type="redis", url=server.url, db="0"), **FAST)
    await handle.save("Avatar", "A0", {"v": 0})
    server.kill()
    for i in range(100):
        handle.save("Avatar", f"A{i}", {"v": 1})
    closing = asyncio.ensure_future(handle.close())
    await asyncio.sleep(0.5)
    assert not closing.done()
    server.start()
    await asyncio.wait_for(closing, 10)

    reopened = open_storage(StorageConfig(type="redis", url=server.url, db="0"))
    try:
        records = await asyncio.gather(*(reopened.load("Avatar", f"A{i}") for i in range(100)))
        assert records == [{"v": 1}] * 100
    finally:
        await reopened.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.asyncio
async def test_close_gives_up_after_its_timeout_and_says_what_is_lost(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="goworld.storage")
    handle = open_storage(
        StorageConfig(type="redis", url=server.url, db="0"), **{**FAST, "close_timeout": 0.5}
    )
    await handle.save("Avatar", "A0", {"v": 0})
    server.kill()
    lost = [handle.save("Avatar", f"A{i}", {"v": 1}) for i in range(3)]
    await asyncio.wait_for(handle.close(), 10)
    for future in lost:
        with pytest.raises(StorageError, match="lost at close"):
            await future
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert "3 operations lost" in errors[0] and "save Avatar/A2" in errors[0]


@pytest.mark.asyncio
async def test_sqlite_locked_for_a_while(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """SQLite's own busy retry gives up quickly here, so the wrapper takes over until the
    other writer lets go: nothing is lost, one outage is logged."""
    caplog.set_level(logging.INFO, logger="goworld.storage")
    path = tmp_path / "x.db"
    inner = SQLiteEntityStorage(path, busy_timeout=0.02, retry_for=0.05)
    handle = ResilientEntityStorage(inner, describe=f"sqlite storage {path}", **FAST)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        await handle.save("Avatar", "A1", {"v": 0})
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        saves = [handle.save("Avatar", "A1", {"v": v}) for v in range(1, 51)]
        loads = [handle.load("Avatar", "A1")]
        await asyncio.sleep(1.0)
        assert not any(f.done() for f in saves)
        assert handle.statistics().in_outage
        other.execute("COMMIT")
        await asyncio.wait_for(asyncio.gather(*saves), 10)
        assert await loads[0] == {"v": 50}
        assert await handle.load("Avatar", "A1") == {"v": 50}
    finally:
        other.close()
        await handle.close()
    warnings, recoveries = _outage_lines(caplog)
    # goworld/sqlite_worker.py logs its own "database busy, retrying" per busy retry.
    ours = [w for w in warnings if "busy, retrying" not in w]
    assert len(ours) == 1 and "unavailable" in ours[0] and "locked" in ours[0], ours
    assert len(recoveries) == 1


@pytest.mark.asyncio
async def test_redis_killed_again_and_again_nothing_lost(server: RedisServer) -> None:
    """Saves and loads of 30 records at full speed while the server is killed and restarted
    four times, sometimes mid-pipeline, sometimes while an attempt is failing."""
    handle = open_storage(
        StorageConfig(type="redis", url=server.url, db="0"),
        **{**FAST, "backoff_min": 0.01, "backoff_max": 0.05},
    )
    rng = random.Random(5)
    newest: dict[str, int] = {}
    saves: list[asyncio.Future[None]] = []
    checks: list[tuple[int, asyncio.Future[Any]]] = []

    async def chaos() -> None:
        for _ in range(4):
            await asyncio.sleep(rng.uniform(0.05, 0.25))
            server.kill()
            await asyncio.sleep(rng.uniform(0.0, 0.15))
            await asyncio.to_thread(server.start)

    try:
        trouble = asyncio.ensure_future(chaos())
        version = 0
        while not trouble.done():
            for _ in range(100):
                version += 1
                key = f"e{rng.randrange(30)}"
                newest[key] = version
                saves.append(handle.save("Avatar", key, {"v": version}))
                if rng.random() < 0.2:
                    probe = f"e{rng.randrange(30)}"
                    checks.append((newest.get(probe, 0), handle.load("Avatar", probe)))
            await asyncio.sleep(0.005)
        await trouble
        await asyncio.wait_for(asyncio.gather(*saves), 20)
        for expected, future in checks:
            record = await asyncio.wait_for(future, 20)
            # Never older than the save called before it (see the wrapper's module docs for
            # why a re-run read may, rarely, see a newer one).
            assert (record["v"] if record else 0) >= expected
        for key, value in newest.items():
            assert await handle.load("Avatar", key) == {"v": value}
        assert handle.statistics().queued == 0
    finally:
        await handle.close()
