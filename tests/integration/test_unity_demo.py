"""examples/unity_demo with Python bots speaking the 2018 protocol generation (the Unity client's):
players move and shoot, monsters chase and attack, a monster dies."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

from goworld.client import GoWorldClient
from goworld.proto.dialect import Dialect
from goworld.proto.msgtypes import MsgType
from goworld.testing import ClusterRunner

ROOT = Path(__file__).resolve().parents[2]
#: What GoWorld's Unity client can handle; anything else makes it assert.
UNITY_HANDLES = {
    MsgType.CREATE_ENTITY_ON_CLIENT,
    MsgType.DESTROY_ENTITY_ON_CLIENT,
    MsgType.NOTIFY_MAP_ATTR_CHANGE_ON_CLIENT,
    MsgType.NOTIFY_MAP_ATTR_DEL_ON_CLIENT,
    MsgType.CALL_ENTITY_METHOD_ON_CLIENT,
    MsgType.SYNC_POSITION_YAW_ON_CLIENTS,
}


async def player(runner: ClusterRunner, name: str) -> GoWorldClient:
    client = await GoWorldClient.connect("127.0.0.1", runner.gate(0, "tcp"), dialect=Dialect.G2018)
    account = await client.wait_player("Account")
    client.call(account.id, "Register", name, "pw")
    await client.wait_call("ShowInfo")
    client.call(account.id, "Login", name, "pw")
    await client.wait_player("Player")
    await client.wait_until(lambda: client.space is not None)
    return client


def monsters(client: GoWorldClient) -> list:  # type: ignore[type-arg]
    return [e for e in client.entities.values() if e.type_name == "Monster"]


@pytest.mark.asyncio
async def test_players_shoot_and_monsters_chase_attack_and_die(tmp_path: Path) -> None:
    runner = ClusterRunner(
        tmp_path, ROOT / "examples" / "unity_demo", dispatchers=1, games=1, gates=1,
        gate_extra="legacy_client_protocol = 2018",
    )
    runner.start()
    clients: list[GoWorldClient] = []
    try:
        runner.wait_for_log("created here", count=6)
        a = await player(runner, "hunter")
        b = await player(runner, "witness")
        clients = [a, b]
        pa = a.player
        assert pa is not None and pa.attrs["hp"] == 100 and pa.attrs["action"] == "idle"
        # Monsters are summoned (two per player) and show up with their AllClients attributes.
        await a.wait_until(lambda: len(monsters(a)) >= 2, timeout=15)
        m = monsters(a)[0]
        assert set(m.attrs) == {"name", "lv", "hp", "hpmax", "action"}

        # The player walks (client-synced, legacy SYNC = 13) and the other client sees it.
        a.sync_position(pa.id, 20.0, 0.0, 20.0, 90.0)
        await b.wait_until(lambda: (b.entities[pa.id].x, b.entities[pa.id].z) == (20.0, 20.0))

        # Monsters chase: a monster's distance to the player shrinks.
        def distance(entity) -> float:  # type: ignore[no-untyped-def]
            return math.hypot(entity.x - 20.0, entity.z - 20.0)

        start = distance(m)
        await a.wait_until(lambda: distance(m) < start - 1.0, timeout=10)
        # ... reaches a player and attacks: DisplayAttack calls and that player's hp going down.
        pb = b.player
        assert pb is not None
        attack = await a.wait_call("DisplayAttack", timeout=30)
        target = attack.args[0]
        assert target in (pa.id, pb.id)
        await a.wait_until(lambda: a.entities[target].attrs["hp"] < 100, timeout=10)

        # Shooting: two hits of 50 kill a monster; both clients see it die and go.
        victim = monsters(a)[0]
        a.call_player("ShootHit", victim.id)
        await a.wait_until(lambda: victim.attrs["hp"] == 50)
        a.call_player("ShootMiss")
        a.call_player("ShootHit", victim.id)
        await a.wait_until(lambda: victim.id not in a.entities, timeout=10)
        await b.wait_until(lambda: victim.id not in b.entities, timeout=10)
        assert victim.attrs["action"] == "death"
        assert [c.method for c in b.calls].count("Shoot") >= 3  # CallAllClients reached b too

        for c in clients:
            assert {t for t, _ in c.log} <= UNITY_HANDLES, {t for t, _ in c.log} - UNITY_HANDLES
            assert not c.is_closed
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
        runner.stop()
        runner.kill()
