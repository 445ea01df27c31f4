"""A real cluster stores and reloads persistent entities with each storage/KVDB backend.

``goworld start`` runs tests/apps/cluster_app with ``[storage]`` and ``[kvdb]`` on the backend
under test; clients log in (the KVDB maps names to avatar ids, the avatar is persistent), bump a
persistent counter, ``goworld stop`` saves them, ``goworld start`` again and the avatars come
back with their counters. SQLite has the same check in test_lifecycle.py.

To add a backend (MongoDB), add a maker to ``BACKENDS``: it gets the pytest ``request`` and a
``tmp_path`` and returns the bodies of the ``[storage]`` and ``[kvdb]`` sections, pointing at a
real server started by a fixture and at a database of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from goworld.testing import ClusterRunner, login
from tests.goworld import mongo_server as mongo_fixtures
from tests.goworld import redis_server as redis_fixtures
from tests.goworld.mongo_server import fresh_database
from tests.goworld.redis_server import RedisServer

APP = Path(__file__).resolve().parents[1] / "apps" / "cluster_app"

redis_server = redis_fixtures.redis_server  # the module-scoped fixture: a real redis-server
mongodb_url = mongo_fixtures.mongodb_url  # a MongoDB-wire server (or GOWORLD_TEST_MONGODB_URL)

Sections = tuple[str, str]  # [storage] body, [kvdb] body


def _redis(request: pytest.FixtureRequest, tmp_path: Path) -> Sections:
    server: RedisServer = request.getfixturevalue("redis_server")
    server.flushdb(5)
    # Storage and KVDB share one database: their keys cannot collide (_ENT_*, _KV_*, _KVKEYS_).
    section = f"type = redis\nurl = {server.url}\ndb = 5"
    return section, section


def _mongodb(request: pytest.FixtureRequest, tmp_path: Path) -> Sections:
    url: str = request.getfixturevalue("mongodb_url")
    db = fresh_database(request, url)
    return f"type = mongodb\nurl = {url}\ndb = {db}", f"type = mongodb\nurl = {url}\ndb = {db}\ncollection = __kv__"


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], Sections]] = {
    "redis": _redis,
    "mongodb": _mongodb,
}



@pytest.mark.asyncio
@pytest.mark.parametrize("backend", sorted(BACKENDS))
async def test_stop_saves_and_start_loads_avatars(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    storage, kvdb = BACKENDS[backend](request, tmp_path)
    runner = ClusterRunner(
        tmp_path, APP, dispatchers=1, games=1, gates=1, storage=storage, kvdb=kvdb
    )
    runner.start()
    try:
        runner.wait_for_log("created here", count=5)
        clients = [await login(runner, f"keeper{i}") for i in range(3)]
        for i, client in enumerate(clients):
            for _ in range(i + 1):
                client.call_player("Incr")
            client.call_player("Echo", 0)
            await client.wait_call("OnEcho")
        ids = [client.player.id for client in clients]  # type: ignore[union-attr]
        stopped = runner.stop()  # clients still connected: the game saves every avatar
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        for client in clients:
            await client.aclose()
        if backend == "redis":  # the records are where the docs say
            server: RedisServer = request.getfixturevalue("redis_server")
            raw = server.client(5)
            try:
                assert sorted(raw.hkeys("_ENT_Avatar")) == sorted(i.encode() for i in ids)
                assert raw.get("_KV_avatar$keeper0") == ids[0].encode()
            finally:
                raw.close()

        runner.start()
        runner.wait_for_log("created here", count=5)
        for i in range(3):
            client = await login(runner, f"keeper{i}")
            assert client.player is not None
            assert client.player.id == ids[i]
            assert client.player.attrs["counter"] == i + 1
            await client.aclose()
    except BaseException:
        print(runner.logs())
        raise
    finally:
        runner.stop()
        runner.kill()
