"""`goworld reload` on a live cluster: clients stay connected and lose nothing (issue 6)."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import pytest

from goworld.client import GoWorldClient
from goworld.proto.msgtypes import MsgType
from goworld.testing import ClusterRunner, login

APP = Path(__file__).resolve().parents[1] / "apps" / "cluster_app"
CREATES_DESTROYS = (MsgType.CREATE_ENTITY_ON_CLIENT, MsgType.DESTROY_ENTITY_ON_CLIENT)



def started(directory: Path, app: Path = APP, **options: object) -> ClusterRunner:
    runner = ClusterRunner(directory, app, **options)  # type: ignore[arg-type]
    runner.start()
    runner.wait_for_log("created here", count=5)
    return runner


def started_on_a_copy(tmp_path: Path, **options: object) -> tuple[ClusterRunner, Path]:
    """A cluster running a copy of the app, and the copy's entities.py to edit for reloads."""
    app = tmp_path / "app" / "cluster_app"
    shutil.copytree(APP, app)
    (tmp_path / "run").mkdir()
    return started(tmp_path / "run", app, **options), app / "entities.py"


class EchoPump:
    """Calls Echo(seq) every few ms until stopped; checks every call is answered once, in order."""

    def __init__(self, client: GoWorldClient) -> None:
        self.client = client
        self.sent = 0
        self._stop = False
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while not self._stop:
            self.client.call_player("Echo", self.sent)
            self.sent += 1
            await asyncio.sleep(0.005)

    async def finish(self) -> list[int]:
        self._stop = True
        await self.task
        c = self.client
        await c.wait_until(lambda: len([x for x in c.calls if x.method == "OnEcho"]) >= self.sent, 30)
        await asyncio.sleep(0.2)  # a duplicate would arrive right behind
        return [x.args[0] for x in c.calls if x.method == "OnEcho"]


@pytest.mark.asyncio
async def test_reload_under_load_loses_nothing_and_keeps_the_world(tmp_path: Path) -> None:
    runner = started(tmp_path)
    clients: list[GoWorldClient] = []
    try:
        a = await login(runner, "reload-a", "tcp", 0)
        b = await login(runner, "reload-b", "ws", 1)
        k = await login(runner, "reload-k", "kcp", 0)
        clients = [a, b, k]
        for c in clients:
            c.call_player("EnterSpace", 7)
            await c.wait_call("OnEnteredSpace")
        pa, pb = a.player, b.player
        assert pa is not None and pb is not None
        await a.wait_until(lambda: pb.id in a.entities)
        a.call_player("Move", 11.0, -3.0)
        a.call_player("PutBag", "gem", 7)
        a.call_player("Remember", "hello across reloads")
        a.call_player("JoinTeam", "red")
        b.call_player("JoinTeam", "red")
        a.call_player("StartTicker", 0.5)
        a.call_player("CallMeLater", 3.0, "due-in-3s")
        asked_at = time.monotonic()
        await a.wait_call("OnTick")
        await b.wait_until(lambda: (b.entities[pa.id].x, b.entities[pa.id].z) == (11.0, -3.0))
        marks = {id(c): len(c.log) for c in clients}
        pumps = [EchoPump(c) for c in clients]
        await asyncio.sleep(0.3)

        result = await asyncio.to_thread(runner.cli, "reload")
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.count("freezing game") == 2 and result.stdout.count("restoring game") == 2

        await asyncio.sleep(0.3)
        for pump in pumps:
            assert await pump.finish() == list(range(pump.sent))  # exactly once, in order
        for c in clients:
            assert not c.is_closed
            # Nothing was created or destroyed on any client by the reload.
            assert [e for e in c.log[marks[id(c)]:] if e[0] in CREATES_DESTROYS] == []

        called = await a.wait_call("OnCalledBack", timeout=10)
        assert called.args == ("due-in-3s",)
        elapsed = time.monotonic() - asked_at
        assert 2.9 <= elapsed < 5.0, f"the one-shot timer fired after {elapsed:.2f} s, not ~3 s"
        n = len(a.calls)
        await a.wait_call("OnTick", start=n)  # the repeating timer goes on

        a.call_player("WhereAmI")
        assert (await a.wait_call("OnWhereAmI", start=n)).args[:3] == (11.0, 0.0, -3.0)
        a.call_player("Recall")
        assert (await a.wait_call("OnRecall", start=n)).args == ("hello across reloads", True)
        a.call_player("PutBag", "key", 1)
        await a.wait_until(lambda: pa.attrs["bag"] == {"gem": 7, "key": 1})
        # AOI neighbours are still neighbours: an AllClients change reaches the other client.
        a.call_player("SetHP", 33)
        await b.wait_until(lambda: b.entities[pa.id].attrs["hp"] == 33)
        # Services and filtered calls still work.
        b.call_player("Ping")
        await b.wait_call("OnPong")
        b.call_player("TeamChat", "red", "still here")
        assert (await a.wait_call("OnTeamChat", start=n)).args == ("still here",)
        assert runner.grep("ERROR") == []
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
        runner.stop()
        runner.kill()


