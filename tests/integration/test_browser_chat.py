"""The chatroom_demo's browser client, in headless Chromium (Debian's) driven by Playwright.

One cluster (1 dispatcher, 1 game, 1 gate) serves the client at / and the pages talk to it over
/ws. The pages' model is ``window.chatState`` (web/chat.js); the tests wait on it and check the
page's elements too.

- basics: two pages create/join a channel and talk, a third in another channel hears nothing;
  private messages; an unknown command's error in the status line.
- moderation: an owner creates a channel (the Create button) and sets its topic; appoints an
  operator from the member menu; statuses (selector and message) show in everyone's member
  list; a PM from the member menu; an admin's notice reaches every page; markup and a script in
  a message, a topic and a status are shown as text (no element made, no script run); the
  operator bans a user (menu), who is removed and cannot rejoin; an ignored user's messages are
  hidden on the ignorer's page only, his PMs are refused, unignoring shows them again; a kick
  (slash command, channel implied) and a rejoin; a late joiner finds the channel with the
  search box and sees its history; a timeout (menu, minutes) and a deop (menu); a private
  channel (the checkbox) takes invited users only and is not listed; a reloaded page gets its
  channels, history and status back.
- the client's source uses no HTML sinks (innerHTML & co.) and the page forbids inline scripts.
- stop: ``goworld stop`` and every page says that the server is going down.

The README's picture is the owner's page in the moderation test:
``GOWORLD_SCREENSHOT=$PWD/examples/chatroom_demo/screenshot.png .venv/bin/python -m pytest
tests/integration/test_browser_chat.py -k moderation`` (an absolute path: pytest's directory).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from goworld.testing import ClusterRunner
from tests.integration.chromium import CHROMIUM, CHROMIUM_FLAGS

ROOT = Path(__file__).resolve().parents[2]
MARKUP = '<b>x</b><script>window.pwned=1</script><img src=x onerror="window.pwned=2">'


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterRunner]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is not installed (scripts/install-test-deps installs it)")
    runner = ClusterRunner(
        tmp_path_factory.mktemp("chat"),
        ROOT / "examples" / "chatroom_demo",
        dispatchers=1,
        games=1,
        gates=1,
    )
    runner.start()
    try:
        yield runner
    finally:
        runner.stop()
        runner.kill()


class Pages:
    """Pages of one browser, each in a context of its own; page errors are collected."""

    def __init__(self, browser: Any, base: str) -> None:
        self.browser = browser
        self.base = base
        self.errors: list[str] = []

    async def new(self, **context: Any) -> Any:
        page = await (await self.browser.new_context(**context)).new_page()
        page.set_default_timeout(10_000)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        return page

    async def signed_in(self, name: str, **context: Any) -> Any:
        page = await self.new(**context)
        await sign_in(page, self.base, name)
        return page


@pytest_asyncio.fixture
async def pages(cluster: ClusterRunner) -> AsyncIterator[Pages]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield Pages(browser, f"http://127.0.0.1:{cluster.gate(0, 'ws')}/")
        finally:
            await browser.close()


async def sign_in(page: Any, base: str, name: str) -> None:
    await page.goto(base)
    await page.wait_for_selector("#status:has-text('please log in')")
    await page.fill("#username", name)
    await page.fill("#password", "secret")
    await page.click("#register")
    await page.wait_for_selector("#notice.info")
    await log_in(page, name)


async def log_in(page: Any, name: str) -> None:
    await page.wait_for_selector("#status:has-text('please log in')")
    await page.fill("#username", name)
    await page.fill("#password", "secret")
    await page.press("#password", "Enter")  # the form's submit button: Log in
    await page.wait_for_selector("#chat:not(.hidden)")
    assert await page.inner_text("#me") == name
    await until(page, "s.loggedIn && s.name === a", name)


async def until(page: Any, expr: str, arg: Any = None) -> None:
    """Wait until the JavaScript expression is true; ``s`` is window.chatState, ``a`` is arg."""
    await page.wait_for_function(
        f"(a) => {{ const s = window.chatState; return !!({expr}); }}", arg=arg
    )


async def chat_state(page: Any) -> dict[str, Any]:
    state: dict[str, Any] = json.loads(
        await page.evaluate("() => JSON.stringify(window.chatState)")
    )
    return state


async def typed(page: Any, text: str) -> None:
    await page.fill("#text", text)
    await page.press("#text", "Enter")


async def error_after(page: Any, text: str) -> str:
    """Type ``text``; the ShowError it brings."""
    before = len((await chat_state(page))["errors"])
    await typed(page, text)
    await until(page, "s.errors.length > a", before)
    return str((await chat_state(page))["errors"][-1])


async def in_channel(page: Any, channel: str) -> None:
    await until(page, "s.channels[a] && s.active === 'ch:' + a", channel)


def said(state: dict[str, Any], channel: str) -> list[tuple[str, str]]:
    """(name, text) of the channel's messages (not system lines) in the page's state."""
    return [
        (m["name"], m["text"])
        for m in state["channels"][channel]["messages"]
        if m["kind"] in ("msg", "me")
    ]


def pane(channel: str) -> str:
    return f".pane[data-tab='ch:{channel}']"


def member(channel: str, name: str) -> str:
    return f"{pane(channel)} li.member[data-name='{name}']"


async def shown_texts(page: Any, channel: str) -> list[str]:
    """The message texts on the page in the channel's pane (what is not hidden)."""
    texts: list[str] = await page.locator(f"{pane(channel)} .messages li .text").all_text_contents()
    return texts


