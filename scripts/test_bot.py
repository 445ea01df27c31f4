#!/usr/bin/env python
"""A strict test bot for examples/test_game: GoWorld's ``test_client`` contract in Python.

GoWorld proves a server with its own bot (``examples/test_client``), run in strict mode. This
tool does what PROTOCOL.md §10 says that bot does, in our own code, so that our port of
test_game can be checked here and will pass the Go bot when it can be installed:

* it reads goworld.ini (``-configfile``, alias ``--ini``; default ``goworld.ini``); each bot
  picks a random gate in 1..desired_gates and connects over TCP (``listen_addr``), WebSocket
  (``-ws``, ``http_addr``) or KCP (``-kcp``, ``listen_addr``), with TLS and snappy when the
  gate has ``encrypt_connection`` / ``compress_connection``; the host is ``-server``;
* bots log in as ``test<id>`` / ``123456`` (ids from ``-S``); no bot handles a packet before
  all ``-N`` are connected;
* once its Avatar is in a space, a bot does one "thing" at a time, 0-6 s apart, each with a
  5 s timeout: always ``DoEnterRandomSpace`` in the nil space, else one of eight at random;
  every 100 ms, with probability 0.5, it sends a position sync for its Avatar (not with
  ``-nosync``);
* ``-strict`` makes every fatal condition of §10.3 end the run at once with exit code 1 and a
  line starting with ``FATAL``: a connect failure, an attribute change or a call for an
  entity the bot does not have (a call of ``OnLogin`` excepted), a call of a method the bot
  does not define, ``OnTestAOI`` naming an entity the bot has not seen, a wrong
  ``complexAttr``, a thing not done within 5 s (``DoSayInProfChannel`` only warns);
* what the Go bot survives as a caught panic (a malformed packet, an attribute path it cannot
  walk, a list that differs from the server's) is logged as ``PANIC`` and counted;
* after ``-duration`` seconds it prints what it did (per thing: completions, latency,
  timeouts) and a ``RESULT {json}`` line, and exits 0.

Ours, beyond the Go bot's flags: ``--avatars FILE`` remembers each user's avatar id between
runs, so a run can tell logins that found their existing avatar from new ones;
``--all-things`` adds the three things GoWorld's bot has but does not pick (DoSendMail,
DoGetMails, DoTestPublish).

Usage: .venv/bin/python scripts/test_bot.py --ini examples/test_game/goworld.ini -N 100
       -duration 60 [-ws | -kcp] [-strict] [-S 1] [-server localhost]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import statistics
import struct
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from goworld import config as gwconfig  # noqa: E402
from goworld.client import GoWorldClient  # noqa: E402
from goworld.proto import codec  # noqa: E402

log = logging.getLogger("test_bot")

PASSWORD = "123456"
SPACE_TYPE = "__space__"
THING_TIMEOUT = 5.0
AVERAGE_THING_INTERVAL = 3.0  # a thing starts 0..2x this after the previous one
SYNC_INTERVAL = 0.1

#: The things GoWorld's bot picks from (equal weights); the first is the nil-space one.
THINGS = (
    "DoEnterRandomSpace",
    "DoEnterRandomNilSpace",
    "DoSayInWorldChannel",
    "DoSayInProfChannel",
    "DoTestListField",
    "DoTestAOI",
    "DoTestCallAll",
    "DoTestComplexAttr",
)
#: Things both programs have but GoWorld's bot leaves out (``--all-things`` adds them).
EXTRA_THINGS = ("DoSendMail", "DoGetMails", "DoTestPublish")
#: A timeout of these only warns, even in strict mode.
LENIENT_THINGS = frozenset({"DoSayInProfChannel"})

# Client-bound message types (PROTOCOL.md §2.3).
CREATE, DESTROY = 1002, 1003
MAP_SET, MAP_DEL, LIST_SET, LIST_POP, LIST_APPEND = 1004, 1005, 1006, 1007, 1008
CALL, MAP_CLEAR = 1009, 1012
FILTERED_CALL, SYNC_POSITIONS = 1501, 1502
ATTR_TYPES = {MAP_SET, MAP_DEL, LIST_SET, LIST_POP, LIST_APPEND, MAP_CLEAR}
_POS = struct.Struct("<ffff")
_U16BE, _U32BE, _I64BE = struct.Struct(">H"), struct.Struct(">I"), struct.Struct(">q")


class BotPanic(Exception):
    """What the Go bot would panic on inside packet handling (caught there, logged here)."""


# ---- decoding helpers ------------------------------------------------------------------------


def read_raw_data(buf: bytes, pos: int) -> tuple[bytes, int]:
    (n,) = struct.unpack_from("<I", buf, pos)
    end = pos + 4 + n
    if end > len(buf):
        raise BotPanic(f"data of {n} bytes overruns the packet")
    return buf[pos + 4 : end], end


def parse_path(raw: bytes) -> list[str | int] | None:
    """A leaf-first attribute path. Map keys must be msgpack str and list indices msgpack int64
    (0xd3): the Go bot asserts ``.(string)`` / ``.(int64)`` and panics on anything else."""
    if not raw or raw[0] == 0xC0:
        return None
    b0 = raw[0]
    if 0x90 <= b0 <= 0x9F:
        n, i = b0 & 0x0F, 1
    elif b0 == 0xDC:
        n, i = _U16BE.unpack_from(raw, 1)[0], 3
    elif b0 == 0xDD:
        n, i = _U32BE.unpack_from(raw, 1)[0], 5
    else:
        raise BotPanic(f"attribute path is not a msgpack array (first byte 0x{b0:02x})")
    out: list[str | int] = []
    for _ in range(n):
        c = raw[i]
        if c == 0xD3:
            out.append(_I64BE.unpack_from(raw, i + 1)[0])
            i += 9
            continue
        if 0xA0 <= c <= 0xBF:
            size, i = c & 0x1F, i + 1
        elif c == 0xD9:
            size, i = raw[i + 1], i + 2
        elif c == 0xDA:
            size, i = _U16BE.unpack_from(raw, i + 1)[0], i + 3
        elif c == 0xDB:
            size, i = _U32BE.unpack_from(raw, i + 1)[0], i + 5
        elif c <= 0x7F or c >= 0xE0 or 0xCC <= c <= 0xD2 or c == 0xCF:
            raise BotPanic(f"list index in attribute path is not msgpack int64 (0x{c:02x})")
        else:
            raise BotPanic(f"attribute path element is neither str nor int (0x{c:02x})")
        out.append(raw[i : i + size].decode("utf-8"))
        i += size
    return out


def convert_arg(kind: str, value: Any) -> tuple[Any, bool]:
    """Decode an argument into the Go bot's parameter type; (value, fits). Like the Go bot,
    a value that does not fit becomes the zero value."""
    if kind == "bool":
        return (value, True) if isinstance(value, bool) else (False, False)
    if kind == "str":
        if isinstance(value, str):
            return value, True
        if isinstance(value, bytes):
            return value.decode("utf-8", "replace"), True
        return "", value is None
    if kind == "list":
        if isinstance(value, list):
            return value, True
        return [], value is None
    raise AssertionError(kind)


def as_int(value: Any) -> int:
    if isinstance(value, (bool, int, float)):
        return int(value)
    if isinstance(value, str):
        return int(value)
    raise BotPanic(f"cannot convert {value!r} to int")


# ---- client-side entities --------------------------------------------------------------------


class ClientEntity:
    """A bot's replica of a server entity, with the timers bound to it (dropped on destroy)."""

    __slots__ = (
        "bot", "id", "type_name", "is_player", "attrs", "x", "y", "z", "yaw", "destroyed",
        "timers", "thing", "thing_start", "thing_timer",
    )

    def __init__(self, bot: Bot, eid: str, type_name: str, is_player: bool, attrs: dict[str, Any],
                 pos: tuple[float, float, float, float]) -> None:
        self.bot = bot
        self.id = eid
        self.type_name = type_name
        self.is_player = is_player
        self.attrs = attrs
        self.x, self.y, self.z, self.yaw = pos
        self.destroyed = False
        self.timers: set[asyncio.TimerHandle] = set()
        self.thing = ""
        self.thing_start = 0.0
        self.thing_timer: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return f"{self.type_name}<{self.id}>"

    def add_callback(self, delay: float, fn: Callable[[], Any]) -> asyncio.TimerHandle:
        handle: asyncio.TimerHandle

        def fire() -> None:
            self.timers.discard(handle)
            if not self.destroyed:
                fn()

        handle = asyncio.get_running_loop().call_later(delay, fire)
        self.timers.add(handle)
        return handle

    def cancel(self, handle: asyncio.TimerHandle) -> None:
        handle.cancel()
        self.timers.discard(handle)

    def destroy(self) -> None:
        self.destroyed = True
        for handle in self.timers:
            handle.cancel()
        self.timers.clear()


