"""Hostile clients against examples/chatroom_demo, and honest ones measured meanwhile (issue 14).

Two halves, shared by ``tests/integration/test_hostile.py`` and ``goworld bench --only hostile``
(scripts/bench_hostile.py):

* **Attackers** (:data:`ATTACKS`), one per row of issue 14's table plus a WebSocket partial
  frame and the stalled game under 50 callers each within the gate's limit. Each runs in its own process (``python -m goworld.bench.attacks NAME ...``, so that its
  CPU is not the honest clients' event loop), bound to a source address of its own
  (``127.0.0.2`` by default). The process sets up (connects, logs in), prints ``ready``, waits
  for ``go`` on stdin, attacks for ``--seconds`` and prints ``RESULT {json}``: what it sent,
  what came back, whether and when the server closed it.
* **The harness** (:func:`run_attack`): four honest :class:`~goworld.client.GoWorldClient`\\ s
  from 127.0.0.1 registered, logged in and in one chat room, each sending a chat line every
  0.5 s and timing its round trip (the sender's own copy of the filtered call); the RSS of
  every cluster process and the size of its logs sampled throughout; a newcomer that connects
  and logs in during the attack; at the end, every honest line checked at every honest client
  (:class:`Outcome`).

Every address is checked to be in 127.0.0.0/8: nothing here sends anywhere else. The attacks
speak the chatroom demo's RPCs (``Register``, ``Login``, ``SendChat``, ``GetSpaceID``) where
they need a logged-in player. By hand::

    .venv/bin/python -m goworld.bench.attacks chat_flood --port 14001 --seconds 5
    go                                   # typed on stdin once it prints "ready"
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import math
import os
import random
import resource
import select
import signal
import socket
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from goworld.bench import procstat
from goworld.client import GoWorldClient, ServerCall
from goworld.proto import codec
from goworld.proto.messages import (
    CallEntityMethodFromClient,
    HeartbeatFromClient,
    SyncPositionYawFromClient,
)

__all__ = ["ATTACKS", "ATTACKER", "HONEST", "Outcome", "Target", "HonestChat", "run_attack",
           "percentile"]

ATTACKER = "127.0.0.2"
#: The environment of the chatroom_demo cluster under attack: several attacks log many players
#: in from the attacker's one host, and the demo's per-host registration limit (10 per hour,
#: tested on its own in tests/integration/test_chat_service.py) would stop them at the door,
#: before the bounds these attacks are about.
CLUSTER_ENV = {"CHATROOM_REGISTER_HOST_MAX": "1000000"}
HONEST = "127.0.0.1"
MiB = 1024 * 1024
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
HEARTBEAT = codec.encode(HeartbeatFromClient())
PASSWORD = "pw"
CHAT_INTERVAL = 0.5
ROOM = "lobby"
#: The one-datagram KCP opening GoWorld's Go bot sends: an FEC data shard (kcp-go: u32 seqid,
#: u16 flag 0xF1, u16 size) holding a KCP PUSH (conv, cmd 81, frg 0, wnd 32, ts, sn 0, una, len)
#: of the 2001 heartbeat.
_KCP_SEGMENT = struct.Struct("<IBBHIIII")


def _loopback(address: str) -> str:
    if ipaddress.ip_address(address) not in LOOPBACK:
        raise ValueError(f"{address} is not a loopback address: the attacks stay on 127.0.0.0/8")
    return address


@dataclass(frozen=True)
class Target:
    """Where the gate listens (host and its TCP/KCP and WebSocket ports) and where we attack from."""

    host: str
    tcp_port: int
    ws_port: int
    source: str = ATTACKER

    def __post_init__(self) -> None:
        _loopback(self.host)
        _loopback(self.source)


# ---- the attacker's client --------------------------------------------------------------------


class AttackClient(GoWorldClient):
    """A :class:`GoWorldClient` bound to a source address, that knows when TCP lets it write
    (``pause_writing``/``resume_writing``) and when the server closed it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.writable = asyncio.Event()
        self.writable.set()
        self.closed_at: float | None = None
        self.bytes_in = 0
        self.counts: dict[str, int] = {}
        self.beats: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, target: Target, *, heartbeat_interval: float | None = 10.0) -> AttackClient:
        client = cls(record=True)
        loop = asyncio.get_running_loop()
        await loop.create_connection(lambda: client, target.host, target.tcp_port,
                                     local_addr=(target.source, 0))
        client.send(HeartbeatFromClient())
        if heartbeat_interval:
            client.beats = asyncio.create_task(client.beat(heartbeat_interval))
        return client

    async def beat(self, interval: float) -> None:
        """A heartbeat every ``interval`` s while connected (the gate closes silent clients)."""
        while not self.is_closed:
            await asyncio.sleep(interval)
            if not self.is_closed:
                self.send(HeartbeatFromClient())

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed_at is None:
            self.closed_at = time.monotonic()
        self.writable.set()  # wake a writer waiting for room
        if self.beats is not None:
            self.beats.cancel()
        super().connection_lost(exc)

    def count_calls(self) -> None:
        """Stop recording; count the server's calls per method instead."""
        self.record = False
        self.calls.clear()
        self.log.clear()

        def on_call(call: ServerCall) -> None:
            self.counts[call.method] = self.counts.get(call.method, 0) + 1

        self.on_call = on_call

    async def login(self, name: str, password: str = PASSWORD, room: str | None = None) -> str:
        """Register ``name`` on the chatroom demo (an existing account is fine), log in, join
        ``room``; returns the avatar's id."""
        account = await self.wait_player("Account", timeout=30)
        start = len(self.calls)
        self.call(account.id, "Register", name, password)
        await self.wait_until(lambda: any(c.method in ("ShowInfo", "ShowError")
                                          for c in self.calls[start:]), 30)
        self.call(account.id, "Login", name, password)
        avatar = await self.wait_player("Avatar", timeout=30)
        if room:
            self.call(avatar.id, "SendChat", f"/join {room}")
            await self.wait_until(
                lambda: self.entities.get(avatar.id) is not None
                and self.entities[avatar.id].attrs.get("chatroom") == room, 30)
        return avatar.id

    async def flood(self, packet: bytes, seconds: float, *, rate: float = 0.0,
                    batch: int = 100) -> int:
        """Write ``packet`` as fast as TCP takes it (or ``rate`` per second) for ``seconds``;
        returns how many were written. Never queues more than the transport's high-water mark:
        when TCP pushes back, the flood waits."""
        chunk = packet * batch
        deadline = time.monotonic() + seconds
        t0 = time.monotonic()
        sent = 0
        while not self.is_closed:
            now = time.monotonic()
            if now >= deadline:
                break
            if not self.writable.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.writable.wait(), deadline - now)
                continue
            if rate and sent >= rate * (now - t0):
                await asyncio.sleep(min(0.005, deadline - now))
                continue
            self.send_raw(chunk)
            sent += batch
            await asyncio.sleep(0)  # let replies in
        return sent

    def report(self, t_go: float) -> dict[str, Any]:
        closed = self.closed_at is not None
        return {
            "closed": closed,
            "closed_after_s": round(self.closed_at - t_go, 2) if self.closed_at is not None else None,
            "bytes_in": self.bytes_in,
        }


