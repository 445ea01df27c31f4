"""Two bots use the running chatroom_demo cluster and print what they see.

GoWorld's way first (register, log in, ``SendChat("/join lobby")``, chat through
``OnRecvChat``), then the chat service (docs/CHAT-DESIGN.md): alice creates a channel and sets
its topic, bob finds it in the channel list, joins and sees its history, they talk, alice sends
bob a private message, bob goes "away" and alice sees it in the member list.
Exits non-zero if any of it does not happen.
Usage: .venv/bin/python scripts/chat_bots.py [--ini goworld.ini] [--transport tcp|ws|kcp]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from goworld.client import GoWorldClient, ServerCall  # noqa: E402
from goworld.config import load  # noqa: E402

TIMEOUT = 15.0


class Bot:
    def __init__(self, client: GoWorldClient, name: str) -> None:
        self.c, self.name = client, name

    def say(self, text: str) -> None:
        print(f"{self.name}: {text}")

    async def expect(self, method: str, pred: Callable[[tuple[Any, ...]], Any] = lambda a: True,
                     since: int = 0) -> ServerCall:
        def found() -> ServerCall | None:
            return next((c for c in self.c.calls[since:] if c.method == method and pred(c.args)), None)

        call: ServerCall = await self.c.wait_until(found, TIMEOUT)
        return call

    async def command(self, text: str, method: str,
                      pred: Callable[[tuple[Any, ...]], Any] = lambda a: True) -> ServerCall:
        """Send a slash command, wait for its answer (an error is the end of the demo)."""
        mark = len(self.c.calls)
        self.c.call_player("Command", text)

        def answer() -> ServerCall | None:
            for c in self.c.calls[mark:]:
                if c.method == "ShowError":
                    raise RuntimeError(f"{self.name}: {text} -> {c.args[0]}")
                if c.method == method and pred(c.args):
                    return c
            return None

        call: ServerCall = await self.c.wait_until(answer, TIMEOUT)
        return call


async def bot(port: int, transport: str, name: str) -> Bot:
    client = await GoWorldClient.connect("127.0.0.1", port, transport=transport)
    account = await client.wait_player("Account")
    client.call(account.id, "Register", name, "secret")
    info = await client.wait_until(
        lambda: [c for c in client.calls if c.method in ("ShowInfo", "ShowError")]
    )
    print(f"{name}: {info[0].method}({info[0].args[0]})")
    client.call(account.id, "Login", name, "secret")
    avatar = await client.wait_player("Avatar")
    print(f"{name}: logged in as Avatar {avatar.id}")
    client.call_player("SendChat", "/join lobby")
    await client.wait_until(lambda: avatar.attrs.get("chatroom") == "lobby")
    print(f"{name}: joined room 'lobby'")
    return Bot(client, name)


def members(info: dict[str, Any]) -> str:
    return ", ".join(f"{n} ({role}{', ' + status if status != 'online' else ''})"
                     for n, role, status, _msg in info["members"])


async def service_tour(alice: Bot, bob: Bot, tag: str) -> None:
    channel = f"tea-{tag}"
    joined = await alice.command(f"/create {channel}", "OnJoined", lambda a: a[0] == channel)
    alice.say(f"/create {channel} -> joined #{channel}, members: {members(joined.args[1])}")
    topic = await alice.command(f"/topic {channel} green tea and gossip", "OnTopic")
    alice.say(f"the topic of #{channel} is now {topic.args[1]!r}")
    for text in ("the kettle is on", "who wants a cup?"):
        mark = len(alice.c.calls)
        alice.c.call_player("Say", channel, text)
        await alice.expect("OnChannelMsg", lambda a, t=text: a[2] == t, mark)

    listed = await bob.command("/list tea", "OnChannelList")
    found = listed.args[0]
    for name, topic_text, count, _private in found[:3]:  # the busiest first
        bob.say(f"/list tea -> #{name}: {count} member(s), topic {topic_text!r}")
    if len(found) > 3:
        bob.say(f"/list tea -> ... and {len(found) - 3} more (channels of earlier runs)")
    joined = await bob.command(f"/join {channel}", "OnJoined", lambda a: a[0] == channel)
    info = joined.args[1]
    bob.say(f"joined #{channel}: topic {info['topic']!r}, members: {members(info)}")
    for _ts, who, text, kind in info["history"]:
        bob.say(f"  history: {'*' if kind == 'system' else who}: {text}")

    mark = len(alice.c.calls)
    bob.c.call_player("Say", channel, "me please, with milk")
    got = await alice.expect("OnChannelMsg", lambda a: a[1] == bob.name, mark)
    alice.say(f"#{channel} <{got.args[1]}> {got.args[2]}")

    mark = len(bob.c.calls)
    await alice.command(f"/msg {bob.name} no milk in green tea!", "OnPrivateMsg")
    got = await bob.expect("OnPrivateMsg", since=mark)
    bob.say(f"private message from {got.args[0]}: {got.args[2]!r}")

    mark = len(alice.c.calls)
    await bob.command("/status away fetching milk", "OnStatus")
    got = await alice.expect("OnMember", lambda a: a[1] == bob.name and a[3] == "away", mark)
    alice.say(f"#{channel} member list: {got.args[1]} is {got.args[3]} ({got.args[4]})")


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ini", default="goworld.ini")
    parser.add_argument("--transport", default="tcp", choices=["tcp", "ws", "kcp"])
    args = parser.parse_args()
    gate = next(iter(load(Path(args.ini)).gates.values()))
    port = gate.http_addr.port if args.transport == "ws" else gate.listen_addr.port
    tag = uuid.uuid4().hex[:6]
    alice, bob = await asyncio.gather(
        bot(port, args.transport, f"alice-{tag}"), bot(port, args.transport, f"bob-{tag}")
    )
    try:
        alice.c.call_player("SendChat", "hello bob!")
        got = await bob.expect("OnRecvChat", lambda a: a[1] == "hello bob!")
        print(f"bob received: {got.args[0]} says {got.args[1]!r}")
        bob.c.call_player("SendChat", "hi alice")
        got = await alice.expect("OnRecvChat", lambda a: a[1] == "hi alice")
        print(f"alice received: {got.args[0]} says {got.args[1]!r}")
        print(f"chat works over {args.transport} on 127.0.0.1:{port}")
        print("-- the chat service: a channel, its topic and history, a PM, a status")
        await service_tour(alice, bob, tag)
        return 0
    except TimeoutError:
        print("the chat did not go through", file=sys.stderr)
        return 1
    except RuntimeError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    finally:
        await asyncio.gather(alice.c.aclose(), bob.c.aclose())


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
