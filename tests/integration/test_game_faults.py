"""Issue 15 with real processes: a game killed (kill -9) or stopped (SIGSTOP), with Python
clients connected (tests/apps/cluster_app on 2 dispatchers, 2 games, 2 gates).

* kill -9: every client whose player lived on that game is closed by its gate with the reason
  (GoWorldClient.close_reason); the clients on the other game are undisturbed; a player logs in
  again and gets its persistent avatar back, loaded on a live game.
* SIGSTOP: once the dispatchers see the game silent (game_hang_timeout, 3 s), a new client gets
  its boot entity from the other game; with both games stopped a new client waits and gets it
  when they resume; after SIGCONT the game takes new clients again.

Outcomes are awaited with generous timeouts (a loaded 2-core machine); the time from the kill to
the last client told is printed, not asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from goworld.client import GoWorldClient
from goworld.testing import ClusterRunner

APP = Path(__file__).resolve().parents[1] / "apps" / "cluster_app"
TIMEOUT = 30.0


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[ClusterRunner]:
    runner = ClusterRunner(tmp_path, APP)  # 2 dispatchers, 2 games, 2 gates
    runner.start()
    try:
        runner.wait_for_log("created here", count=5)  # SpaceService x2 + EchoService x3
        yield runner
    finally:
        for gid in (1, 2):
            pid = _pid(runner, gid)
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
        runner.stop()
        runner.kill()


def _pid(runner: ClusterRunner, game_id: int) -> int | None:
    path = runner.dir / ".goworld" / f"game{game_id}.pid"
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


async def _login(
    runner: ClusterRunner, name: str, gate: int, *, notices: bool = True
) -> tuple[GoWorldClient, int]:
    """A client logged in as ``name`` on gate ``gate``, and the game its avatar is on."""
    client = await GoWorldClient.connect("127.0.0.1", runner.gate(gate, "tcp"), notices=notices)
    account = await client.wait_player("Account", timeout=TIMEOUT)
    client.call(account.id, "Login", name)
    await client.wait_player("Avatar", timeout=TIMEOUT)
    return client, await _which_game(client)


async def _which_game(client: GoWorldClient) -> int:
    start = len(client.calls)
    client.call_player("WhichGame")
    game_id: int = (await client.wait_call("OnWhichGame", timeout=TIMEOUT, start=start)).args[0]
    return game_id


async def _counter_after_incr(client: GoWorldClient) -> Any:
    avatar = client.player
    assert avatar is not None
    before = avatar.attrs["counter"]
    client.call_player("Incr")
    await client.wait_until(lambda: avatar.attrs["counter"] == before + 1, TIMEOUT)
    return avatar.attrs["counter"]


async def _saved_counter(runner: ClusterRunner, avatar_id: str, counter: int) -> None:
    """Wait until the SQLite storage holds ``avatar_id`` with ``counter``."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            with contextlib.closing(sqlite3.connect(runner.dir / "entities.db", timeout=5)) as db:
                row = db.execute("SELECT data FROM entities WHERE id = ?", (avatar_id,)).fetchone()
            if row is not None and msgpack.unpackb(row[0], raw=False).get("counter") == counter:
                return
        except sqlite3.OperationalError:
            pass  # not created yet, or busy
        assert time.monotonic() < deadline, f"{avatar_id} not saved with counter {counter}"
        await asyncio.sleep(0.1)