@pytest.mark.asyncio
async def test_a_freeze_that_cannot_complete_leaves_the_game_running(tmp_path: Path) -> None:
    runner = started(tmp_path, games=1, gates=1, dispatchers=1)
    client = None
    try:
        client = await login(runner, "stubborn")
        client.call_player("BreakFreeze", True)
        await client.wait_call("OnBreakFreeze")
        result = await asyncio.to_thread(runner.cli, "reload")
        assert result.returncode != 0
        assert "refuses to freeze" in result.stderr and "keeps running" in result.stdout
        client.call_player("Echo", 42)  # served by the same, still running process
        assert (await client.wait_call("OnEcho")).args == (42, "")
        assert not (tmp_path / "game1_freezed.dat").exists()

        n = len(client.calls)
        client.call_player("BreakFreeze", False)
        await client.wait_call("OnBreakFreeze", start=n)
        result = await asyncio.to_thread(runner.cli, "reload")
        assert result.returncode == 0, result.stdout + result.stderr
        client.call_player("Echo", 43)
        assert (await client.wait_call("OnEcho", start=n)).args == (43, "")
    finally:
        if client is not None:
            await client.aclose()
        runner.stop()
        runner.kill()


@pytest.mark.asyncio
async def test_broken_new_code_is_refused_before_anything_freezes(tmp_path: Path) -> None:
    runner, entities = started_on_a_copy(tmp_path, games=1, gates=1, dispatchers=1)
    client = None
    good = entities.read_text()
    try:
        client = await login(runner, "careful")
        entities.write_text(good + "\nraise ImportError('the new code is broken')\n")
        result = await asyncio.to_thread(runner.cli, "reload")
        assert result.returncode != 0
        assert "did not come up" in result.stderr and "the new code is broken" in result.stderr
        assert not (tmp_path / "run" / "game1_freezed.dat").exists()
        client.call_player("Echo", 5)  # the old process never stopped serving
        assert (await client.wait_call("OnEcho")).args == (5, "")
    finally:
        if client is not None:
            await client.aclose()
        runner.stop()
        runner.kill()


@pytest.mark.asyncio
async def test_a_failed_restore_keeps_the_freeze_file_and_a_second_reload_recovers(tmp_path: Path) -> None:
    runner, entities = started_on_a_copy(tmp_path, games=1, gates=1, dispatchers=1)
    client = None
    good = entities.read_text()
    try:
        client = await login(runner, "patient")
        client.call_player("RememberObject", "kept in a Python object")
        await client.wait_call("OnRemembered")
        # The new code imports fine but no longer has the class a live entity's field holds.
        entities.write_text(good.replace("class Memo:", "class Note:").replace("Memo(text)", "Note(text)"))
        result = await asyncio.to_thread(runner.cli, "reload")
        assert result.returncode != 0
        assert "Memo" in result.stderr
        assert "freeze file" in result.stderr and "kept" in result.stderr
        frozen = tmp_path / "run" / "game1_freezed.dat"
        assert frozen.exists()

        client.call_player("Echo", 7)  # held by the dispatcher while the game is down
        await asyncio.sleep(0.5)
        assert [c for c in client.calls if c.method == "OnEcho"] == []
        assert not client.is_closed

        entities.write_text(good)
        result = await asyncio.to_thread(runner.cli, "reload")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "restoring it from game1_freezed.dat" in result.stdout
        assert (await client.wait_call("OnEcho")).args == (7, "")
        client.call_player("RecallObject")
        assert (await client.wait_call("OnRecallObject")).args == ("kept in a Python object",)
        assert not frozen.exists()
    finally:
        if client is not None:
            await client.aclose()
        runner.stop()
        runner.kill()


@pytest.mark.asyncio
async def test_in_place_reload_rejects_broken_code_and_swaps_good_code(tmp_path: Path) -> None:
    runner, entities = started_on_a_copy(tmp_path)
    client = None
    good = entities.read_text()
    broken = {
        "syntax error": good + "\ndef oops(:\n",
        "import error": "import no_such_module_here\n" + good,
        "bad registration": good.replace(
            '"secret": goworld.PERSISTENT,', '"secret": goworld.PERSISTENT,\n        "bad": 64,'
        ),
        "changed attribute flags": good.replace(
            '"hp": goworld.ALL_CLIENTS,', '"hp": goworld.CLIENT,'
        ),
    }
    expected = {
        "syntax error": "SyntaxError",
        "import error": "no_such_module_here",
        "bad registration": "bad flags 64",
        "changed attribute flags": "needs a full `goworld reload`",
    }
    try:
        client = await login(runner, "swapper", "ws", 1)
        for what, source in broken.items():
            entities.write_text(source)
            result = await asyncio.to_thread(runner.cli, "reload", "--in-place")
            assert result.returncode != 0, what
            assert "REJECTED" in result.stdout and expected[what] in result.stderr, (what, result.stderr)
            n = len(client.calls)
            client.call_player("Version")
            assert (await client.wait_call("OnVersion", start=n)).args == ("v1",), what

        entities.write_text(good.replace('APP_VERSION = "v1"', 'APP_VERSION = "v2"'))
        result = await asyncio.to_thread(runner.cli, "reload", "--in-place")
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.count("live entities rebound") == 2
        n = len(client.calls)
        client.call_player("Version")
        assert (await client.wait_call("OnVersion", start=n)).args == ("v2",)
        client.call_player("Ping")  # services (rebound too) still answer
        await client.wait_call("OnPong", start=n)
        assert not client.is_closed
    finally:
        if client is not None:
            await client.aclose()
        runner.stop()
        runner.kill()
