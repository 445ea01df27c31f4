"""The chatroom_demo's browser client, in headless Chromium (Debian's) driven by Playwright.

Three pages load the client the gate serves at / and talk to the cluster over /ws: two register,
log in, join the same room and exchange messages; a third, in another room, sees none of them.
Then `goworld stop`: every page shows that the server is shutting down.
GOWORLD_SCREENSHOT=path saves a screenshot of the first page (the README's picture).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from goworld.testing import ClusterRunner

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


async def sign_in(page, base: str, name: str, room: str) -> None:  # type: ignore[no-untyped-def]
    await page.goto(base)
    await page.wait_for_selector("#status:has-text('please log in')")
    await page.fill("#username", name)
    await page.fill("#password", "secret")
    await page.click("#register")
    await page.wait_for_selector("#notice.info")
    await page.click("#loginButton")
    await page.wait_for_selector("#chat:not(.hidden)")
    assert await page.inner_text("#me") == name
    await page.fill("#roomName", room)
    await page.click("#join")
    await page.wait_for_selector(f"#room:has-text('{room}')")


@pytest.mark.asyncio
async def test_two_browsers_chat_and_a_third_in_another_room_hears_nothing(tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is not installed (scripts/install-test-deps installs it)")
    runner = ClusterRunner(tmp_path, ROOT / "examples" / "chatroom_demo", dispatchers=1, games=1, gates=1)
    runner.start()
    try:
        base = f"http://127.0.0.1:{runner.gate(0, 'ws')}/"
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            try:
                alice = await (await browser.new_context()).new_page()
                bob = await (await browser.new_context()).new_page()
                carol = await (await browser.new_context()).new_page()
                errors: list[str] = []
                for page in (alice, bob, carol):
                    page.on("pageerror", lambda exc: errors.append(str(exc)))
                await sign_in(alice, base, "alice", "lobby")
                await sign_in(bob, base, "bob", "lobby")
                await sign_in(carol, base, "carol", "cellar")

                await alice.fill("#text", "hello bob")
                await alice.press("#text", "Enter")
                await bob.wait_for_selector("#messages li:has-text('alice: hello bob')")
                await bob.fill("#text", "hi alice")
                await bob.click("#send")
                await alice.wait_for_selector("#messages li:has-text('bob: hi alice')")
                await carol.fill("#text", "anyone down here?")
                await carol.click("#send")
                await carol.wait_for_selector("#messages li:has-text('carol: anyone down here?')")

                assert await alice.locator("#messages li").all_inner_texts() == [
                    "alice: hello bob",
                    "bob: hi alice",
                ]
                assert await carol.locator("#messages li").all_inner_texts() == [
                    "carol: anyone down here?"
                ]
                assert "carol" not in " ".join(await bob.locator("#messages li").all_inner_texts())

                await alice.fill("#text", "/dance")  # an unknown command shows the server's error
                await alice.click("#send")
                await alice.wait_for_selector("#notice.error")
                assert errors == []
                shot = os.environ.get("GOWORLD_SCREENSHOT")
                if shot:
                    await alice.screenshot(path=shot)

                # goworld stop: the page says the server is going down (the gate's notice)
                stopped = await asyncio.to_thread(runner.stop)
                assert stopped.returncode == 0, stopped.stdout + stopped.stderr
                for page in (alice, bob, carol):
                    await page.wait_for_selector("#notice:has-text('shutting down')")
                    assert await page.inner_text("#status") == "disconnected"
                assert errors == []
            finally:
                await browser.close()
    finally:
        runner.stop()
        runner.kill()
