"""Capacity: N strict bots on examples/test_game (1 + 1 + 1 or 2 + 2 + 2), ramped in steps.

The load is GoWorld's own Go bot (``test_client -strict``, built from ../shared/goworld-go by
goworld.gobot; ``--bot python`` uses our Python bot, scripts/test_bot.py, instead): logins, a
"thing" every 0-6 s per bot, position syncs at 10 Hz with probability 0.5. One bot process per
step with fresh users (the Python bot: one process per 500 bots). A separate probe client (this
process) logs in and calls ``TestListField`` every 100 ms, one call in flight; its round trip
to ``OnTestListField`` is the RTT. CPU% and RSS of every process come from /proc over the
measuring window (goworld.bench.procstat), things/s from the bots' own counts in the window.
After each window, while the bots keep going, py-spy samples the busiest cluster process for a
few seconds (goworld.bench.profile); the report shows the last step's profile.
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from goworld import gobot
from goworld.bench import procstat, profile
from goworld.bench.result import BenchError, Result
from goworld.bench.scenarios import _script

P99_LIMIT_MS = 100.0
PROFILE_SECONDS = 5.0
BOTS_PER_PROCESS = 500
PROBE_INTERVAL = 0.1
PROBE_TIMEOUT = 2.0
BOTS = ("go", "python")
#: The default ramps: GoWorld's Go bot is light enough to go further than our Python bot.
FULL = {"steps": [200, 400, 800, 1200, 1600, 2000, 2500, 3000], "window": 10.0}
FULL_PYTHON = {"steps": [100, 200, 400, 600, 800, 1000, 1200, 1400, 1600], "window": 10.0}
QUICK = {"steps": [4, 8], "window": 3.0}


class Probe:
    def __init__(self) -> None:
        self.rtts: list[float] = []
        self.failures = 0
        self._reply: asyncio.Future[None] | None = None
        self._client: Any = None

    async def run(self, port: int, stop: asyncio.Event) -> None:
        from goworld.client import GoWorldClient

        c = self._client = await GoWorldClient.connect("127.0.0.1", port)
        try:
            account = await c.wait_player("Account", timeout=30)
            c.call(account.id, "Login", "benchprobe", "123456")
            await c.wait_player("Avatar", timeout=30)
            c.record = False
            c.calls.clear()
            c.log.clear()
            c.on_call = self._on_call
            loop = asyncio.get_running_loop()
            while not stop.is_set() and not c.is_closed:
                self._reply = loop.create_future()
                t0 = time.perf_counter()
                c.call_player("TestListField")
                try:
                    await asyncio.wait_for(self._reply, PROBE_TIMEOUT)
                    self.rtts.append(time.perf_counter() - t0)
                except TimeoutError:
                    self.failures += 1
                await asyncio.sleep(PROBE_INTERVAL)
        finally:
            await c.aclose()

    def _on_call(self, call: Any) -> None:
        if call.method == "OnTestListField" and self._reply and not self._reply.done():
            self._reply.set_result(None)
        elif call.method == "TestCallAllPlzEcho" and self._client is not None and call.args:
            # The probe's avatar lives among the bots: a bot's DoTestCallAll counts it and
            # waits for its echo like any other client's (without it, the bot times out).
            self._client.call(call.entity_id, "TestCallAllEcho", call.args[0])


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def _split(n: int, first: int) -> list[tuple[int, int]]:
    """(count, first index) per bot process: one Python process drives at most
    BOTS_PER_PROCESS bots, so above that the load spreads over both cores."""
    k = max(1, math.ceil(n / BOTS_PER_PROCESS))
    sizes = [n // k + (1 if i < n % k else 0) for i in range(k)]
    out, start = [], first
    for size in sizes:
        out.append((size, start))
        start += size
    return out


class PythonLoad:
    """Our Python strict bot (scripts/test_bot.py), one process per BOTS_PER_PROCESS bots."""

    name = "Python strict bots (scripts/test_bot.py)"

    def __init__(self, runner: Any, log_dir: Path) -> None:
        self.runner = runner
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        self.window_things = 0

    def start(self, n: int, first: int, duration: float) -> dict[str, int]:
        # All bot processes end at the same moment: one that ended first would disconnect its
        # bots while the others' DoTestCallAll still wait for their echoes (a false FATAL).
        until = time.time() + duration
        self.procs, self.logs = [], []
        for i, (count, start) in enumerate(_split(n, first)):
            log = self.log_dir / f"bots-{n}-{i + 1}.log"
            cmd = [sys.executable, str(_script.path("test_bot.py")), "-configfile",
                   str(self.runner.ini), "-server", "127.0.0.1", "-N", str(count), "-S", str(start),
                   "--until", f"{until:.3f}", "-strict", "-quiet"]
            with log.open("w") as out:
                self.procs.append(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT))
            self.logs.append(log)
        return {f"bots{i + 1}": b.pid for i, b in enumerate(self.procs)}

    def window_began(self) -> None:
        pass

    def window_ended(self, seconds: float) -> None:
        self.window_things = -1  # the Python bot reports totals only

    async def finish(self, n: int, timeout: float) -> dict[str, Any]:
        try:
            rcs = [await asyncio.to_thread(b.wait, timeout) for b in self.procs]
        finally:
            self.kill()
        total: dict[str, Any] = {"connected": 0, "started": 0, "total": 0, "panics": 0,
                                 "timeouts": 0}
        reasons: list[str] = []
        complete = True
        for log in self.logs:
            text = log.read_text(errors="replace")
            results = [json.loads(line[7:]) for line in text.splitlines()
                       if line.startswith("RESULT ")]
            reasons += [line.strip() for line in text.splitlines() if "FATAL" in line][:1]
            if not results:
                complete = False
                continue
            res = results[-1]
            for key in ("connected", "started", "total", "panics"):
                total[key] += res.get(key, 0)
            total["timeouts"] += sum(res.get("timeouts", {}).values())
        errors = len(reasons) + total["panics"]
        bad_rc = [rc for rc in rcs if rc != 0]
        if bad_rc and not reasons:
            reasons.append(f"bot process exited {bad_rc[0]}")
        if not complete:
            reasons.append("a bot process printed no RESULT")
        elif total["started"] != n:
            reasons.append(f"{total['started']}/{n} bots started")
        if total["timeouts"]:
            reasons.append(f"{total['timeouts']} things timed out")
        if total["panics"]:
            reasons.append(f"{total['panics']} panics")
        return {"rc": bad_rc[0] if bad_rc else 0, "connected": total["connected"],
                "things": total["total"], "things_per_s": math.nan, "errors": errors,
                "timeouts": total["timeouts"], "reasons": reasons}

    def kill(self) -> None:
        for b in self.procs:
            if b.poll() is None:
                b.kill()
                b.wait()


class GoLoad:
    """GoWorld's Go bot (test_client -strict), one process per step, every gate in its ini."""

    name = "GoWorld's Go bot (test_client -strict)"

    def __init__(self, runner: Any, log_dir: Path) -> None:
        try:
            self.binary = gobot.build_test_client()
        except (gobot.GoToolchainMissing, gobot.BuildError) as exc:
            raise BenchError(f"cannot build GoWorld's Go bot: {exc}") from exc
        self.log_dir = log_dir
        self.ini = gobot.write_bot_ini(runner.config(), log_dir / "gobot.ini")
        self.proc: gobot.BotProcess | None = None
        self._mark = 0
        self.window_things = 0

    def start(self, n: int, first: int, duration: float) -> dict[str, int]:
        self.proc = gobot.start_bot(
            self.binary, self.ini, self.log_dir / f"gobot-{n}", n=n, start=first,
            duration=math.ceil(duration), name=f"N{n}",
        )
        return {"bots": self.proc.pid}

    def _size(self) -> int:
        assert self.proc is not None
        try:
            return self.proc.log_path.stat().st_size
        except OSError:
            return 0

    def window_began(self) -> None:
        self._mark = self._size()

    def window_ended(self, seconds: float) -> None:
        """Things in the profile sections the bot printed during the window (each section is
        printed at the end of the ~1 s it covers, so the two window edges even out)."""
        assert self.proc is not None
        with self.proc.log_path.open("rb") as f:
            f.seek(self._mark)
            text = f.read(max(0, self._size() - self._mark)).decode(errors="replace")
        self.window_things = gobot.parse_output(text).total

    async def finish(self, n: int, timeout: float) -> dict[str, Any]:
        assert self.proc is not None
        try:
            result = await asyncio.to_thread(self.proc.wait, timeout)
        finally:
            self.kill()
        out = result.output
        reasons: list[str] = []
        if result.returncode is None:
            reasons.append("the bot did not exit in time (killed)")
        elif result.returncode != 0:
            reasons.append(f"the bot exited {result.returncode} (a strict failure)")
        if out.errors:
            reasons.append(f"{len(out.errors)} error/fatal lines, the first: {out.errors[0][:160]}")
        if out.connected != n:
            reasons.append(f"{out.connected}/{n} bots connected")
        timeouts = sum("TIMEOUT" in line for line in out.errors)
        return {"rc": result.returncode if result.returncode is not None else -9,
                "connected": out.connected, "things": out.total, "errors": len(out.errors),
                "timeouts": timeouts, "reasons": reasons}

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()


