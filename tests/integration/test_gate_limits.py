"""The gate's bounds on one client or one address (issue 14), attacked on a real cluster.

One 1 + 1 + 1 cluster (tests/apps/cluster_app) started by the CLI, with short timeouts so the
module stays quick. Attackers bind to 127.0.0.2 and up, honest clients to 127.0.0.1. Every test
asserts outcomes (closed or not, every honest echo delivered, RSS growth under a generous
bound, how many log lines), never how long something took.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from goworld.bench.procstat import rss_bytes
from goworld.client import GoWorldClient
from goworld.errors import GoWorldError
from goworld.proto import codec
from goworld.proto.messages import HeartbeatFromClient, SyncPositionYawFromClient
from goworld.testing import ClusterRunner, running_cluster

APP = Path(__file__).resolve().parents[1] / "apps" / "cluster_app"
MiB = 1024 * 1024
IDLE = 4
HANDSHAKE = 2
PER_IP = 8
LIMITS = f"""\
heartbeat_check_interval = {IDLE}
handshake_timeout = {HANDSHAKE}
frame_timeout = 5
max_connections_per_ip = {PER_IP}
client_max_packets_per_sec = 200
client_packets_burst = 400
client_over_limit_close_after = 2
"""
HEARTBEAT = codec.encode(HeartbeatFromClient())
Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterRunner]:
    with running_cluster(
        tmp_path_factory.mktemp("gate_limits"), APP, dispatchers=1, games=1, gates=1,
        gate_extra=LIMITS,
    ) as runner:
        yield runner


async def login(runner: ClusterRunner, name: str) -> GoWorldClient:
    """An honest client (heartbeats every second: the gate's idle limit is short here)."""
    client = await GoWorldClient.connect("127.0.0.1", runner.gate(0, "tcp"), heartbeat_interval=1.0)
    account = await client.wait_player("Account")
    client.call(account.id, "Login", name)
    await client.wait_player("Avatar")
    return client


def gate_pid(runner: ClusterRunner) -> int:
    return int((runner.dir / ".goworld" / "gate1.pid").read_text())


async def connect(port: int, source: str) -> Conn | None:
    """A raw TCP connection from ``source``; None when the gate refused it at once."""
    try:
        return await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0)), 10
        )
    except (ConnectionError, TimeoutError):
        return None


async def closed_by_gate(conn: Conn, timeout: float = 30.0) -> bool:
    """Whether the gate closes ``conn`` within ``timeout`` (the rest of what it sent is read)."""
    reader, _ = conn
    try:
        async with asyncio.timeout(timeout):
            while await reader.read(65536):
                pass
        return True
    except ConnectionError:
        return True
    except TimeoutError:
        return False


async def echo_round(client: GoWorldClient, count: int, start: int) -> None:
    """``count`` echoes, every one answered (10 s each at most)."""
    first = len(client.calls)
    for seq in range(start, start + count):
        client.call_player("Echo", seq, "")
    await client.wait_until(
        lambda: sum(c.method == "OnEcho" for c in client.calls[first:]) == count, 30
    )


def shut(conns: list[Conn | None]) -> None:
    for c in conns:
        if c is not None:
            c[1].close()


@pytest.mark.asyncio
async def test_partial_packets_over_tcp_stay_within_the_budget(cluster: ClusterRunner) -> None:
    port = cluster.gate(0, "tcp")
    pid = gate_pid(cluster)
    honest = await login(cluster, "partial_tcp")
    before = rss_bytes(pid)
    body = struct.pack("<I", 32 * MiB) + bytes(31 * MiB)  # 31 MiB of a 32 MiB packet
    attackers = [await connect(port, f"127.0.1.{i}") for i in range(1, 21)]
    peak = before

    async def send(conn: Conn | None) -> None:
        if conn is None:
            return
        with contextlib.suppress(ConnectionError, TimeoutError):
            conn[1].write(body)
            await asyncio.wait_for(conn[1].drain(), 60)

    try:
        sending = asyncio.gather(*(send(c) for c in attackers))
        while not sending.done():
            peak = max(peak, rss_bytes(pid))
            await asyncio.sleep(0.1)
        closed = [await closed_by_gate(c) for c in attackers if c is not None]
        peak = max(peak, rss_bytes(pid))
        await echo_round(honest, 20, 1)
    finally:
        shut(attackers)
        await honest.aclose()
    print(f"\n---- gate RSS {before / MiB:.0f} MiB, peak {peak / MiB:.0f} MiB (20 x 31 MiB over TCP)")
    assert all(closed)  # over the budget at once, or after frame_timeout
    # 20 x 31 MiB held would be 620 MiB; the budget is 64 MiB.
    assert peak - before < 150 * MiB, f"gate RSS grew by {(peak - before) / MiB:.0f} MiB"
    assert cluster.grep("partial_frame_budget")