T = TypeVar("T")
Go = Callable[[], Awaitable[float]]  # prints "ready", waits for "go"; returns the go time


def _call(entity_id: str, method: str, *args: Any) -> bytes:
    return codec.encode(CallEntityMethodFromClient(entity_id, method, args))


# ---- the attacks ------------------------------------------------------------------------------


async def chat_flood(t: Target, seconds: float, go: Go, **_: Any) -> dict[str, Any]:
    """A logged-in player sends SendChat (to a room of its own) as fast as TCP allows; each one
    the game processes comes back to it as one OnRecvChat."""
    c = await AttackClient.open(t)
    avatar = await c.login(f"mallory{os.getpid()}", room=f"spam{os.getpid()}")
    c.count_calls()
    t_go = await go()
    sent = await c.flood(_call(avatar, "SendChat", "spam spam spam"), seconds)
    await asyncio.sleep(1.0)  # replies still in flight
    out = c.report(t_go)
    c.close()
    return {**out, "sent": sent, "processed": c.counts.get("OnRecvChat", 0)}


async def refused_method_flood(t: Target, seconds: float, go: Go, **_: Any) -> dict[str, Any]:
    """A logged-in player calls its avatar's GetSpaceID (server-only: refused by the game, which
    logs the refusal) as fast as TCP allows."""
    c = await AttackClient.open(t)
    avatar = await c.login(f"mallory{os.getpid()}")
    c.count_calls()
    t_go = await go()
    sent = await c.flood(_call(avatar, "GetSpaceID", avatar), seconds)
    await asyncio.sleep(0.5)
    out = c.report(t_go)
    c.close()
    return {**out, "sent": sent, "processed": c.counts.get("OnGetAvatarSpaceID", 0)}