async def _step(runner: Any, pids: dict[str, int], probe: Probe, load: Any, n: int, first: int,
                window: float, log_dir: Path) -> dict[str, Any]:
    warmup = 5.0 + n / 100
    profiling = profile.find_pyspy() is not None
    duration = warmup + window + 2.0 + (PROFILE_SECONDS + 1.0 if profiling else 0.0)
    try:
        bot_pids = load.start(n, first, duration)
        await asyncio.sleep(warmup)
        procs = {**pids, **bot_pids}
        before = {k: _cpu_rss(pid) for k, pid in procs.items()}
        probe.rtts.clear()
        probe.failures = 0
        load.window_began()
        t0 = time.monotonic()
        await asyncio.sleep(window)
        elapsed = time.monotonic() - t0
        load.window_ended(elapsed)
        after = {k: _cpu_rss(pid) for k, pid in procs.items()}
        rtts, probe_failures = list(probe.rtts), probe.failures
        hot = _busiest(pids, before, after)
        prof = await _profile(hot, pids.get(hot or "", 0)) if profiling else None
        res = await load.finish(n, duration + 120)
    finally:
        load.kill()
    reasons = list(res["reasons"])
    if probe_failures:
        reasons.append(f"{probe_failures} probe failures")
    if not rtts:
        reasons.append("no probe round trip in the window (the probe stopped)")
    failed = bool(reasons) or res["connected"] != n
    usage: dict[str, tuple[float, float]] = {}
    for k in pids:
        usage[k] = _usage(before.get(k), after.get(k), elapsed)
    bot_usage = [_usage(before.get(k), after.get(k), elapsed) for k in bot_pids]
    usage["bots"] = (round(sum(u[0] for u in bot_usage), 1), round(sum(u[1] for u in bot_usage), 1))
    things_per_s = load.window_things / elapsed if load.window_things >= 0 else math.nan
    return {
        "n": n, "rc": res["rc"], "reason": "; ".join(reasons)[:300],
        "connected": res["connected"], "things": res["things"],
        "things_per_s": round(things_per_s, 1), "errors": res["errors"],
        "timeouts": res["timeouts"], "probe_failures": probe_failures,
        "failed": failed, "p50": _percentile(rtts, 0.5) * 1000,
        "p99": _percentile(rtts, 0.99) * 1000, "samples": len(rtts), "usage": usage,
        "profile": prof,
    }


