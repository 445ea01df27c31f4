"""Issue 14's attacks on a real cluster, honest players measured throughout.

One examples/chatroom_demo cluster (1 dispatcher + 1 game + 1 gate, SQLite) started by the CLI
for the module; each test runs one attack of :mod:`goworld.bench.attacks` (one attacker process
from 127.0.0.2) while four honest players from 127.0.0.1 chat every 0.5 s, and a newcomer logs
in half-way through. The assertions are outcomes that do not depend on how loaded the machine
is: every honest line delivered to every honest player, the attacker closed or slowed (far
fewer of its calls processed than sent), RSS growth and log growth under generous bounds, KCP
bytes back no more than bytes sent. Timings (honest p99 before and during each attack) are
``goworld bench --only hostile``'s business (BENCHMARKS.md), not assertions here.

The gate runs with a short ``frame_timeout`` and a lower ``max_connections_per_ip`` than the
defaults, so that the module stays short; everything else is the shipped default.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from goworld.bench.attacks import CLUSTER_ENV, Outcome, run_attack
from goworld.testing import ClusterRunner, running_cluster

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "examples" / "chatroom_demo"
MiB = 1024 * 1024
#: Issue 14's goal is < 100 MB per process; the bound here is generous so the tests cannot
#: flake on a loaded machine (before the defences the attacks grew processes by 250-2,800 MB).
RSS_BOUND = 150 * MiB
LOG_BOUND = 2 * MiB  # before: 338 MB of log for one flood of refused calls
PER_IP = 500
FRAME_TIMEOUT = 3
GATE = f"""\
frame_timeout = {FRAME_TIMEOUT}
max_connections_per_ip = {PER_IP}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterRunner]:
    with pytest.MonkeyPatch.context() as env:
        for key, value in CLUSTER_ENV.items():
            env.setenv(key, value)
        with running_cluster(tmp_path_factory.mktemp("hostile"), APP, dispatchers=1, games=1,
                             gates=1, gate_extra=GATE) as runner:
            yield runner


def attack(cluster: ClusterRunner, name: str, seconds: float, *, stall: str | None = None,
           **options: Any) -> Outcome:
    outcome = asyncio.run(run_attack(
        name, cluster_dir=cluster.dir, host="127.0.0.1", tcp_port=cluster.gate(0, "tcp"),
        ws_port=cluster.gate(0, "ws"), seconds=seconds, before=2.0, after=1.0, drain=30.0,
        options=options, stall=stall,
    ))
    print(f"\n---- {name}: " + json.dumps(outcome.summary(), default=str))
    assert outcome.attacker, f"the attacker reported nothing: {outcome.notes}\n{cluster.logs()}"
    return outcome


def assert_honest_served(o: Outcome, cluster: ClusterRunner) -> None:
    assert o.honest_sent > 0 and o.rtt_during, "the honest players did not chat"
    assert o.honest_lost == 0, (f"{o.honest_lost} of {o.honest_sent} honest lines x 4 players "
                                f"lost\n{cluster.logs()}")
    for proc in o.rss_peak:
        assert o.growth(proc) < RSS_BOUND, f"{proc} grew by {o.growth(proc) / MiB:.0f} MiB"
    assert o.log_growth < LOG_BOUND, f"the logs grew by {o.log_growth / MiB:.1f} MiB"
    assert o.newcomer == "ok", f"a player arriving during the attack: {o.newcomer}"


def test_a_chat_flood_is_slowed_and_honest_players_are_served(cluster: ClusterRunner) -> None:
    o = attack(cluster, "chat_flood", 4)
    assert_honest_served(o, cluster)
    a = o.attacker
    assert a["processed"] * 10 < a["sent"], a  # before: ~200k calls/s processed


def test_a_flood_of_refused_calls_is_closed_and_not_logged_one_by_one(
    cluster: ClusterRunner,
) -> None:
    o = attack(cluster, "refused_method_flood", 4)
    assert_honest_served(o, cluster)
    assert o.attacker["processed"] == 0
    assert o.attacker["closed"], o.attacker  # before: never disconnected, one WARNING per call