@pytest.mark.asyncio
async def test_kill_9_of_a_game_tells_its_players_why_and_they_log_in_again(runner: ClusterRunner) -> None:
    # A player with a saved avatar: counter 3, saved when its client left (the avatar is destroyed).
    keeper, _ = await _login(runner, "keeper", 0)
    for _ in range(3):
        await _counter_after_incr(keeper)
    avatar_id = keeper.player.id if keeper.player is not None else ""
    await keeper.aclose()
    await _saved_counter(runner, avatar_id, 3)  # the save is asynchronous (SQLite in a thread)
    keeper, keeper_game = await _login(runner, "keeper", 1)
    assert keeper.player is not None and keeper.player.attrs["counter"] == 3
    victim_game = keeper_game
    live_game = 2 if victim_game == 1 else 1

    clients: dict[str, tuple[GoWorldClient, int]] = {"keeper": (keeper, keeper_game)}
    for i in range(40):
        games = {g for _, g in clients.values()}
        plain = {n for n, (c, g) in clients.items() if g == victim_game and n.startswith("plain")}
        if len(clients) >= 8 and games == {1, 2} and plain:
            break
        # every third client speaks like GoWorld's (no notices): it must see only the close
        name = f"plain{i}" if i % 3 == 2 else f"p{i}"
        clients[name] = await _login(runner, name, i % 2, notices=not name.startswith("plain"))
    victims = {n: c for n, (c, g) in clients.items() if g == victim_game}
    others = {n: c for n, (c, g) in clients.items() if g == live_game}
    assert victims and others, {n: g for n, (_, g) in clients.items()}
    assert any(n.startswith("plain") for n in victims), sorted(victims)

    pid = _pid(runner, victim_game)
    assert pid is not None
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    told_after: list[float] = []

    async def told(client: GoWorldClient) -> None:
        await asyncio.wait_for(asyncio.shield(client.closed), TIMEOUT)
        told_after.append(time.monotonic() - killed_at)

    await asyncio.gather(*(told(c) for c in victims.values()))
    print(f"\nkill -9 game{victim_game}: {len(victims)} clients told after "
          f"{min(told_after):.2f}..{max(told_after):.2f} s")
    for name, client in victims.items():
        assert client.error is None  # nothing it could not read
        if name.startswith("plain"):
            assert client.close_code is None and client.close_reason is None
            continue
        assert client.close_code == "game_lost", (name, client.close_reason, runner.logs())
        assert client.close_reason is not None and f"game{victim_game}" in client.close_reason

    # The players of the other game are undisturbed: still connected, and served.
    for client in others.values():
        assert not client.is_closed
        await _counter_after_incr(client)
        assert await _which_game(client) == live_game

    # The keeper logs in again: its avatar is loaded again (from storage) on a live game.
    again, game = await _login(runner, "keeper", 0)
    assert again.player is not None and again.player.attrs["counter"] == 3
    assert game == live_game or _pid(runner, victim_game) != pid  # or a restarted game1
    await _counter_after_incr(again)
    for client in (*others.values(), again):
        await client.aclose()


@pytest.mark.asyncio
async def test_a_stopped_game_gets_no_new_clients_and_rejoins_when_it_resumes(runner: ClusterRunner) -> None:
    pids = {gid: _pid(runner, gid) for gid in (1, 2)}
    assert None not in pids.values()
    before, _ = await _login(runner, "before", 0)
    stopped = 1
    os.kill(pids[stopped], signal.SIGSTOP)  # type: ignore[arg-type]
    try:
        # Both dispatchers notice (each game reports to every dispatcher every second).
        runner.wait_for_log(f"game{stopped} sent nothing", count=2, timeout=TIMEOUT)
        newcomers = [await _login(runner, f"new{i}", i % 2) for i in range(4)]
        assert [g for _, g in newcomers] == [2, 2, 2, 2]
        for client, _ in newcomers:
            await client.aclose()

        # Both games stopped: a newcomer waits (no boot entity), then gets one when they resume.
        os.kill(pids[2], signal.SIGSTOP)  # type: ignore[arg-type]
        try:
            runner.wait_for_log("game2 sent nothing", count=2, timeout=TIMEOUT)
            waiting = await GoWorldClient.connect("127.0.0.1", runner.gate(1, "tcp"))
            runner.wait_for_log("no healthy boot game", count=1, timeout=TIMEOUT)
            assert waiting.player is None and not waiting.is_closed
        finally:
            os.kill(pids[2], signal.SIGCONT)  # type: ignore[arg-type]
        await waiting.wait_player("Account", timeout=TIMEOUT)
        await waiting.aclose()
    finally:
        os.kill(pids[stopped], signal.SIGCONT)  # type: ignore[arg-type]

    runner.wait_for_log(f"game{stopped} sends again", count=2, timeout=TIMEOUT)
    games = set()
    for i in range(20):
        client, game = await _login(runner, f"after{i}", i % 2)
        games.add(game)
        await client.aclose()
        if stopped in games:
            break
    assert stopped in games  # it takes new clients again
    assert not before.is_closed
    await _counter_after_incr(before)
    await before.aclose()