async def login_flood(t: Target, seconds: float, go: Go, **_: Any) -> dict[str, Any]:
    """Wrong-password Logins on the boot Account as fast as TCP allows, never logged in; each
    one the game processes costs a KVDB read and comes back as ShowError."""
    c = await AttackClient.open(t)
    account = await c.wait_player("Account", timeout=30)
    name = f"victim{os.getpid()}"
    c.call(account.id, "Register", name, "the right one")
    await c.wait_call("ShowInfo", timeout=30)
    c.count_calls()
    t_go = await go()
    sent = await c.flood(_call(account.id, "Login", name, "wrong"), seconds)
    await asyncio.sleep(1.0)
    out = c.report(t_go)
    c.close()
    return {**out, "sent": sent, "processed": c.counts.get("ShowError", 0)}


async def big_args_unknown_entity(t: Target, seconds: float, go: Go, calls: int = 400,
                                  **_: Any) -> dict[str, Any]:
    """``calls`` calls with a 1 MiB argument, each to a random (unknown) entity id; the
    dispatcher holds calls for entities it does not know yet."""
    c = await AttackClient.open(t)
    await c.wait_player("Account", timeout=30)
    c.count_calls()
    arg = bytes(MiB)
    rng = random.Random()
    alphabet = "0123456789abcdefghijklmnopqrstuv"
    t_go = await go()
    deadline = time.monotonic() + seconds
    sent = 0
    while sent < calls and not c.is_closed and time.monotonic() < deadline:
        if not c.writable.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(c.writable.wait(), max(0.0, deadline - time.monotonic()))
            continue
        eid = "".join(rng.choice(alphabet) for _ in range(16))
        c.send_raw(_call(eid, "Hello", arg))
        sent += 1
        await asyncio.sleep(0)
    all_sent_after = time.monotonic() - t_go
    with contextlib.suppress(TimeoutError):  # the rest of the window: does the server close it?
        await asyncio.wait_for(asyncio.shield(c.closed), max(0.0, deadline - time.monotonic()))
    out = c.report(t_go)
    c.close()
    return {**out, "sent": sent, "bytes_sent": sent * MiB,
            "all_sent_after_s": round(all_sent_after, 2) if sent == calls else None}


async def _tcp_partial(t: Target, seconds: float, go: Go, conns: int, size: int) -> dict[str, Any]:
    header = struct.pack("<I", 32 * MiB)
    body = header + bytes(size)
    opened: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    for _i in range(conns):
        with contextlib.suppress(OSError):
            opened.append(await asyncio.open_connection(t.host, t.tcp_port,
                                                        local_addr=(t.source, 0)))
    t_go = await go()
    deadline = t_go + seconds
    written = [0] * len(opened)
    closed_at: list[float | None] = [None] * len(opened)

    async def one(i: int) -> None:
        reader, writer = opened[i]
        try:
            view = memoryview(body)
            step = 256 * 1024
            for off in range(0, len(body), step):
                writer.write(view[off:off + step])
                await asyncio.wait_for(writer.drain(), max(0.01, deadline - time.monotonic()))
                written[i] = off + len(view[off:off + step])
            while True:  # then idle: read until the server closes us
                if not await asyncio.wait_for(reader.read(65536),
                                              max(0.01, deadline - time.monotonic())):
                    break
            closed_at[i] = time.monotonic()
        except TimeoutError:  # (an OSError: first) still open at the end of the window
            pass
        except OSError:  # reset or refused by the gate
            closed_at[i] = time.monotonic()

    await asyncio.gather(*(one(i) for i in range(len(opened))))
    for _, writer in opened:
        writer.close()
    closed = [c for c in closed_at if c is not None]
    return {"connections": conns, "opened": len(opened), "closed": len(closed),
            "first_closed_after_s": round(min(closed) - t_go, 2) if closed else None,
            "closed_after_s": round(max(closed) - t_go, 2) if closed else None,
            "bytes_sent": sum(written), "complete_sends": sum(w == len(body) for w in written)}


async def partial_frames_tcp(t: Target, seconds: float, go: Go, conns: int = 20,
                             **_: Any) -> dict[str, Any]:
    """``conns`` TCP connections, each sending 31 MiB of a 32 MiB packet, then idling."""
    return await _tcp_partial(t, seconds, go, conns, 31 * MiB)