@pytest.mark.asyncio
async def test_partial_packets_over_websocket_are_bounded(cluster: ClusterRunner) -> None:
    from websockets.asyncio.client import connect as ws_connect
    from websockets.exceptions import ConnectionClosed

    port = cluster.gate(0, "ws")
    pid = gate_pid(cluster)
    before = rss_bytes(pid)
    url = f"ws://127.0.0.1:{port}/ws"
    peak = before
    closed: list[bool] = []

    async def attack(source: str, messages: list[bytes]) -> None:
        ws = await ws_connect(url, max_size=None, compression=None, local_addr=(source, 0))
        try:
            for message in messages:
                await ws.send(message)
            while True:  # the boot entity arrives first; then the close
                await asyncio.wait_for(ws.recv(), 30)
        except ConnectionClosed:
            closed.append(True)
        except TimeoutError:
            closed.append(False)
        finally:
            with contextlib.suppress(Exception):
                await ws.close()

    header = struct.pack("<I", 32 * MiB)
    # 31 MiB of a 32 MiB packet in one message: over ws_max_message_size from its header on.
    big = [header + bytes(31 * MiB)]
    # The same in messages under the limit: the partial packet budget and frame_timeout.
    small = [header] + [bytes(128 * 1024)] * 248
    tasks = asyncio.gather(
        *(attack(f"127.0.3.{i + 1}", big) for i in range(10)),
        *(attack(f"127.0.4.{i + 1}", small) for i in range(10)),
    )
    while not tasks.done():
        peak = max(peak, rss_bytes(pid))
        await asyncio.sleep(0.1)
    tasks.result()
    print(f"\n---- gate RSS {before / MiB:.0f} MiB, peak {peak / MiB:.0f} MiB (20 x 31 MiB over WS)")
    assert closed == [True] * 20
    assert cluster.grep("WebSocket: ")  # the 1009 closes
    assert peak - before < 150 * MiB, f"gate RSS grew by {(peak - before) / MiB:.0f} MiB"


@pytest.mark.asyncio
async def test_connections_per_address_are_limited(cluster: ClusterRunner) -> None:
    port = cluster.gate(0, "tcp")
    refused_lines = len(cluster.grep("refused: max_connections_per_ip"))
    attackers = [await connect(port, "127.0.0.2") for _ in range(60)]
    try:
        for c in attackers:
            if c is not None:
                c[1].write(HEARTBEAT)
        honest = await login(cluster, "per_ip_honest")
        await echo_round(honest, 5, 1)
        await honest.aclose()
        alive = 0
        for c in attackers:
            if c is not None and not await closed_by_gate(c, timeout=0.5):
                alive += 1
    finally:
        shut(attackers)
    assert alive == PER_IP
    # 52 refusals: one line, and at most one summary line 10 s later
    assert 1 <= len(cluster.grep("refused: max_connections_per_ip")) - refused_lines <= 2


@pytest.mark.asyncio
async def test_a_flooding_client_is_slowed_then_closed_honest_ones_are_served(
    cluster: ClusterRunner,
) -> None:
    honest = await login(cluster, "flood_honest")
    flooder = await connect(cluster.gate(0, "tcp"), "127.0.0.3")
    assert flooder is not None
    before = len(cluster.grep("over the rate limit"))

    async def flood(conn: Conn) -> int:
        sent = 0
        with contextlib.suppress(ConnectionError, TimeoutError):
            burst = HEARTBEAT * 10_000
            while True:
                conn[1].write(burst)
                await asyncio.wait_for(conn[1].drain(), 30)
                sent += 10_000
        return sent

    flooding = asyncio.create_task(flood(flooder))
    try:
        await echo_round(honest, 50, 1)
        closed = await closed_by_gate(flooder, timeout=60)
        sent = await asyncio.wait_for(flooding, 30)
    finally:
        flooding.cancel()
        shut([flooder])
        await honest.aclose()
    assert closed
    assert sent < 5_000_000  # it was throttled long before the kernel buffers let it run free
    assert len(cluster.grep("over the rate limit")) - before == 1