CHATROOM = Path(__file__).resolve().parents[2] / "examples" / "chatroom_demo"


async def _chat_login(runner: ClusterRunner, name: str) -> GoWorldClient:
    client = await GoWorldClient.connect("127.0.0.1", runner.gate(0, "tcp"))
    account = await client.wait_player("Account", timeout=TIMEOUT)
    client.call(account.id, "Login", name, "pw")
    await client.wait_player("Avatar", timeout=TIMEOUT)
    return client


@pytest.mark.asyncio
async def test_chatroom_players_of_a_dead_game_are_told_and_log_in_again(tmp_path: Path) -> None:
    """examples/chatroom_demo (1 dispatcher, 2 games, 1 gate), a Python client and the browser
    page: game2 is stopped while they log in (so their avatars load on game1), resumed, then
    game1 is killed. Both are told why (the page shows it), log in again, and chat."""
    from playwright.async_api import async_playwright

    from tests.integration.chromium import CHROMIUM, CHROMIUM_FLAGS

    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is not installed (scripts/install-test-deps installs it)")
    runner = ClusterRunner(tmp_path, CHATROOM, dispatchers=1, games=2, gates=1)
    runner.start()
    pids = {gid: _pid(runner, gid) for gid in (1, 2)}
    try:
        # game2 is stopped first: a stopped game never finishes the saves it started.
        os.kill(pids[2], signal.SIGSTOP)  # type: ignore[arg-type]
        try:
            runner.wait_for_log("game2 sent nothing", timeout=TIMEOUT)
            for name in ("dora", "erin"):
                client = await GoWorldClient.connect("127.0.0.1", runner.gate(0, "tcp"))
                account = await client.wait_player("Account", timeout=TIMEOUT)
                client.call(account.id, "Register", name, "pw")
                await client.wait_call("ShowInfo", timeout=TIMEOUT)
                await client.aclose()
            dora = await _chat_login(runner, "dora")
            base = f"http://127.0.0.1:{runner.gate(0, 'ws')}/"
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
                try:
                    page = await (await browser.new_context()).new_page()
                    errors: list[str] = []
                    page.on("pageerror", lambda exc: errors.append(str(exc)))

                    async def sign_in() -> None:
                        await page.goto(base)
                        await page.wait_for_selector("#status:has-text('please log in')")
                        await page.fill("#username", "erin")
                        await page.fill("#password", "pw")
                        await page.click("#loginButton")
                        await page.wait_for_selector("#chat:not(.hidden)")

                    await sign_in()
                    os.kill(pids[2], signal.SIGCONT)  # type: ignore[arg-type]
                    runner.wait_for_log("game2 sends again", timeout=TIMEOUT)

                    os.kill(pids[1], signal.SIGKILL)  # type: ignore[arg-type]
                    await asyncio.wait_for(asyncio.shield(dora.closed), TIMEOUT)
                    assert dora.close_code == "game_lost" and "game1" in (dora.close_reason or "")
                    await page.wait_for_selector("#status:has-text('disconnected')", timeout=TIMEOUT * 1000)
                    shown = await page.inner_text("#notice")
                    assert "game1" in shown and "log in again" in shown, shown

                    # Both log in again: their avatars load on game2, and they chat.
                    dora = await _chat_login(runner, "dora")
                    assert dora.player is not None and dora.player.attrs["name"] == "dora"
                    await sign_in()
                    assert await page.inner_text("#me") == "erin"
                    await page.fill("#joinName", "lobby")
                    await page.click("#joinButton")
                    await page.wait_for_function(
                        "() => window.chatState.channels.lobby && window.chatState.active === 'ch:lobby'",
                        timeout=TIMEOUT * 1000,
                    )
                    dora.call_player("SendChat", "/join lobby")
                    await dora.wait_until(lambda: dora.player is not None and dora.player.attrs.get("chatroom") == "lobby", TIMEOUT)
                    # the channel behind the room takes dora in a moment later (it may first be
                    # loaded again on game2): wait until the page lists dora, then talk
                    await page.wait_for_function(
                        "() => window.chatState.channels.lobby.members.dora", timeout=TIMEOUT * 1000
                    )
                    dora.call_player("SendChat", "back again")
                    await page.wait_for_selector(
                        ".pane[data-tab='ch:lobby'] .messages li:has-text('back again')",
                        timeout=TIMEOUT * 1000,
                    )
                    assert errors == []
                    await dora.aclose()
                finally:
                    await browser.close()
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pids[2], signal.SIGCONT)  # type: ignore[arg-type]
    finally:
        runner.stop()
        runner.kill()