async def partial_frames_ws(t: Target, seconds: float, go: Go, conns: int = 20,
                            message_kib: int = 128, **_: Any) -> dict[str, Any]:
    """``conns`` WebSocket connections, each sending 31 MiB of a 32 MiB packet in
    ``message_kib`` KiB messages (under the gate's ``ws_max_message_size``, 256 KiB by
    default: what is tested is the partial-packet budget, not the message limit), then idling."""
    from websockets.asyncio.client import ClientConnection, connect
    from websockets.exceptions import ConnectionClosed, InvalidHandshake

    url = f"ws://{t.host}:{t.ws_port}/ws"
    opened: list[ClientConnection] = []
    for _i in range(conns):
        with contextlib.suppress(OSError, InvalidHandshake, TimeoutError):
            opened.append(await asyncio.wait_for(
                connect(url, max_size=None, compression=None, local_addr=(t.source, 0)), 10))
    t_go = await go()
    deadline = t_go + seconds
    piece = bytes(message_kib * 1024)
    messages = [struct.pack("<I", 32 * MiB)] + [piece] * (31 * 1024 // message_kib)
    written = [0] * len(opened)
    closed_at: list[float | None] = [None] * len(opened)

    async def one(i: int) -> None:
        ws = opened[i]
        try:
            for m in messages:
                await asyncio.wait_for(ws.send(m), max(0.01, deadline - time.monotonic()))
                written[i] += len(m)
            while True:
                await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic()))
        except TimeoutError:  # (an OSError: first) still open at the end of the window
            pass
        except (ConnectionClosed, OSError):
            closed_at[i] = time.monotonic()

    await asyncio.gather(*(one(i) for i in range(len(opened))))
    for ws in opened:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(), 2)
    closed = [c for c in closed_at if c is not None]
    total = sum(len(m) for m in messages)
    return {"connections": conns, "opened": len(opened), "closed": len(closed),
            "first_closed_after_s": round(min(closed) - t_go, 2) if closed else None,
            "closed_after_s": round(max(closed) - t_go, 2) if closed else None,
            "bytes_sent": sum(written), "complete_sends": sum(w == total for w in written)}


def _raise_nofile(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    return soft


def _open_sockets(socks: list[socket.socket]) -> tuple[int, int]:
    """(still open, closed by the peer) among connected sockets; reads what is waiting."""
    alive = dead = 0
    for s in socks:
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    dead += 1
                    break
        except BlockingIOError:
            alive += 1
        except OSError:
            dead += 1
    return alive, dead


async def idle_connections(t: Target, seconds: float, go: Go, conns: int = 2000,
                           **_: Any) -> dict[str, Any]:
    """``conns`` TCP connections from one address, each sending one heartbeat then nothing."""
    limit = _raise_nofile(conns + 64)
    conns = min(conns, limit - 64)
    t_go = await go()
    socks: list[socket.socket] = []
    failed = 0
    poller = select.poll()
    pending: dict[int, socket.socket] = {}
    deadline = t_go + seconds
    for i in range(conns):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.bind((t.source, 0))
        except OSError:
            s.close()
            failed += conns - i
            break
        s.connect_ex((t.host, t.tcp_port))
        pending[s.fileno()] = s
        poller.register(s, select.POLLOUT)
        if len(pending) >= 200 or i == conns - 1:  # wait for this batch to connect
            wait_until = min(deadline, time.monotonic() + 10)
            while pending and time.monotonic() < wait_until:
                for fd, _ev in poller.poll(100):
                    p = pending.pop(fd)
                    poller.unregister(fd)
                    if p.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                        with contextlib.suppress(OSError):
                            p.send(HEARTBEAT)
                        socks.append(p)
                    else:
                        failed += 1
                        p.close()
                await asyncio.sleep(0)
            for fd, p in pending.items():  # never connected
                poller.unregister(fd)
                p.close()
                failed += 1
            pending.clear()
        if time.monotonic() >= deadline:
            failed += conns - i - 1
            break
    connected_after = time.monotonic() - t_go
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))
    alive, dead = _open_sockets(socks)
    for s in socks:
        s.close()
    return {"connections": conns, "nofile_limit": limit, "connected": len(socks),
            "connect_failed": failed, "open_at_end": alive, "closed": dead,
            "connecting_took_s": round(connected_after, 2)}


def kcp_first_datagram(conv: int) -> bytes:
    """What GoWorld's Go bot sends first over KCP: an FEC data shard holding PUSH sn 0 with
    the 2001 heartbeat frame (38 bytes)."""
    segment = _KCP_SEGMENT.pack(conv, 81, 0, 32, 0, 0, 0, len(HEARTBEAT)) + HEARTBEAT
    return struct.pack("<IHH", 0, 0xF1, len(segment) + 2) + segment


def bytes_waiting(socks: list[socket.socket]) -> dict[tuple[str, int], int]:
    """The bytes each (never read) UDP socket has received, by its own address."""
    back: dict[tuple[str, int], int] = {}
    for s in socks:
        s.setblocking(False)
        total = 0
        while True:
            try:
                total += len(s.recv(65536))
            except BlockingIOError:
                break
        back[s.getsockname()] = total
    return back


