"""Issue 15's fault matrix, a representative subset (the whole matrix is ``goworld bench --only
faults``): real processes started by ``goworld start`` (examples/test_game, supervised with a
0.2 s back-off), under load from GoWorld's Go bot (``test_client -strict``) and Python clients
logged in on every gate, each calling ``TestListField`` every 0.5 s.

* 1+1+1: kill -9 of the game, the gate and the dispatcher, and SIGSTOP of the game (SIGCONT
  after 4 s);
* 2+2+2: kill -9 of dispatcher1, then of game1 (test_game's SpaceService may still send
  avatars to spaces that died with it: they are sent elsewhere, the bot passes).

Each fault runs on the cluster the previous one left (each process is killed at most once), and
is driven by scripts/bench_faults.py's ``run_fault`` (the bench measures with the same code).
For each, the test asserts what every Python client went through (told why and logged in again,
or undisturbed and still served, by the rule of the fault), that every player saved before any
fault so far gets its avatar back (id and ``prof`` from storage), and that the cluster returns
to full strength by itself: ``goworld status --json`` all up with every game serving, a newcomer
logs in and is served, and a Go bot run after the fault passes its strict verdict. Nothing is
timed: outcomes are awaited with generous bounds; the figures are the bench's.

Two regression tests of bugs these faults found (fixed in eea5754 and 738bd50): a player whose
avatar was created but never saved when its game died could not log in again (every other
player here was saved once before the fault); a restarted dispatcher dropped what a game sent
to a gate that had not reconnected to it yet (made deterministic with cluster_app by holding
the gate with SIGSTOP).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from goworld.testing import ClusterRunner

ROOT = Path(__file__).resolve().parents[2]


def _load_harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_faults", ROOT / "scripts" / "bench_faults.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_faults"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


bf = _load_harness()

PLAN = bf.Plan(players=6, saved=1, bots=10, bot_seconds=12, after_bots=10, after_seconds=12,
               stop_seconds=4.0, settle=2.0, backoff="0.2")



class Cluster:
    def __init__(self, runner: ClusterRunner, layout: str) -> None:
        self.runner, self.layout = runner, layout
        self.saved: dict[str, tuple[str, int]] = {}
        self.faults = 0


def _cluster(tmp_path_factory: pytest.TempPathFactory, layout: str) -> Iterator[Cluster]:
    runner = bf.make_runner(tmp_path_factory.mktemp(f"faults{layout}"), layout, PLAN)
    runner.start()
    try:
        yield Cluster(runner, layout)
    finally:
        bf.continue_all(runner)
        runner.stop()
        runner.kill()


# Class-scoped: the 1+1+1 cluster is gone before the 2+2+2 one starts.
@pytest.fixture(scope="class")
def cluster111(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from _cluster(tmp_path_factory, "111")


@pytest.fixture(scope="class")
def cluster222(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from _cluster(tmp_path_factory, "222")


async def _fault(cluster: Cluster, test_client: Path, role: str, kind: str) -> Any:
    cluster.faults += 1
    out = await bf.run_fault(cluster.runner, cluster.layout, role, kind, PLAN, binary=test_client,
                             first_bot=1 + 100 * cluster.faults, saved=cluster.saved)
    print(f"\n{bf._line(out, 0)}")
    context = f"{out.to_json()}\n{cluster.runner.logs()}"
    assert out.error == "", context
    # Full strength by itself.
    assert out.full_strength and out.newcomer_ok, context
    assert out.status_after.get("ok") and all(p["up"] for p in out.status_after["processes"]), context
    # Spaces that died with game1 (2+2+2): test_game's SpaceService may still send an avatar
    # to one; on_enter_space_failed sends it elsewhere, so the strict bot passes all the same.
    assert out.bot_after_passed, out.bot_after
    # Data: every player saved before this fault or an earlier one comes back.
    assert out.saved_checked >= PLAN.saved and out.data_lost == [], context
    # Undisturbed players are served; disturbed ones log in again.
    assert out.undisturbed_not_served == [], context
    assert out.relogin_ok == out.disturbed and out.relogin_failed == [], context
    assert out.connected == PLAN.players
    return out


def _gate1_only(out: Any) -> None:
    """A dead gate: exactly its own clients are closed (no notice: the connection is gone)."""
    assert out.disturbed_per_gate == {"0": out.per_gate["0"]}, out.to_json()


@pytest.mark.slow
class Test111:
    """1 dispatcher, 1 game, 1 gate."""

    @pytest.mark.asyncio
    async def test_kill_9_game(self, cluster111: Cluster, test_client: Path) -> None:
        out = await _fault(cluster111, test_client, "game", "kill")
        # One game: every player lived there, each is told why.
        assert out.disturbed == out.connected, out.to_json()
        assert out.close_codes == {"game_lost": out.connected}, out.to_json()

    @pytest.mark.asyncio
    async def test_sigstop_game(self, cluster111: Cluster, test_client: Path) -> None:
        out = await _fault(cluster111, test_client, "game", "stop")
        assert out.disturbed == 0, out.to_json()  # paused, then served again
        # The dispatcher noticed (game_hang_timeout) and said so.
        assert cluster111.runner.grep("game1 sent nothing"), out.to_json()

    @pytest.mark.asyncio
    async def test_kill_9_gate(self, cluster111: Cluster, test_client: Path) -> None:
        out = await _fault(cluster111, test_client, "gate", "kill")
        _gate1_only(out)

    @pytest.mark.asyncio
    async def test_kill_9_dispatcher(self, cluster111: Cluster, test_client: Path) -> None:
        out = await _fault(cluster111, test_client, "dispatcher", "kill")
        assert out.disturbed == 0, out.to_json()  # the gate keeps its clients and reconnects

    @pytest.mark.asyncio
    async def test_a_new_avatar_never_saved_logs_in_again_after_its_game_died(
        self, cluster111: Cluster
    ) -> None:
        runner = cluster111.runner
        full, _ = await bf.wait_full_strength(runner, "fresh-pre", 1)
        assert full
        fresh = bf.Player("fresh-never-saved", 0)
        client = await asyncio.wait_for(fresh.login(runner), 60)
        pid = bf.pid_of(runner, "game1")
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        try:
            await asyncio.wait_for(asyncio.shield(client.closed), 30)
            assert client.close_code == "game_lost"
            full, _ = await bf.wait_full_strength(runner, "fresh-post", 1)
            assert full, runner.logs()
            again = bf.Player("fresh-never-saved", 0)
            try:
                # Before eea5754 it never got its Avatar: the id was in KVDB, not in storage.
                await again.login(runner, timeout=30)
            finally:
                await again.close()
        finally:
            await fresh.close()


@pytest.mark.slow
class Test222:
    """2 dispatchers, 2 games, 2 gates."""

    @pytest.mark.asyncio
    async def test_kill_9_dispatcher1(self, cluster222: Cluster, test_client: Path) -> None:
        out = await _fault(cluster222, test_client, "dispatcher", "kill")
        assert out.disturbed == 0, out.to_json()

    @pytest.mark.asyncio
    async def test_kill_9_game1(self, cluster222: Cluster, test_client: Path) -> None:
        out = await _fault(cluster222, test_client, "game", "kill")
        # The players whose avatar lived on game1 are told why; the others are undisturbed.
        assert set(out.close_codes) <= {"game_lost"}, out.to_json()


CLUSTER_APP = ROOT / "tests" / "apps" / "cluster_app"


def _gate_rejoined(runner: ClusterRunner, timeout: float = 60.0) -> None:
    """gate1 says its link to dispatcher1 is back."""
    import time

    deadline = time.monotonic() + timeout
    while ": reconnected" not in (runner.dir / "gate1.log").read_text(errors="replace"):
        assert time.monotonic() < deadline, runner.logs()
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.asyncio
async def test_a_restarted_dispatcher_holds_what_is_for_a_gate_not_back_yet(tmp_path: Path) -> None:
    """Deterministic form of the race: gate1 is stopped while dispatcher1 is killed and started
    again, so game1 rejoins dispatcher1 first; the ticks (OnTick n, every 0.1 s) game1 sends
    meanwhile to players whose avatar's dispatcher is dispatcher1 must reach them once gate1 is
    back (its clients are kept for GATE_RECONNECT_GRACE by a dispatcher that stayed up).
    At most the one tick in the killed dispatcher's stream may be lost."""
    from goworld import runctl
    from goworld.proto.ids import dispatcher_shard
    from goworld.testing import login

    runner = ClusterRunner(tmp_path, CLUSTER_APP, dispatchers=2, games=1, gates=1)
    result = runner.cli("start", str(CLUSTER_APP), "--no-supervise")
    assert result.returncode == 0, result.stdout + result.stderr
    gate = runctl.read_pid(tmp_path / ".goworld", "gate1")
    relaunched: subprocess.Popen[bytes] | None = None
    clients = []
    try:
        on_d1 = []
        for i in range(20):
            client = await login(runner, f"ticker{i}")
            clients.append(client)
            assert client.player is not None
            if dispatcher_shard(client.player.id, 2) == 1:
                on_d1.append(client)
            if len(on_d1) >= 2 and len(clients) >= 4:
                break
        assert on_d1
        for client in clients:
            client.call_player("StartTicker", 0.1)
        await asyncio.sleep(1.0)
        d1 = runctl.read_pid(tmp_path / ".goworld", "dispatcher1")
        assert d1 is not None and gate is not None
        cmd = Path(f"/proc/{d1}/cmdline").read_bytes()
        os.kill(gate, signal.SIGSTOP)
        try:
            os.kill(d1, signal.SIGKILL)
            await asyncio.sleep(1.0)
            with (tmp_path / "dispatcher1.relaunched.out").open("wb") as out:
                relaunched = subprocess.Popen(
                    cmd.rstrip(b"\0").split(b"\0"), cwd=tmp_path, stdout=out,
                    stderr=subprocess.STDOUT, start_new_session=True,
                )
            await asyncio.to_thread(runner.wait_for_log, "game1 connected", 3, 60)  # 2 at start, the new d1
            await asyncio.sleep(1.0)  # ticks go to the new dispatcher1, gate1 not back yet
        finally:
            os.kill(gate, signal.SIGCONT)
        await asyncio.to_thread(_gate_rejoined, runner)
        await asyncio.sleep(1.5)

        def ticks(client: Any) -> list[int]:
            return [c.args[0] for c in client.calls if c.method == "OnTick"]

        gaps = {}
        for client in clients:
            seen = ticks(client)
            assert seen, "no tick at all"
            missing = sorted(set(range(seen[0], seen[-1] + 1)) - set(seen))
            # One tick may go with the killed dispatcher: the one its stream had taken when it
            # died (the links have no acknowledgement). Before 738bd50, ~40 (all sent until the
            # gate rejoined) were lost.
            if len(missing) > 1:  # (its dispatcher, how many ticks, the first ones)
                gaps[client.player.id] = (dispatcher_shard(client.player.id, 2), len(missing), missing[:3])
        assert not any(c.is_closed for c in clients)
        assert gaps == {}, (gaps, runner.grep("stats: routed"))
    finally:
        for client in clients:
            client.close()
        if gate is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(gate, signal.SIGCONT)
        if relaunched is not None:
            relaunched.kill()
            relaunched.wait(10)
        runner.kill()
