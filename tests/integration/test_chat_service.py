"""examples/chatroom_demo as a chat service (issue 19, docs/CHAT-DESIGN.md) on real clusters
started by the CLI, with bots over TCP, KCP and WebSocket.

One module cluster (1 dispatcher, 2 games, 1 gate: entities, channels and services spread over
two games) serves every test but the persistence one, which has a cluster of its own to stop,
start and reload. Each test uses names of its own. Bots pace their commands below the
server's command throttle (5/s, burst 10), except where a test is about the throttles.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from goworld.client import GoWorldClient, ServerCall
from goworld.ratelimit import RateLimiter
from goworld.testing import ClusterRunner, running_cluster

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "examples" / "chatroom_demo"
PW = "secret"
T = 15.0  # seconds to wait for anything


class Bot:
    """A logged-in player: waits for what the server calls on it."""

    def __init__(self, client: GoWorldClient, name: str) -> None:
        self.c = client
        self.name = name
        self.pace = RateLimiter(4, 8)  # below the server's command bucket (5/s, burst 10)

    @classmethod
    async def connect(cls, runner: ClusterRunner, transport: str = "tcp") -> GoWorldClient:
        port = runner.gate(0, transport)
        return await GoWorldClient.connect("127.0.0.1", port, transport=transport)

    @classmethod
    async def login(cls, runner: ClusterRunner, name: str, transport: str = "tcp", *,
                    register: bool = True) -> Bot:
        client = await cls.connect(runner, transport)
        account = await client.wait_player("Account", timeout=T)
        if register:
            client.call(account.id, "Register", name, PW)
            await client.wait_until(lambda: [c for c in client.calls if c.method in ("ShowInfo", "ShowError")], T)
        client.call(account.id, "Login", name, PW)
        await client.wait_player("Avatar", timeout=T)
        return cls(client, name)

    def mark(self) -> int:
        return len(self.c.calls)

    def calls(self, method: str, since: int = 0) -> list[ServerCall]:
        return [c for c in self.c.calls[since:] if c.method == method]

    async def expect(self, method: str, pred: Callable[[tuple[Any, ...]], Any] = lambda a: True, *,
                     since: int = 0, timeout: float = T) -> ServerCall:
        def found() -> ServerCall | None:
            for call in self.c.calls[since:]:
                if call.method == method and pred(call.args):
                    return call
            return None

        try:
            got: ServerCall = await self.c.wait_until(found, timeout)
        except TimeoutError:
            raise AssertionError(
                f"{self.name}: no {method} matching after {timeout} s; got "
                f"{[(c.method, c.args) for c in self.c.calls[since:]][-15:]}") from None
        return got

    async def error(self, needle: str, since: int) -> str:
        call = await self.expect("ShowError", lambda a: needle in a[0], since=since)
        return str(call.args[0])

    async def info(self, needle: str, since: int) -> str:
        call = await self.expect("ShowInfo", lambda a: needle in a[0], since=since)
        return str(call.args[0])

    async def cmd(self, text: str) -> int:
        """Send a command (paced); returns the mark before it."""
        wait = self.pace.take()
        while wait:
            await asyncio.sleep(wait)
            wait = self.pace.take()
        m = self.mark()
        self.c.call_player("Command", text)
        return m

    async def joined(self, channel: str, since: int = 0) -> dict[str, Any]:
        call = await self.expect("OnJoined", lambda a: a[0] == channel, since=since)
        return dict(call.args[1])

    async def join(self, channel: str) -> dict[str, Any]:
        return await self.joined(channel, await self.cmd(f"/join {channel}"))

    def say(self, channel: str, text: str) -> int:
        m = self.mark()
        self.c.call_player("Say", channel, text)
        return m

    async def close(self) -> None:
        await self.c.aclose()


def msg(channel: str, name: str, text: str) -> Callable[[tuple[Any, ...]], bool]:
    return lambda a: a[0] == channel and a[1] == name and a[2] == text


@pytest.fixture(scope="module")
def chat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterRunner]:
    with running_cluster(tmp_path_factory.mktemp("chat"), APP, dispatchers=1, games=2, gates=1) as runner:
        yield runner


async def close_all(*bots: Bot) -> None:
    await asyncio.gather(*(b.close() for b in bots), return_exceptions=True)


# ---- channels ----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_channel_list_topic_history_and_statuses_over_tcp_kcp_and_ws(chat: ClusterRunner) -> None:
    owner = await Bot.login(chat, "tea_owner", "tcp")
    guest = await Bot.login(chat, "tea_guest", "kcp")
    late = await Bot.login(chat, "tea_late", "ws")
    try:
        m = await owner.cmd("/create Tea")  # names are case-insensitive
        info = await owner.joined("tea", m)
        assert info["owner"] == "tea_owner" and info["members"] == [["tea_owner", "owner", "online", ""]]
        assert "created" in await owner.info("#tea", m)
        m = await owner.cmd("/topic tea green only, no milk")
        await owner.expect("OnTopic", lambda a: a == ("tea", "green only, no milk", "tea_owner"), since=m)
        for i in range(3):
            owner.say("tea", f"pot {i}")
        await owner.expect("OnChannelMsg", msg("tea", "tea_owner", "pot 2"))

        # the public list: member counts and topics (and the default lobby)
        m = await guest.cmd("/list tea")
        [listed] = (await guest.expect("OnChannelList", since=m)).args[0]
        assert listed == ["tea", "green only, no milk", 1, False]
        m = await guest.cmd("/list milk")  # the topic matches too
        assert [c[0] for c in (await guest.expect("OnChannelList", since=m)).args[0]] == ["tea"]

        # joining shows the topic, the members with roles and status, and the history
        info = await guest.join("tea")
        assert info["topic"] == "green only, no milk"
        assert info["members"] == [["tea_owner", "owner", "online", ""], ["tea_guest", "member", "online", ""]]
        texts = [(h[1], h[2], h[3]) for h in info["history"]]
        assert texts == [("", "tea_owner set the topic: green only, no milk", "system"),
                         ("tea_owner", "pot 0", "msg"), ("tea_owner", "pot 1", "msg"),
                         ("tea_owner", "pot 2", "msg")]
        assert all(abs(h[0] - time.time()) < 60 for h in info["history"])
        await owner.expect("OnMember", lambda a: a == ("tea", "tea_guest", "member", "online", ""))
        m = await guest.cmd("/list")
        lst = (await guest.expect("OnChannelList", since=m)).args[0]
        assert ["tea", "green only, no milk", 2, False] in lst and any(c[0] == "lobby" for c in lst)

        # a status shows in member lists: as an OnMember to the channel, and to newcomers
        m = await guest.cmd("/status away brewing")
        await guest.expect("OnStatus", lambda a: a == ("away", "brewing"), since=m)
        await owner.expect("OnMember", lambda a: a == ("tea", "tea_guest", "member", "away", "brewing"))
        info = await late.join("tea")
        assert ["tea_guest", "member", "away", "brewing"] in info["members"]
        guest.c.call_player("SetStatus", "busy", "")
        await late.expect("OnMember", lambda a: a == ("tea", "tea_guest", "member", "busy", ""))

        # the three transports talk; a topic change reaches every member
        m0, m1, m2 = owner.mark(), guest.mark(), late.mark()
        late.say("tea", "hello from the web")
        guest.say("tea", "/me pours")
        for bot, m in ((owner, m0), (guest, m1), (late, m2)):
            await bot.expect("OnChannelMsg", msg("tea", "tea_late", "hello from the web"), since=m)
            await bot.expect("OnChannelMsg", lambda a: a[1:3] == ("tea_guest", "pours") and a[4] == "me", since=m)
        await owner.cmd("/topic tea oolong today")
        for bot, m in ((owner, m0), (guest, m1), (late, m2)):
            await bot.expect("OnTopic", lambda a: a == ("tea", "oolong today", "tea_owner"), since=m)

        # /who: the member list again; /leave: an OnMember with no role
        m = await late.cmd("/who tea")
        await late.expect("OnMember", lambda a: a[:3] == ("tea", "tea_owner", "owner"), since=m)
        assert "3 member(s)" in await late.info("#tea", m)
        m0 = owner.mark()
        m = await late.cmd("/leave tea")
        await late.expect("OnLeft", lambda a: a == ("tea", "left"), since=m)
        await owner.expect("OnMember", lambda a: a == ("tea", "tea_late", "", "", ""), since=m0)
        m = late.say("tea", "still here?")
        assert "you are not in #tea" in await late.error("not in", m)
    finally:
        await close_all(owner, guest, late)


@pytest.mark.asyncio
async def test_history_shows_the_last_50_messages(chat: ClusterRunner) -> None:
    bots = [await Bot.login(chat, f"hist{i}", "tcp") for i in range(3)]
    try:
        m = await bots[0].cmd("/create scroll")
        await bots[0].joined("scroll", m)
        for b in bots[1:]:
            await b.join("scroll")
        for i in range(19):
            for b in bots:
                b.say("scroll", f"{b.name} line {i}")
        for b in bots:
            await bots[0].expect("OnChannelMsg", msg("scroll", b.name, f"{b.name} line 18"))
        reader = await Bot.login(chat, "hist_reader", "kcp")
        history = (await reader.join("scroll"))["history"]
        assert len(history) == 50
        in_order = [c.args[2] for c in bots[0].calls("OnChannelMsg") if c.args[0] == "scroll"]
        assert len(in_order) == 57
        assert [h[2] for h in history] == in_order[-50:]
        await reader.close()
    finally:
        await close_all(*bots)


@pytest.mark.asyncio
async def test_a_private_channel_needs_an_invitation(chat: ClusterRunner) -> None:
    owner = await Bot.login(chat, "vault_owner")
    outsider = await Bot.login(chat, "vault_guest", "kcp")
    try:
        m = await owner.cmd("/create vault private")
        assert (await owner.joined("vault", m))["private"] is True
        m = await outsider.cmd("/join vault")
        assert "private: you need an invitation" in await outsider.error("#vault", m)
        m = await outsider.cmd("/list vault")
        assert (await outsider.expect("OnChannelList", since=m)).args[0] == []
        m0 = outsider.mark()
        m = await owner.cmd("/invite vault vault_guest")
        assert "vault_guest may join" in await owner.info("vault_guest", m)
        assert "invited you to #vault" in await outsider.info("invited", m0)
        assert ["vault_guest", "member", "online", ""] in (await outsider.join("vault"))["members"]
        m = await owner.cmd("/private vault off")
        await owner.info("public", m)
        m = await outsider.cmd("/list vault")
        assert (await outsider.expect("OnChannelList", since=m)).args[0] == [["vault", "", 2, False]]
    finally:
        await close_all(owner, outsider)


# ---- moderation --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_ops_kick_ban_unban_and_timeout(chat: ClusterRunner) -> None:
    owner = await Bot.login(chat, "mod_owner")
    op = await Bot.login(chat, "mod_op", "kcp")
    member = await Bot.login(chat, "mod_member")
    other = await Bot.login(chat, "mod_other", "ws")
    try:
        m = await owner.cmd("/create den")
        await owner.joined("den", m)
        for b in (op, member, other):
            await b.join("den")

        # only the owner appoints ops; the new role is broadcast
        m = await member.cmd("/op den mod_member")
        assert "only the owner or an admin of #den can use /op" in await member.error("/op", m)
        m0 = other.mark()
        await owner.cmd("/op den mod_op")
        await other.expect("OnMember", lambda a: a[:3] == ("den", "mod_op", "op"), since=m0)

        # kick: out, may come back
        m0, m1 = other.mark(), member.mark()
        await op.cmd("/kick den mod_member")
        await member.expect("OnLeft", lambda a: a == ("den", "kicked by mod_op"), since=m1)
        await other.expect("OnMember", lambda a: a == ("den", "mod_member", "", "", ""), since=m0)
        await other.expect("OnChannelMsg", lambda a: a[2] == "mod_member was kicked by mod_op", since=m0)
        await member.join("den")

        # ban with a duration: out, refused on rejoin with the end time, then unbanned
        t0 = time.time()
        m1 = member.mark()
        m = await op.cmd("/ban den mod_member 10")
        left = await member.expect("OnLeft", lambda a: a[0] == "den" and "banned by mod_op" in a[1], since=m1)
        until = re.search(r"until (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", left.args[1])
        assert until, left.args
        end = time.mktime(time.strptime(until.group(1), "%Y-%m-%d %H:%M:%S")) - time.timezone
        assert t0 + 600 - 2 <= end <= time.time() + 600 + 2
        assert "banned from #den until" in await op.info("banned", m)
        m = await member.cmd("/join den")
        refused = await member.error("banned", m)
        assert refused == f"you are banned from #den until {until.group(1)} UTC"
        m = await op.cmd("/unban den mod_member")
        await op.info("may join #den again", m)
        await member.join("den")

        # a ban without minutes has no end
        m1 = member.mark()
        await owner.cmd("/ban den mod_member")
        await member.expect("OnLeft", lambda a: a == ("den", "banned by mod_owner until unbanned"), since=m1)
        m = await member.cmd("/join den")
        assert "until forever" in await member.error("banned", m)
        m = await owner.cmd("/unban den mod_member")
        await owner.info("may join #den again", m)  # lifted before the op tries (two clients race)
        m = await op.cmd("/unban den mod_member")
        assert "is not banned" in await op.error("not banned", m)
        await member.join("den")

        # timeout: stays a member, cannot post
        m1 = member.mark()
        m = await op.cmd("/timeout den mod_member 5")
        await op.info("cannot post in #den until", m)
        await member.error("you cannot post in #den until", m1)
        m = member.say("den", "let me talk")
        assert "(timed out)" in await member.error("cannot post", m)
        assert "den" in [c.args[0] for c in member.calls("OnJoined")]
        m = await member.cmd("/timeout den mod_member 5000")
        assert "from 1 to 1440" in await member.error("minutes", m)

        # ranks: an op cannot act on the owner or another op; a member on nobody; nobody on himself
        m = await op.cmd("/kick den mod_owner")
        assert "mod_owner is an owner" in await op.error("cannot /kick", m)
        # the op's command may reach the channel before the owner's (two avatars, two games):
        # wait until mod_other is an op
        await owner.info("mod_other is an op", await owner.cmd("/op den mod_other"))
        m = await op.cmd("/ban den mod_other")
        assert "mod_other is an op" in await op.error("cannot /ban", m)
        m = await other.cmd("/kick den mod_other")
        assert "yourself" in await other.error("yourself", m)
        m = await member.cmd("/kick den mod_other")
        assert "only ops, the owner or an admin" in await member.error("/kick", m)
        m = await owner.cmd("/kick den nobody_here")
        assert "nobody_here is not in #den" in await owner.error("not in", m)
        # the owner can act on an op; deop
        m = await owner.cmd("/deop den mod_other")
        await owner.info("no longer an op", m)
        m = await owner.cmd("/kick den mod_op")
        await owner.info("kicked", m)
    finally:
        await close_all(owner, op, member, other)


@pytest.mark.asyncio
async def test_admin_notice_reaches_everyone_and_admins_moderate_everywhere(chat: ClusterRunner) -> None:
    admin = await Bot.login(chat, "admin", "kcp")
    owner = await Bot.login(chat, "adm_owner")
    user = await Bot.login(chat, "adm_user", "ws")
    legacy = await Bot.login(chat, "adm_legacy")
    try:
        m = await owner.cmd("/create keep private")
        await owner.joined("keep", m)
        await owner.info("adm_user may join", await owner.cmd("/invite keep adm_user"))
        await user.join("keep")  # after the invitation took (two avatars, maybe two games)

        # a notice reaches every online player, GoWorld-style clients too
        legacy.c.call_player("SendChat", "/join lobby")
        await legacy.joined("lobby")
        m = await user.cmd("/notice hi all")
        assert "only admins" in await user.error("admins", m)
        marks = {b: b.mark() for b in (admin, owner, user, legacy)}
        await admin.cmd("/notice maintenance at noon")
        for b, m in marks.items():
            await b.expect("OnNotice", lambda a: a == ("maintenance at noon", "admin"), since=m)

        # an admin joins a private channel uninvited, and moderates where he is no member
        info = await admin.join("keep")
        assert ["admin", "member", "online", ""] in info["members"]
        await admin.cmd("/leave keep")
        m0 = user.mark()
        m = await admin.cmd("/kick keep adm_user")
        await user.expect("OnLeft", lambda a: a == ("keep", "kicked by admin"), since=m0)
        await admin.info("kicked", m)
        m = await admin.cmd("/topic keep set by an admin")
        await owner.expect("OnTopic", lambda a: a == ("keep", "set by an admin", "admin"))
        m = await admin.cmd("/op keep adm_user")
        await admin.info("op of #keep", m)
        # nobody acts on an admin, not even the owner
        await admin.join("keep")
        m = await owner.cmd("/ban keep admin")
        assert "admin is an admin" in await owner.error("cannot /ban", m)
        m = await owner.cmd("/kick keep admin")
        assert "admin is an admin" in await owner.error("cannot /kick", m)
        # the owner is moderated by an admin only
        m = await admin.cmd("/timeout keep adm_owner 1")
        await admin.info("cannot post", m)
        m = owner.say("keep", "my channel!")
        await owner.error("(timed out)", m)
        m = await user.cmd("/ignore admin")
        assert "admin" in await user.error("cannot ignore", m)
    finally:
        await close_all(admin, owner, user, legacy)


# ---- private messages, ignores -----------------------------------------------------------------


@pytest.mark.asyncio
async def test_private_messages_and_the_ignore_list(chat: ClusterRunner) -> None:
    ann = await Bot.login(chat, "pm_ann", "kcp")
    bob = await Bot.login(chat, "pm_bob")
    try:
        ma, mb = ann.mark(), bob.mark()
        await ann.cmd("/msg pm_bob psst, bob")
        for b, m in ((ann, ma), (bob, mb)):
            got = await b.expect("OnPrivateMsg", lambda a: a[:3] == ("pm_ann", "pm_bob", "psst, bob"), since=m)
            assert abs(got.args[3] - time.time()) < 60
        m = await bob.cmd("/ignore pm_ann")
        await bob.expect("OnIgnores", lambda a: a == (["pm_ann"],), since=m)
        m, mb = await ann.cmd("/msg pm_bob still there?"), bob.mark()
        assert await ann.error("not available", m) == "pm_bob is not available"
        await asyncio.sleep(0.3)
        assert not bob.calls("OnPrivateMsg", mb)
        m = await bob.cmd("/unignore pm_ann")
        await bob.expect("OnIgnores", lambda a: a == ([],), since=m)
        mb = bob.mark()
        await ann.cmd("/msg pm_bob back")
        await bob.expect("OnPrivateMsg", lambda a: a[2] == "back", since=mb)
        m = await ann.cmd("/msg pm_nobody hello?")
        assert await ann.error("not online", m) == "pm_nobody is not online"
        m = await ann.cmd("/msg pm_ann me")
        await ann.error("that is you", m)
        m = await bob.cmd("/unignore pm_ann")
        await bob.error("not on your ignore list", m)
    finally:
        await close_all(ann, bob)


# ---- throttles and the login guard ------------------------------------------------------------


WAIT = re.compile(r"^slow down: you can (send again|create another channel|search again|use commands again) in (\d+\.\d) s$")


@pytest.mark.asyncio
async def test_per_command_throttles_answer_with_the_wait(chat: ClusterRunner) -> None:
    bot = await Bot.login(chat, "throttled", "kcp")
    try:
        m = await bot.cmd("/create fast1")
        await bot.joined("fast1", m)
        for _ in range(25):  # the message bucket holds 20
            bot.c.call_player("Say", "fast1", "spam")
        err = WAIT.match(await bot.error("you can send again", m))
        assert err and 0 < float(err.group(2)) <= 0.5
        await asyncio.sleep(0.3)
        sent = bot.calls("OnChannelMsg", m)
        assert 20 <= len(sent) <= 21, len(sent)

        await asyncio.sleep(0.3)
        m = await bot.cmd("/create fast2")
        await bot.joined("fast2", m)
        m = await bot.cmd("/create fast3")  # two at once, then one a minute
        err = WAIT.match(await bot.error("create another channel", m))
        assert err and 55 < float(err.group(2)) <= 60, err

        m = bot.mark()
        for _ in range(5):
            bot.c.call_player("ListChannels", "")
        err = WAIT.match(await bot.error("search again", m))
        assert err and 0 < float(err.group(2)) <= 1.0
        await bot.c.wait_until(lambda: len(bot.calls("OnChannelList", m)) >= 3, T)
        await asyncio.sleep(0.3)
        assert 3 <= len(bot.calls("OnChannelList", m)) <= 4

        await asyncio.sleep(2.5)  # the command bucket refills
        m = bot.mark()
        for _ in range(14):
            bot.c.call_player("Command", "/status away")
        err = WAIT.match(await bot.error("use commands again", m))
        assert err and 0 < float(err.group(2)) <= 0.2
        await asyncio.sleep(0.3)
        assert 10 <= len(bot.calls("OnStatus", m)) <= 11
        assert not bot.c.is_closed  # throttled, not kicked
    finally:
        await bot.close()


@pytest.mark.asyncio
async def test_login_brute_force_locks_the_name(chat: ClusterRunner) -> None:
    client = await Bot.connect(chat, "tcp")
    attacker = await Bot.connect(chat, "kcp")
    try:
        account = await client.wait_player("Account", timeout=T)
        client.call(account.id, "Register", "victim", "right-one")
        await client.wait_call("ShowInfo", T)
        acc2 = await attacker.wait_player("Account", timeout=T)
        for i in range(5):
            m = len(attacker.calls)
            attacker.call(acc2.id, "Login", "victim", f"guess{i}")
            await attacker.wait_call("ShowError", T, start=m)
        await attacker.wait_until(lambda: [c for c in attacker.calls if "too many" in str(c.args)], T)
        errors = [c.args[0] for c in attacker.calls if c.method == "ShowError"]
        assert errors[:5] == ["wrong password"] * 5
        assert errors[5] == "too many failed logins for victim: try again in 300 s"
        # the right password from another connection: refused too, with the time left
        m = len(client.calls)
        client.call(account.id, "Login", "victim", "right-one")
        got = await client.wait_call("ShowError", T, start=m)
        assert re.fullmatch(r"too many failed logins for victim: try again in (29\d|300) s", got.args[0]), got.args
        assert client.player is not None and client.player.type_name == "Account"
        # other names are not locked
        m = len(client.calls)
        client.call(account.id, "Login", "nobody_such", "x1")
        assert (await client.wait_call("ShowError", T, start=m)).args[0] == "no such account"
    finally:
        await asyncio.gather(client.aclose(), attacker.aclose())


@pytest.mark.asyncio
async def test_login_failures_from_one_address_lock_that_address(chat: ClusterRunner) -> None:
    # Game code sees where a client connected from (client.address, as the gate saw it):
    # LoginGuard also counts failures per address, whatever the names and connections.
    # Loopback has a whole /8: the "attacker" connects from 127.0.0.23, the others from 127.0.0.1.
    port = chat.gate(0, "tcp")

    async def from_attacker() -> tuple[GoWorldClient, str]:
        c = await GoWorldClient.connect("127.0.0.1", port, local_addr=("127.0.0.23", 0))
        return c, (await c.wait_player("Account", timeout=T)).id

    async def fail(c: GoWorldClient, account_id: str, name: str) -> str:
        m = len(c.calls)
        c.call(account_id, "Login", name, "guess")
        return str((await c.wait_call("ShowError", T, start=m)).args[0])

    attackers = [await from_attacker() for _ in range(4)]  # Login allows a burst of 5 each
    bystander = await Bot.connect(chat, "tcp")
    try:
        errors = [await fail(c, acc, f"spray{i}_{k}") for i, (c, acc) in enumerate(attackers) for k in range(5)]
        assert errors == ["no such account"] * 20  # every name is new: no name lock
        last, _ = attackers[-1]
        # the 20th failure locks the address: its connection is told
        await last.wait_until(lambda: any("from your address" in str(c.args) for c in last.calls), T)
        assert [c.args[0] for c in last.calls if c.method == "ShowError"][-1] == (
            "too many failed logins from your address: try again in 300 s")
        # a new connection from that address is refused before any password check ...
        fresh, acc = await from_attacker()
        attackers.append((fresh, acc))
        got = await fail(fresh, acc, "spray_new")
        assert re.fullmatch(r"too many failed logins from your address: try again in (29\d|300) s", got), got
        # ... while a client from another address logs in as usual
        account = await bystander.wait_player("Account", timeout=T)
        bystander.call(account.id, "Register", "addr_ok", PW)
        await bystander.wait_call("ShowInfo", T)
        bystander.call(account.id, "Login", "addr_ok", PW)
        await bystander.wait_player("Avatar", timeout=T)
    finally:
        await asyncio.gather(bystander.aclose(), *(c.aclose() for c, _ in attackers))


# ---- input rules -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_input_rules(chat: ClusterRunner) -> None:
    async def register(name: str, password: str) -> str:
        # one connection each: Register allows a burst of 3 per connection (the engine's limit)
        client = await Bot.connect(chat, "ws")
        try:
            account = await client.wait_player("Account", timeout=T)
            client.call(account.id, "Register", name, password)
            got = await client.wait_call("ShowError", T)
            client.call(account.id, "Login", name, password)
            await client.wait_call("ShowError", T, start=client.calls.index(got) + 1)
            return str(got.args[0])
        finally:
            await client.aclose()

    cases = [
        ("ab", PW, "bad user name 'ab'"), ("bad name", PW, "bad user name"),
        ("<script>", PW, "bad user name"), ("x" * 25, PW, "3 to 24 letters"),
        ("ümlaut", PW, "bad user name"), ("fine_name", "p", "the password must be 2 to 64"),
        ("fine_name", "p" * 65, "2 to 64 characters"),
    ]
    got = await asyncio.gather(*(register(name, password) for name, password, _ in cases))
    for (name, _, needle), text in zip(cases, got, strict=True):
        assert needle in text, (name, text)

    bot = await Bot.login(chat, "rules_bot", "tcp")
    try:
        m = await bot.cmd("/create rules")
        await bot.joined("rules", m)
        for text, needle in [
            ("x" * 501, "too long: 501 characters, at most 500"), ("   ", "the message is empty"),
        ]:
            m = bot.say("rules", text)
            assert needle in await bot.error(needle, m)
        m = bot.say("rules", "x" * 500)  # exactly the limit is fine
        await bot.expect("OnChannelMsg", lambda a: a[2] == "x" * 500, since=m)
        # markup is text to the server (the browser escapes it); controls become spaces
        markup = '<b>hi</b><script>alert("x")</script> &amp;'
        m = bot.say("rules", markup)
        await bot.expect("OnChannelMsg", lambda a: a[2] == markup, since=m)
        m = bot.say("rules", "tab\there\x00\u202enul")
        await bot.expect("OnChannelMsg", lambda a: a[2] == "tab here  nul", since=m)
        for command, needle in [
            ("/create a", "bad channel name 'a'"), ("/create no!pe", "bad channel name"),
            ("/create " + "c" * 25, "2 to 24 letters"), ("/join", "usage: /join NAME"),
            ("/topic rules " + "t" * 201, "the topic is too long"), ("/status sleeping", "the status is one of"),
            ("/ban rules someone forever", "the duration must be a whole number"),
            ("/kick rules bad*name", "bad user name"), ("/dance", "unknown command: /dance"),
            ("/leave rules now", "too many arguments"), ("/msg rules_other " + "m" * 501, "too long"),
            ("/join nosuchchannel", "no such channel #nosuchchannel"),
        ]:
            m = await bot.cmd(command)
            assert needle in await bot.error(needle, m), command
        m = bot.mark()
        bot.c.call_player("SetStatus", "away", "s" * 101)
        await bot.error("the status message is too long", m)
        m = bot.mark()
        bot.c.call_player("Say", "rules", 42)  # the engine checks types: dropped (a strike)
        bot.c.call_player("Say", "rules", "after the bad call")
        await bot.expect("OnChannelMsg", lambda a: a[2] == "after the bad call", since=m)
        assert [c for c in bot.calls("OnChannelMsg", m) if c.args[2] != "after the bad call"] == []
    finally:
        await bot.close()


# ---- GoWorld's client ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_goworld_clients_use_rooms_and_channels_through_sendchat(chat: ClusterRunner) -> None:
    a = await Bot.login(chat, "gw_a")
    b = await Bot.login(chat, "gw_b", "kcp")
    modern = await Bot.login(chat, "gw_modern", "ws")
    try:
        # a plain room (no channel of that name): GoWorld's behaviour
        for bot in (a, b):
            m = bot.mark()
            bot.c.call_player("SendChat", "/join nook")
            await bot.c.wait_until(lambda bot=bot: bot.c.player.attrs.get("chatroom") == "nook", T)
            assert "plain room" in await bot.info("joined room nook", m)
        m = b.mark()
        a.c.call_player("SendChat", "in the nook")
        assert (await b.expect("OnRecvChat", since=m)).args == ("gw_a", "in the nook")

        # a channel joined through SendChat: OnRecvChat for them, OnChannelMsg for everyone
        m = await modern.cmd("/create hall")
        await modern.joined("hall", m)
        for bot in (a, b):
            m = bot.mark()
            bot.c.call_player("SendChat", "/join hall")
            await bot.joined("hall", m)
            assert bot.c.player.attrs.get("chatroom") == "hall"
        ma, mm = a.mark(), modern.mark()
        b.c.call_player("SendChat", "hello hall")
        assert (await a.expect("OnRecvChat", since=ma)).args == ("gw_b", "hello hall")
        await modern.expect("OnChannelMsg", msg("hall", "gw_b", "hello hall"), since=mm)
        ma = a.mark()
        modern.say("hall", "hi from the browser")
        await a.expect("OnRecvChat", lambda x: x == ("gw_modern", "hi from the browser"), since=ma)
        assert not [c for c in a.calls("OnRecvChat", ma) if c.args[0] == "gw_b"]

        # a ban through the channel clears GoWorld's room too
        m = a.mark()
        await modern.cmd("/ban hall gw_a 1")
        await a.expect("OnLeft", lambda x: x[0] == "hall", since=m)
        await a.error("you left #hall: banned by gw_modern", m)
        assert a.c.player.attrs.get("chatroom") == ""
        m = a.mark()
        a.c.call_player("SendChat", "/join hall")
        await a.error("you are banned from #hall", m)
        await a.c.wait_until(lambda: a.c.player.attrs.get("chatroom") == "", T)
        m = a.mark()
        a.c.call_player("SendChat", "anyone?")
        await a.error("join a room first", m)
    finally:
        await close_all(a, b, modern)


# ---- persistence: stop/start and reload ----------------------------------------------------------


@pytest.mark.asyncio
async def test_channel_state_survives_reload_and_stop_start(tmp_path: Path) -> None:
    runner = ClusterRunner(tmp_path, APP, dispatchers=1, games=1, gates=1)
    runner.start()
    bots: list[Bot] = []
    try:
        owner = await Bot.login(runner, "p_owner")
        op = await Bot.login(runner, "p_op", "kcp")
        bad = await Bot.login(runner, "p_bad")
        legacy = await Bot.login(runner, "p_legacy", "ws")
        bots = [owner, op, bad, legacy]
        m = await owner.cmd("/create kept")
        await owner.joined("kept", m)
        await owner.cmd("/topic kept survives everything")
        await op.join("kept")
        await bad.join("kept")
        m = await owner.cmd("/op kept p_op")
        await owner.info("op of #kept", m)
        m = await op.cmd("/ban kept p_bad 60")
        until = (await bad.expect("OnLeft", lambda a: a[0] == "kept", since=m)).args[1].split("until ")[1]
        m = await op.cmd("/timeout kept p_legacy 30")
        await op.info("cannot post", m)
        legacy.c.call_player("SendChat", "/join kept")
        await legacy.joined("kept")
        owner.say("kept", "before the reload")
        await op.expect("OnChannelMsg", msg("kept", "p_owner", "before the reload"))

        # ---- goworld reload: clients stay connected, in the same channel
        result = await asyncio.to_thread(runner.cli, "reload")
        assert result.returncode == 0, result.stdout + result.stderr + runner.logs()
        for b in bots:
            assert not b.c.is_closed
        mo, ml = op.mark(), legacy.mark()
        owner.say("kept", "after the reload")
        await op.expect("OnChannelMsg", msg("kept", "p_owner", "after the reload"), since=mo)
        m = legacy.mark()
        legacy.c.call_player("SendChat", "may I?")  # still timed out
        await legacy.error("(timed out)", m)
        m = op.say("kept", "op speaks")
        await legacy.expect("OnRecvChat", lambda a: a == ("p_op", "op speaks"), since=ml)
        m = await bad.cmd("/join kept")
        assert await bad.error("banned", m) == f"you are banned from #kept until {until}"
        m = await op.cmd("/who kept")
        assert "3 member(s)" in await op.info("member(s)", m)

        # ---- goworld stop / start: everything saved is back
        await close_all(*bots)
        bots = []
        assert runner.stop().returncode == 0
        runner.start()
        newcomer = await Bot.login(runner, "p_new", "kcp")
        bots.append(newcomer)
        for _ in range(20):  # the channel reports its topic once loaded, just after the start
            m = await newcomer.cmd("/list kept")
            listed = (await newcomer.expect("OnChannelList", since=m)).args[0]
            if listed and listed[0][1]:
                break
            await asyncio.sleep(0.25)
        assert listed == [["kept", "survives everything", 0, False]]
        info = await newcomer.join("kept")
        assert info["topic"] == "survives everything" and info["owner"] == "p_owner" and info["ops"] == ["p_op"]
        texts = [h[2] for h in info["history"] if h[3] == "msg"]
        assert texts == ["before the reload", "after the reload", "op speaks"]
        # the owner rejoins his channels at login, with his powers
        owner = await Bot.login(runner, "p_owner", register=False)
        bots.append(owner)
        assert ["p_owner", "owner", "online", ""] in (await owner.joined("kept"))["members"]
        bad = await Bot.login(runner, "p_bad", register=False)
        bots.append(bad)
        m = await bad.cmd("/join kept")
        assert await bad.error("banned", m) == f"you are banned from #kept until {until}"
        legacy = await Bot.login(runner, "p_legacy", "ws", register=False)
        bots.append(legacy)
        await legacy.joined("kept")
        m = legacy.say("kept", "and now?")
        await legacy.error("(timed out)", m)
        m = await owner.cmd("/unban kept p_bad")
        await owner.info("may join", m)
        await bad.join("kept")
    finally:
        await close_all(*bots)
        runner.stop()
        runner.kill()


@pytest.mark.asyncio
async def test_channel_lists_and_the_channel_count_are_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A channel's ban, timeout, invitation and operator lists hold CHANNEL_LIST_MAX names (2
    here, 500 by default) and the server CHANNELS_TOTAL_MAX channels (3 here: lobby + 2); past
    that the command is refused with a message, and an unban frees a place."""
    monkeypatch.setenv("CHATROOM_CHANNEL_LIST_MAX", "2")
    monkeypatch.setenv("CHATROOM_CHANNELS_TOTAL_MAX", "3")
    runner = ClusterRunner(tmp_path, APP, dispatchers=1, games=1, gates=1)
    runner.start()
    owner: Bot | None = None
    other: Bot | None = None
    try:
        owner = await Bot.login(runner, "b_owner")
        other = await Bot.login(runner, "b_other", "kcp")
        await owner.joined("cap", await owner.cmd("/create cap"))
        for name in ("x_one", "x_two"):
            await owner.info(f"{name} is banned", await owner.cmd(f"/ban cap {name} 1"))
        m = await owner.cmd("/ban cap x_three")
        assert "ban list of #cap is full (2)" in await owner.error("is full", m)
        await owner.info("may join", await owner.cmd("/unban cap x_one"))
        await owner.info("x_three is banned", await owner.cmd("/ban cap x_three"))
        for name in ("y_one", "y_two"):
            await owner.info(f"{name} may join", await owner.cmd(f"/invite cap {name}"))
        await owner.error("invitation list of #cap is full", await owner.cmd("/invite cap y_three"))
        for name in ("z_one", "z_two"):
            await owner.info("cannot post", await owner.cmd(f"/timeout cap {name} 5"))
        await owner.error("timeout list of #cap is full", await owner.cmd("/timeout cap z_three 5"))
        for name in ("o_one", "o_two"):
            await owner.info(f"{name} is an op", await owner.cmd(f"/op cap {name}"))
        await owner.error("operator list of #cap is full", await owner.cmd("/op cap o_three"))
        await other.joined("more", await other.cmd("/create more"))  # lobby + cap + more
        m = await other.cmd("/create toomany")
        assert "holds 3 channels already" in await other.error("channels already", m)
    finally:
        for bot in (owner, other):
            if bot is not None:
                await bot.close()
        runner.stop()
        runner.kill()


@pytest.mark.asyncio
async def test_registrations_from_one_host_are_counted(chat: ClusterRunner) -> None:
    # Register is throttled per connection by the engine; LoginGuard counts per host as well,
    # so one host with many connections cannot make accounts (and their channels) at will.
    port = chat.gate(0, "tcp")
    clients: list[GoWorldClient] = []

    async def register_from(host: str, name: str) -> str:
        c = await GoWorldClient.connect("127.0.0.1", port, local_addr=(host, 0))
        clients.append(c)
        account = await c.wait_player("Account", timeout=T)
        c.call(account.id, "Register", name, PW)
        got = await c.wait_until(lambda: [x for x in c.calls if x.method in ("ShowInfo", "ShowError")], T)
        return str(got[-1].args[0])

    try:
        got = [await register_from("127.0.0.26", f"many_{k}") for k in range(10)]
        assert got == ["registered: you can log in now"] * 10, got
        refused = await register_from("127.0.0.26", "many_10")
        assert refused.startswith("too many accounts registered from your address: try again in "), refused
        assert await register_from("127.0.0.27", "elsewhere_1") == "registered: you can log in now"
        assert await register_from("127.0.0.1", "this_machine_1") == "registered: you can log in now"
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