async def kcp_spoof(t: Target, seconds: float, go: Go, sessions: int = 1000,
                    **_: Any) -> dict[str, Any]:
    """``sessions`` one-datagram KCP openings from sockets that never read nor acknowledge (a
    forged source would not); at the end, what came back to each socket."""
    _raise_nofile(sessions + 64)
    rng = random.Random()
    t_go = await go()
    socks: list[socket.socket] = []
    sent: dict[tuple[str, int], int] = {}
    try:
        for n in range(sessions):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            socks.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            s.bind((t.source, 0))
            datagram = kcp_first_datagram(rng.getrandbits(32))
            s.sendto(datagram, (t.host, t.tcp_port))
            sent[s.getsockname()] = len(datagram)
            if n % 50 == 49:
                await asyncio.sleep(0.01)  # do not overflow the server's socket buffer
        await asyncio.sleep(max(0.0, t_go + seconds - time.monotonic()))
        back = bytes_waiting(socks)
    finally:
        for s in socks:
            s.close()
    worst = max((back[a] / sent[a] for a in sent), default=0.0)
    return {"sessions": sessions, "bytes_sent": sum(sent.values()), "bytes_back": sum(back.values()),
            "sockets_answered": sum(1 for v in back.values() if v),
            "worst_ratio_per_socket": round(worst, 3),
            "ratio_total": round(sum(back.values()) / max(1, sum(sent.values())), 3)}


async def sync_other_entity(t: Target, seconds: float, go: Go, victims: str = "",
                            rate: float = 200.0, **_: Any) -> dict[str, Any]:
    """A logged-in player sends SYNC_POSITION_YAW_FROM_CLIENT records naming other players'
    entities (``victims``, comma separated), ``rate`` per second."""
    ids = [v for v in victims.split(",") if v]
    if not ids:
        raise ValueError("sync_other_entity needs --victims")
    c = await AttackClient.open(t)
    await c.login(f"mallory{os.getpid()}")
    c.count_calls()
    packet = b"".join(codec.encode(SyncPositionYawFromClient(v, 666.0, 0.0, 666.0, 1.0))
                      for v in ids)
    t_go = await go()
    sent = await c.flood(packet, seconds, rate=rate / len(ids), batch=1) * len(ids)
    out = c.report(t_go)
    c.close()
    return {**out, "sent": sent}


async def stalled_game_calls(t: Target, seconds: float, go: Go, rate: float = 20_000.0,
                             clients: int = 1, **_: Any) -> dict[str, Any]:
    """``clients`` logged-in players send ``rate`` SendChat calls per second between them (each
    to a room of its own) while the harness holds the game stopped (SIGSTOP), as far as TCP
    lets them. With one client the gate's per-connection limit stops most of it; with many,
    each under that limit, what waits for the game is the dispatcher's to bound."""
    tag = os.getpid()
    cs = [await AttackClient.open(t) for _i in range(clients)]
    avatars = await asyncio.gather(*(c.login(f"mallory{tag}n{i}", room=f"spam{tag}n{i}")
                                     for i, c in enumerate(cs)))
    for c in cs:
        c.count_calls()
    t_go = await go()
    sent = await asyncio.gather(*(
        c.flood(_call(a, "SendChat", "spam"), seconds, rate=rate / clients,
                batch=max(1, min(200, round(rate / clients / 100))))
        for c, a in zip(cs, avatars, strict=True)))
    await asyncio.sleep(3.0)  # the game has resumed: what did it answer in the end?
    out = [c.report(t_go) for c in cs]
    processed = sum(c.counts.get("OnRecvChat", 0) for c in cs)
    for c in cs:
        c.close()
    closed = [o["closed_after_s"] for o in out if o["closed"]]
    return {"clients": clients, "closed": len(closed) == clients if clients == 1 else len(closed),
            "closed_after_s": max(closed) if closed else None,
            "bytes_in": sum(o["bytes_in"] for o in out), "sent": sum(sent),
            "processed": processed, "wanted": round(rate * seconds)}


async def stalled_game_many_clients(t: Target, seconds: float, go: Go, rate: float = 20_000.0,
                                    clients: int = 50, **_: Any) -> dict[str, Any]:
    """:func:`stalled_game_calls` spread over ``clients`` connections, each under the gate's
    packet limit (20,000/s over 50: 400/s each, the default limit being 500/s)."""
    return await stalled_game_calls(t, seconds, go, rate=rate, clients=clients)


Attack = Callable[..., Awaitable[dict[str, Any]]]
ATTACKS: dict[str, Attack] = {
    "chat_flood": chat_flood,
    "refused_method_flood": refused_method_flood,
    "partial_frames_tcp": partial_frames_tcp,
    "partial_frames_ws": partial_frames_ws,
    "idle_connections": idle_connections,
    "big_args_unknown_entity": big_args_unknown_entity,
    "login_flood": login_flood,
    "kcp_spoof": kcp_spoof,
    "sync_other_entity": sync_other_entity,
    "stalled_game_calls": stalled_game_calls,
    "stalled_game_many_clients": stalled_game_many_clients,
}


