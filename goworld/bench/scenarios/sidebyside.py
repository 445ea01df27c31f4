"""Side by side with GoWorld: the same Go bot load on our cluster and on GoWorld's own, in one run.

For each N of a ramp (default 100, 300, 1000, 2000; ``--steps``), GoWorld's Go bot
(``test_client -strict -N N -duration D``, D = ``--window``, default 40 s) runs ``--repeat``
times (default 3) against our cluster (examples/test_game) and as often against GoWorld's (its
dispatcher, gate and test_game, built from ../shared/goworld-go by
:mod:`goworld.bench.goworld_go`), alternating, ours first; the table shows each engine's
medians over its runs and the spread (min–max) of total CPU and average latency. Both are
1 + 1 + 1 on loopback with the same goworld.ini from :func:`goworld.testing.write_ini` (free
ports, ``position_sync_interval_ms = 100`` for game and gate, ``log_level = info``), both
store entities and KVDB in MongoDB served by one mongo-java-server (a database per run), both
are fresh for every run, and the bot talks TCP to both. The port pre-flight of
:mod:`goworld.ports` runs on each ini first: a run refuses to start on a port in use.

Per run: what the bot printed (things completed, average and max thing latency over every
thing, error/fatal lines, exit status, bots connected), each server process's CPU seconds
(user + system from /proc) between the bot's start and its exit, per 1000 things, and its peak
RSS (VmHWM) at the end; mongo-java-server's and the bot's CPU are recorded but not in the
total. The machine's CPU time over the run minus all of these is the other work that ran
meanwhile ("other load", in % of all cores): the machine is shared.
"""

from __future__ import annotations

import contextlib
import math
import resource
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from goworld import gobot
from goworld.bench import goworld_go, mongo_java, procstat
from goworld.bench.result import BenchError, Result
from goworld.bench.scenarios import _script
from goworld.config import ClusterConfig

TITLE = "Side by side with GoWorld (1 + 1 + 1 each, GoWorld's Go bot, MongoDB on mongo-java-server)"
OPTIONS = ("steps", "window", "repeat")
FULL: dict[str, Any] = {"steps": [100, 300, 1000, 2000], "window": 40.0, "repeat": 3}
QUICK: dict[str, Any] = {"steps": [5], "window": 8.0, "repeat": 1}
#: The order of the runs at each N.
ENGINES = ("python", "go")
LABELS = {"python": "ours (Python)", "go": "GoWorld (Go)"}
ROLES = ("dispatcher", "game", "gate")
APP = _script.ROOT / "examples" / "test_game"
#: How long past -duration the bot may take before it is killed.
BOT_GRACE = 60.0
MB = 2**20


@dataclass
class Run:
    """One engine at one N."""

    engine: str
    n: int
    duration: int
    rc: int | None = None  # the bot's exit status; None: killed, or it never ran
    connected: int = 0
    things: int = 0
    avg_ms: float = math.nan
    max_ms: float = math.nan
    errors: int = 0
    first_error: str = ""
    seconds: float = math.nan  # bot start to bot exit
    cpu_s: dict[str, float] = field(default_factory=dict)  # roles, storage, bot, supervisor
    sys_s: dict[str, float] = field(default_factory=dict)  # roles: the system (kernel) part
    #: roles: (read-type, write-type) system calls per second over the run (/proc/PID/io)
    syscalls: dict[str, tuple[float, float]] = field(default_factory=dict)
    peak_rss_mb: dict[str, float] = field(default_factory=dict)  # roles
    busy_before: float = 0.0  # how busy the machine was when the run began (0..1)
    other_load: float = math.nan  # other work's share of all cores during the run (0..1)
    reason: str = ""  # why the run failed; "" when it passed
    logs: str = ""
    runs: int = 1  # the runs this one is the median of (_median_run)
    total_range: tuple[float, float] = (math.nan, math.nan)  # total CPU s/1k things, min..max
    avg_range: tuple[float, float] = (math.nan, math.nan)  # average thing latency ms, min..max

    def per_1k(self, role: str) -> float:
        if role == "total":
            return sum(self.per_1k(r) for r in ROLES)
        cpu = self.cpu_s.get(role, math.nan)
        return 1000 * cpu / self.things if self.things else math.nan

    def sys_per_1k(self, role: str) -> float:
        """System (kernel) CPU seconds of ``role`` per 1000 things ("total": the three)."""
        if role == "total":
            return sum(self.sys_per_1k(r) for r in ROLES)
        cpu = self.sys_s.get(role, math.nan)
        return 1000 * cpu / self.things if self.things else math.nan

    @property
    def total_rss_mb(self) -> float:
        return sum(self.peak_rss_mb.get(r, math.nan) for r in ROLES)