def test_partial_packets_over_tcp_are_bounded_and_closed(cluster: ClusterRunner) -> None:
    o = attack(cluster, "partial_frames_tcp", FRAME_TIMEOUT + 7)
    assert_honest_served(o, cluster)
    a = o.attacker
    assert a["opened"] == 20
    assert a["closed"] == 20, a  # over the budget at once, or after frame_timeout


def test_partial_packets_over_websocket_are_bounded_and_closed(cluster: ClusterRunner) -> None:
    # Over WebSocket the gate takes longer to find every connection over the budget (~10 s
    # for 20 here): the window is longer.
    o = attack(cluster, "partial_frames_ws", FRAME_TIMEOUT + 12)
    assert_honest_served(o, cluster)
    a = o.attacker
    assert a["opened"] == 20
    assert a["closed"] == 20, a


def test_idle_connections_from_one_address_leave_room_for_players(cluster: ClusterRunner) -> None:
    o = attack(cluster, "idle_connections", 6, conns=2000)
    assert_honest_served(o, cluster)  # including the newcomer
    a = o.attacker
    assert a["connected"] > PER_IP, a  # the kernel completes handshakes the gate then refuses
    assert a["open_at_end"] <= PER_IP, a


def test_big_calls_to_unknown_entities_are_bounded(cluster: ClusterRunner) -> None:
    o = attack(cluster, "big_args_unknown_entity", 5, calls=400)
    assert_honest_served(o, cluster)
    a = o.attacker
    assert a["closed"] or a["sent"] < 400, a  # before: 400 MiB taken, held by the dispatcher


def test_a_wrong_password_flood_is_slowed(cluster: ClusterRunner) -> None:
    o = attack(cluster, "login_flood", 4)
    assert_honest_served(o, cluster)
    a = o.attacker
    assert a["processed"] * 10 < a["sent"], a  # before: 817k processed in 5 s, game at 2.9 GB


def test_spoofed_kcp_openings_get_no_more_bytes_back_than_sent(cluster: ClusterRunner) -> None:
    sessions_before = len(cluster.grep(" connected over kcp"))
    o = attack(cluster, "kcp_spoof", 5, sessions=1000)
    assert_honest_served(o, cluster)
    a = o.attacker
    assert a["worst_ratio_per_socket"] <= 1.0, a  # before: 63x, for 20 s
    assert a["bytes_back"] <= a["bytes_sent"], a
    assert len(cluster.grep(" connected over kcp")) == sessions_before  # no session, no entity

    async def honest_kcp_player() -> None:  # from another address: the caps did not hit it
        from goworld.client import GoWorldClient

        client = await GoWorldClient.connect("127.0.0.1", cluster.gate(0, "kcp"), transport="kcp")
        try:
            await client.wait_player("Account", timeout=30)
        finally:
            await client.aclose()

    asyncio.run(honest_kcp_player())


def test_syncing_another_players_entity_is_refused(cluster: ClusterRunner) -> None:
    before = len(cluster.grep("position sync refused"))
    o = attack(cluster, "sync_other_entity", 4, rate=200)
    assert_honest_served(o, cluster)
    refused = len(cluster.grep("position sync refused")) - before
    assert 1 <= refused <= 5, refused  # refused, and summarised, not one line per record


def test_a_stalled_game_does_not_let_one_client_grow_the_cluster(cluster: ClusterRunner) -> None:
    o = attack(cluster, "stalled_game_calls", 4, stall="game1", rate=20_000)
    # Honest lines wait for the game like everybody's: none lost once it resumes.
    assert_honest_served(o, cluster)
    a = o.attacker
    assert a["processed"] * 2 < a["sent"], a


def test_a_stalled_game_with_many_callers_is_bounded_by_the_dispatcher(
    cluster: ClusterRunner,
) -> None:
    # 50 connections at 400 calls/s each, under the gate's per-connection limit: what waits for
    # the stopped game is held (and paused at the gate) by the dispatcher.
    o = attack(cluster, "stalled_game_many_clients", 4, stall="game1", rate=20_000, clients=50)
    assert_honest_served(o, cluster)
    a = o.attacker
    assert a["processed"] * 2 < a["sent"], a
