"""Routing throughput of one dispatcher process (not a test; prints figures).

Starts a real dispatcher (`python -m dispatcher`) and connects two synthetic games to it over
gRPC from this process. Each game owns a set of entities and floods CALL_ENTITY_METHOD
envelopes at the other game's entities, keeping at most --window calls in flight. Two kinds of
sender (--senders):

- ``link``: games built on the same DispatcherLink real games use, one Envelope object per
  call. This is what a game pays; on 2 shared cores the senders, not the dispatcher, are the
  limit.
- ``raw``: a load generator that writes pre-encoded batches and only counts what comes back,
  so nearly all the CPU it leaves goes to the dispatcher under test.

Prints delivered messages/s, the dispatcher's CPU per message (from /proc) and this process's
CPU per message; ``--json FILE`` also writes the figures as JSON.

Usage: .venv/bin/python scripts/bench_routing.py [--seconds 10] [--window 20000] [--repeat 3]
       [--senders link,raw] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402

from goworld.bench.procstat import cpu_seconds  # noqa: E402
from goworld.cluster.envelopes import Batch, Envelope, pack  # noqa: E402
from goworld.cluster.link import DispatcherLink  # noqa: E402
from goworld.cluster.streams import GRPC_OPTIONS  # noqa: E402
from goworld.proto import codec  # noqa: E402
from goworld.proto.ids import new_entity_id  # noqa: E402
from goworld.proto.msgtypes import MsgType  # noqa: E402
from goworld.testing import write_ini  # noqa: E402

ARGS = codec.encode_args(("hello", 42))


def hello(game_id: int, entities: list[str]) -> Envelope:
    info = {"reconnect": False, "restore": False, "ban_boot": True, "eids": entities}
    return Envelope(msgtype=MsgType.SET_GAME_ID, game_id=game_id, payload=pack(info))


class LinkGame:
    """A synthetic game on DispatcherLink: one Envelope per call, as a real game sends."""

    def __init__(self, game_id: int, address: str, n_entities: int) -> None:
        self.entities = [new_entity_id() for _ in range(n_entities)]
        self.received = 0
        self.sent = 0
        self.link = DispatcherLink(
            1, address, hello=lambda: hello(game_id, self.entities),
            on_message=self.on_message, reconnect=False,
        )

    async def start(self) -> None:
        self.link.start()
        await self.link.connected.wait()

    def on_message(self, dispatcher_id: int, env: Envelope) -> None:
        if env.msgtype == MsgType.CALL_ENTITY_METHOD:
            self.received += 1

    def send_burst(self, targets: list[str], start: int, count: int) -> None:
        send = self.link.send
        n = len(targets)
        for i in range(start, start + count):
            send(Envelope(msgtype=MsgType.CALL_ENTITY_METHOD, entity_id=targets[i % n],
                          name="Hit", payload=ARGS))
        self.sent += count

    async def close(self) -> None:
        await self.link.close(flush_timeout=1.0)


class RawGame:
    """A load generator: writes pre-encoded batches, counts received envelopes without
    building Python objects for them."""

    def __init__(self, game_id: int, address: str, n_entities: int) -> None:
        self.game_id = game_id
        self.address = address
        self.entities = [new_entity_id() for _ in range(n_entities)]
        self.received = 0
        self.sent = 0
        self._bursts: dict[int, bytes] = {}
        self._channel: grpc.aio.Channel | None = None
        self._call = None
        self._reader: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._queue: list[bytes] = []
        self._wakeup = asyncio.Event()

    def _count(self, data: bytes) -> int:
        n = len(Batch.FromString(data).messages)
        self.received += n
        return n

    async def start(self) -> None:
        self._channel = grpc.aio.insecure_channel(self.address, options=GRPC_OPTIONS)
        await self._channel.channel_ready()
        connect = self._channel.stream_stream(
            "/goworld.cluster.Dispatcher/Connect",
            request_serializer=lambda b: b,
            response_deserializer=self._count,
        )
        self._call = connect()
        await self._call.write(Batch(messages=[hello(self.game_id, self.entities)]).SerializeToString())
        self._reader = asyncio.create_task(self._read())
        self._writer = asyncio.create_task(self._write())
        await asyncio.sleep(0.5)  # the SET_GAME_ID_ACK and the routes are in place

    async def _read(self) -> None:
        while await self._call.read() is not grpc.aio.EOF:
            pass

    def send_burst(self, targets: list[str], start: int, count: int) -> None:
        key = (start % len(targets)) if len(targets) % count == 0 else start
        data = self._bursts.get(key)
        if data is None:
            n = len(targets)
            data = Batch(messages=[
                Envelope(msgtype=MsgType.CALL_ENTITY_METHOD, entity_id=targets[i % n], name="Hit",
                         payload=ARGS)
                for i in range(start, start + count)
            ]).SerializeToString()
            if len(targets) % count == 0:
                self._bursts[key] = data
        self._queue.append(data)
        self._wakeup.set()
        self.sent += count

    async def _write(self) -> None:
        # One write in flight per stream (gRPC's rule). Serialized Batches concatenate into
        # one Batch, so everything queued meanwhile goes out as a single write.
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if self._queue:
                data = b"".join(self._queue)
                self._queue.clear()
                await self._call.write(data)

    async def close(self) -> None:
        for task in (self._reader, self._writer):
            if task is not None:
                task.cancel()
        if self._call is not None:
            self._call.cancel()
        if self._channel is not None:
            await self._channel.close()


async def flood(a, b, seconds: float, window: int) -> tuple[int, float]:
    """a and b call each other's entities for ``seconds``; returns (delivered, elapsed)."""
    stop = time.monotonic() + seconds
    burst = 250

    async def pump(src, dst) -> None:
        targets = dst.entities
        i = 0
        while time.monotonic() < stop:
            if src.sent - dst.received >= window:
                await asyncio.sleep(0.001)
                continue
            src.send_burst(targets, i, burst)
            i += burst
            await asyncio.sleep(0)

    before = a.received + b.received
    t0 = time.monotonic()
    await asyncio.gather(pump(a, b), pump(b, a))
    elapsed = time.monotonic() - t0
    return a.received + b.received - before, elapsed