def run(quick: bool, steps: list[int] | None = None, window: float | None = None,
        repeat: int | None = None) -> Result:
    plan: dict[str, Any] = dict(QUICK if quick else FULL)
    if steps:
        plan["steps"] = list(steps)
    if window:
        plan["window"] = window
    if repeat:
        plan["repeat"] = repeat
    duration = max(3, math.ceil(plan["window"]))
    try:
        bot = gobot.build_test_client()
        servers = goworld_go.build_servers()
    except (gobot.GoToolchainMissing, gobot.BuildError) as exc:
        raise BenchError(f"cannot build GoWorld's programs: {exc}") from exc
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="goworld-bench-sidebyside-") as tmp_name:
        tmp = Path(tmp_name)
        with mongo_java.running(tmp / "mongo-java-server.log") as mongo:
            for n in plan["steps"]:
                for rep in range(plan["repeat"]):  # alternating: drift hits both engines alike
                    for engine in ENGINES:
                        busy = 0.0 if quick else _settle()
                        r = _run(engine, n, duration, tmp, mongo, bot, servers, rep)
                        r.busy_before = busy
                        _print_run(r)
                        runs.append(r)
    if not any(r.things for r in runs):
        raise BenchError("no run completed a thing: " + "; ".join(
            f"{LABELS[r.engine]} N={r.n}: {r.reason}" for r in runs)[:2000])
    return _result(runs, plan, quick, custom=bool(steps or window or repeat))


def _settle() -> float:
    from goworld.bench.runner import settle  # the runner imports the scenarios

    return settle()


def _run(engine: str, n: int, duration: int, tmp: Path, mongo: mongo_java.MongoJavaServer,
         bot: Path, servers: dict[str, Path], rep: int = 0) -> Run:
    """Start the engine's cluster, run the bot against it, stop the cluster (whatever happens)."""
    from goworld import config as gwconfig
    from goworld.testing import ClusterRunner, write_ini

    workdir = tmp / f"{engine}-N{n}-{rep}"
    workdir.mkdir()
    result = Run(engine, n, duration)
    backend = f"type = mongodb\nurl = {mongo.url}\ndb = bench_{engine}_{n}_{rep}"
    ini_options: dict[str, Any] = {"dispatchers": 1, "games": 1, "gates": 1,
                                   "position_sync_interval_ms": 100, "storage": backend,
                                   "kvdb": backend + "\ncollection = __kv__"}
    extras = {"storage": mongo.pid}
    with contextlib.ExitStack() as stack:
        try:
            if engine == "python":
                runner = ClusterRunner(workdir, APP, **ini_options)
                preflight(runner.config())
                stack.callback(runner.kill)
                stack.callback(runner.stop)
                try:
                    runner.start()  # returns once every game serves
                except AssertionError as exc:
                    raise BenchError(f"our cluster did not start: {exc}") from exc
                run_dir = workdir / ".goworld"
                pids = {role: int((run_dir / f"{role}1.pid").read_text()) for role in ROLES}
                if (run_dir / "supervisor.pid").exists():  # goworld start's, on by default
                    extras["supervisor"] = int((run_dir / "supervisor.pid").read_text())
                bot_ini = gobot.write_bot_ini(runner.config(), workdir / "gobot.ini")
            else:
                write_ini(workdir, **ini_options)
                bot_ini = workdir / "goworld.ini"  # GoWorld's bot reads GoWorld's own ini
                preflight(gwconfig.load(bot_ini, check_files=False))
                cluster = goworld_go.GoWorldCluster(bot_ini, servers)
                stack.callback(cluster.stop)
                try:
                    cluster.start()
                except RuntimeError as exc:
                    raise BenchError(str(exc)) from exc
                pids = {role: cluster.pids[f"{role}1"] for role in ROLES}
            _load(result, pids, extras, bot, bot_ini, workdir)
        except (BenchError, OSError, ValueError) as exc:
            result.reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            result.logs = _keep_logs(workdir, engine, n)
            return result
    if result.reason:
        result.logs = _keep_logs(workdir, engine, n)
    return result