@pytest.mark.asyncio
async def test_two_pages_chat_and_a_third_in_another_channel_hears_nothing(
    pages: Pages,
) -> None:
    alice = await pages.signed_in("alice")
    bob = await pages.signed_in("bob")
    carol = await pages.signed_in("carol")

    await typed(alice, "/create tea")
    await in_channel(alice, "tea")
    assert (await chat_state(alice))["channels"]["tea"]["members"]["alice"]["role"] == "owner"
    await bob.fill("#joinName", "tea")
    await bob.click("#joinButton")
    await in_channel(bob, "tea")
    await carol.fill("#newChannel", "cellar")
    await carol.click("#createChannel")
    await in_channel(carol, "cellar")
    await until(alice, "s.channels.tea.members.bob")

    await typed(alice, "hello bob")
    await until(bob, "s.channels.tea.messages.some(m => m.text === 'hello bob')")
    await bob.fill("#text", "hi alice")
    await bob.click("#send")
    await until(alice, "s.channels.tea.messages.some(m => m.text === 'hi alice')")
    await typed(carol, "anyone down here?")
    await until(carol, "s.channels.cellar.messages.some(m => m.text === 'anyone down here?')")

    expected = [("alice", "hello bob"), ("bob", "hi alice")]
    assert said(await chat_state(alice), "tea") == expected
    assert said(await chat_state(bob), "tea") == expected
    assert await shown_texts(bob, "tea") == ["hello bob", "hi alice"]
    carol_state = await chat_state(carol)
    assert "tea" not in carol_state["channels"]
    assert said(carol_state, "cellar") == [("carol", "anyone down here?")]
    assert "hello bob" not in json.dumps(carol_state)
    assert "alice" not in await carol.locator("#panes").text_content()

    # a private conversation: both ends have it, in a tab of its own
    await typed(alice, "/msg bob just between us")
    for page, peer in ((alice, "bob"), (bob, "alice")):
        await until(
            page, "s.pms[a] && s.pms[a].messages.some(m => m.text === 'just between us')", peer
        )
    await bob.click(".tab[data-tab='pm:alice']")
    await typed(bob, "sure")
    await until(alice, "s.pms.bob.messages.some(m => m.text === 'sure' && m.from === 'bob')")
    assert "just between us" not in json.dumps(await chat_state(carol))

    # an unknown command: the server's error in the status line
    await typed(alice, "/dance")
    await alice.wait_for_selector("#notice.error")
    assert "dance" in (await chat_state(alice))["errors"][-1]
    assert pages.errors == []