# ---- the attacker process ----------------------------------------------------------------------


async def _attacker_main(name: str, target: Target, seconds: float, options: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()

    async def go() -> float:
        print("ready", flush=True)
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if line.strip() != "go":
            raise SystemExit("the harness went away before go")
        return time.monotonic()

    t0 = time.monotonic()
    result = await ATTACKS[name](target, seconds, go, **options)
    result["attack_s"] = round(time.monotonic() - t0, 2)
    print("RESULT " + json.dumps(result), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="One hostile client against a gate (issue 14).")
    parser.add_argument("attack", choices=sorted(ATTACKS))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True, help="the gate's TCP (and KCP) port")
    parser.add_argument("--ws-port", type=int, default=0)
    parser.add_argument("--source", default=ATTACKER)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="attack options (conns, calls, sessions, victims, rate)")
    args = parser.parse_args(argv)
    options: dict[str, Any] = {}
    for kv in args.option:
        key, _, value = kv.partition("=")
        options[key] = value if key == "victims" else float(value) if "." in value else int(value)
    target = Target(args.host, args.port, args.ws_port, args.source)
    asyncio.run(_attacker_main(args.attack, target, args.seconds, options))


# ---- the harness: honest clients, RSS and logs, the attacker process ------------------------


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


class HonestChat:
    """``n`` honest players in one room, each chatting every :data:`CHAT_INTERVAL` s.

    ``sent[(i, seq)]`` is when player i sent line seq; ``rtt[(i, seq)]`` its round trip (to
    its own copy); ``got[j]`` the lines player j received. :meth:`lost` counts (line, player)
    pairs not received.
    """

    def __init__(self, host: str, port: int, prefix: str, n: int = 4) -> None:
        self.host, self.port, self.prefix, self.n = host, port, prefix, n
        self.clients: list[AttackClient] = []
        self.avatars: list[str] = []
        self.sent: dict[tuple[int, int], float] = {}
        self.rtt: dict[tuple[int, int], float] = {}
        self.got: list[set[tuple[int, int]]] = [set() for _ in range(n)]
        self.strangers = 0  # lines from outside the honest set (an attacker's in our room)
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    async def start(self) -> None:
        target = Target(self.host, self.port, 0, HONEST)
        for i in range(self.n):
            c = await AttackClient.open(target)
            self.clients.append(c)
            self.avatars.append(await c.login(f"{self.prefix}{i}", room=ROOM))
            c.count_calls()
            c.on_call = self._receiver(i)
        self._task = asyncio.create_task(self._chat())

    def _receiver(self, j: int) -> Callable[[ServerCall], None]:
        def on_call(call: ServerCall) -> None:
            if call.method != "OnRecvChat" or len(call.args) != 2:
                return
            text = str(call.args[1])
            try:
                tag, seq = text.split(":")
                i = int(tag[1:])
                key = (i, int(seq))
            except ValueError:
                self.strangers += 1
                return
            if key not in self.sent:
                self.strangers += 1
                return
            self.got[j].add(key)
            if i == j and key not in self.rtt:
                self.rtt[key] = time.monotonic() - self.sent[key]

        return on_call

    async def _chat(self) -> None:
        seq = 0
        while not self._stop.is_set():
            for i, c in enumerate(self.clients):
                if not c.is_closed:
                    self.sent[(i, seq)] = time.monotonic()
                    c.call(self.avatars[i], "SendChat", f"h{i}:{seq}")
            seq += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), CHAT_INTERVAL)

    def rtts_between(self, t0: float, t1: float) -> list[float]:
        """Round trips of the lines sent in [t0, t1) (lines not back yet are left out)."""
        return [self.rtt[k] for k, t in self.sent.items() if t0 <= t < t1 and k in self.rtt]

    def missing(self) -> int:
        return sum(1 for k in self.sent for j in range(self.n) if k not in self.got[j])

    async def stop(self, drain: float) -> None:
        """Stop chatting; wait up to ``drain`` s for every line to arrive everywhere."""
        self._stop.set()
        if self._task is not None:
            await self._task
        deadline = time.monotonic() + drain
        while self.missing() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)

    async def close(self) -> None:
        self._stop.set()
        await asyncio.gather(*(c.aclose() for c in self.clients), return_exceptions=True)


def cluster_pids(run_dir: Path) -> dict[str, int]:
    """``{"dispatcher1": pid, "game1": pid, "gate1": pid}`` from ``.goworld/*.pid``."""
    return {p.stem: int(p.read_text()) for p in sorted((run_dir / ".goworld").glob("*.pid"))}


