"""Faults under load (issue 15; not a test): kill -9 and SIGSTOP of each role, one at a time.

For each layout (1+1+1, 2+2+2) one cluster of examples/test_game is started by ``goworld start``
(SQLite, supervised: the supervisor's defaults unless --backoff). Then, per fault (role x
kill -9 / SIGSTOP, each process killed at most once so every restart has the first back-off):

* the cluster is at full strength (``goworld status --json`` all up, every game serving, a new
  client logs in and is served);
* load: GoWorld's Go bot (``test_client -strict``, N bots over TCP on every gate) and P Python
  clients logged in (spread over the gates) calling ``TestListField`` every 0.5 s; each Python
  player was logged in and out once before, so its avatar is in storage;
* a few "saved" players log in and out (their avatar id and ``prof`` are the data checked
  after every later fault);
* the fault: SIGKILL of ``<role>1``, or SIGSTOP for --stop seconds then SIGCONT (always, in a
  ``finally``);
* measured: time to detect (the first Python client told/closed, and the first WARNING or worse
  saying a fault was noticed that any process or the supervisor logged after it), time to recover (status all up,
  every game serving, a newcomer logged in and served; from the kill, or from the SIGCONT),
  players disturbed (Python clients closed, with their close codes) out of connected, the
  longest gap between two replies of an undisturbed player, whether every disturbed player logs
  in again (and how long it took), data lost (saved players whose avatar does not come back
  with its id and ``prof``), the Go bot during the fault (its summary) and a Go bot run after
  recovery (its verdict).

The functions here are also what tests/integration/test_faults.py drives (it asserts on the
outcome; this script prints and writes the figures).

Usage: .venv/bin/python scripts/bench_faults.py [--quick] [--only 111,222] [--faults game-kill,...]
       [--backoff S] [--keep DIR] [--json FILE]
(--quick: 1+1+1 only unless --only says otherwise, fewer players and bots, a 4 s stop)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from goworld import gobot, runctl  # noqa: E402
from goworld.client import GoWorldClient  # noqa: E402
from goworld.testing import ClusterRunner  # noqa: E402

APP = ROOT / "examples" / "test_game"
PASSWORD = "123456"
LAYOUTS = {"111": (1, 1, 1), "222": (2, 2, 2)}
ROLES = ("game", "gate", "dispatcher")
KINDS = ("kill", "stop")
#: A bound for one wait (a stuck run), not a measurement.
WAIT = 90.0
_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (WARNING|ERROR|CRITICAL) (.*)$")
#: What a process or the supervisor logs when it notices a fault (not, say, a message dropped
#: for an entity an earlier fault took with it).
NOTICED = re.compile(r"is down|sent nothing|disconnected|stream lost|exited unexpectedly|"
                     r"connection lost|unhealthy|gave up|giving up")


@dataclass
class Plan:
    players: int = 8  # Python clients connected during the fault
    saved: int = 2  # players saved (logged out) before each fault, checked after every later one
    bots: int = 10  # Go bots during the fault
    bot_seconds: int = 25  # how long the Go bot run during the fault lasts
    after_bots: int = 10  # Go bots after recovery
    after_seconds: int = 12
    stop_seconds: float = 5.0  # SIGSTOP ... SIGCONT
    settle: float = 3.0  # load running before the fault
    backoff: str | None = None  # [supervisor] restart_backoff (None: the default)


@dataclass
class Outcome:
    layout: str
    fault: str  # e.g. "game-kill"
    target: str  # e.g. "game1"
    connected: int = 0
    disturbed: int = 0
    close_codes: dict[str, int] = field(default_factory=dict)
    #: clients expected to be disturbed by the rule of the fault (a gate's own clients...)
    disturbed_names: list[str] = field(default_factory=list)
    per_gate: dict[str, int] = field(default_factory=dict)  # gate index -> clients connected there
    disturbed_per_gate: dict[str, int] = field(default_factory=dict)
    detect_client_s: float | None = None
    detect_log_s: float | None = None
    detect_log_line: str = ""
    recover_s: float | None = None  # from the kill, or from the SIGCONT
    full_strength: bool = False
    newcomer_ok: bool = False
    newcomer_failures: list[str] = field(default_factory=list)  # tries before the one that got in
    complaints: list[str] = field(default_factory=list)  # WARNING+ lines after the fault (some)
    relogin_ok: int = 0
    relogin_failed: list[str] = field(default_factory=list)
    relogin_max_s: float | None = None
    undisturbed_served: int = 0
    undisturbed_not_served: list[str] = field(default_factory=list)
    max_gap_s: float | None = None  # longest pause in an undisturbed player's replies
    saved_checked: int = 0
    data_lost: list[str] = field(default_factory=list)
    bot_during: str = ""
    bot_during_errors: int = 0
    bot_during_connected: int = 0
    bot_during_error_lines: list[str] = field(default_factory=list)
    bot_after_passed: bool | None = None
    bot_after: str = ""
    status_after: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------- the cluster


def make_runner(directory: Path, layout: str, plan: Plan) -> ClusterRunner:
    d, g, t = LAYOUTS[layout]
    runner = ClusterRunner(directory, APP, dispatchers=d, games=g, gates=t)
    if plan.backoff is not None:
        with open(runner.ini, "a") as f:
            f.write(f"[supervisor]\nrestart_backoff = {plan.backoff}\n")
    return runner


def pid_of(runner: ClusterRunner, name: str) -> int | None:
    return runctl.read_pid(runner.dir / ".goworld", name)


def status(runner: ClusterRunner) -> tuple[int, dict[str, Any]]:
    result = runner.cli("status", "--json", timeout=60)
    try:
        return result.returncode, json.loads(result.stdout)
    except ValueError:
        return result.returncode, {"error": result.stdout + result.stderr}


def all_up(runner: ClusterRunner) -> tuple[bool, dict[str, Any]]:
    """status exits 0, every process 'up' (not starting) and every game serving."""
    code, report = status(runner)
    if code != 0 or not report.get("ok"):
        return False, report
    procs = report.get("processes", [])
    if any(p["state"] != "up" for p in procs):
        return False, report
    games = [p for p in procs if p["role"] == "game"]
    serving = all((runner.dir / ".goworld" / f"{p['name']}.serving").exists() for p in games)
    return serving, report


def continue_all(runner: ClusterRunner) -> None:
    """SIGCONT every process of the cluster (a stopped one must never be left behind)."""
    for name in _names(runner):
        pid = pid_of(runner, name)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def _names(runner: ClusterRunner) -> list[str]:
    cfg = runner.config()
    return ([f"dispatcher{i}" for i in cfg.dispatchers] + [f"game{i}" for i in cfg.games]
            + [f"gate{i}" for i in cfg.gates])


def first_complaint_after(runner: ClusterRunner, wall: float) -> tuple[float | None, str]:
    """Seconds from ``wall`` (time.time()) to the first WARNING/ERROR/CRITICAL line saying a
    fault was noticed (:data:`NOTICED`) that any log of the cluster (the supervisor's too) has
    at or after it, and that line."""
    best: tuple[float | None, str] = (None, "")
    paths = sorted(runner.dir.glob("*.log")) + [runner.dir / ".goworld" / runctl.SUPERVISOR_LOG]
    for path in paths:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            m = _LOG_TIME.match(line)
            if not m or not NOTICED.search(m[3]):
                continue
            t = datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if t + 0.0005 < wall:
                continue
            dt = max(0.0, t - wall)
            if best[0] is None or dt < best[0]:
                best = (dt, f"{path.name}: {m[2]} {m[3]}"[:300])
            break  # lines are in time order: the first one after the fault is this log's earliest
    return best


def complaints_after(runner: ClusterRunner, wall: float, limit: int = 40) -> list[str]:
    """WARNING/ERROR/CRITICAL lines of every log (the supervisor's too) at or after ``wall``,
    in time order, at most ``limit`` (for the record: what the processes said of the fault)."""
    found = []
    paths = sorted(runner.dir.glob("*.log")) + [runner.dir / ".goworld" / runctl.SUPERVISOR_LOG]
    for path in paths:
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            m = _LOG_TIME.match(line)
            if m and datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S,%f").timestamp() + 0.0005 >= wall:
                found.append(f"{m[1][11:]} {path.name}: {m[2]} {m[3]}"[:300])
    return sorted(found)[:limit]


# ----------------------------------------------------------------------------- players


class Player:
    """A Python client logged in to test_game, calling TestListField every ``every`` s."""

    def __init__(self, name: str, gate: int) -> None:
        self.name, self.gate = name, gate
        self.client: GoWorldClient | None = None
        self.replies: list[float] = []
        self.task: asyncio.Task[None] | None = None
        self.closed_at: float | None = None

    async def login(self, runner: ClusterRunner, timeout: float = 30.0) -> GoWorldClient:
        client = await GoWorldClient.connect("127.0.0.1", runner.gate(self.gate, "tcp"))
        self.client = client
        try:
            account = await client.wait_player("Account", timeout=timeout)
            client.call(account.id, "Login", self.name, PASSWORD)
            await client.wait_player("Avatar", timeout=timeout)
        except BaseException:
            client.close()
            raise

        def on_call(call: Any) -> None:
            if call.method == "OnTestListField":
                self.replies.append(time.monotonic())
            elif call.method == "TestCallAllPlzEcho":
                # as GoWorld's bot does: a bot's DoTestCallAll counts every avatar that sees it,
                # these players' too, and waits for each answer (else a TIMEOUT, strict: exit 1)
                client.call(call.entity_id, "TestCallAllEcho", *call.args)

        client.on_call = on_call
        client.closed.add_done_callback(lambda _f: self._closed())
        return client

    def _closed(self) -> None:
        if self.closed_at is None:
            self.closed_at = time.monotonic()

    def start_pump(self, every: float = 0.5) -> None:
        async def pump() -> None:
            while self.client is not None and not self.client.is_closed:
                self.client.call_player("TestListField")
                await asyncio.sleep(every)

        self.task = asyncio.create_task(pump())

    async def served(self, timeout: float = 30.0) -> bool:
        """A TestListField round trip now."""
        if self.client is None or self.client.is_closed:
            return False
        n = len(self.replies)
        self.client.call_player("TestListField")
        try:
            await self.client.wait_until(lambda: len(self.replies) > n, timeout)
            return True
        except (TimeoutError, Exception):
            return False

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        if self.client is not None:
            await self.client.aclose()


async def login_retrying(runner: ClusterRunner, name: str, gate: int, deadline: float) -> Player:
    """Log ``name`` in, retrying (a gate may still be coming back) until ``deadline``."""
    while True:
        player = Player(name, gate)
        try:
            await asyncio.wait_for(player.login(runner), 30)
            return player
        except (TimeoutError, OSError, Exception):
            await player.close()
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)


async def save_players(runner: ClusterRunner, names: list[str], gates: int) -> dict[str, tuple[str, int]]:
    """Log each in and out (the avatar is saved when its client leaves): name -> (avatar id, prof)."""
    saved = {}
    for i, name in enumerate(names):
        p = Player(name, i % gates)
        client = await asyncio.wait_for(p.login(runner), 60)
        avatar = client.player
        assert avatar is not None
        await client.wait_until(lambda a=avatar: "prof" in a.attrs, 30)
        saved[name] = (avatar.id, int(avatar.attrs["prof"]))
        await p.close()
    return saved


async def check_saved(runner: ClusterRunner, saved: dict[str, tuple[str, int]], gates: int) -> list[str]:
    """The saved players whose avatar does not come back with its id and prof (or cannot log in)."""
    lost = []
    for i, (name, (avatar_id, prof)) in enumerate(saved.items()):
        p = Player(name, i % gates)
        try:
            client = await asyncio.wait_for(p.login(runner), 60)
            avatar = client.player
            assert avatar is not None
            await client.wait_until(lambda a=avatar: "prof" in a.attrs, 30)
            if avatar.id != avatar_id or int(avatar.attrs["prof"]) != prof:
                lost.append(f"{name}: avatar {avatar.id} prof {avatar.attrs.get('prof')}, "
                            f"was {avatar_id} prof {prof}")
        except (TimeoutError, Exception) as exc:
            lost.append(f"{name}: cannot log in again ({type(exc).__name__}: {exc})"[:200])
        finally:
            await p.close()
    return lost


async def wait_full_strength(runner: ClusterRunner, tag: str, gates: int, timeout: float = WAIT,
                             failures: list[str] | None = None) -> tuple[bool, bool]:
    """Until status is all up and a newcomer logs in and is served: (full strength, newcomer).
    ``failures`` gets a line for each newcomer that did not get in."""
    deadline = time.monotonic() + timeout
    began = time.monotonic()
    n = 0
    while time.monotonic() < deadline:
        up, _ = await asyncio.to_thread(all_up, runner)
        if not up:
            await asyncio.sleep(0.1)
            continue
        n += 1
        newcomer = Player(f"{tag}-new{n}", n % gates)
        t = time.monotonic()
        why = "not served"
        try:
            await asyncio.wait_for(newcomer.login(runner), 15)
            ok = await newcomer.served(15)
        except (TimeoutError, OSError, Exception) as exc:
            ok, why = False, f"{type(exc).__name__}: {exc}"
        finally:
            await newcomer.close()
        if ok:
            return True, True
        if failures is not None:
            c = newcomer.client
            stage = "no client" if c is None else (
                "no Account" if c.player is None else f"player {c.player.type_name}")
            failures.append(f"{newcomer.name} on gate{newcomer.gate + 1} at +{t - began:.1f} s: "
                            f"{why[:150]} ({stage}, took {time.monotonic() - t:.1f} s)")
        await asyncio.sleep(0.2)
    return False, False


# ----------------------------------------------------------------------------- the Go bot


def bot_binary() -> Path:
    return gobot.build_test_client()


def start_bots(binary: Path, runner: ClusterRunner, name: str, n: int, seconds: int, first: int) -> gobot.BotProcess:
    workdir = runner.dir / "gobot" / name
    ini = gobot.write_bot_ini(runner.config(), workdir / "bot.ini")
    return gobot.start_bot(binary, ini, workdir, n=n, start=first, duration=seconds, name=name)


# ----------------------------------------------------------------------------- one fault


def expected_disturbed(layout: str, role: str, kind: str) -> str:
    """Who should be disturbed: 'none', 'gate' (the clients of gate1), 'game' (those whose
    avatar lived on game1: all of them in 1+1+1)."""
    if kind == "stop":
        return "none"
    return {"game": "game", "gate": "gate", "dispatcher": "none"}[role]


async def run_fault(
    runner: ClusterRunner, layout: str, role: str, kind: str, plan: Plan, *,
    binary: Path | None, first_bot: int, saved: dict[str, tuple[str, int]],
) -> Outcome:
    """One fault on a running cluster; ``saved`` (name -> (avatar id, prof)) grows by this
    fault's saved players and is checked after recovery."""
    target = f"{role}1"
    tag = f"{layout}-{role}-{kind}"
    out = Outcome(layout=layout, fault=f"{role}-{kind}", target=target)
    gates = LAYOUTS[layout][2]
    players: list[Player] = []
    bots: gobot.BotProcess | None = None
    try:
        full, _ = await wait_full_strength(runner, f"{tag}-pre", gates)
        if not full:
            raise RuntimeError(f"{tag}: the cluster is not at full strength before the fault")
        saved.update(await save_players(runner, [f"{tag}-saved{i}" for i in range(plan.saved)], gates))
        names = [f"{tag}-p{i}" for i in range(plan.players)]
        await save_players(runner, names, gates)  # each player's avatar is in storage
        for i, name in enumerate(names):
            p = Player(name, i % gates)
            await asyncio.wait_for(p.login(runner), 60)
            p.start_pump()
            players.append(p)
        out.connected = len(players)
        for p in players:
            out.per_gate[str(p.gate)] = out.per_gate.get(str(p.gate), 0) + 1
        if binary is not None and plan.bots:
            bots = start_bots(binary, runner, f"{tag}-during", plan.bots, plan.bot_seconds, first_bot)
        await asyncio.sleep(plan.settle)

        pid = pid_of(runner, target)
        if pid is None:
            raise RuntimeError(f"{target} has no pid")
        wall0, t0 = time.time(), time.monotonic()
        resumed = t0
        if kind == "kill":
            os.kill(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGSTOP)
            try:
                await asyncio.sleep(plan.stop_seconds)
            finally:
                os.kill(pid, signal.SIGCONT)
            resumed = time.monotonic()
        full, newcomer = await wait_full_strength(runner, f"{tag}-after", gates,
                                                  failures=out.newcomer_failures)
        out.full_strength, out.newcomer_ok = full, newcomer
        if full:
            out.recover_s = round(time.monotonic() - resumed, 2)
        # Let the players' fate settle (a told client is closed within a few seconds).
        await asyncio.sleep(2.0)

        disturbed = [p for p in players if p.client is not None and p.client.is_closed]
        out.disturbed = len(disturbed)
        out.disturbed_names = [p.name for p in disturbed]
        for p in disturbed:
            code = (p.client.close_code if p.client is not None else None) or "closed (no notice)"
            out.close_codes[code] = out.close_codes.get(code, 0) + 1
            out.disturbed_per_gate[str(p.gate)] = out.disturbed_per_gate.get(str(p.gate), 0) + 1
        told = [p.closed_at - t0 for p in disturbed if p.closed_at is not None]
        if told:
            out.detect_client_s = round(min(told), 3)
        out.detect_log_s, out.detect_log_line = first_complaint_after(runner, wall0)
        out.complaints = complaints_after(runner, wall0)
        if out.detect_log_s is not None:
            out.detect_log_s = round(out.detect_log_s, 3)

        # Undisturbed players are served; their longest pause around the fault.
        gaps = []
        for p in players:
            if p in disturbed:
                continue
            if await p.served(30):
                out.undisturbed_served += 1
            else:
                out.undisturbed_not_served.append(p.name)
            window = [t for t in p.replies if t >= t0 - plan.settle]
            gaps += [b - a for a, b in zip(window, window[1:], strict=False)]
        out.max_gap_s = round(max(gaps), 2) if gaps else None

        # Disturbed players log in again (their avatars load from storage).
        took = []
        for p in disturbed:
            t = time.monotonic()
            again = Player(p.name, p.gate)
            try:
                await asyncio.wait_for(again.login(runner), 60)
                if await again.served(30):
                    out.relogin_ok += 1
                    took.append(time.monotonic() - t)
                else:
                    out.relogin_failed.append(f"{p.name}: not served")
            except (TimeoutError, Exception) as exc:
                out.relogin_failed.append(f"{p.name}: {type(exc).__name__}: {exc}"[:200])
            finally:
                await again.close()
        out.relogin_max_s = round(max(took), 2) if took else None

        out.saved_checked = len(saved)
        out.data_lost = await check_saved(runner, saved, gates)

        if bots is not None:
            result = await asyncio.to_thread(bots.wait)
            out.bot_during = result.summary()
            out.bot_during_errors = len(result.output.errors)
            out.bot_during_connected = result.output.connected
            out.bot_during_error_lines = [line[:300] for line in result.output.errors[:5]]
            bots = None
        if binary is not None and plan.after_bots:
            after = start_bots(binary, runner, f"{tag}-after", plan.after_bots, plan.after_seconds,
                               first_bot + 1000)
            with after:
                result = await asyncio.to_thread(after.wait)
            verdict = result.verdict()
            out.bot_after_passed = bool(verdict)
            out.bot_after = verdict.message[:3000]
        _, out.status_after = await asyncio.to_thread(status, runner)
    except Exception as exc:
        out.error = f"{type(exc).__name__}: {exc}"[:1000]
    finally:
        continue_all(runner)
        if bots is not None:
            bots.kill()
        for p in players:
            await p.close()
    return out


# ----------------------------------------------------------------------------- the matrix


def faults_for(quick: bool) -> list[tuple[str, str]]:
    return [(role, kind) for role in ROLES for kind in KINDS]


async def run_layout(layout: str, faults: list[tuple[str, str]], plan: Plan, directory: Path,
                     binary: Path | None, report: Any = None) -> list[Outcome]:
    runner = make_runner(directory, layout, plan)
    outcomes: list[Outcome] = []
    runner.start()
    saved: dict[str, tuple[str, int]] = {}
    try:
        for n, (role, kind) in enumerate(faults):
            t = time.monotonic()
            o = await run_fault(runner, layout, role, kind, plan, binary=binary,
                                first_bot=1 + 100 * n, saved=saved)
            if report is not None:
                report(o, time.monotonic() - t)
            outcomes.append(o)
    finally:
        continue_all(runner)
        runner.stop()
        runner.kill()
    return outcomes


def _line(o: Outcome, wall: float) -> str:
    if o.error:
        return f"{o.layout} {o.fault:16s} FAILED: {o.error}"
    return (f"{o.layout} {o.fault:16s} detect client {o.detect_client_s} s / log {o.detect_log_s} s, "
            f"recover {o.recover_s} s, disturbed {o.disturbed}/{o.connected} {o.close_codes}, "
            f"relogin {o.relogin_ok}/{o.disturbed} (max {o.relogin_max_s} s), max gap {o.max_gap_s} s, "
            f"data lost {len(o.data_lost)}/{o.saved_checked}, bot after "
            f"{'passed' if o.bot_after_passed else o.bot_after_passed} ({wall:.0f} s)\n"
            f"    first log line: {o.detect_log_line}\n    bot during: {o.bot_during}"
            + "".join(f"\n    newcomer failed: {f}" for f in o.newcomer_failures))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default=None, help="layouts: 111, 222 (default: both; --quick: 111)")
    parser.add_argument("--faults", default="", help="e.g. game-kill,gate-stop (default: all six)")
    parser.add_argument("--backoff", default=None, help="[supervisor] restart_backoff (default: 1)")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    parser.add_argument("--keep", default=None, help="run the clusters in this directory (kept)")
    args = parser.parse_args()
    layouts = [x for x in (args.only or ("111" if args.quick else "111,222")).split(",") if x]
    faults = [(f.split("-")[0], f.split("-")[1]) for f in args.faults.split(",") if f] or faults_for(args.quick)
    plan = Plan(backoff=args.backoff)
    if args.quick:
        plan = Plan(players=6, saved=1, bots=6, bot_seconds=12, after_bots=10, after_seconds=12,
                    stop_seconds=4.0, settle=2.0, backoff=args.backoff)
    binary = bot_binary()
    outcomes = []
    for layout in layouts:
        with tempfile.TemporaryDirectory(prefix=f"goworld-faults-{layout}-") as tmp:
            directory = Path(tmp)
            if args.keep:
                directory = Path(args.keep) / layout
                directory.mkdir(parents=True)
            outcomes += await run_layout(layout, faults, plan, directory, binary,
                                         report=lambda o, w: print(_line(o, w), flush=True))
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"quick": args.quick, "plan": asdict(plan), "faults": [o.to_json() for o in outcomes]},
            indent=1))


if __name__ == "__main__":
    asyncio.run(main())