@pytest.mark.asyncio
async def test_moderation_roles_statuses_ignores_markup_history_and_private_channels(
    pages: Pages,
) -> None:
    shot = os.environ.get("GOWORLD_SCREENSHOT")
    olga = await pages.signed_in("olga", viewport={"width": 1280, "height": 720})
    oscar, mia, bart, ivan = [await pages.signed_in(n) for n in ("oscar", "mia", "bart", "ivan")]

    # the owner creates the channel (Create button) and sets the topic (the channel is implied)
    await olga.fill("#newChannel", "guild")
    await olga.click("#createChannel")
    await in_channel(olga, "guild")
    await until(olga, "s.channels.guild.members.olga.role === 'owner'")
    topic = "Raid night at nine, bring snacks"
    await typed(olga, "/topic " + topic)
    await until(olga, "s.channels.guild.topic === a", topic)
    assert await olga.text_content(f"{pane('guild')} .topic") == topic

    for page in (oscar, mia, bart, ivan):
        await page.fill("#joinName", "guild")
        await page.press("#joinName", "Enter")
        await in_channel(page, "guild")
    await until(olga, "Object.keys(s.channels.guild.members).length === 5")
    assert (await chat_state(mia))["channels"]["guild"]["topic"] == topic

    # the owner appoints an operator from the member menu; everyone sees the role
    await olga.click(f"{member('guild', 'oscar')} button.menu")
    await olga.click(f"{member('guild', 'oscar')} button[data-action='op']")
    for page in (olga, oscar, mia):
        await until(page, "s.channels.guild.members.oscar.role === 'op'")
    assert await mia.text_content(f"{member('guild', 'oscar')} .mark") == "@"
    assert await mia.text_content(f"{member('guild', 'olga')} .mark") == "~"
    assert "role-op" in (await mia.get_attribute(member("guild", "oscar"), "class") or "")
    assert await mia.locator(f"{member('guild', 'oscar')} button.menu").count() == 1
    assert await mia.locator(f"{member('guild', 'oscar')} button[data-action='kick']").count() == 0
    assert await oscar.locator(f"{member('guild', 'mia')} button[data-action='kick']").count() == 1

    # statuses: the selector and the message box; they show in the others' member lists
    await mia.select_option("#statusSelect", "busy")
    await mia.fill("#statusMsg", "fixing the healer's gear")
    await mia.click("#setStatus")
    await until(mia, "s.status === 'busy' && s.statusMsg === a", "fixing the healer's gear")
    await olga.fill("#statusMsg", "back in 5")
    await olga.select_option("#statusSelect", "away")  # a change sets it at once
    for page in (olga, oscar):
        await until(
            page,
            "s.channels.guild.members.mia.status === 'busy' && "
            "s.channels.guild.members.mia.msg === a",
            "fixing the healer's gear",
        )
    await until(oscar, "s.channels.guild.members.olga.status === 'away'")
    mia_entry = member("guild", "mia")
    assert "status-busy" in (await olga.get_attribute(mia_entry, "class") or "")
    assert await olga.text_content(f"{mia_entry} .smsg") == "fixing the healer's gear"

    await typed(olga, "welcome to the guild, everyone")
    await typed(oscar, "/me sharpens his sword")
    await typed(mia, "hi olga! I'll bring the potions")
    await typed(ivan, "count me in")
    await until(olga, "s.channels.guild.messages.some(m => m.text === 'count me in')")
    await until(olga, "s.channels.guild.messages.some(m => m.kind === 'me' && m.name === 'oscar')")

    # a private message from the member menu: a tab of its own on both pages
    await mia.click(f"{member('guild', 'olga')} button.menu")
    await mia.click(f"{member('guild', 'olga')} button[data-action='pm']")
    await until(mia, "s.active === 'pm:olga'")
    await typed(mia, "can I bring a friend tonight?")
    await until(olga, "s.pms.mia && s.pms.mia.unread === 1")
    assert await olga.text_content(".tab[data-tab='pm:mia'] .unread") == "1"
    assert await olga.text_content(".pane[data-tab='pm:mia'] .messages li .text") == (
        "can I bring a friend tonight?"
    )
    # an admin's notice reaches every page (settings.ADMINS: "admin")
    admin = await pages.signed_in("admin")
    await until(admin, "s.admin")
    await typed(admin, "/notice maintenance tonight at 23:00 UTC")
    for page in (olga, oscar, mia, bart, ivan):
        await until(page, "s.notices.some(n => n.text.includes('maintenance') && n.by === 'admin')")
    assert "maintenance tonight" in await olga.text_content("#notices")
    if shot:
        await olga.wait_for_timeout(200)
        await olga.screenshot(path=shot)

    # markup and scripts are text: in a message, a topic and a status
    await typed(oscar, MARKUP)
    await typed(oscar, "/topic <i>snacks</i> " + MARKUP)
    await mia.fill("#statusMsg", "<i>coding</i>")
    await mia.click("#setStatus")
    for page in (olga, oscar, mia):
        await until(page, "s.channels.guild.messages.some(m => m.text === a)", MARKUP)
        await until(page, "s.channels.guild.members.mia.msg === '<i>coding</i>'")
        assert MARKUP in await shown_texts(page, "guild")
        await until(page, "s.channels.guild.topic === a", "<i>snacks</i> " + MARKUP)
        assert await page.text_content(f"{pane('guild')} .topic") == "<i>snacks</i> " + MARKUP
        assert await page.text_content(f"{mia_entry} .smsg") == "<i>coding</i>"
        made = await page.evaluate(
            """() => [document.querySelectorAll('img, i, script:not([src])').length,
                      document.querySelectorAll('.messages li *:not(span), .topic *, .smsg *').length]"""
        )
        assert made == [0, 0]
        await page.wait_for_timeout(100)
        assert await page.evaluate("() => window.pwned") is None

    # the operator bans a member (member menu, no minutes: until unbanned); he cannot come back
    await oscar.click(f"{member('guild', 'bart')} button.menu")
    await oscar.click(f"{member('guild', 'bart')} button[data-action='ban']")
    await until(bart, "!s.channels.guild && s.left.some(l => l.channel === 'guild')")
    reason = (await chat_state(bart))["left"][-1]["reason"]
    assert "banned" in reason and "oscar" in reason, reason
    assert await bart.locator(pane("guild")).count() == 0
    for page in (olga, oscar, mia):
        await until(page, "!s.channels.guild.members.bart")
    assert "ban" in (await error_after(bart, "/join guild")).lower()
    await bart.wait_for_timeout(300)
    assert "guild" not in (await chat_state(bart))["channels"]

    # mia ignores ivan: his messages are hidden on her page, shown on the others'; no PMs
    await mia.fill("#ignoreName", "ivan")
    await mia.click("#ignoreButton")
    await until(mia, "s.ignores.includes('ivan')")
    assert await mia.locator("#ignoreList li[data-name='ivan']").count() == 1
    await typed(ivan, "can anyone hear me")
    await until(olga, "s.channels.guild.messages.some(m => m.text === 'can anyone hear me')")
    await typed(olga, "yes ivan")
    await until(mia, "s.channels.guild.messages.some(m => m.text === 'yes ivan')")
    mia_shown = await shown_texts(mia, "guild")
    assert "yes ivan" in mia_shown and "can anyone hear me" not in mia_shown
    assert "can anyone hear me" in await shown_texts(olga, "guild")
    assert "can anyone hear me" in await shown_texts(oscar, "guild")
    assert "not available" in await error_after(ivan, "/msg mia psst")
    assert (
        "mia" not in (await chat_state(ivan))["pms"]
        or not (await chat_state(ivan))["pms"]["mia"]["messages"]
    )
    # unignoring shows his messages again
    await mia.click("#ignoreList li[data-name='ivan'] button.unignore")
    await until(mia, "!s.ignores.includes('ivan')")
    assert "can anyone hear me" in await shown_texts(mia, "guild")

    # the operator kicks (a slash command, channel implied): out, and may come back
    await typed(oscar, "/kick ivan")
    await until(ivan, "!s.channels.guild && s.left.some(l => l.reason.includes('kicked'))")
    await ivan.fill("#joinName", "guild")
    await ivan.click("#joinButton")
    await in_channel(ivan, "guild")

    # a late joiner searches the list, sees members and topic there, joins and gets the history
    lena = await pages.signed_in("lena")
    await lena.fill("#channelSearch", "snacks")  # the topic's words find it too
    entry = "#channelList li.channel-entry[data-name='guild']"
    await lena.wait_for_selector(entry)
    assert await lena.get_attribute(entry, "data-members") == "4"  # olga, oscar, mia, ivan
    assert (await lena.text_content(f"{entry} .ctopic") or "").startswith("<i>snacks</i>")
    await lena.click(f"{entry} button.join")
    await in_channel(lena, "guild")
    history = said(await chat_state(lena), "guild")
    for line in (("olga", "welcome to the guild, everyone"), ("oscar", "sharpens his sword")):
        assert line in history, history
    assert history[-3:] == [("oscar", MARKUP), ("ivan", "can anyone hear me"), ("olga", "yes ivan")]
    assert "welcome to the guild, everyone" in await shown_texts(lena, "guild")
    assert (await chat_state(lena))["channels"]["guild"]["members"]["oscar"]["role"] == "op"

    # a timeout from the operator's member menu (minutes in its box): ivan stays, cannot post
    await oscar.click(f"{member('guild', 'ivan')} button.menu")
    await oscar.fill(f"{member('guild', 'ivan')} input.minutes", "5")
    await oscar.click(f"{member('guild', 'ivan')} button[data-action='timeout']")
    await until(
        oscar,
        "s.channels.guild.messages.some(m => m.kind === 'system' && /ivan.*timeout/.test(m.text))",
    )
    assert "timed out" in await error_after(ivan, "anyone there?")
    assert "guild" in (await chat_state(ivan))["channels"]
    # the owner takes the operator's role back (member menu): everyone sees it
    await olga.click(f"{member('guild', 'oscar')} button.menu")
    await olga.click(f"{member('guild', 'oscar')} button[data-action='deop']")
    for page in (olga, oscar, mia):
        await until(page, "s.channels.guild.members.oscar.role === 'member'")
    assert await mia.text_content(f"{member('guild', 'oscar')} .mark") == ""
    assert await oscar.locator(f"{member('guild', 'mia')} button[data-action='kick']").count() == 0

    # a private channel (the checkbox): not listed, invited users only
    await olga.fill("#newChannel", "council")
    await olga.check("#newPrivate")
    await olga.click("#createChannel")
    await in_channel(olga, "council")
    assert (await chat_state(olga))["channels"]["council"]["private"] is True
    await error_after(mia, "/join council")
    assert "council" not in (await chat_state(mia))["channels"]
    await typed(olga, "/invite mia")
    await typed(mia, "/join council")
    await in_channel(mia, "council")
    await lena.fill("#channelSearch", "council")
    await lena.click("#refreshChannels")
    await lena.wait_for_selector("#channelList li.none")

    # a reloaded page logs in again: the server rejoins its channels, tabs and history return
    await mia.reload()
    await log_in(mia, "mia")
    await until(mia, "s.channels.guild && s.channels.council")
    mia_state = await chat_state(mia)
    assert ("olga", "welcome to the guild, everyone") in said(mia_state, "guild")
    assert mia_state["status"] == "busy" and mia_state["statusMsg"] == "<i>coding</i>"
    assert await mia.input_value("#statusSelect") == "busy"
    assert await mia.locator(".tab[data-tab^='ch:']").count() == 2
    assert pages.errors == []


def test_the_client_never_parses_text_as_html() -> None:
    """What people type reaches the page as text: chat.js builds elements and text nodes."""
    web = ROOT / "examples" / "chatroom_demo" / "web"
    source = (web / "chat.js").read_text()
    for sink in (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "Function(",
    ):
        assert sink not in source, sink
    assert "script-src 'self'" in (web / "index.html").read_text()  # and no inline scripts


@pytest.mark.asyncio
async def test_goworld_stop_is_announced_on_every_page(
    cluster: ClusterRunner, pages: Pages
) -> None:
    sam = await pages.signed_in("sam")
    tom = await pages.new()
    await tom.goto(pages.base)
    await tom.wait_for_selector("#status:has-text('please log in')")
    stopped = await asyncio.to_thread(cluster.stop)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    for page in (sam, tom):
        await page.wait_for_selector("#notice:has-text('shutting down')")
        assert await page.inner_text("#status") == "disconnected"
    assert any("shutting down" in n["text"] for n in (await chat_state(sam))["notices"])
    assert pages.errors == []
