"""Lockstep rooms: rooms x players at 30 Hz until frame lateness p99 exceeds 10 ms (not a test).

Starts tests/apps/cluster_app (1 dispatcher + 1 game + 1 gate, on free ports in a temporary
directory) with a ``[lockstep]`` section, so ``goworld start`` runs the lockstep process, then
ramps the number of rooms (``--steps``, cumulative: each step adds rooms to the running ones).
Each room is made through the HTTP room API (``GET /create?room=R&member=1,..,P``) and played
by ``--players`` sessions over plain KCP from this process (the load generator, a separate
process from the server): Connect, Ready, then one Input per player every ``--input-ms`` (a
typical RTS command rate, phases spread) and a Heartbeat every ``--heartbeat-ms``.

The sessions are not full clients (goworld.lockstep.client): each is a minimal KCP endpoint on
its own UDP socket (the server keys sessions by address) that acknowledges every segment at
once, reassembles the stream and only counts packets, so 1000s of them cost little. One player
per room (seat 1) is *sampled*: its socket has SO_TIMESTAMPNS, so the kernel stamps each
datagram when it arrives, and every S2C_FrameMsg is kept with that time.

Figures per step (median over ``--repeat`` windows of ``--window`` s each; max: the largest):

* **lateness** of a frame message: its arrival minus its due time. The message whose last
  FrameData is frame F is due at S + F / tick_hz, where S (per sampled player) is the smallest
  ``arrival - F / tick_hz`` seen so far: lateness 0 is the earliest any message of that room
  arrived relative to its schedule; anything later is the server's delay (loop busy, ticks of
  other rooms first, send queues). Kernel stamps leave this process's own loop delays out.
* **interval jitter**: |gap between consecutive messages of a sampled player - the gap their
  frame ids say| (the issue's frame-interval jitter; it misses a slow drift, lateness does not).
* server CPU (the lockstep process, /proc), rooms per core = rooms / its CPU fraction, frame
  messages/s delivered to all players, the server's own tick lateness p99 (``/status``
  ``tick_late_p99_ms``: how late its clock ran the due rooms), the load generator's CPU and
  its loop lag (a 10 ms pacer's overshoot, p99), and the CPU every other process used (the
  machine is shared: others' work shows up as lateness).

The ramp stops after the first step whose lateness or interval jitter p99 passes
``--limit-ms``, or when the load generator is saturated (then the figure is a lower bound).
The machine is shared: a step over the limit while other processes used more than half a core
is measured again (at most ``--retries`` times) and the measurement with the least other work
is kept.

Usage: .venv/bin/python scripts/bench_lockstep.py [--steps 10,25,50,100,150,200,300,400,600,800]
       [--players 4] [--window 5] [--repeat 3] [--tick-hz 30] [--input-ms 100]
       [--heartbeat-ms 1000] [--limit-ms 10] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import secrets
import socket
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from goworld.bench.procstat import cpu_seconds, machine_cpu_seconds  # noqa: E402
from goworld.lockstep import lockstep_pb2 as pb  # noqa: E402
from goworld.lockstep.codec import MsgId, encode_message  # noqa: E402
from goworld.testing import ClusterRunner, free_port  # noqa: E402

APP = ROOT / "tests" / "apps" / "cluster_app"
#: Linux's SO_TIMESTAMPNS (= SCM_TIMESTAMPNS); Python's socket module does not name it.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_STAMP = struct.Struct("qq")  # struct timespec
_SEG = struct.Struct("<IBBHIIII")  # KCP segment header: conv cmd frg wnd ts sn una len
_HEAD = struct.Struct(">HB")  # lockstep packet header: body length, id
_PUSH, _ACK = 81, 82
_WND = 1024  # receive window we advertise (we deliver at once, it never fills)
_RTO = 0.2  # s before one of our segments is sent again
#: Sessions in handshake at once: the server keeps at most 64 unverified per source IP.
_HANDSHAKES = 48
_FRAME, _CONNECT, _START, _CLOSE = (int(MsgId.MSG_Frame), int(MsgId.MSG_Connect),
                                    int(MsgId.MSG_Start), int(MsgId.MSG_Close))


def _ms() -> int:
    return (time.monotonic_ns() // 1_000_000) & 0xFFFFFFFF


class Counts:
    def __init__(self) -> None:
        self.frames = 0  # S2C frame messages, every player
        self.resent = 0  # our segments sent again
        self.send_errors = 0
        self.refused = 0  # Connect answered with an error
        self.closed = 0  # MSG_Close seen


class Player:
    """One KCP session: acknowledges, reassembles, counts; keeps frame arrivals if sampled."""

    __slots__ = ("sock", "conv", "snd_nxt", "rcv_nxt", "unacked", "ooo", "buf", "counts",
                 "sampled", "arrivals", "connected", "started", "baseline", "fd", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, addr: tuple[str, int], counts: Counts,
                 sampled: bool) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        if sampled:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.connect(addr)
        self.sock = sock
        self.fd = sock.fileno()
        self.loop = loop
        self.conv = secrets.randbits(32)
        self.snd_nxt = 0
        self.rcv_nxt = 0
        self.unacked: dict[int, list[Any]] = {}  # sn -> [segment, last sent (loop time)]
        self.ooo: dict[int, bytes] = {}  # segments received ahead of rcv_nxt
        self.buf = b""
        self.counts = counts
        self.sampled = sampled
        self.arrivals: list[tuple[float, bytes]] = []  # (kernel arrival, monotonic s; body)
        self.connected = False
        self.started = False
        self.baseline = float("inf")  # smallest arrival - frame / tick_hz so far
        loop.add_reader(self.fd, self._readable)

    def close(self) -> None:
        self.loop.remove_reader(self.fd)
        self.sock.close()

    # -- sending -----------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        sn = self.snd_nxt
        self.snd_nxt = (sn + 1) & 0xFFFFFFFF
        segment = _SEG.pack(self.conv, _PUSH, 0, _WND, _ms(), sn, self.rcv_nxt, len(data)) + data
        self.unacked[sn] = [segment, self.loop.time()]
        self._write(segment)

    def _write(self, datagram: bytes) -> None:
        try:
            self.sock.send(datagram)
        except OSError:  # buffer full or the server gone: KCP sends it again
            self.counts.send_errors += 1

    def resend(self, now: float) -> None:
        for entry in self.unacked.values():
            if now - entry[1] > _RTO:
                entry[1] = now
                self.counts.resent += 1
                self._write(entry[0])

    # -- receiving ---------------------------------------------------------------------------

    def _readable(self) -> None:
        sock = self.sock
        if self.sampled:
            shift = time.time() - time.monotonic()  # kernel stamps are CLOCK_REALTIME
            while True:
                try:
                    data, anc, _, _ = sock.recvmsg(2048, 64)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    return
                stamp = time.monotonic()
                for level, kind, raw in anc:
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                        sec, nsec = _STAMP.unpack_from(raw)
                        stamp = sec + nsec * 1e-9 - shift
                self._datagram(data, stamp)
        else:
            while True:
                try:
                    data = sock.recv(2048)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    return
                self._datagram(data, 0.0)

    def _datagram(self, data: bytes, stamp: float) -> None:
        acks: list[tuple[int, int]] = []
        offset, size = 0, len(data)
        unacked = self.unacked
        while offset + 24 <= size:
            conv, cmd, _frg, _wnd, ts, sn, una, length = _SEG.unpack_from(data, offset)
            body = data[offset + 24 : offset + 24 + length]
            offset += 24 + length
            if conv != self.conv:
                continue
            if unacked:
                for old in [s for s in unacked if (s - una) & 0x80000000]:
                    del unacked[old]
            if cmd == _ACK:
                unacked.pop(sn, None)
            elif cmd == _PUSH:
                acks.append((ts, sn))
                ahead = (sn - self.rcv_nxt) & 0xFFFFFFFF
                if ahead == 0:
                    self._stream(body, stamp)
                    self.rcv_nxt = nxt = (self.rcv_nxt + 1) & 0xFFFFFFFF
                    while nxt in self.ooo:
                        self._stream(self.ooo.pop(nxt), stamp)
                        self.rcv_nxt = nxt = (nxt + 1) & 0xFFFFFFFF
                elif ahead < _WND:
                    self.ooo[sn] = body
                # else: already received (or the server's cookie): acknowledged only
        if acks:
            una = self.rcv_nxt
            conv = self.conv
            self._write(b"".join(_SEG.pack(conv, _ACK, 0, _WND, ts, sn, una, 0) for ts, sn in acks))

    def _stream(self, data: bytes, stamp: float) -> None:
        if not data:
            return
        buf = self.buf + data if self.buf else data
        pos, end = 0, len(buf)
        while pos + 3 <= end:
            length, msg_id = _HEAD.unpack_from(buf, pos)
            if pos + 3 + length > end:
                break
            if msg_id == _FRAME:
                self.counts.frames += 1
                if self.sampled:
                    self.arrivals.append((stamp, buf[pos + 3 : pos + 3 + length]))
            elif msg_id == _CONNECT:
                reply = pb.S2C_ConnectMsg.FromString(buf[pos + 3 : pos + 3 + length])
                if reply.errorCode:
                    self.counts.refused += 1
                self.connected = True
            elif msg_id == _START:
                self.started = True
            elif msg_id == _CLOSE:
                self.counts.closed += 1
            pos += 3 + length
        self.buf = buf[pos:]


# -- HTTP (the room API and /status) ------------------------------------------------------------


async def http_get(port: int, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
    async def get() -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            match = re.search(rb"(?i)content-length:\s*(\d+)", head)
            body = await (reader.readexactly(int(match.group(1))) if match else reader.read())
            return status, body
        finally:
            writer.close()

    return await asyncio.wait_for(get(), timeout)


async def status(port: int) -> dict[str, Any]:
    code, body = await http_get(port, "/status")
    if code != 200:
        raise RuntimeError(f"GET /status: {code} {body[:200]!r}")
    result: dict[str, Any] = json.loads(body)
    return result


def add_lockstep_section(
    ini: Path, tick_hz: int, players: int, journal: bool = True
) -> tuple[int, int]:
    """Append [lockstep] on ports no other key of the ini uses; return (kcp, http) ports."""
    text = ini.read_text()
    used = {int(p) for p in re.findall(r":(\d+)\b", text)}
    ports: list[int] = []
    while len(ports) < 2:
        port = free_port(udp_too=not ports)
        if port not in used and port not in ports:
            ports.append(port)
    kcp, http = ports
    ini.write_text(text + "\n".join([
        "", "[lockstep]",
        f"listen_addr = 127.0.0.1:{kcp}",
        f"http_addr = 127.0.0.1:{http}",
        "ws_path = /ws",
        f"tick_hz = {tick_hz}",
        "max_rooms = 5000",
        f"max_players = {max(players, 2)}",
        "max_sessions = 10000",
        "max_sessions_per_ip = 0",  # every bot is on 127.0.0.1
        "http_max_rooms = 5000",  # the rooms come from GET /create
        "http_rooms_per_ip = 0",
        "room_seconds = 7200",  # the rooms outlive the whole ramp
        "max_frames = 10000000",
        "log_file = lockstep1.log",
        "log_level = info",
        f"room_journal = {'true' if journal else 'false'}",
        "",
    ]))
    return kcp, http


# -- the load ------------------------------------------------------------------------------------


class Load:
    def __init__(self, kcp: int, http: int, players: int, input_ms: int, heartbeat_ms: int) -> None:
        self.loop = asyncio.get_running_loop()
        self.kcp = ("127.0.0.1", kcp)
        self.http = http
        self.per_room = players
        self.counts = Counts()
        self.rooms = 0
        self.players: list[Player] = []
        self.sampled: list[Player] = []
        self.input_slots = max(1, input_ms // 10)
        self.heartbeat_slots = max(1, heartbeat_ms // 10)
        self.inputs: list[list[Player]] = [[] for _ in range(self.input_slots)]
        self.heartbeats: list[list[Player]] = [[] for _ in range(self.heartbeat_slots)]
        self.lags: list[float] = []
        self._packets = [
            encode_message(MsgId.MSG_Input, pb.C2S_InputMsg(sid=i % 8, x=i * 7 % 100, y=i * 13 % 100))
            for i in range(16)
        ]
        self._heartbeat = encode_message(MsgId.MSG_Heartbeat)
        self._pacer: asyncio.Task[None] | None = None

    def start_pacer(self) -> None:
        self._pacer = self.loop.create_task(self._pace())

    async def _pace(self) -> None:
        """Every 10 ms: the inputs and heartbeats of one slot, resends; the overshoot is the
        loop lag."""
        loop = self.loop
        due = loop.time()
        k = 0
        packets = self._packets
        while True:
            due += 0.01
            await asyncio.sleep(max(0.0, due - loop.time()))
            now = loop.time()
            self.lags.append(now - due)
            if now - due > 1.0:
                due = now
            for i, p in enumerate(self.inputs[k % self.input_slots]):
                if p.started:
                    p.send(packets[(i + k) & 15])
            for p in self.heartbeats[k % self.heartbeat_slots]:
                p.send(self._heartbeat)
            if k % 10 == 0:
                for p in self.players:
                    if p.unacked:
                        p.resend(now)
            k += 1

    async def add_rooms(self, target: int) -> None:
        """Create rooms up to ``target`` and connect their players, at most _HANDSHAKES
        sessions in handshake at once; returns when every new room has started."""
        new: list[Player] = []
        per_batch = max(1, _HANDSHAKES // self.per_room)
        members = ",".join(str(i) for i in range(1, self.per_room + 1))
        while self.rooms < target:
            batch: list[Player] = []
            for _ in range(min(per_batch, target - self.rooms)):
                self.rooms += 1
                room = self.rooms
                code, body = await http_get(self.http, f"/create?room={room}&member={members}")
                if code != 200 or not body.startswith(b"room.ID="):
                    raise RuntimeError(f"/create?room={room}: {code} {body[:200]!r}")
                for pid in range(1, self.per_room + 1):
                    p = Player(self.loop, self.kcp, self.counts, sampled=pid == 1)
                    i = len(self.players)
                    self.players.append(p)
                    self.inputs[i % self.input_slots].append(p)
                    self.heartbeats[i % self.heartbeat_slots].append(p)
                    if p.sampled:
                        self.sampled.append(p)
                    connect = pb.C2S_ConnectMsg(playerID=pid, battleID=room)
                    p.send(encode_message(MsgId.MSG_Connect, connect) + encode_message(MsgId.MSG_Ready))
                    batch.append(p)
            await self._until(lambda b=batch: all(p.connected for p in b), 20, "Connect answers")
            new += batch
        await self._until(lambda: all(p.started for p in new), 20, "Start")
        if self.counts.refused:
            raise RuntimeError(f"{self.counts.refused} Connects refused")

    async def _until(self, cond: Any, timeout: float, what: str) -> None:
        deadline = self.loop.time() + timeout
        while not cond():
            if self.loop.time() > deadline:
                raise RuntimeError(f"no {what} within {timeout} s ({self.rooms} rooms)")
            await asyncio.sleep(0.02)

    def reset(self) -> None:
        for p in self.sampled:
            p.arrivals.clear()
        self.lags.clear()
        self.counts.frames = 0

    def jitter(self, tick_hz: int) -> tuple[list[float], list[float], int]:
        """(lateness s, interval jitter s, frame messages) of the sampled players' arrivals
        since :meth:`reset`."""
        late: list[float] = []
        gaps: list[float] = []
        n = 0
        period = 1.0 / tick_hz
        for p in self.sampled:
            points = []
            for stamp, body in p.arrivals:
                msg = pb.S2C_FrameMsg.FromString(body)
                if msg.frames:
                    points.append((stamp, msg.frames[-1].frameID))
            if not points:
                continue
            n += len(points)
            p.baseline = min(p.baseline, min(t - f * period for t, f in points))
            late += [t - f * period - p.baseline for t, f in points]
            gaps += [abs((t1 - t0) - (f1 - f0) * period)
                     for (t0, f0), (t1, f1) in zip(points, points[1:], strict=False)]
        return late, gaps, n

    def close(self) -> None:
        if self._pacer is not None:
            self._pacer.cancel()
        for p in self.players:
            p.close()


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(load: Load, server_pid: int, args: argparse.Namespace) -> dict[str, Any]:
    windows = []
    me = os.getpid()
    for _ in range(args.repeat):
        load.reset()
        s0, l0, t0 = cpu_seconds(server_pid), cpu_seconds(me), time.monotonic()
        m0 = machine_cpu_seconds()[0]
        await asyncio.sleep(args.window)
        s1, l1, t1 = cpu_seconds(server_pid), cpu_seconds(me), time.monotonic()
        m1 = machine_cpu_seconds()[0]
        st = await status(args.http)
        late, gaps, sampled = load.jitter(args.tick_hz)
        lags = list(load.lags)
        wall = t1 - t0
        windows.append({
            "seconds": wall,
            "server_cpu": (s1 - s0) / wall,
            "load_cpu": (l1 - l0) / wall,
            # every other process (the cluster's idle dispatcher, game and gate included), cores
            "other_cpu": max(0.0, (m1 - m0) - (s1 - s0) - (l1 - l0)) / wall,
            "frames_per_s": load.counts.frames / wall,
            "sampled_messages": sampled,
            "late_p50_ms": 1000 * pct(late, 0.50),
            "late_p90_ms": 1000 * pct(late, 0.90),
            "late_p99_ms": 1000 * pct(late, 0.99),
            "late_max_ms": 1000 * max(late, default=float("nan")),
            "gap_p99_ms": 1000 * pct(gaps, 0.99),
            "tick_late_p99_ms": float(st.get("tick_late_p99_ms") or 0.0),
            "load_lag_p99_ms": 1000 * pct(lags, 0.99),
            "server_rooms": st.get("rooms"),
            "server_clients": st.get("clients"),
        })
    step: dict[str, Any] = {"rooms": load.rooms, "players": len(load.players), "windows": windows}
    for key in windows[0]:
        values = [w[key] for w in windows if isinstance(w[key], (int, float))]
        if values:
            step[key] = max(values) if key.endswith("_max_ms") else statistics.median(values)
    p99s = [w["late_p99_ms"] for w in windows]
    step["late_p99_min_ms"], step["late_p99_max_ms"] = min(p99s), max(p99s)
    step["rooms_per_core"] = load.rooms / step["server_cpu"] if step["server_cpu"] > 0 else 0.0
    return step


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="10,25,50,100,150,200,300,400,600,800",
                        help="room counts to ramp through, increasing")
    parser.add_argument("--players", type=int, default=4, help="players per room")
    parser.add_argument("--window", type=float, default=5.0, help="s per measured window")
    parser.add_argument("--repeat", type=int, default=3, help="windows per step")
    parser.add_argument("--warmup", type=float, default=2.0, help="s after a step's rooms start")
    parser.add_argument("--tick-hz", type=int, default=30)
    parser.add_argument("--input-ms", type=int, default=100, help="per player")
    parser.add_argument("--heartbeat-ms", type=int, default=1000, help="per player")
    parser.add_argument("--limit-ms", type=float, default=10.0, help="p99 that ends the ramp")
    parser.add_argument("--retries", type=int, default=2,
                        help="measurements again of a step over the limit while others were busy")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    parser.add_argument("--no-journal", action="store_true",
                        help="rooms without their write-ahead journal (room_journal = false)")
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",") if s.strip()]
    if not steps or steps != sorted(set(steps)) or steps[0] < 1:
        parser.error("--steps: increasing positive room counts")
    if not 1 <= args.players <= 16 or steps[-1] * args.players > 4000:
        parser.error("--players 1..16, and at most 4000 sessions (the server's per-address cap)")

    figures: dict[str, Any] = {"tick_hz": args.tick_hz, "players_per_room": args.players,
                               "limit_ms": args.limit_ms, "window_s": args.window,
                               "repeat": args.repeat, "input_ms": args.input_ms,
                               "heartbeat_ms": args.heartbeat_ms, "steps": []}
    with tempfile.TemporaryDirectory(prefix="goworld-bench-lockstep-") as tmp:
        runner = ClusterRunner(Path(tmp), APP, dispatchers=1, games=1, gates=1)
        kcp, args.http = add_lockstep_section(runner.ini, args.tick_hz, args.players,
                                              journal=not args.no_journal)
        load: Load | None = None
        try:
            runner.start()
            server_pid = int((await status(args.http))["pid"])
            load = Load(kcp, args.http, args.players, args.input_ms, args.heartbeat_ms)
            load.start_pacer()
            gc.collect()
            gc.freeze()
            stopped = "the last step"
            for rooms in steps:
                await load.add_rooms(rooms)
                await asyncio.sleep(args.warmup)
                step = await measure(load, server_pid, args)
                over = max(step["late_p99_ms"], step["gap_p99_ms"]) > args.limit_ms
                for _ in range(args.retries):
                    # The machine is shared: a step over the limit while other processes took
                    # more than half a core is measured again; the quieter measurement stays.
                    if not over or step["other_cpu"] <= 0.5:
                        break
                    again = await measure(load, server_pid, args)
                    again["remeasured"] = step.get("remeasured", 0) + 1
                    print(f"{rooms:5d} rooms: over the limit with others at "
                          f"{100 * step['other_cpu']:.0f} % CPU, measured again", flush=True)
                    if again["other_cpu"] < step["other_cpu"]:
                        step = again
                    else:
                        step["remeasured"] = again["remeasured"]
                    over = max(step["late_p99_ms"], step["gap_p99_ms"]) > args.limit_ms
                figures["steps"].append(step)
                print(f"{step['rooms']:5d} rooms {step['players']:5d} players  "
                      f"frames/s {step['frames_per_s']:8.0f}  server CPU {100 * step['server_cpu']:5.1f} %  "
                      f"lateness p50/p90/p99/max {step['late_p50_ms']:.1f}/{step['late_p90_ms']:.1f}/"
                      f"{step['late_p99_ms']:.1f}/{step['late_max_ms']:.1f} ms  "
                      f"interval p99 {step['gap_p99_ms']:.1f} ms  tick late p99 "
                      f"{step['tick_late_p99_ms']:.1f} ms  load CPU {100 * step['load_cpu']:.0f} % "
                      f"lag p99 {step['load_lag_p99_ms']:.1f} ms  others {100 * step['other_cpu']:.0f} %",
                      flush=True)
                if step["load_cpu"] >= 0.9:
                    stopped = "load generator saturated"
                    break
                if over:
                    stopped = "limit passed"
                    break
            figures["stopped"] = stopped
            figures["resent"] = load.counts.resent
            figures["send_errors"] = load.counts.send_errors
            figures["closed"] = load.counts.closed
        finally:
            if load is not None:
                load.close()
            runner.stop()
            runner.kill()
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(main())
    else:
        uvloop.run(main())