def preflight(cfg: ClusterConfig) -> None:
    """BenchError when a listener of ``cfg`` is in use (another cluster?) or named twice."""
    from goworld import ports

    found = ports.problems(cfg)
    if found:
        raise BenchError("refusing to run, a port is not free: " + "; ".join(found))


def _load(result: Run, pids: dict[str, int], extras: dict[str, int], bot: Path, ini: Path,
          workdir: Path) -> None:
    """Run the bot once; fill ``result`` with its output and the costs of the processes of
    ``pids`` (the roles) and ``extras`` (measured, not in the total)."""
    procs = {**pids, **extras}
    before = {k: procstat.cpu_seconds(pid) for k, pid in procs.items()}
    sys0 = {role: procstat.cpu_split(pids[role])[1] for role in ROLES}
    io0 = {role: procstat.io_syscalls(pids[role]) for role in ROLES}
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    machine0 = procstat.machine_cpu_seconds()
    t0 = time.monotonic()
    proc = gobot.start_bot(bot, ini, workdir / "bot", n=result.n, duration=result.duration,
                           name=f"{result.engine}-N{result.n}")
    with proc:
        res = proc.wait(result.duration + BOT_GRACE)
    result.seconds = time.monotonic() - t0
    machine1 = procstat.machine_cpu_seconds()
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    for k, pid in procs.items():
        result.cpu_s[k] = procstat.cpu_seconds(pid) - before[k]
    for role in ROLES:
        result.sys_s[role] = procstat.cpu_split(pids[role])[1] - sys0[role]
        reads, writes = procstat.io_syscalls(pids[role])
        result.syscalls[role] = ((reads - io0[role][0]) / result.seconds,
                                 (writes - io0[role][1]) / result.seconds)
    for role in ROLES:
        result.peak_rss_mb[role] = procstat.peak_rss_bytes(pids[role]) / MB
    # The bot is the only child this process reaps during the run.
    result.cpu_s["bot"] = ((children1.ru_utime + children1.ru_stime)
                           - (children0.ru_utime + children0.ru_stime))
    ours = sum(result.cpu_s.values())
    busy, total = machine1[0] - machine0[0], machine1[1] - machine0[1]
    result.other_load = max(0.0, busy - ours) / total if total > 0 else math.nan
    out = res.output
    things = list(out.things.values())
    result.rc, result.connected, result.things = res.returncode, out.connected, out.total
    if result.things:
        result.avg_ms = 1000 * sum(t.total_seconds for t in things) / result.things
        result.max_ms = 1000 * max(t.max_seconds for t in things)
    result.errors = len(out.errors)
    result.first_error = out.errors[0][:200] if out.errors else ""
    reasons = []
    if res.returncode is None:
        reasons.append(f"the bot did not exit within {result.duration + BOT_GRACE:.0f} s (killed)")
    elif res.returncode != 0:
        reasons.append(f"the bot exited {res.returncode} (a strict failure)")
    if out.errors:
        reasons.append(f"{len(out.errors)} error/fatal lines, the first: {result.first_error}")
    if out.connected != result.n:
        reasons.append(f"{out.connected}/{result.n} bots connected")
    if not result.things:
        reasons.append("no thing completed")
    result.reason = "; ".join(reasons)[:400]