def log_bytes(directory: Path) -> int:
    """Bytes in the cluster's logs: ``*.log`` (and rotations) and ``.goworld/*.stderr``."""
    total = 0
    for p in [*directory.glob("*.log*"), *(directory / ".goworld").glob("*.stderr*")]:
        with contextlib.suppress(OSError):
            total += p.stat().st_size
    return total


@dataclass
class Outcome:
    """What one attack did: to the honest players, to the cluster, and to the attacker."""

    attack: str
    seconds: float
    attacker: dict[str, Any]
    attacker_rc: int | None
    honest_sent: int
    honest_lost: int  # (line, player) pairs never delivered
    rtt_before: list[float]
    rtt_during: list[float]
    rtt_after: list[float]
    rss_before: dict[str, int]
    rss_peak: dict[str, int]
    rss_end: dict[str, int]
    log_growth: int
    newcomer: str  # "ok", or why a player connecting during the attack could not log in
    strangers: int
    notes: list[str] = field(default_factory=list)
    newcomer_s: float = math.nan  # from its connect to its avatar in the room
    cpu_during: dict[str, float] = field(default_factory=dict)  # CPU seconds per process, "during"

    def growth(self, proc: str) -> int:
        return self.rss_peak.get(proc, 0) - self.rss_before.get(proc, 0)

    def summary(self) -> dict[str, Any]:
        ms = 1000.0
        return {
            "attack": self.attack, "seconds": self.seconds,
            "p50_before_ms": percentile(self.rtt_before, 0.5) * ms,
            "p99_before_ms": percentile(self.rtt_before, 0.99) * ms,
            "p50_during_ms": percentile(self.rtt_during, 0.5) * ms,
            "p99_during_ms": percentile(self.rtt_during, 0.99) * ms,
            "max_during_ms": max(self.rtt_during, default=math.nan) * ms,
            "p99_after_ms": percentile(self.rtt_after, 0.99) * ms,
            "honest_sent": self.honest_sent, "honest_lost": self.honest_lost,
            "rss_before_mb": {k: round(v / MiB, 1) for k, v in self.rss_before.items()},
            "rss_peak_mb": {k: round(v / MiB, 1) for k, v in self.rss_peak.items()},
            "rss_growth_mb": {k: round(self.growth(k) / MiB, 1) for k in self.rss_peak},
            "log_growth_mb": round(self.log_growth / MiB, 2), "newcomer": self.newcomer,
            "newcomer_s": round(self.newcomer_s, 2),
            "cpu_during_s": {k: round(v, 2) for k, v in self.cpu_during.items()},
            "attacker": self.attacker, "attacker_rc": self.attacker_rc, "notes": self.notes,
        }

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


async def _newcomer(host: str, port: int, name: str, timeout: float) -> tuple[str, float]:
    """A player who arrives during the attack: connects, registers, logs in, joins the room.
    ("ok" or what went wrong, seconds it took)."""
    t0 = time.monotonic()
    return await _arrive(host, port, name, timeout), time.monotonic() - t0


async def _arrive(host: str, port: int, name: str, timeout: float) -> str:
    try:
        async with asyncio.timeout(timeout):
            c = await AttackClient.open(Target(host, port, 0, HONEST))
            try:
                await c.login(name, room=ROOM)
            finally:
                await c.aclose()
        return "ok"
    except TimeoutError:
        return f"no avatar within {timeout:g} s"
    except Exception as exc:  # report, do not fail the harness
        return f"{type(exc).__name__}: {exc}"[:200]