def _usage(b: tuple[float, int] | None, a: tuple[float, int] | None,
           elapsed: float) -> tuple[float, float]:
    if not a or not b:
        return math.nan, math.nan
    return round(100 * (a[0] - b[0]) / elapsed, 1), round(a[1] / 2**20, 1)


def _busiest(pids: dict[str, int], before: dict[str, Any], after: dict[str, Any]) -> str | None:
    """The cluster process (bots excluded) that used the most CPU in the window."""
    used = {k: after[k][0] - before[k][0] for k in pids if before.get(k) and after.get(k)}
    return max(used, key=used.__getitem__) if used else None


async def _profile(name: str | None, pid: int) -> dict[str, Any] | None:
    if name is None or not pid:
        return None
    try:
        p = await asyncio.to_thread(profile.sample, pid, PROFILE_SECONDS, process=name)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        return {"process": name, "error": str(exc)}
    return {"process": name, "seconds": p.seconds, "samples": p.samples,
            "top": [[h.function, h.self_pct, h.total_pct] for h in p.hotspots],
            "one_line": p.one_line()}


def _cpu_rss(pid: int) -> tuple[float, int] | None:
    try:
        return procstat.cpu_rss(pid)
    except OSError:
        return None


async def _ramp(layout: tuple[int, int, int], steps: list[int], window: float,
                workdir: Path, bot: str) -> list[dict[str, Any]]:
    from goworld.testing import ClusterRunner

    app = _script.ROOT / "examples" / "test_game"
    d, g, t = layout
    # test_game's own goworld.ini (and GoWorld's default) syncs positions every 100 ms.
    runner = ClusterRunner(workdir, app, dispatchers=d, games=g, gates=t,
                           position_sync_interval_ms=100)
    try:
        runner.start()  # returns once every game serves (all service shards exist)
        load = GoLoad(runner, workdir) if bot == "go" else PythonLoad(runner, workdir)
        pids = {p.stem: int(p.read_text()) for p in sorted((workdir / ".goworld").glob("*.pid"))}
        probe, stop = Probe(), asyncio.Event()
        probe_task = asyncio.create_task(probe.run(runner.gate(0, "tcp"), stop))
        await asyncio.sleep(2.0)
        if probe_task.done():
            probe_task.result()  # raises why the probe could not log in
        out, first = [], 1
        for n in steps:
            step = await _step(runner, pids, probe, load, n, first, window, workdir)
            first += n
            out.append(step)
            if step["failed"]:
                step["logs"] = _keep_logs(workdir, layout, n)
            _print_step(step)
            if step["failed"]:
                break  # past capacity: the next steps would only be worse
            # Past the p99 limit the ramp goes on while the bots see no error, so the report
            # has both figures (latency capacity, and the largest N with 0 bot errors).
        stop.set()
        try:
            await asyncio.wait_for(probe_task, PROBE_TIMEOUT + 5)
        except Exception as exc:  # the steps measured so far stand (a dead probe failed its step)
            print(f"   the probe ended with {type(exc).__name__}: {exc}", flush=True)
        return out
    finally:
        try:
            runner.stop()
        finally:
            runner.kill()


