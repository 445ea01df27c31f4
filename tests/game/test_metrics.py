"""The game's figures (game/metrics.py, game/stats.py): entities and spaces per type, RPCs run
per type and method, refusals by reason, freeze/restore times, storage and KVDB operations."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from game import freeze
from game.metrics import GameFigures
from goworld.entity import runtime as runtime_binding
from goworld.errors import StorageError
from goworld.metrics import Exporter
from goworld.storage.memory import MemoryEntityStorage
from goworld.storage.resilient import ResilientEntityStorage
from goworld.testing import Scraped, parse_metrics
from tests.game.test_runtime import EVENTS, Harness, _from_client, new_client


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    EVENTS.clear()
    yield
    EVENTS.clear()
    runtime_binding.unbind()


def scrape(figures: GameFigures) -> Scraped:
    return parse_metrics(Exporter("game", 1, figures=figures).metrics_text().decode())


@pytest.mark.asyncio
async def test_entities_spaces_clients_and_rpcs() -> None:
    h = Harness()
    ca = new_client(1)
    a = h.avatar(h.space(), client=ca)
    h.avatar()
    _from_client(h, a, ca, "Own", 1)
    _from_client(h, a, ca, "Own", 2)
    _from_client(h, a, ca, "Boom")  # raises
    _from_client(h, a, ca, "ServerOnly")  # refused: not the client's
    _from_client(h, a, ca, "Own", 1.5)  # refused: bad arguments
    h.rt.invoke(a, "Hello", ["x"], None)  # a call between servers
    figures = GameFigures(h.rt, {}, {})
    got = scrape(figures)
    assert got["goworld_game_entities"] == {(("type", "Avatar"),): 2}
    assert got["goworld_game_spaces"] == {(("kind", "0"),): 1, (("kind", "1"),): 1}
    assert got["goworld_game_clients"][()] == 1
    rpcs = got["goworld_game_rpcs_total"]
    assert rpcs[(("caller", "client"), ("method", "Own"), ("type", "Avatar"))] == 2
    assert rpcs[(("caller", "client"), ("method", "Boom"), ("type", "Avatar"))] == 1
    assert rpcs[(("caller", "server"), ("method", "Hello"), ("type", "Avatar"))] == 1
    assert ("method", "ServerOnly") not in {kv for key in rpcs for kv in key}
    assert got["goworld_game_rpc_errors_total"] == {(("method", "Boom"), ("type", "Avatar")): 1}
    assert got["goworld_game_client_calls_refused_total"] == {
        (("reason", "not_allowed"),): 1, (("reason", "bad_arguments"),): 1
    }
    summary = figures.summary()
    assert (summary["clients"], summary["entities"], summary["spaces"]) == (1, 2, 2)


@pytest.mark.asyncio
async def test_freeze_and_restore_are_timed() -> None:
    h = Harness()
    h.avatar(h.space())
    data = freeze.run_freeze(h.rt, lambda reason: pytest.fail(reason))
    assert data is not None
    assert h.rt.stats.freeze.count == 1
    restored = Harness(bare=True)
    freeze.restore(restored.rt, freeze.pickle.loads(data))
    got = scrape(GameFigures(restored.rt, {}, {}))
    assert got["goworld_game_restore_seconds_count"][()] == 1
    assert got["goworld_game_freeze_seconds_count"][()] == 0  # this process froze nothing


class Broken(MemoryEntityStorage):
    """Loads of ``bad`` fail with an error that is not transient (no retry)."""

    def load(self, type_name: str, entity_id: str) -> asyncio.Future[Any]:
        if entity_id == "bad":
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            future.set_exception(ValueError("corrupt record"))
            return future
        return super().load(type_name, entity_id)


@pytest.mark.asyncio
async def test_storage_operations_errors_and_latency_per_backend() -> None:
    storage = ResilientEntityStorage(Broken())
    await storage.save("Avatar", "a1", {"x": 1})
    await storage.save("Avatar", "a2", {"x": 2})
    assert await storage.load("Avatar", "a1") == {"x": 1}
    with pytest.raises((ValueError, StorageError)):
        await storage.load("Avatar", "bad")
    ops = storage.statistics().operations
    assert (ops["save"].count, ops["save"].errors) == (2, 0)
    assert (ops["load"].count, ops["load"].errors) == (2, 1)
    assert ops["load"].seconds.count == 2
    h = Harness()
    got = scrape(GameFigures(h.rt, {}, {"storage": storage, "kvdb": None}))
    key = (("backend", "storage"), ("operation", "load"))
    assert got["goworld_storage_operations_total"][key] == 2
    assert got["goworld_storage_errors_total"][key] == 1
    assert got["goworld_storage_operation_seconds_count"][key] == 2
    assert got["goworld_storage_in_outage"] == {(("backend", "storage"),): 0}
    await storage.close()