async def _sample_rss(pids: dict[str, int], peak: dict[str, int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        for k, pid in pids.items():
            with contextlib.suppress(OSError):
                peak[k] = max(peak.get(k, 0), procstat.rss_bytes(pid))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)


def _cpu(pids: dict[str, int]) -> dict[str, float]:
    out = {}
    for k, pid in pids.items():
        with contextlib.suppress(OSError):
            out[k] = procstat.cpu_seconds(pid)
    return out


def _rss(pids: dict[str, int]) -> dict[str, int]:
    out = {}
    for k, pid in pids.items():
        with contextlib.suppress(OSError):
            out[k] = procstat.rss_bytes(pid)
    return out


async def run_attack(
    name: str,
    *,
    cluster_dir: Path,
    host: str,
    tcp_port: int,
    ws_port: int,
    seconds: float,
    before: float = 3.0,
    after: float = 2.0,
    drain: float = 30.0,
    options: dict[str, Any] | None = None,
    honest_prefix: str | None = None,
    stall: str | None = None,
    newcomer_timeout: float = 15.0,
) -> Outcome:
    """Run attack ``name`` against the cluster in ``cluster_dir`` with honest players measured.

    Timeline: honest players log in and chat for ``before`` s (the baseline); the attacker sets
    up, then attacks for ``seconds`` (``stall``: the process, e.g. ``"game1"``, is held with
    SIGSTOP for exactly that window, and always resumed); "during" lasts until the attacker has
    exited and at least ``seconds`` have passed; a newcomer logs in half-way through;
    honest chat goes on ``after`` s; then every honest line gets ``drain`` s to arrive.
    """
    options = dict(options or {})
    pids = cluster_pids(cluster_dir)
    prefix = honest_prefix or f"h{os.getpid()}x{random.getrandbits(24):x}{name[:4]}"
    honest = HonestChat(host, tcp_port, prefix)
    await honest.start()
    proc: asyncio.subprocess.Process | None = None
    stopped_pid: int | None = None
    peak: dict[str, int] = {}
    stop_sampling = asyncio.Event()
    sampler: asyncio.Task[None] | None = None
    newcomer_task: asyncio.Task[tuple[str, float]] | None = None
    notes: list[str] = []
    try:
        t_before = time.monotonic()
        await asyncio.sleep(before)
        if name == "sync_other_entity" and "victims" not in options:
            options["victims"] = ",".join(honest.avatars)
        cmd = [sys.executable, "-m", "goworld.bench.attacks", name, "--host", host,
               "--port", str(tcp_port), "--ws-port", str(ws_port), "--seconds", str(seconds),
               *(f"--option={k}={v}" for k, v in options.items())]
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, limit=1 << 20)
        assert proc.stdout is not None and proc.stdin is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        if line.strip() != b"ready":
            err = await proc.stderr.read() if proc.stderr else b""
            raise RuntimeError(f"attacker {name} did not get ready: {line!r} {err[-2000:]!r}")
        rss_before = _rss(pids)
        logs_before = log_bytes(cluster_dir)
        peak = dict(rss_before)
        sampler = asyncio.create_task(_sample_rss(pids, peak, stop_sampling))
        if stall:
            stopped_pid = pids[stall]
            os.kill(stopped_pid, signal.SIGSTOP)
        t_attack = time.monotonic()
        cpu_before = _cpu(pids)
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
        newcomer_task = asyncio.create_task(_late(
            seconds / 2, lambda: _newcomer(host, tcp_port, f"{prefix}new", newcomer_timeout)))
        if stall:
            await asyncio.sleep(seconds)
            os.kill(stopped_pid or 0, signal.SIGCONT)
            stopped_pid = None
        out, err = await asyncio.wait_for(proc.communicate(), seconds + 180)
        # "During" is the whole attack window, even when the attacker was shut out at once.
        await asyncio.sleep(max(0.0, t_attack + seconds - time.monotonic()))
        t_end = time.monotonic()
        cpu_end = _cpu(pids)
        attacker: dict[str, Any] = {}
        for raw in out.decode(errors="replace").splitlines():
            if raw.startswith("RESULT "):
                attacker = json.loads(raw[7:])
        if not attacker:
            notes.append(f"the attacker reported nothing (exit {proc.returncode}): "
                         f"{err.decode(errors='replace')[-500:]}")
        await asyncio.sleep(after)
        t_after = time.monotonic()
        newcomer, newcomer_s = await newcomer_task
        await honest.stop(drain)
        stop_sampling.set()
        await sampler
        return Outcome(
            attack=name, seconds=seconds, attacker=attacker, attacker_rc=proc.returncode,
            honest_sent=len(honest.sent), honest_lost=honest.missing(),
            rtt_before=honest.rtts_between(t_before, t_attack),
            rtt_during=honest.rtts_between(t_attack, t_end),
            rtt_after=honest.rtts_between(t_end, t_after),
            rss_before=rss_before, rss_peak=peak, rss_end=_rss(pids),
            log_growth=log_bytes(cluster_dir) - logs_before, newcomer=newcomer,
            newcomer_s=newcomer_s,
            cpu_during={k: cpu_end[k] - cpu_before[k] for k in cpu_end if k in cpu_before},
            strangers=honest.strangers, notes=notes,
        )
    finally:
        if stopped_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(stopped_pid, signal.SIGCONT)
        stop_sampling.set()
        if sampler is not None and not sampler.done():
            sampler.cancel()
        if newcomer_task is not None and not newcomer_task.done():
            newcomer_task.cancel()
            with contextlib.suppress(BaseException):
                await newcomer_task
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        await honest.close()


async def _late(delay: float, start: Callable[[], Awaitable[T]]) -> T:
    await asyncio.sleep(delay)
    return await start()


if __name__ == "__main__":
    main()