async def measure(kind: str, address: str, proc: subprocess.Popen, args: argparse.Namespace,
                  game_ids: tuple[int, int]) -> dict[str, float]:
    cls = {"link": LinkGame, "raw": RawGame}[kind]
    g1, g2 = cls(game_ids[0], address, 1000), cls(game_ids[1], address, 1000)
    await asyncio.wait_for(asyncio.gather(g1.start(), g2.start()), 30)
    try:
        await flood(g1, g2, 1.0, args.window)  # warm-up
        rates, disp_us, self_us = [], [], []
        for _ in range(args.repeat):
            d0, s0 = cpu_seconds(proc.pid), time.process_time()
            delivered, elapsed = await flood(g1, g2, args.seconds, args.window)
            d1, s1 = cpu_seconds(proc.pid), time.process_time()
            if not delivered:
                raise SystemExit(f"{kind} senders: no message came back through the dispatcher")
            rates.append(delivered / elapsed)
            disp_us.append((d1 - d0) / delivered * 1e6)
            self_us.append((s1 - s0) / delivered * 1e6)
    finally:
        await g1.close()
        await g2.close()
    return {
        "messages_per_s": statistics.median(rates),
        "messages_per_s_min": min(rates),
        "messages_per_s_max": max(rates),
        "dispatcher_us_per_msg": statistics.median(disp_us),
        "senders_us_per_msg": statistics.median(self_us),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--window", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--senders", default="link,raw",
                        help="comma-separated sender kinds to measure: link, raw")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()
    kinds = [k for k in args.senders.split(",") if k]
    if not kinds or set(kinds) - {"link", "raw"}:
        parser.error("--senders takes link and/or raw")
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        ports = write_ini(Path(tmp), dispatchers=1, games=2 * len(kinds), gates=1)
        ini = Path(tmp) / "goworld.ini"
        log = Path(tmp) / "dispatcher1.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "dispatcher", "-dispid", "1", "-configfile", str(ini)],
            cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(200):
                if log.exists() and "DISPATCHER STARTED" in log.read_text():
                    break
                if proc.poll() is not None:
                    raise SystemExit(f"the dispatcher exited {proc.returncode} before starting")
                await asyncio.sleep(0.05)
            else:
                raise SystemExit("the dispatcher did not start within 10 s")
            address = f"127.0.0.1:{ports['dispatcher'][0]}"
            print(f"# 1 dispatcher, 2 synthetic games in this process, {os.cpu_count()} cores, "
                  f"{args.seconds:g} s x {args.repeat}, window {args.window}")
            for n, kind in enumerate(kinds):
                r = results[kind] = await measure(kind, address, proc, args, (2 * n + 1, 2 * n + 2))
                print(f"[{kind} senders]")
                print(f"routed messages/s        {r['messages_per_s']:,.0f}  "
                      f"({r['messages_per_s_min']:,.0f}..{r['messages_per_s_max']:,.0f})")
                print(f"dispatcher CPU per msg   {r['dispatcher_us_per_msg']:.2f} us  "
                      f"(=> {1e6 / r['dispatcher_us_per_msg']:,.0f} msgs/s per dispatcher core)")
                print(f"senders CPU per msg      {r['senders_us_per_msg']:.2f} us (this process)")
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    if args.json:
        Path(args.json).write_text(json.dumps({"cores": os.cpu_count(), "seconds": args.seconds,
                                               "repeat": args.repeat, "window": args.window,
                                               "senders": results}, indent=1))


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