def _keep_logs(workdir: Path, engine: str, n: int) -> str:
    """Copy a failed run's cluster and bot logs out of the temporary directory; where to."""
    keep = _script.ROOT / "bench-logs" / f"{time.strftime('%Y%m%d-%H%M%S')}-sidebyside-{engine}-N{n}"
    keep.mkdir(parents=True, exist_ok=True)
    for pattern in ("*.log", "*.stderr", ".goworld/*.stderr", "bot/*.log"):
        for log in workdir.glob(pattern):
            shutil.copy2(log, keep / log.name)
    return str(keep.relative_to(_script.ROOT))


def _print_run(r: Run) -> None:
    cpu = "  ".join(f"{role} {r.per_1k(role):.2f}" for role in ROLES)
    rss = "  ".join(f"{role} {r.peak_rss_mb.get(role, math.nan):.0f}" for role in ROLES)
    print(f"  N={r.n:5d} {LABELS[r.engine]:14s} exit {r.rc} connected {r.connected} things "
          f"{r.things} avg {r.avg_ms:.1f} ms max {r.max_ms:.0f} ms  CPU s/1k things: {cpu}  "
          f"total {r.per_1k('total'):.2f}  peak RSS MB: {rss}  other load "
          f"{100 * r.other_load:.0f} %", flush=True)
    if r.reason:
        print(f"    why: {r.reason}", flush=True)
    if r.logs:
        print(f"    logs: {r.logs}", flush=True)


def _median_run(runs: list[Run]) -> Run:
    """One row for the runs of one engine at one N: the medians of the runs that passed (all
    of them when none did), the worst exit status, the spread of total CPU and latency."""
    ok = [r for r in runs if not r.reason] or runs
    first = ok[0]
    m = Run(first.engine, first.n, first.duration, runs=len(ok))
    m.rc = next((r.rc for r in runs if r.rc != 0), 0)
    m.connected = min(r.connected for r in ok)
    m.things = round(statistics.median(r.things for r in ok))
    m.avg_ms = statistics.median(r.avg_ms for r in ok)
    m.max_ms = max(r.max_ms for r in ok)
    m.errors = sum(r.errors for r in runs)
    m.first_error = next((r.first_error for r in runs if r.first_error), "")
    m.seconds = statistics.median(r.seconds for r in ok)
    for key in {k for r in ok for k in r.cpu_s}:  # so that per_1k(key) is the median per 1k
        per_1k = statistics.median(1000 * r.cpu_s.get(key, math.nan) / r.things
                                   if r.things else math.nan for r in ok)
        m.cpu_s[key] = per_1k * m.things / 1000
    for role in ROLES:
        m.peak_rss_mb[role] = statistics.median(r.peak_rss_mb.get(role, math.nan) for r in ok)
        if all(role in r.sys_s for r in ok):
            m.sys_s[role] = statistics.median(r.sys_per_1k(role) for r in ok) * m.things / 1000
        if all(role in r.syscalls for r in ok):
            m.syscalls[role] = (statistics.median(r.syscalls[role][0] for r in ok),
                                statistics.median(r.syscalls[role][1] for r in ok))
    m.busy_before = max(r.busy_before for r in runs)
    m.other_load = max(r.other_load for r in runs)
    m.reason = "" if any(not r.reason for r in runs) else runs[0].reason
    m.logs = next((r.logs for r in runs if r.logs), "")
    totals = [r.per_1k("total") for r in ok]
    m.total_range = (min(totals), max(totals))
    latencies = [r.avg_ms for r in ok]
    m.avg_range = (min(latencies), max(latencies))
    return m