class ClientSpace:
    __slots__ = ("id", "kind")

    def __init__(self, eid: str, data: dict[str, Any]) -> None:
        self.id = eid
        self.kind = as_int(data.get("_K", 0) or 0)

    def __repr__(self) -> str:
        return f"Space<{self.id} kind {self.kind}>"


class BotConnection(GoWorldClient):
    """GoWorldClient's transports and framing; every payload goes to the bot (held until the
    bot is allowed to process packets)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.inbox: list[bytes] = []
        self.sink: Callable[[bytes], None] | None = None
        self.on_lost: Callable[[BaseException | None], None] | None = None

    def _handle(self, payload: bytes) -> None:
        if self.sink is None:
            self.inbox.append(payload)
        else:
            self.sink(payload)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.on_lost is not None:
            self.on_lost(exc)


# ---- the run: shared state, results, fatal exits -----------------------------------------------


class Run:
    def __init__(self, args: argparse.Namespace, cfg: gwconfig.ClusterConfig) -> None:
        self.args = args
        self.cfg = cfg
        self.strict: bool = args.strict
        self.transport = "ws" if args.ws else "kcp" if args.kcp else "tcp"
        self.host = "127.0.0.1" if args.server == "localhost" else args.server
        self.things = THINGS + (EXTRA_THINGS if args.all_things else ())
        self.bots: list[Bot] = []
        self.connected = 0
        self.processing = False
        self.started_at = time.monotonic()
        self.done: Counter[str] = Counter()
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.timeouts: Counter[str] = Counter()
        self.panics = 0
        self.anomalies: Counter[str] = Counter()
        self.avatars_file: Path | None = Path(args.avatars) if args.avatars else None
        self.known_avatars: dict[str, str] = {}
        if self.avatars_file is not None and self.avatars_file.exists():
            self.known_avatars = json.loads(self.avatars_file.read_text() or "{}")
        self.avatars: dict[str, str] = {}  # username -> avatar id seen in this run
        self.avatar_kinds: Counter[str] = Counter()

    # -- outcomes ---------------------------------------------------------------------------

    def fatal(self, message: str) -> None:
        """What log.Fatal does in the Go bot: the run ends now with exit code 1."""
        log.critical("FATAL %s", message)
        self.finish(1)

    def panic(self, bot: Bot, message: str) -> None:
        self.panics += 1
        log.error("PANIC %s: %s", bot, message)

    def anomaly(self, bot: Bot, kind: str, message: str) -> None:
        self.anomalies[kind] += 1
        log.warning("%s: %s", bot, message)

    def result(self) -> dict[str, Any]:
        elapsed = time.monotonic() - self.started_at
        total = sum(self.done.values())
        return {
            "N": len(self.bots),
            "transport": self.transport,
            "strict": self.strict,
            "elapsed": round(elapsed, 1),
            "connected": self.connected,
            "started": sum(1 for b in self.bots if b.started),
            "things": dict(self.done),
            "total": total,
            "per_minute": round(total * 60 / elapsed, 1) if elapsed else 0.0,
            "latency_ms": {
                t: {
                    "avg": round(statistics.fmean(v) * 1000, 1),
                    "p50": round(statistics.median(v) * 1000, 1),
                    "max": round(max(v) * 1000, 1),
                }
                for t, v in self.latency.items() if v
            },
            "timeouts": dict(self.timeouts),
            "panics": self.panics,
            "anomalies": dict(self.anomalies),
            "avatars": {
                "existing": self.avatar_kinds["existing"],
                "new": self.avatar_kinds["new"],
                "replaced": self.avatar_kinds["replaced"],
                "none": len(self.bots) - len(self.avatars),
            },
        }

    def finish(self, code: int) -> None:
        result = self.result()
        lines = [
            f"test_bot: N={result['N']} transport={self.transport} strict={int(self.strict)} "
            f"elapsed={result['elapsed']}s connected={result['connected']} "
            f"started={result['started']}",
        ]
        for thing in self.things:
            lat = result["latency_ms"].get(thing)
            lat_text = f"avg {lat['avg']:7.1f} ms  p50 {lat['p50']:7.1f} ms  max {lat['max']:7.1f} ms" if lat else ""
            lines.append(
                f"  {thing:<22} done {self.done[thing]:6d}  timeouts {self.timeouts[thing]:4d}  {lat_text}"
            )
        lines.append(f"  total done {result['total']} ({result['per_minute']} per minute), "
                     f"panics {self.panics}, anomalies {dict(self.anomalies)}")
        a = result["avatars"]
        lines.append(f"  avatars: existing {a['existing']}, new {a['new']}, replaced {a['replaced']}, "
                     f"none {a['none']}")
        print("\n".join(lines), flush=True)
        print("RESULT " + json.dumps(result, sort_keys=True), flush=True)
        if self.avatars_file is not None:
            merged = {**self.known_avatars, **self.avatars}
            tmp = self.avatars_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(merged, indent=0, sort_keys=True))
            tmp.replace(self.avatars_file)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    # -- connecting -------------------------------------------------------------------------

    def bot_connected(self) -> None:
        self.connected += 1
        if self.connected == len(self.bots):
            log.info("all %d bots are connected (%.1f s)", self.connected, time.monotonic() - self.started_at)
            self.processing = True
            for bot in self.bots:
                bot.start_processing()

    async def sync_loop(self) -> None:
        """Every 100 ms each Avatar bot moves a little with probability 0.5 (message 12)."""
        while True:
            await asyncio.sleep(SYNC_INTERVAL)
            for bot in self.bots:
                bot.maybe_sync()


# ---- one bot ------------------------------------------------------------------------------------


class Bot:
    def __init__(self, run: Run, bot_id: int) -> None:
        self.run = run
        self.id = bot_id
        self.username = f"test{bot_id}"
        self.conn: BotConnection | None = None
        self.entities: dict[str, ClientEntity] = {}
        self.player: ClientEntity | None = None
        self.space: ClientSpace | None = None
        self.started = False
        self.avatar_seen = False

    def __repr__(self) -> str:
        return f"ClientBot<{self.id}>"

    # -- connection -------------------------------------------------------------------------

    async def connect(self) -> None:
        run = self.run
        gate_id = random.randint(1, run.cfg.deployment.desired_gates)
        gate = run.cfg.gates[gate_id]
        port = gate.http_addr.port if run.transport == "ws" else gate.listen_addr.port
        while True:
            try:
                conn = await asyncio.wait_for(
                    BotConnection.connect(
                        run.host,
                        port,
                        transport=run.transport,
                        tls=gate.encrypt_connection,
                        compress=gate.compress_connection,
                        record=False,
                    ),
                    10.0,
                )
                break
            except Exception as exc:
                message = f"{self} connect to gate{gate_id} {run.host}:{port} ({run.transport}) failed: {exc!r}"
                if run.strict:
                    run.fatal(message)
                log.error("%s; retrying", message)
                await asyncio.sleep(random.randint(1, 10))
        assert isinstance(conn, BotConnection)
        self.conn = conn
        conn.on_lost = self._connection_lost
        log.debug("%s connected to gate%d (%s)", self, gate_id, run.transport)
        run.bot_connected()

    def _connection_lost(self, exc: BaseException | None) -> None:
        log.error("%s: connection lost (%s)", self, exc or "closed by the server")

    def start_processing(self) -> None:
        conn = self.conn
        assert conn is not None
        inbox, conn.inbox = conn.inbox, []
        conn.sink = self.handle_packet
        for payload in inbox:
            self.handle_packet(payload)

    def call_server(self, eid: str, method: str, *args: Any) -> None:
        if self.conn is not None and not self.conn.is_closed:
            self.conn.call(eid, method, *args)
        else:
            log.warning("%s: cannot call %s.%s, the connection is closed", self, eid, method)

    def maybe_sync(self) -> None:
        p = self.player
        if p is None or p.type_name != "Avatar" or self.run.args.nosync or self.conn is None:
            return
        if random.random() < 0.5 and not self.conn.is_closed:
            p.x += random.uniform(-0.01, 0.01)
            p.z += random.uniform(-0.01, 0.0)
            p.yaw = random.random() * 3.14
            self.conn.sync_position(p.id, p.x, p.y, p.z, p.yaw)

    # -- packets ----------------------------------------------------------------------------

    def handle_packet(self, p: bytes) -> None:
        try:
            self._dispatch(p)
        except Exception as exc:
            self.run.panic(self, f"handling a packet failed: {exc!r}")

    def _dispatch(self, p: bytes) -> None:
        msgtype = p[0] | (p[1] << 8)
        pos = 20 if 1001 <= msgtype <= 1499 else 2  # skip gateid + clientid on 1001..1499
        if msgtype in ATTR_TYPES:
            eid, pos = codec.read_entity_id(p, pos)
            raw_path, pos = read_raw_data(p, pos)
            entity = self.entities.get(eid)
            if entity is None:
                message = f"{self}: attribute change (type {msgtype}) for unknown entity {eid}"
                if self.run.strict:
                    self.run.fatal(message)
                log.error("%s", message)
                return
            self._apply_attr(entity, msgtype, parse_path(raw_path), p, pos)
        elif msgtype == CREATE:
            is_player = p[pos] != 0
            eid, pos = codec.read_entity_id(p, pos + 1)
            type_name, pos = codec.read_varstr(p, pos)
            xyzyaw = _POS.unpack_from(p, pos)
            data, _ = codec.read_data(p, pos + 16)
            if not isinstance(data, dict):
                data = {}
            if type_name == SPACE_TYPE:
                self._create_space(eid, data)
            else:
                self._create_entity(type_name, eid, is_player, data, xyzyaw)
        elif msgtype == DESTROY:
            type_name, pos = codec.read_varstr(p, pos)
            eid, _ = codec.read_entity_id(p, pos)
            if type_name == SPACE_TYPE:
                self._destroy_space(eid)
            else:
                self._destroy_entity(eid)
        elif msgtype == CALL:
            eid, pos = codec.read_entity_id(p, pos)
            method, pos = codec.read_varstr(p, pos)
            args, _ = codec.decode_args(p, pos)
            entity = self.entities.get(eid)
            if entity is None:
                message = f"{self}: call {method} for unknown entity {eid}"
                if method != "OnLogin":
                    if self.run.strict:
                        self.run.fatal(message)
                    log.warning("%s", message)
                else:
                    # OnLogin is sent on the Account's path; the handover to the Avatar goes on
                    # the Avatar's and may overtake it. The Go bot exempts it for that reason.
                    self.run.anomaly(self, "late_OnLogin", f"OnLogin for entity {eid}, which is gone")
                return
            self._call_method(entity, method, args)
        elif msgtype == FILTERED_CALL:
            pos += 1  # the op byte
            _key, pos = codec.read_varstr(p, pos)
            _val, pos = codec.read_varstr(p, pos)
            method, pos = codec.read_varstr(p, pos)
            args, _ = codec.decode_args(p, pos)
            if self.player is None:
                self.run.anomaly(self, "filtered_call_without_player", f"filtered call {method} with no player")
                return
            self._call_method(self.player, method, args)
        elif msgtype == SYNC_POSITIONS:
            entities = self.entities
            for off in range(2, len(p) - 31, 32):
                e = entities.get(p[off : off + 16].decode("latin-1"))
                if e is not None:
                    e.x, e.y, e.z, e.yaw = _POS.unpack_from(p, off + 16)
        else:
            raise BotPanic(f"unknown message type {msgtype}")

    # -- attributes ---------------------------------------------------------------------------

    def _apply_attr(self, entity: ClientEntity, msgtype: int, path: list[str | int] | None,
                    p: bytes, pos: int) -> None:
        node: Any = entity.attrs
        for key in reversed(path or ()):
            if isinstance(node, dict):
                if not isinstance(key, str):
                    raise BotPanic(f"map key {key!r} in attribute path is not a string")
                if key not in node:
                    raise BotPanic(f"attribute path {path} of {entity}: no key {key!r}")
                node = node[key]
            elif isinstance(node, list):
                if not isinstance(key, int):
                    raise BotPanic(f"list index {key!r} in attribute path is not an int")
                if not 0 <= key < len(node):
                    raise BotPanic(f"attribute path {path} of {entity}: index {key} out of range")
                node = node[key]
            else:
                raise BotPanic(f"attribute path {path} of {entity}: {type(node).__name__} is no container")
        if msgtype in (MAP_SET, MAP_DEL, MAP_CLEAR):
            if not isinstance(node, dict):
                raise BotPanic(f"map change (type {msgtype}) on a {type(node).__name__} at {path}")
            if msgtype == MAP_SET:
                key, pos = codec.read_varstr(p, pos)
                node[key], _ = codec.read_data(p, pos)
            elif msgtype == MAP_DEL:
                key, _ = codec.read_varstr(p, pos)
                node.pop(key, None)
            else:
                node.clear()
            return
        if not isinstance(node, list):
            raise BotPanic(f"list change (type {msgtype}) on a {type(node).__name__} at {path}")
        if msgtype == LIST_SET:
            (index,) = struct.unpack_from("<I", p, pos)
            if index >= len(node):
                raise BotPanic(f"list change at index {index} of a list of {len(node)} ({path})")
            node[index], _ = codec.read_data(p, pos + 4)
        elif msgtype == LIST_APPEND:
            value, _ = codec.read_data(p, pos)
            node.append(value)
        else:
            if not node:
                raise BotPanic(f"list pop on an empty list ({path})")
            node.pop()

    # -- entities and spaces ------------------------------------------------------------------

    def _create_entity(self, type_name: str, eid: str, is_player: bool, data: dict[str, Any],
                       xyzyaw: tuple[float, float, float, float]) -> None:
        if eid in self.entities:
            return  # the Go bot keeps the entity it has
        e = ClientEntity(self, eid, type_name, is_player, data, xyzyaw)
        self.entities[eid] = e
        if is_player:
            if type_name == "Account":
                asyncio.get_running_loop().call_soon(self._login, e)
            elif type_name == "Avatar":
                self._avatar_arrived(e)
            if self.player is not None:
                self.run.anomaly(self, "second_player", f"player {e} created while {self.player} is the player")
            self.player = e

    def _login(self, account: ClientEntity) -> None:
        if not account.destroyed:
            self.call_server(account.id, "Login", self.username, PASSWORD)

    def _avatar_arrived(self, avatar: ClientEntity) -> None:
        run = self.run
        if self.avatar_seen:
            return
        self.avatar_seen = True
        before = run.known_avatars.get(self.username)
        kind = "new" if before is None else "existing" if before == avatar.id else "replaced"
        run.avatars[self.username] = avatar.id
        run.avatar_kinds[kind] += 1
        log.info("%s: %s logged in to avatar %s (%s)", self, self.username, avatar.id, kind)

    def _destroy_entity(self, eid: str) -> None:
        e = self.entities.pop(eid, None)
        if e is None:
            return
        e.destroy()
        if e is self.player:
            self.player = None

    def _create_space(self, eid: str, data: dict[str, Any]) -> None:
        if self.space is not None:
            self.run.anomaly(self, "duplicate_space", f"space {eid} created while in {self.space}")
            self.space = None
        self.space = ClientSpace(eid, data)
        self._on_enter_space()

    def _destroy_space(self, eid: str) -> None:
        if self.space is None or self.space.id != eid:
            self.run.anomaly(self, "unknown_space_destroyed", f"destroy of space {eid}, current {self.space}")
            return
        self.space = None

    def _on_enter_space(self) -> None:
        player = self.player
        if not self.started:
            self.started = True
            if player is None:
                raise BotPanic("entered a space without a player")
            self.do_something_later(player)
        elif player is not None:
            self.thing_done(player, "DoEnterRandomSpace")

    def space_kind(self) -> int:
        return self.space.kind if self.space is not None else 0

    # -- things -----------------------------------------------------------------------------

    def do_something_later(self, e: ClientEntity) -> None:
        e.add_callback(random.uniform(0, 2 * AVERAGE_THING_INTERVAL), lambda: self.do_something(e))

    def do_something(self, e: ClientEntity) -> None:
        if e.thing:
            raise BotPanic(f"{e} cannot start a thing while doing {e.thing}")
        thing = THINGS[0] if self.space_kind() == 0 else random.choice(self.run.things)
        e.thing = thing
        e.thing_start = time.monotonic()
        e.thing_timer = e.add_callback(THING_TIMEOUT, lambda: self._thing_timeout(e, thing))
        log.debug("%s %s starts %s", self, e, thing)
        getattr(self, thing)(e)

    def _thing_timeout(self, e: ClientEntity, thing: str) -> None:
        self.run.timeouts[thing] += 1
        message = f"{self} {e} {thing} TIMEOUT after {THING_TIMEOUT:.0f} s (space {self.space})"
        if self.run.strict and thing not in LENIENT_THINGS:
            self.run.fatal(message)
        log.warning("%s", message)
        e.thing = ""
        e.thing_timer = None
        self.do_something_later(e)

    def thing_done(self, e: ClientEntity, thing: str) -> None:
        if e.thing != thing:
            return
        elapsed = time.monotonic() - e.thing_start
        self.run.done[thing] += 1
        self.run.latency[thing].append(elapsed)
        e.thing = ""
        if e.thing_timer is not None:
            e.cancel(e.thing_timer)
            e.thing_timer = None
        self.do_something_later(e)

    def DoEnterRandomSpace(self, e: ClientEntity) -> None:
        current = self.space_kind()
        kind_max = max(2, len(self.run.bots) // 400)
        kind = random.randint(1, kind_max)
        while kind == current:
            kind = 1 if kind == kind_max else kind + 1
        self.call_server(e.id, "EnterSpace", kind)

    def DoEnterRandomNilSpace(self, e: ClientEntity) -> None:
        self.call_server(e.id, "EnterRandomNilSpace")

    def DoSayInWorldChannel(self, e: ClientEntity) -> None:
        self.call_server(e.id, "Say", "world", f"{self.username} says hello to the world channel")

    def DoSayInProfChannel(self, e: ClientEntity) -> None:
        self.call_server(e.id, "Say", "prof", f"{self.username} says hello to the prof channel")

    def DoTestListField(self, e: ClientEntity) -> None:
        self.call_server(e.id, "TestListField")

    def DoTestAOI(self, e: ClientEntity) -> None:
        self.call_server(e.id, "TestAOI")

    def DoTestCallAll(self, e: ClientEntity) -> None:
        self.call_server(e.id, "TestCallAll")

    def DoTestComplexAttr(self, e: ClientEntity) -> None:
        self.call_server(e.id, "TestComplexAttr")

    def DoSendMail(self, e: ClientEntity) -> None:
        avatars = [o for o in self.entities.values() if o.type_name == "Avatar"]
        receiver = random.choice(avatars) if avatars else e
        mail: dict[str, Any] = {"a": 1, "b": "b", "c": False, "d": 1231.111}
        for i in range(1000):
            mail[f"field{i + 1}"] = random.randrange(100)
        self.call_server(e.id, "SendMail", receiver.id, mail)

    def DoGetMails(self, e: ClientEntity) -> None:
        self.call_server(e.id, "GetMails")

    def DoTestPublish(self, e: ClientEntity) -> None:
        self.call_server(e.id, "TestPublish")

    # -- methods the server calls on the bot (1009 on an entity, 1501 on the player) ----------

    def _call_method(self, e: ClientEntity, method: str, args: tuple[Any, ...]) -> None:
        spec = CLIENT_METHODS.get(method)
        if spec is None:
            if method in THINGS or method in EXTRA_THINGS:
                log.warning("%s: the server calls %s on %s", self, method, e)
                return
            message = f"{self}: client method {method} is not defined (called on {e})"
            if self.run.strict:
                self.run.fatal(message)
            log.error("%s", message)
            return
        kinds, fn = spec
        if len(args) != len(kinds):
            raise BotPanic(f"{method} takes {len(kinds)} arguments, the server sent {len(args)}")
        converted = []
        for i, (kind, value) in enumerate(zip(kinds, args, strict=True)):
            v, fits = convert_arg(kind, value)
            if not fits:
                log.warning("%s: %s argument %d is %r, not a %s: using %r", self, method, i + 1, value, kind, v)
            converted.append(v)
        fn(self, e, *converted)

    def OnLogin(self, e: ClientEntity, ok: bool) -> None:
        if not ok:
            log.error("%s: login as %s refused", self, self.username)

    def OnSendMail(self, e: ClientEntity, ok: bool) -> None:
        self.thing_done(e, "DoSendMail")

    def OnGetMails(self, e: ClientEntity, ok: bool) -> None:
        self.thing_done(e, "DoGetMails")

    def OnEnterRandomNilSpace(self, e: ClientEntity) -> None:
        self.thing_done(e, "DoEnterRandomNilSpace")

    def OnSay(self, e: ClientEntity, sender_id: str, sender_name: str, channel: str, content: str) -> None:
        if sender_id == e.id:
            if channel == "world":
                self.thing_done(e, "DoSayInWorldChannel")
            elif channel == "prof":
                self.thing_done(e, "DoSayInProfChannel")

    def OnTestListField(self, e: ClientEntity, server_list: list[Any]) -> None:
        client_list = e.attrs.get("testListField")
        if not isinstance(client_list, list):
            raise BotPanic(f"{e}.testListField is {client_list!r}, not a list")
        if len(client_list) != len(server_list):
            raise BotPanic(f"server list has {len(server_list)} items, client list {len(client_list)}")
        for i, (cv, sv) in enumerate(zip(client_list, server_list, strict=True)):
            if as_int(cv) != as_int(sv):
                raise BotPanic(f"testListField[{i}]: server {sv!r}, client {cv!r}")
        self.thing_done(e, "DoTestListField")

    def OnTestPublish(self, e: ClientEntity, publisher: str, subject: str, content: str) -> None:
        if publisher == e.id:
            self.thing_done(e, "DoTestPublish")

    def OnTestAOI(self, e: ClientEntity, tester_id: str) -> None:
        if tester_id not in self.entities:
            message = f"{self}: OnTestAOI: AOITester {tester_id} was never created on this client"
            if self.run.strict:
                self.run.fatal(message)
            log.error("%s", message)
            return
        self.thing_done(e, "DoTestAOI")

    def OnTestCallAll(self, e: ClientEntity) -> None:
        self.thing_done(e, "DoTestCallAll")

    def TestCallAllPlzEcho(self, e: ClientEntity, eid: str) -> None:
        self.call_server(e.id, "TestCallAllEcho", eid)

    def OnTestComplexAttrStep1(self, e: ClientEntity) -> None:
        try:
            value = e.attrs["complexAttr"]["key1"]["key2"][1][0]["finalkey"]
        except (KeyError, IndexError, TypeError) as exc:
            raise BotPanic(f"complexAttr is {e.attrs.get('complexAttr')!r}: {exc!r}") from None
        if value != "iamhere":
            self.run.fatal(f"{self}: complexAttr.key1.key2[1][0].finalkey is {value!r}, not 'iamhere'")

    def OnTestComplexAttrClear(self, e: ClientEntity) -> None:
        value = e.attrs.get("complexAttr")
        if not (isinstance(value, dict) and not value):
            message = f"{self}: complexAttr after Clear is {value!r}, not an empty map"
            if self.run.strict:
                self.run.fatal(message)
            log.error("%s", message)
            return
        self.thing_done(e, "DoTestComplexAttr")


#: method name -> (argument kinds, implementation)
CLIENT_METHODS: dict[str, tuple[tuple[str, ...], Callable[..., None]]] = {
    "OnLogin": (("bool",), Bot.OnLogin),
    "OnSendMail": (("bool",), Bot.OnSendMail),
    "OnGetMails": (("bool",), Bot.OnGetMails),
    "OnEnterRandomNilSpace": ((), Bot.OnEnterRandomNilSpace),
    "OnSay": (("str", "str", "str", "str"), Bot.OnSay),
    "OnTestListField": (("list",), Bot.OnTestListField),
    "OnTestPublish": (("str", "str", "str"), Bot.OnTestPublish),
    "OnTestAOI": (("str",), Bot.OnTestAOI),
    "OnTestCallAll": ((), Bot.OnTestCallAll),
    "TestCallAllPlzEcho": (("str",), Bot.TestCallAllPlzEcho),
    "OnTestComplexAttrStep1": ((), Bot.OnTestComplexAttrStep1),
    "OnTestComplexAttrClear": ((), Bot.OnTestComplexAttrClear),
}


# ---- main ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-N", type=int, default=1000, help="number of bots (default 1000)")
    p.add_argument("-S", type=int, default=1, help="id of the first bot (usernames test<id>)")
    p.add_argument("-server", default="localhost", help="gate host (default localhost)")
    transport = p.add_mutually_exclusive_group()
    transport.add_argument("-ws", action="store_true", help="WebSocket on the gates' http_addr")
    transport.add_argument("-kcp", action="store_true", help="KCP on the gates' listen_addr")
    p.add_argument("-nosync", action="store_true", help="send no position syncs")
    p.add_argument("-strict", action="store_true", help="fatal conditions end the run (exit 1)")
    p.add_argument("-duration", type=float, default=0, help="seconds to run (0 = forever)")
    p.add_argument("--until", type=float, default=0,
                   help="end at this time.time() instead (several bot processes end together)")
    p.add_argument("-log", default="info", help="log level: debug, info, warn, error")
    p.add_argument("-quiet", action="store_true", help="log warnings and worse only")
    p.add_argument("-configfile", "--ini", dest="configfile", default="goworld.ini",
                   help="the cluster's goworld.ini (default ./goworld.ini)")
    p.add_argument("--avatars", help="JSON file of username -> avatar id, read and updated")
    p.add_argument("--all-things", action="store_true",
                   help="also DoSendMail, DoGetMails and DoTestPublish")
    return p.parse_args(argv)


async def amain(args: argparse.Namespace) -> None:
    try:
        cfg = gwconfig.load(args.configfile)
    except Exception as exc:
        log.critical("FATAL cannot read %s: %s", args.configfile, exc)
        os._exit(2)
    run = Run(args, cfg)
    run.bots = [Bot(run, args.S + i) for i in range(args.N)]
    loop = asyncio.get_running_loop()
    if args.until > 0:
        loop.call_later(max(0.0, args.until - time.time()), run.finish, 0)
    elif args.duration > 0:
        loop.call_later(args.duration, run.finish, 0)
    log.info(
        "%d bots (test%d..test%d) over %s to %d gate(s) of %s%s",
        args.N, args.S, args.S + args.N - 1, run.transport, cfg.deployment.desired_gates,
        cfg.path, ", strict" if run.strict else "",
    )
    sync = asyncio.create_task(run.sync_loop())
    await asyncio.gather(*(bot.connect() for bot in run.bots))
    await sync  # runs until the duration ends the process


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    levels = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
              "warning": logging.WARNING, "error": logging.ERROR}
    level = logging.WARNING if args.quiet else levels.get(args.log.lower(), logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout)
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        runner.run(amain(args))


if __name__ == "__main__":
    main()