@pytest.mark.asyncio
async def test_service_shards_of_a_game_that_stays_down_are_re_created_on_a_live_game(
    tmp_path: Path,
) -> None:
    """No supervisor: a game killed stays down. Past service_failover_timeout (2 s here) the
    live game claims its EchoService shards and creates them again; the calls that waited for
    them are answered, by the live game."""
    runner = ClusterRunner(tmp_path, APP, dispatchers=2, games=2, gates=1,
                           game_extra="service_failover_timeout = 2\n")
    result = runner.cli("start", str(APP), "--no-supervise")
    assert result.returncode == 0, result.stdout + result.stderr
    client: GoWorldClient | None = None
    try:
        runner.wait_for_log("created here", count=5)  # SpaceService x2 + EchoService x3
        echo_on = {gid: sum("service EchoService#" in line for line in runner.grep("created here")
                            if line.startswith(f"game{gid}.log"))
                   for gid in (1, 2)}
        victim = 2 if echo_on[2] else 1
        live = 3 - victim
        assert echo_on[victim] >= 1, echo_on
        client, game = await _login(runner, "pinger", 0)
        if game != live:  # keep the player itself away from the game about to die
            client.call_player("MigrateToGame", live)
            deadline = time.monotonic() + TIMEOUT
            while await _which_game(client) != live:
                assert time.monotonic() < deadline, runner.logs()
                await asyncio.sleep(0.2)
        pid = _pid(runner, victim)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        # the live game learns it is down (after the dispatchers' reconnect grace) ...
        await asyncio.to_thread(runner.wait_for_log, f"was on game{victim}, which is down", 1, 60)
        start = len(client.calls)
        for _ in range(12):  # random shards: some of them are the dead game's
            client.call_player("Ping")
        # ... and 2 s later claims its shards: every Ping is answered, by the live game
        await client.wait_until(
            lambda: len([c for c in client.calls[start:] if c.method == "OnPong"]) == 12, TIMEOUT)
        assert {c.args[0] for c in client.calls[start:] if c.method == "OnPong"} == {live}
        assert runner.grep(f"game{victim} has been down for 2 s: claiming its service shards")
        created = [line for line in runner.grep("service EchoService#") if "created here" in line]
        assert sum(line.startswith(f"game{live}.log") for line in created) == 3, created
        assert not client.is_closed
    finally:
        if client is not None:
            await client.aclose()
        runner.stop()
        runner.kill()