def _kernel_notes(by: dict[tuple[int, str], Run], steps: list[int]) -> list[str]:
    """Where each engine's CPU goes between user space and the kernel, at each N, and how much
    of the 0.5× budget the kernel work of our gate (its socket reads and writes) leaves."""
    if not steps or not all(by[(n, e)].sys_s for n in steps for e in ENGINES):
        return []

    def split(r: Run) -> str:
        return "/".join(f"{r.sys_per_1k(x):.2f}" for x in ROLES)

    def calls(r: Run) -> str:
        reads, writes = r.syscalls.get("gate", (math.nan, math.nan))
        return f"{writes:,.0f} writes and {reads:,.0f} reads per second"

    parts = [f"N={n}: ours {split(by[(n, 'python')])}, GoWorld's {split(by[(n, 'go')])}"
             for n in steps]
    top = steps[-1]
    py, go = by[(top, "python")], by[(top, "go")]
    gate_sys, go_total = py.sys_per_1k("gate"), go.per_1k("total")
    note = ("Kernel share: system CPU s/1k things of dispatcher/game/gate, "
            + "; ".join(parts) + f". The gates' socket calls at N={top}: ours {calls(py)}, "
            f"GoWorld's {calls(go)} (/proc/PID/io syscr, syscw).")
    if go_total and not math.isnan(gate_sys):
        note += (f" At N={top} our gate's kernel time alone is {100 * gate_sys / go_total:.0f} % "
                 f"of GoWorld's whole cluster CPU: a 0.5× total would leave "
                 f"{100 * (0.5 * go_total - gate_sys) / go_total:.0f} % of it for everything "
                 "else our three processes do.")
    return [note]


def _rss_per_client(by: dict[tuple[int, str], Run], steps: list[int]) -> dict[str, float]:
    """KB of peak RSS (the three processes) each client adds, from the smallest N where both
    engines ran to the largest: what a connected client costs beyond the fixed footprint."""
    if len(steps) < 2:
        return {}
    low, high = steps[0], steps[-1]
    out = {f"{engine}.rss_kb_per_client": 1024 * (by[(high, engine)].total_rss_mb
                                                  - by[(low, engine)].total_rss_mb) / (high - low)
           for engine in ENGINES}
    out["ratio.rss_kb_per_client"] = _ratio(out["python.rss_kb_per_client"],
                                            out["go.rss_kb_per_client"])
    return out


def _span(span: tuple[float, float], digits: int) -> str:
    low, high = span
    return "" if math.isnan(low) else f"{low:.{digits}f}–{high:.{digits}f}"


def _ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


def _x(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.2f}×"


def _exit_cell(r: Run) -> str:
    if r.rc is None:
        return "not run" if math.isnan(r.seconds) else "killed"
    return f"{r.rc}, {r.errors} errors" if r.errors else str(r.rc)


