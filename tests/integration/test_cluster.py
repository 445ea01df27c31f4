"""A real cluster (2 dispatchers, 2 games, 2 gates, started by the CLI) driven by Python bots
over TCP, WebSocket and KCP."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from goworld.client import GoWorldClient
from goworld.proto.msgtypes import MsgType
from goworld.testing import ClusterRunner, login

TRANSPORTS = ["tcp", "ws", "kcp"]
_names = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}{next(_names)}"



@pytest.mark.asyncio
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_boot_entity_then_login_hands_the_client_to_the_avatar(
    cluster: ClusterRunner, transport: str
) -> None:
    client = await GoWorldClient.connect("127.0.0.1", cluster.gate(1, transport), transport=transport)
    try:
        account = await client.wait_player("Account")
        assert account.attrs == {}
        name = unique("boot")
        client.call(account.id, "Login", name)
        avatar = await client.wait_player("Avatar")
        # Client+AllClients attributes arrive in the create; server-only ones do not.
        assert avatar.attrs == {"name": name, "level": 1, "counter": 0, "hp": 100}
        kinds = [(t, d) for t, d in client.log if t in (MsgType.CREATE_ENTITY_ON_CLIENT, MsgType.DESTROY_ENTITY_ON_CLIENT)]
        assert kinds == [
            (MsgType.CREATE_ENTITY_ON_CLIENT, ("Account", account.id, True)),
            (MsgType.DESTROY_ENTITY_ON_CLIENT, ("Account", account.id)),
            (MsgType.CREATE_ENTITY_ON_CLIENT, ("Avatar", avatar.id, True)),
        ]
    finally:
        await client.aclose()


@pytest.mark.asyncio
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_rpc_both_ways_in_order_and_attribute_changes(cluster: ClusterRunner, transport: str) -> None:
    client = await login(cluster, unique("rpc"), transport)
    try:
        for seq in range(50):
            client.call_player("Echo", seq, "x" * seq)
        await client.wait_until(lambda: len([c for c in client.calls if c.method == "OnEcho"]) == 50)
        echoes = [c.args for c in client.calls if c.method == "OnEcho"]
        assert echoes == [(seq, "x" * seq) for seq in range(50)]

        client.call_player("Incr")
        client.call_player("Incr")
        client.call_player("PutBag", "sword", 3)
        client.call_player("PutBag", "shield", 1)
        avatar = client.player
        assert avatar is not None
        await client.wait_until(lambda: avatar.attrs.get("bag") == {"sword": 3, "shield": 1})
        assert avatar.attrs["counter"] == 2
    finally:
        await client.aclose()


@pytest.mark.asyncio
async def test_calls_with_wrong_arguments_or_unexposed_methods_are_dropped(cluster: ClusterRunner) -> None:
    client = await login(cluster, unique("bad"))
    try:
        client.call_player("Echo", "not an int")  # wrong type: dropped
        client.call_player("Echo", 1, "a", "too many")  # too many: dropped
        client.call_player("GetSpaceID", "x" * 16)  # server-only: dropped
        client.call_player("NoSuchMethod")
        client.call_player("Echo", 7)  # still served afterwards
        call = await client.wait_call("OnEcho")
        assert call.args == (7, "")
        assert [c.method for c in client.calls] == ["OnEcho"]
        assert not client.is_closed
    finally:
        await client.aclose()


@pytest.mark.asyncio
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_aoi_creates_and_destroys_neighbours(cluster: ClusterRunner, transport: str) -> None:
    kind = next(_names) + 100
    a = await login(cluster, unique("aoiA"), transport, gate=0)
    b = await login(cluster, unique("aoiB"), transport, gate=1)
    try:
        a.call_player("EnterSpace", kind)
        b.call_player("EnterSpace", kind)
        for c in (a, b):
            await c.wait_call("OnEnteredSpace")
            assert c.space is not None and c.space.attrs == {"_K": kind}
        pa, pb = a.player, b.player
        assert pa is not None and pb is not None
        await a.wait_until(lambda: pb.id in a.entities)
        await b.wait_until(lambda: pa.id in b.entities)
        # A neighbour sees only AllClients attributes.
        assert a.entities[pb.id].attrs == {"name": pb.attrs["name"], "hp": 100}
        b.call_player("SetHP", 42)
        await a.wait_until(lambda: a.entities[pb.id].attrs["hp"] == 42)
        # Move b out of range (AOI distance 100): both sides see a destroy.
        b.call_player("Move", 500.0, 500.0)
        await a.wait_until(lambda: pb.id not in a.entities)
        await b.wait_until(lambda: pa.id not in b.entities)
        # And back in: creates again, and the position arrives through syncs.
        b.call_player("Move", 30.0, -20.0)
        await a.wait_until(lambda: pb.id in a.entities)
        await a.wait_until(lambda: (a.entities[pb.id].x, a.entities[pb.id].z) == (30.0, -20.0))
        b.call_player("Shout", "hi")
        shout = await a.wait_call("OnShout")
        assert shout.entity_id == pb.id and shout.args == (pb.attrs["name"], "hi")
    finally:
        await a.aclose()
        await b.aclose()


@pytest.mark.asyncio
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_migration_between_games_keeps_the_client(cluster: ClusterRunner, transport: str) -> None:
    client = await login(cluster, unique("mig"), transport)
    try:
        avatar = client.player
        assert avatar is not None
        client.call_player("WhichGame")
        here = (await client.wait_call("OnWhichGame")).args[0]
        other = 2 if here == 1 else 1
        n = len(client.calls)
        client.call_player("MigrateToGame", other)
        assert (await client.wait_call("OnMigrated", start=n)).args == (other,)
        client.call_player("WhichGame")
        assert (await client.wait_call("OnWhichGame", start=n)).args == (other,)
        # The player entity was never destroyed on the client, and still answers.
        assert client.player is avatar
        assert all(d != ("Avatar", avatar.id) for t, d in client.log if t == MsgType.DESTROY_ENTITY_ON_CLIENT)
        client.call_player("Incr")
        await client.wait_until(lambda: avatar.attrs["counter"] == 1)
    finally:
        await client.aclose()


@pytest.mark.asyncio
async def test_services_are_reachable_from_every_game(cluster: ClusterRunner) -> None:
    clients = [await login(cluster, unique("svc"), "tcp", gate=i % 2) for i in range(4)]
    try:
        for c in clients:
            for _ in range(5):
                c.call_player("Ping")
        for c in clients:
            await c.wait_until(lambda c=c: len([x for x in c.calls if x.method == "OnPong"]) == 5)
            assert {x.args[0] for x in c.calls if x.method == "OnPong"} <= {1, 2}
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))


@pytest.mark.asyncio
async def test_filtered_calls_reach_each_matching_client_exactly_once(cluster: ClusterRunner) -> None:
    team = unique("team")
    members = [await login(cluster, unique("fm"), "tcp", gate=i % 2) for i in range(3)]
    outsider = await login(cluster, unique("fo"), "ws", gate=1)
    try:
        for m in members:
            m.call_player("JoinTeam", team)
            m.call_player("Echo", 0)  # a round trip orders the prop before the chat
            await m.wait_call("OnEcho")
        outsider.call_player("JoinTeam", team + "x")
        members[0].call_player("TeamChat", team, "hello team")
        for m in members:
            call = await m.wait_call("OnTeamChat")
            assert call.args == ("hello team",) and call.filtered
        outsider.call_player("Echo", 1)
        await outsider.wait_call("OnEcho")
        await asyncio.sleep(0.3)
        for m in members:
            assert [c.method for c in m.calls].count("OnTeamChat") == 1
        assert "OnTeamChat" not in [c.method for c in outsider.calls]
    finally:
        await asyncio.gather(*(c.aclose() for c in (*members, outsider)))


@pytest.mark.asyncio
async def test_a_garbage_sending_client_is_dropped_while_fifty_others_carry_on(cluster: ClusterRunner) -> None:
    others = await asyncio.gather(
        *(login(cluster, unique("crowd"), TRANSPORTS[i % 3], gate=i % 2) for i in range(50))
    )
    bad = await GoWorldClient.connect("127.0.0.1", cluster.gate(0, "tcp"))
    try:
        await bad.wait_player("Account")
        before = len(cluster.grep("protocol error")) + len(cluster.grep("unknown message type"))
        bad.send_raw(b"\x06\x00\x00\x00\xff\xff garbage")  # an unknown message type
        await asyncio.wait_for(bad.closed, 10)
        for seq, c in enumerate(others):
            c.call_player("Echo", seq)
        for seq, c in enumerate(others):
            call = await c.wait_call("OnEcho")
            assert call.args == (seq, "")
            assert not c.is_closed
        await asyncio.sleep(0.2)
        after = len(cluster.grep("protocol error")) + len(cluster.grep("unknown message type"))
        assert after - before == 1, cluster.grep("closed:")
    finally:
        await bad.aclose()
        await asyncio.gather(*(c.aclose() for c in others))


@pytest.mark.asyncio
async def test_oversize_frame_closes_only_that_client(cluster: ClusterRunner) -> None:
    good = await login(cluster, unique("good"))
    bad = await GoWorldClient.connect("127.0.0.1", cluster.gate(1, "tcp"))
    try:
        await bad.wait_player("Account")
        bad.send_raw((64 * 1024 * 1024).to_bytes(4, "little") + b"\x0b\x00")
        await asyncio.wait_for(bad.closed, 10)
        good.call_player("Echo", 5)
        assert (await good.wait_call("OnEcho")).args == (5, "")
    finally:
        await good.aclose()
        await bad.aclose()


@pytest.mark.asyncio
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_client_position_sync_moves_the_entity_for_neighbours(
    cluster: ClusterRunner, transport: str
) -> None:
    kind = next(_names) + 1000
    a = await login(cluster, unique("syncA"), transport, gate=0)
    b = await login(cluster, unique("syncB"), "tcp", gate=1)
    try:
        for c in (a, b):
            c.call_player("EnterSpace", kind)
            await c.wait_call("OnEnteredSpace")
        pa = a.player
        assert pa is not None
        await b.wait_until(lambda: pa.id in b.entities)
        # Without client syncing the server ignores the client's position. (The gate batches
        # syncs every 50 ms: wait well past that before asking.)
        a.sync_position(pa.id, 5.0, 0.0, 5.0, 90.0)
        await asyncio.sleep(0.5)
        a.call_player("WhereAmI")
        assert (await a.wait_call("OnWhereAmI")).args == (0.0, 0.0, 0.0, 0.0)
        a.call_player("EnableSync", True)
        await a.wait_call("OnSyncEnabled")
        n = len(a.calls)
        a.sync_position(pa.id, 12.5, 1.0, -7.25, 45.0)
        replica = b.entities[pa.id]
        await b.wait_until(lambda: (replica.x, replica.y, replica.z, replica.yaw) == (12.5, 1.0, -7.25, 45.0))
        a.call_player("WhereAmI")
        assert (await a.wait_call("OnWhereAmI", start=n)).args == (12.5, 1.0, -7.25, 45.0)
        # The sender's own replica is not echoed back by the server.
        assert (pa.x, pa.z) == (0.0, 0.0)
    finally:
        await a.aclose()
        await b.aclose()


@pytest.mark.asyncio
async def test_websocket_text_frames_carrying_binary_packets_are_accepted(cluster: ClusterRunner) -> None:
    """GoWorld's Go clients write every packet in a *text* frame; the gate takes the bytes as they
    are (no UTF-8 check): seq 255 puts 0xff, never valid UTF-8, into every Echo frame."""
    client = await GoWorldClient.connect(
        "127.0.0.1", cluster.gate(0, "ws"), transport="ws", ws_text_frames=True
    )
    try:
        account = await client.wait_player("Account")
        client.call(account.id, "Login", unique("wstext"))
        await client.wait_player("Avatar")
        for _ in range(3):
            client.call_player("Echo", 255, "\u00e9t\u00e9")
        await client.wait_until(lambda: len([c for c in client.calls if c.method == "OnEcho"]) == 3)
        assert not client.is_closed
    finally:
        await client.aclose()
