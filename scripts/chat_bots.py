"""Two bots use the running chatroom_demo cluster: register, log in, join a room, chat.

Prints what each bot sees; exits non-zero if the conversation does not happen.
Usage: .venv/bin/python scripts/chat_bots.py [--ini goworld.ini] [--transport tcp|ws|kcp]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from goworld.client import GoWorldClient  # noqa: E402
from goworld.config import load  # noqa: E402


async def bot(port: int, transport: str, name: str) -> GoWorldClient:
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
    return client


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
        alice.call_player("SendChat", "hello bob!")
        got = await bob.wait_call("OnRecvChat")
        print(f"bob received: {got.args[0]} says {got.args[1]!r}")
        bob.call_player("SendChat", "hi alice")
        got = await alice.wait_until(
            lambda: [c for c in alice.calls if c.method == "OnRecvChat" and c.args[1] == "hi alice"]
        )
        print(f"alice received: {got[0].args[0]} says {got[0].args[1]!r}")
        print(f"chat works over {args.transport} on 127.0.0.1:{port}")
        return 0
    except TimeoutError:
        print("the chat did not go through", file=sys.stderr)
        return 1
    finally:
        await asyncio.gather(alice.aclose(), bob.aclose())


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