def _result(runs: list[Run], plan: dict[str, Any], quick: bool, custom: bool) -> Result:
    rows: list[list[Any]] = []
    figures: dict[str, float] = {}
    groups: dict[tuple[int, str], list[Run]] = {}
    for r in runs:
        groups.setdefault((r.n, r.engine), []).append(r)
    by = {key: _median_run(group) for key, group in groups.items()}
    steps = [n for n in plan["steps"] if any(k[0] == n for k in by)]
    for n in steps:
        for engine in ENGINES:
            if (n, engine) not in by:
                continue
            r = by[(n, engine)]
            rows.append([n, LABELS[engine], r.runs, _exit_cell(r), r.connected, r.things,
                         round(r.avg_ms, 1), _span(r.avg_range, 1), round(r.max_ms),
                         *(r.per_1k(x) for x in ROLES), r.per_1k("total"),
                         _span(r.total_range, 2), *(r.peak_rss_mb.get(x, math.nan) for x in ROLES),
                         f"{100 * r.busy_before:.0f} / {100 * r.other_load:.0f}"])
            key = f"{n}.{engine}"
            figures.update({f"{key}.rc": float(r.rc if r.rc is not None else -9),
                            f"{key}.connected": float(r.connected),
                            f"{key}.things": float(r.things), f"{key}.avg_ms": r.avg_ms,
                            f"{key}.max_ms": r.max_ms, f"{key}.errors": float(r.errors),
                            f"{key}.seconds": r.seconds,
                            f"{key}.other_load_pct": 100 * r.other_load,
                            f"{key}.busy_before_pct": 100 * r.busy_before,
                            f"{key}.cpu_per_1k.total": r.per_1k("total"),
                            f"{key}.cpu_per_1k.total.min": r.total_range[0],
                            f"{key}.cpu_per_1k.total.max": r.total_range[1],
                            f"{key}.avg_ms.min": r.avg_range[0],
                            f"{key}.avg_ms.max": r.avg_range[1], f"{key}.runs": float(r.runs),
                            f"{key}.rss_mb.total": r.total_rss_mb})
            for role in (*ROLES, *(k for k in r.cpu_s if k not in ROLES)):
                figures[f"{key}.cpu_s.{role}"] = r.cpu_s.get(role, math.nan)
            for role in ROLES:
                figures[f"{key}.cpu_per_1k.{role}"] = r.per_1k(role)
                figures[f"{key}.rss_mb.{role}"] = r.peak_rss_mb.get(role, math.nan)
                figures[f"{key}.sys_per_1k.{role}"] = r.sys_per_1k(role)
                reads, writes = r.syscalls.get(role, (math.nan, math.nan))
                figures[f"{key}.reads_per_s.{role}"] = reads
                figures[f"{key}.writes_per_s.{role}"] = writes
        py, go = by.get((n, "python")), by.get((n, "go"))
        if py is None or go is None:
            continue
        ratios = {"things": _ratio(py.things, go.things), "avg_ms": _ratio(py.avg_ms, go.avg_ms),
                  "max_ms": _ratio(py.max_ms, go.max_ms),
                  **{f"cpu_per_1k.{x}": _ratio(py.per_1k(x), go.per_1k(x)) for x in (*ROLES, "total")},
                  **{f"rss_mb.{x}": _ratio(py.peak_rss_mb.get(x, math.nan),
                                           go.peak_rss_mb.get(x, math.nan)) for x in ROLES},
                  "rss_mb.total": _ratio(py.total_rss_mb, go.total_rss_mb)}
        figures.update({f"{n}.ratio.{k}": v for k, v in ratios.items()})
        rows.append([n, "**Python/Go**", "", "", "", _x(ratios["things"]), _x(ratios["avg_ms"]),
                     "", _x(ratios["max_ms"]), *(_x(ratios[f"cpu_per_1k.{x}"]) for x in ROLES),
                     _x(ratios["cpu_per_1k.total"]), "",
                     *(_x(ratios[f"rss_mb.{x}"]) for x in ROLES), ""])
    both = [n for n in steps if f"{n}.ratio.cpu_per_1k.total" in figures]
    if both:
        summary = (
            "Python/Go total server CPU per 1000 things: "
            + ", ".join(f"{_x(figures[f'{n}.ratio.cpu_per_1k.total'])} at N={n}" for n in both)
            + "; average thing latency: "
            + ", ".join(f"{_x(figures[f'{n}.ratio.avg_ms'])}" for n in both)
            + "; peak RSS of the three processes: "
            + ", ".join(f"{_x(figures[f'{n}.ratio.rss_mb.total'])}" for n in both)
            + " (below 1× means ours spends less)."
        )
    else:
        summary = "No N where both engines ran: no ratio."
    per_client = _rss_per_client(by, both)
    if per_client:
        figures.update(per_client)
        summary += (
            f" Memory per connected client (peak RSS growth of the three processes from N={both[0]}"
            f" to N={both[-1]}): ours {per_client['python.rss_kb_per_client']:.1f} KB, GoWorld's "
            f"{per_client['go.rss_kb_per_client']:.1f} KB "
            f"({_x(per_client['ratio.rss_kb_per_client'])})."
        )
    failed = [r for r in runs if r.reason]
    if failed:
        summary += f" {len(failed)} of {len(runs)} runs failed (see the notes)."
    steps_arg = ",".join(str(n) for n in plan["steps"])
    flags = (f" --steps {steps_arg} --window {plan['window']:g} --repeat {plan['repeat']}"
             if custom else "")
    default = ("" if custom else
               f"  (N = {steps_arg}, {plan['window']:g} s per run, {plan['repeat']} runs each)")
    notes = [
        "Both clusters: 1 dispatcher + 1 game + 1 gate on loopback, the same goworld.ini "
        "(goworld.testing.write_ini: free ports, position_sync_interval_ms = 100 for game and "
        "gate, log_level = info), entities and KVDB in MongoDB on one mongo-java-server "
        "(tests/tools/mongo_server, a database per run), a fresh cluster for every run, ours "
        "first at each N. Ours: examples/test_game started by `goworld start`; GoWorld's: its "
        "dispatcher, gate and examples/test_game built from ../shared/goworld-go "
        "(goworld.bench.goworld_go).",
        "Load: the same GoWorld Go bot binary, `test_client -strict -N N -duration D` over TCP "
        "(one gate, so every bot uses it); things, average and max latency are what it prints "
        "(every thing of every printed per-second section; the bot never prints its last "
        "second, for both engines alike).",
        "CPU: user + system seconds of each server process from the bot's start to its exit "
        "(logins, things, position syncs, logouts), divided by the things completed, × 1000. "
        "mongo-java-server's, the bot's and our supervisor's (`goworld start` runs one by "
        "default; GoWorld has none) CPU seconds are in bench-results.jsonl (cpu_s.storage, "
        "cpu_s.bot, cpu_s.supervisor), not in the total. Peak RSS: VmHWM of each process at "
        "the end of its run.",
        "Load column: how busy the machine was (% of all cores) when the run began, and the "
        "share of all cores that other work (not these processes, nor the bot or "
        "mongo-java-server) used during the run. Both engines shared the machine with the bot.",
    ]
    notes += _kernel_notes(by, both)
    loaded = [r for r in runs if r.other_load > 0.15 or r.busy_before > 0.15]
    if loaded:
        notes.append("The machine was loaded by other work during "
                     + ", ".join(f"{LABELS[r.engine]} at N={r.n} ({100 * r.other_load:.0f} %)"
                                 for r in loaded)
                     + ": those figures are pessimistic, and ratios across them less so.")
    for r in failed:
        notes.append(f"{LABELS[r.engine]} at N={r.n} failed: {r.reason}"
                     + (f" (logs kept in {r.logs})" if r.logs else ""))
    series = {
        "n": steps,
        **{f"{engine}.cpu_per_1k": [by[(n, engine)].per_1k("total") if (n, engine) in by else math.nan
                                    for n in steps] for engine in ENGINES},
        **{f"{engine}.avg_ms": [by[(n, engine)].avg_ms if (n, engine) in by else math.nan
                                for n in steps] for engine in ENGINES},
    }
    return Result(
        scenario="sidebyside",
        title="Side by side with GoWorld",
        commands=[f"goworld bench --only sidebyside{' --quick' if quick else ''}{flags}{default}"],
        columns=["N", "engine", "runs", "bot exit", "connected", "things", "avg ms",
                 "avg ms range", "max ms", *(f"{x} CPU s/1k things" for x in ROLES),
                 "total CPU s/1k things", "total range",
                 *(f"{x} peak RSS MB" for x in ROLES), "load before / other during %"],
        rows=rows,
        figures=figures,
        summary=summary,
        notes=notes,
        series=series,
    )