def _keep_logs(workdir: Path, layout: tuple[int, int, int], n: int) -> str:
    """Copy the cluster's and the bots' logs out of the temporary directory (a failed step
    must leave evidence); returns where they went."""
    keep = _script.ROOT / "bench-logs" / (time.strftime("%Y%m%d-%H%M%S")
                                 + f"-{''.join(map(str, layout))}-N{n}")
    keep.mkdir(parents=True, exist_ok=True)
    for log in workdir.glob("*.log"):
        shutil.copy2(log, keep / log.name)
    for log in workdir.glob(f"gobot-{n}/*.log"):
        shutil.copy2(log, keep / f"gobot-{n}-{log.name}")
    return str(keep.relative_to(_script.ROOT))


def _verdict(s: dict[str, Any]) -> str:
    if s["failed"]:
        return "bot failure"
    return "ok" if s["p99"] < P99_LIMIT_MS else f"p99 ≥ {P99_LIMIT_MS:g} ms"


def _print_step(s: dict[str, Any]) -> None:
    usage = "  ".join(f"{k} {c}%/{r}MB" for k, (c, r) in s["usage"].items())
    print(f"  N={s['n']:5d} connected {s['connected']} things {s['things']} "
          f"({s['things_per_s']:g}/s) errors {s['errors']} p50 {s['p50']:.1f} ms p99 {s['p99']:.1f} ms {_verdict(s)}  {usage}",
          flush=True)
    if s.get("reason"):
        print(f"    why: {s['reason']}", flush=True)
    if s.get("logs"):
        print(f"    logs: {s['logs']}", flush=True)
    prof = s.get("profile")
    if prof:
        print(f"    profile: {prof.get('one_line') or prof.get('error')}", flush=True)


