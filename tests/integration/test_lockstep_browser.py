"""examples/lockstep_demo in headless Chromium (Debian's) driven by Playwright.

`goworld start` runs the demo app with a ``[lockstep]`` section; its lockstep process serves
the pages under /static/ and the room API and WebSocket on its http_addr. Two pages join the
same room as players 1 and 2, each with the page's bot (``auto=20``: 20 moves, then Result),
and must end, once the server has closed the room, in the same simulation state after the
same frames, each having seen all of the other's inputs.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from goworld.testing import ClusterRunner
from tests.integration.chromium import CHROMIUM, chromium_browser

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "examples" / "lockstep_demo"
MOVES = 20


# web_dir is absolute: the test's goworld.ini is not in the app's directory
LOCKSTEP_INI = f"ws_path = /ws\ntick_hz = 30\nweb_dir = {APP / 'web'}\nlog_level = info"


@pytest.fixture(scope="module")
def lockstep_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ClusterRunner, int]]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is not installed (scripts/install-test-deps installs it)")
    runner = ClusterRunner(
        tmp_path_factory.mktemp("lockstep_demo"),
        APP,
        dispatchers=1,
        games=1,
        gates=1,
        lockstep=LOCKSTEP_INI,
    )
    http = runner.ports["lockstep_http"][0]
    runner.start()
    try:
        yield runner, http
    finally:
        stopped = runner.stop()
        runner.kill()
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr


async def _demo(page: Any) -> dict[str, Any]:
    demo: dict[str, Any] = await page.evaluate(
        "() => JSON.parse(JSON.stringify(window.lockstepDemo))"
    )
    return demo


async def _wait_closed(
    page: Any, runner: ClusterRunner, timeout_ms: int = 60_000
) -> dict[str, Any]:
    try:
        await page.wait_for_function(
            "() => window.lockstepDemo && window.lockstepDemo.state === 'closed'",
            timeout=timeout_ms,
        )
    except Exception as exc:
        demo = await _demo(page)
        raise AssertionError(f"page never closed: {demo}\n{runner.logs()}") from exc
    return await _demo(page)


@pytest.mark.asyncio
async def test_two_pages_play_the_same_game(lockstep_http: tuple[ClusterRunner, int]) -> None:
    runner, http = lockstep_http
    base = f"http://127.0.0.1:{http}/static/index.html?room=18&members=1,2&auto={MOVES}"
    async with chromium_browser() as browser:
        pages = [await (await browser.new_context()).new_page() for _ in range(2)]
        errors: list[str] = []
        for page in pages:
            page.on("pageerror", lambda exc: errors.append(str(exc)))
        await asyncio.gather(
            *(page.goto(f"{base}&player={i + 1}") for i, page in enumerate(pages))
        )
        one, two = await asyncio.gather(*(_wait_closed(p, runner) for p in pages))
        assert errors == []
        for demo in (one, two):
            assert demo["closeReason"] == "room closed by the server", demo
            assert demo["errors"] == [], demo
            assert demo["inputsSent"] == MOVES
            # every frame id 0..frame was applied, in order: ticks counts them (the ids
            # the server left out of a batch are empty ticks; an id going back is an error)
            assert demo["frame"] > 0 and demo["ticks"] == demo["frame"] + 1, demo
            assert demo["frameMessages"] > 0
        assert {one["seat"], two["seat"]} == {1, 2}
        assert one["seats"] == two["seats"] == 2
        # the same frames, the same game
        assert one["frame"] == two["frame"]
        assert one["hash"] == two["hash"]
        assert one["winner"] == two["winner"]
        assert one["players"] == two["players"]
        # each saw every input of both players (the bot waits for its own input to come
        # back before the next one, so the server never drops one)
        assert one["inputsSeen"] == two["inputsSeen"] == {"1": MOVES, "2": MOVES}
        # the room API answered as lockstepserver does: one page made the room
        creates = sorted(
            next(line for line in demo["log"] if " create: " in line).split(" create: ", 1)[1]
            for demo in (one, two)
        )
        assert creates[0].startswith("room id[18] exists"), creates
        assert re.fullmatch(
            r"room\.ID=\[18\] room\.Secret=\[test_room\] room\.Time=\[\d+\], "
            r"room\.Member=\[1,2\]",
            creates[1],
        ), creates
        status = await pages[0].inner_text("#status")
        assert f"hash {one['hash']}" in status and "closed" in status


@pytest.mark.asyncio
async def test_refusals_are_shown_as_text(lockstep_http: tuple[ClusterRunner, int]) -> None:
    runner, http = lockstep_http
    base = f"http://127.0.0.1:{http}/static/index.html"
    async with chromium_browser() as browser:
        page = await (await browser.new_context()).new_page()
        # not a member of the room it creates: Connect answers ERR_NoPlayer (1)
        await page.goto(f"{base}?room=19&members=1,2&player=3")
        demo = await _wait_closed(page, runner, 20_000)
        assert demo["closeReason"] == "connect refused: error code 1", demo
        # markup in a parameter is shown as text, never parsed
        await page.goto(f"{base}?room=%3Cb%20id%3Dx%3Eroom%3C%2Fb%3E&player=1")
        demo = await _wait_closed(page, runner, 20_000)
        assert demo["closeReason"] == "bad parameters"
        assert "not an id: <b id=x>room</b>" in await page.inner_text("#log")
        assert await page.locator("#x").count() == 0


#: a JS predicate: player {p}'s inputs seen by this page number at least n
SEEN = "(n) => (window.lockstepDemo.inputsSeen[{p}] || 0) >= n"


async def _two_players(browser: Any, base: str) -> tuple[Any, Any]:
    """Players 1 and 2 of the room at ``base``, each in its own context, both playing."""
    one, two = [await (await browser.new_context()).new_page() for _ in range(2)]
    await asyncio.gather(one.goto(f"{base}&player=1"), two.goto(f"{base}&player=2"))
    for page in (one, two):
        await page.wait_for_function("() => window.lockstepDemo.state === 'playing'")
    return one, two


@pytest.mark.asyncio
async def test_keyboard_mouse_and_finish_button(lockstep_http: tuple[ClusterRunner, int]) -> None:
    runner, http = lockstep_http
    base = f"http://127.0.0.1:{http}/static/index.html?room=20&members=1,2"
    async with chromium_browser() as browser:
        one, two = await _two_players(browser, base)
        for n, key in enumerate(["ArrowDown", "ArrowRight", "ArrowRight"], start=1):
            await one.keyboard.press(key)
            await one.wait_for_function(SEEN.format(p=1), arg=n)
        await two.click("#board", position={"x": 10, "y": 10})  # walk to cell (0, 0)
        await two.wait_for_function(SEEN.format(p=2), arg=1)
        await one.wait_for_function(SEEN.format(p=2), arg=1)
        await two.wait_for_timeout(1500)  # a few steps of the walk
        await one.click("#finish")
        assert await one.is_disabled("#finish")
        assert (await _demo(one))["state"] == "playing"  # until every player has finished
        await two.click("#finish")
        a, b = await asyncio.gather(_wait_closed(one, runner), _wait_closed(two, runner))
        assert a["errors"] == b["errors"] == []
        assert a["closeReason"] == b["closeReason"] == "room closed by the server"
        assert a["inputsSeen"] == b["inputsSeen"] == {"1": 3, "2": 1}
        assert (a["frame"], a["hash"]) == (b["frame"], b["hash"])
        assert a["ticks"] == a["frame"] + 1 and a["frame"] > 45


@pytest.mark.asyncio
async def test_a_reloaded_page_replays_the_history(
    lockstep_http: tuple[ClusterRunner, int],
) -> None:
    """A page reloaded mid-game connects again, sends Ready, gets Start and every frame so far
    (LOCKSTEP.md §9), rebuilds the same state and plays on."""
    runner, http = lockstep_http
    base = f"http://127.0.0.1:{http}/static/index.html?room=21&members=1,2"
    async with chromium_browser() as browser:
        one, two = await _two_players(browser, base)
        for n, key in enumerate(["ArrowDown", "ArrowDown", "ArrowRight"], start=1):
            await two.keyboard.press(key)
            await two.wait_for_function(SEEN.format(p=2), arg=n)
        await two.reload()
        await two.wait_for_function("() => window.lockstepDemo.state === 'playing'")
        await two.wait_for_function(SEEN.format(p=2), arg=3)  # the history came back
        await two.keyboard.press("ArrowLeft")
        await one.wait_for_function(SEEN.format(p=2), arg=4)
        await one.click("#finish")
        await two.click("#finish")
        a, b = await asyncio.gather(_wait_closed(one, runner), _wait_closed(two, runner))
        assert a["errors"] == b["errors"] == []
        assert a["inputsSeen"] == b["inputsSeen"] == {"2": 4}
        assert (a["frame"], a["hash"]) == (b["frame"], b["hash"])
        assert b["ticks"] == b["frame"] + 1
        assert any("start, time" in line for line in b["log"])