@pytest.mark.asyncio
async def test_a_connection_that_never_speaks_is_closed(cluster: ClusterRunner) -> None:
    from websockets.asyncio.client import connect as ws_connect
    from websockets.exceptions import ConnectionClosed

    silent_tcp = await connect(cluster.gate(0, "tcp"), "127.0.0.4")
    silent_http = await connect(cluster.gate(0, "ws"), "127.0.0.4")  # not even an upgrade
    assert silent_tcp is not None and silent_http is not None
    ws = await ws_connect(f"ws://127.0.0.1:{cluster.gate(0, 'ws')}/ws", compression=None)
    try:
        assert await closed_by_gate(silent_tcp)
        assert await closed_by_gate(silent_http)
        with pytest.raises(ConnectionClosed):
            while True:  # upgraded, then no packet: the boot entity, then the close
                await asyncio.wait_for(ws.recv(), 30)
    finally:
        shut([silent_tcp, silent_http])
        await ws.close()
    assert cluster.grep("handshake_timeout")


@pytest.mark.asyncio
async def test_goworld_clients_send_heartbeats_and_silent_ones_are_closed(
    cluster: ClusterRunner,
) -> None:
    port = cluster.gate(0, "tcp")
    lively = await GoWorldClient.connect("127.0.0.1", port, heartbeat_interval=1.0)
    silent = await GoWorldClient.connect("127.0.0.1", port, heartbeat_interval=None)
    try:
        await lively.wait_player("Account")
        await silent.wait_player("Account")
        await asyncio.wait_for(asyncio.shield(silent.closed), 4 * IDLE)
        await asyncio.sleep(IDLE)  # lively has now been connected for more than 2 x IDLE
        assert not lively.is_closed
    finally:
        await lively.aclose()
        await silent.aclose()


@pytest.mark.asyncio
async def test_a_sync_for_an_entity_the_client_does_not_own_is_dropped(
    cluster: ClusterRunner,
) -> None:
    victim = await login(cluster, "sync_victim")
    attacker = await login(cluster, "sync_attacker")
    before = len(cluster.grep("position sync refused"))
    try:
        assert victim.player is not None
        for _ in range(200):
            attacker.send(SyncPositionYawFromClient(victim.player.id, 9.0, 9.0, 9.0, 9.0))
        await echo_round(attacker, 5, 1)  # not closed, served as before
        await echo_round(victim, 5, 1)
        cluster.wait_for_log("position sync refused", count=before + 1)
    finally:
        await victim.aclose()
        await attacker.aclose()
    # 200 refusals: one line, and at most one summary line 10 s later
    assert 1 <= len(cluster.grep("position sync refused")) - before <= 2


@pytest.mark.asyncio
async def test_the_gate_recovers_when_descriptors_run_out(cluster: ClusterRunner) -> None:
    pid = gate_pid(cluster)
    port = cluster.gate(0, "tcp")
    original = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    in_use = len(list(Path(f"/proc/{pid}/fd").iterdir()))
    errors_before = len(cluster.grep("cannot accept connections"))
    attackers: list[Conn | None] = []
    try:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (in_use + 5, original[1]))
        for i in range(30):  # distinct sources: the per-address limit is not what refuses
            conn = await connect(port, f"127.0.2.{i + 1}")
            attackers.append(conn)
            if conn is not None:
                conn[1].write(HEARTBEAT)
        cluster.wait_for_log("cannot accept connections", count=errors_before + 1)
        await asyncio.sleep(2)  # the back-off retries; each retry fails again
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, original)
        shut(attackers)
    # One line per 10 s, however many accept() calls failed.
    assert 1 <= len(cluster.grep("cannot accept connections")) - errors_before <= 2
    honest = await login(cluster, "after_emfile")
    try:
        await echo_round(honest, 5, 1)
    finally:
        await honest.aclose()
    assert cluster.grep("accepting again")


@pytest.mark.asyncio
async def test_max_clients_refuses_the_extra_connections_and_frees_their_places(
    tmp_path: Path,
) -> None:
    runner = ClusterRunner(
        tmp_path, APP, dispatchers=1, games=1, gates=1, gate_extra="max_clients = 6\n"
    )
    runner.start()
    conns: list[Conn | None] = []
    try:
        port = runner.gate(0, "tcp")
        for i in range(20):  # distinct sources: only the gate-wide limit refuses
            conn = await connect(port, f"127.0.5.{i + 1}")
            conns.append(conn)
            if conn is not None:
                conn[1].write(HEARTBEAT)
        alive = [c for c in conns if c is not None and not await closed_by_gate(c, timeout=1.0)]
        assert len(alive) == 6
        assert 1 <= len(runner.grep("refused: max_clients (6) reached")) <= 2
        shut(conns)
        conns = []
        honest = None
        for _ in range(150):  # until the gate has seen the six go
            try:
                honest = await login(runner, "after_max_clients")
                break
            except (OSError, GoWorldError, TimeoutError):
                await asyncio.sleep(0.2)
        assert honest is not None
        try:
            await echo_round(honest, 5, 1)
        finally:
            await honest.aclose()
    finally:
        shut(conns)
        runner.stop()
        runner.kill()