def _run_loop(coro: Any) -> Any:
    try:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
            return r.run(coro)
    except ImportError:
        return asyncio.run(coro)


def _columns(names: list[str]) -> dict[str, list[str]]:
    """Table columns: one per process, or one per role when a role has several processes."""
    roles: dict[str, list[str]] = {}
    for name in names:
        roles.setdefault(name.rstrip("0123456789") if name != "bots" else name, []).append(name)
    cols: dict[str, list[str]] = {}
    for role, members in roles.items():
        if len(members) == 1:
            cols[members[0]] = members
        else:
            cols[f"{len(members)} {role}s"] = members
    return cols


def _usage_cell(s: dict[str, Any], members: list[str]) -> str:
    cpu = sum(s["usage"][k][0] for k in members)
    rss = sum(s["usage"][k][1] for k in members)
    return f"{cpu:.1f} % / {rss:.1f}"


class Capacity:
    """The capacity ramp on one cluster layout (dispatchers, games, gates)."""

    OPTIONS = ("steps", "window", "bot")

    def __init__(self, name: str, layout: tuple[int, int, int]) -> None:
        self.name = name
        self.layout = layout
        self.plus = " + ".join(str(v) for v in layout)
        self.TITLE = f"Capacity (examples/test_game on {self.plus}, strict bots)"

    def run(self, quick: bool, steps: list[int] | None = None,
            window: float | None = None, bot: str | None = None) -> Result:
        bot = bot or "go"
        if bot not in BOTS:
            raise BenchError(f"--bot {bot!r}: choose one of {', '.join(BOTS)}")
        plan: dict[str, Any] = dict(QUICK if quick else FULL if bot == "go" else FULL_PYTHON)
        if steps:
            plan["steps"] = list(steps)
        if window:
            plan["window"] = window
        with tempfile.TemporaryDirectory(prefix="goworld-bench-") as tmp:
            done = _run_loop(_ramp(self.layout, plan["steps"], plan["window"], Path(tmp), bot))
        if not done:
            raise BenchError("no capacity step ran")
        return self._result(done, plan, quick, custom=bool(steps or window), bot=bot)

    def _result(self, steps: list[dict[str, Any]], plan: dict[str, Any], quick: bool,
                custom: bool, bot: str = "go") -> Result:
        names = list(steps[0]["usage"])
        cols = _columns(names)
        rows, figures = [], {}
        for s in steps:
            rows.append([s["n"], s["connected"], s["things"], s["things_per_s"], s["errors"],
                         round(s["p50"], 1), round(s["p99"], 1),
                         *(_usage_cell(s, m) for m in cols.values()), _verdict(s)])
            for key in ("connected", "things", "things_per_s", "errors", "p50", "p99", "timeouts"):
                figures[f"{s['n']}.{key}"] = float(s[key])
            for k in names:
                figures[f"{s['n']}.{k}.cpu_pct"] = float(s["usage"][k][0])
                figures[f"{s['n']}.{k}.rss_mb"] = float(s["usage"][k][1])
        good = [s["n"] for s in steps if not s["failed"] and s["p99"] < P99_LIMIT_MS]
        capacity = max(good, default=0)
        figures["capacity_n"] = float(capacity)
        no_errors = [s["n"] for s in steps if s["errors"] == 0 and s["rc"] == 0
                     and s["connected"] == s["n"]]
        figures["no_error_n"] = float(max(no_errors, default=0))
        if bot == "go":
            notes = [
                "Load: GoWorld's own Go bot (examples/test_client of ../shared/goworld-go, built "
                "by goworld.gobot), `-strict`, one process per step with fresh users, spread by "
                "the bot over every gate.",
                "Things/s: the things the bot's per-second profile reports during the measuring "
                "window, divided by the window; at full speed N bots do about N/3 per second "
                "(each waits uniform(0, 6 s) before each thing).",
                "A step fails when the bot exits non-zero (strict: a thing timed out or an "
                "entity/method error), prints an error/fatal line, connects fewer than N bots, "
                "or a probe call takes > 2 s.",
            ]
        else:
            notes = [
                "Load: our Python strict bot (scripts/test_bot.py, which mirrors GoWorld's Go "
                f"bot); one bot process drives at most {BOTS_PER_PROCESS} bots, above that the "
                "bots run in several processes and the bots column sums them.",
                "A step fails when a bot process exits non-zero (a strict FATAL), a bot is not "
                "connected or not started, a thing times out, the bot logs a panic, or a probe "
                "call takes > 2 s. The Python bot reports no per-second counts (things/s: nan).",
            ]
        notes.append("Bots, cluster and probe share this machine's cores: the figures are a floor.")
        if any(len(m) > 1 for m in cols.values()):
            notes.append("Where a role has several processes the table sums their CPU and RSS; "
                         "bench-results.jsonl has each process.")
        failed = [s for s in steps if s["failed"]]
        for s in failed:
            notes.append(f"N={s['n']}: {s['reason'] or 'failed'} (exit {s['rc']}, timeouts "
                         f"{s['timeouts']}, bot errors {s['errors']}, probe failures "
                         f"{s['probe_failures']}; logs kept in {s.get('logs')}).")
        last = steps[-1]
        if last["n"] == plan["steps"][-1] and not failed and last["p99"] < P99_LIMIT_MS:
            notes.append("The largest step still passed: capacity is at least this, not at most.")
        prof = last.get("profile")
        if prof and prof.get("top"):
            hot = "; ".join(f"{f} {self_pct:.0f} %" for f, self_pct, _ in prof["top"][:6])
            notes.append(f"Where the time goes at N={last['n']}: py-spy on {prof['process']}, the "
                         f"busiest cluster process, {prof['samples']} busy samples over "
                         f"{prof['seconds']:g} s after the window (self time, native frames "
                         f"included, waits left out): {hot}. On loopback a write() also runs "
                         "the receiving side of TCP for the bot's socket, charged to the gate.")
        elif prof and prof.get("error"):
            notes.append(f"No profile at N={last['n']}: {prof['error']}")
        elif prof:
            notes.append(f"At N={last['n']} py-spy found no busy sample in {prof['process']} "
                         f"over {prof['seconds']:g} s: the busiest process was idle.")
        series = {"n": [s["n"] for s in steps], "p50": [s["p50"] for s in steps],
                  "p99": [s["p99"] for s in steps],
                  "cpu": {k: [s["usage"][k][0] for s in steps] for k in names},
                  "profile": prof}
        steps_arg = ",".join(str(n) for n in plan["steps"])
        flags = f" --steps {steps_arg} --window {plan['window']:g}" if custom else ""
        if bot != "go":
            flags += f" --bot {bot}"
        default = "" if custom else f"  (steps {steps_arg}, {plan['window']:g} s window per step)"
        if self.layout != (1, 1, 1):
            target = "no target for this layout"
        elif quick or custom:
            target = "not the full ramp: no verdict on the target of 1,000"
        else:
            target = (f"target ≥ 1,000 {'Go' if bot == 'go' else 'Python'} bots on this 2-core "
                      "machine, bots included: "
                      + ("met" if capacity >= 1000 else f"missed by {1000 - capacity}"))
        return Result(
            scenario=self.name,
            title=f"Capacity (examples/test_game on {self.plus}, "
                  f"{GoLoad.name if bot == 'go' else PythonLoad.name})",
            commands=[f"goworld bench --only {self.name}{' --quick' if quick else ''}{flags}"
                      f"{default}"],
            columns=["bots", "connected", "things done", "things/s in window", "bot errors",
                     "probe p50 ms", "p99 ms",
                     *(f"{c} CPU / RSS MB" for c in cols), "step"],
            rows=rows,
            figures=figures,
            summary=(f"Largest N with 0 bot errors on {self.plus}: {max(no_errors, default=0)}; "
                     f"with also probe p99 < {P99_LIMIT_MS:g} ms: {capacity} ({target})."),
            notes=notes,
            series=series,
        )


CAPACITY = Capacity("capacity", (1, 1, 1))
CAPACITY_222 = Capacity("capacity-222", (2, 2, 2))
