"""Where our cluster's CPU goes under GoWorld's Go bot (not a test; issue 17's profiling tool).

Starts examples/test_game as the side-by-side bench does (1 + 1 + 1, MongoDB on
mongo-java-server, position sync 100 ms), runs ``test_client -strict -N N`` against it, waits
``--warmup`` seconds (the logins), then over ``--window`` seconds prints, per process:

- user and system CPU in cores (/proc/PID/stat) and read/write-type system calls per second
  (/proc/PID/io);
- with ``--perf``, every system call per second by kind (``perf stat`` tracepoints; root);
- the dispatcher's envelopes and gRPC messages (batches) per second and the gate's client
  packets and bytes per second (their /metrics);
- with ``--pyspy``, each process's hottest functions (15 s of py-spy after the window).

``--engine go`` measures GoWorld's own cluster the same way instead (CPU and system calls).
``--set ROLE:KEY=VALUE`` adds a key to ``[ROLE_common]`` (dispatcher, game or gate), e.g.
``--set game:link_flush_interval_ms=10``; repeat it for several.

Usage: .venv/bin/python scripts/profile_sidebyside.py [--n 1000] [--window 20] [--warmup 20]
       [--engine python|go] [--set ROLE:KEY=VALUE ...] [--perf] [--pyspy]
(Go on PATH, as for ``goworld bench --only sidebyside``.)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from goworld import gobot  # noqa: E402
from goworld.bench import goworld_go, mongo_java, procstat, profile  # noqa: E402
from goworld.bench.scenarios import sidebyside  # noqa: E402
from goworld.testing import ClusterRunner, write_ini  # noqa: E402

ROLES = sidebyside.ROLES
SYSCALLS = ("write", "read", "sendmsg", "recvmsg", "recvfrom", "epoll_wait", "epoll_pwait",
            "futex")
#: /metrics families worth a rate: (role, substring of the family name)
RATES = (("dispatcher", "_peer_"), ("dispatcher", "routed_messages"), ("gate", "_sent_"),
         ("gate", "_received_"))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--n", type=int, default=1000, help="bots")
    p.add_argument("--window", type=float, default=20.0, help="seconds measured")
    p.add_argument("--warmup", type=float, default=20.0, help="seconds after the bot starts")
    p.add_argument("--engine", choices=("python", "go"), default="python")
    p.add_argument("--set", action="append", default=[], metavar="ROLE:KEY=VALUE")
    p.add_argument("--perf", action="store_true", help="system calls by kind (perf stat)")
    p.add_argument("--pyspy", action="store_true", help="hottest functions (py-spy, after)")
    return p.parse_args()


def ini_options(mongo_url: str, sets: list[str]) -> dict[str, object]:
    backend = f"type = mongodb\nurl = {mongo_url}\ndb = profile"
    extra: dict[str, list[str]] = {role: [] for role in ROLES}
    for item in sets:
        role, _, pair = item.partition(":")
        if role not in extra or "=" not in pair:
            raise SystemExit(f"--set {item!r}: expected ROLE:KEY=VALUE with ROLE in {ROLES}")
        key, _, value = pair.partition("=")
        extra[role].append(f"{key.strip()} = {value.strip()}")
    return {"dispatchers": 1, "games": 1, "gates": 1, "position_sync_interval_ms": 100,
            "storage": backend, "kvdb": backend + "\ncollection = __kv__",
            **{f"{role}_extra": "\n".join(lines) for role, lines in extra.items()}}


@contextmanager
def cluster(engine: str, workdir: Path, options: dict[str, object]) -> Iterator[tuple[dict[str, int], Path, dict[str, str]]]:
    """(pids by role, the bot's ini, http_addr by role) of a running cluster."""
    if engine == "python":
        runner = ClusterRunner(workdir, sidebyside.APP, **options)
        try:
            runner.start()
            cfg = runner.config()
            run_dir = workdir / ".goworld"
            pids = {role: int((run_dir / f"{role}1.pid").read_text()) for role in ROLES}
            https = {"dispatcher": str(cfg.dispatchers[1].http_addr),
                     "gate": str(cfg.gates[1].http_addr), "game": str(cfg.games[1].http_addr)}
            yield pids, gobot.write_bot_ini(cfg, workdir / "gobot.ini"), https
        finally:
            runner.stop()
            runner.kill()
    else:
        write_ini(workdir, **options)  # type: ignore[arg-type]
        ini = workdir / "goworld.ini"
        go = goworld_go.GoWorldCluster(ini, goworld_go.build_servers())
        try:
            go.start()
            yield {role: go.pids[f"{role}1"] for role in ROLES}, ini, {}
        finally:
            go.stop()


def scrape(https: dict[str, str]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for role, addr in https.items():
        values: dict[str, float] = {}
        try:
            text = urllib.request.urlopen(f"http://{addr}/metrics", timeout=3).read().decode()
        except OSError:
            text = ""
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                if any(r == role and part in name for r, part in RATES):
                    values[name] = float(value)
        out[role] = values
    return out


def perf_stat(pids: dict[str, int], seconds: float) -> dict[str, subprocess.Popen[str]]:
    events = ",".join(f"syscalls:sys_enter_{s}" for s in SYSCALLS)
    return {role: subprocess.Popen(
        ["perf", "stat", "-x", ",", "-e", "raw_syscalls:sys_enter," + events, "-p", str(pid),
         "--", "sleep", f"{seconds:g}"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
        text=True) for role, pid in pids.items()}


def main() -> int:
    args = parse_args()
    bot = gobot.build_test_client()
    with tempfile.TemporaryDirectory(prefix="goworld-profile-") as tmp_name:
        tmp = Path(tmp_name)
        with mongo_java.running(tmp / "mongo-java-server.log") as mongo:
            options = ini_options(mongo.url, args.set)
            work = tmp / args.engine
            work.mkdir()
            with cluster(args.engine, work, options) as (pids, bot_ini, https):
                duration = int(args.warmup + args.window + (20 if args.pyspy else 0) + 5)
                proc = gobot.start_bot(bot, bot_ini, work / "bot", n=args.n, duration=duration,
                                       name="profile")
                with proc:
                    time.sleep(args.warmup)
                    perfs = perf_stat(pids, args.window) if args.perf else {}
                    cpu0 = {r: procstat.cpu_split(p) for r, p in pids.items()}
                    io0 = {r: procstat.io_syscalls(p) for r, p in pids.items()}
                    m0, t0 = scrape(https), time.monotonic()
                    time.sleep(args.window)
                    cpu1 = {r: procstat.cpu_split(p) for r, p in pids.items()}
                    io1 = {r: procstat.io_syscalls(p) for r, p in pids.items()}
                    m1, dt = scrape(https), time.monotonic() - t0
                    report(args, pids, cpu0, cpu1, io0, io1, m0, m1, dt, perfs)
                    if args.pyspy:
                        hot(pids)
                    result = proc.wait(duration + 90)
                out = result.output
                things = list(out.things.values())
                avg = 1000 * sum(t.total_seconds for t in things) / out.total if out.total else 0
                print(f"bot: exit {result.returncode}, {out.connected} connected, {out.total} things, "
                      f"average {avg:.1f} ms, {len(out.errors)} error lines")
    return 0


def report(args: argparse.Namespace, pids: dict[str, int], cpu0: dict[str, tuple[float, float]],
           cpu1: dict[str, tuple[float, float]], io0: dict[str, tuple[int, int]],
           io1: dict[str, tuple[int, int]], m0: dict[str, dict[str, float]],
           m1: dict[str, dict[str, float]], dt: float,
           perfs: dict[str, subprocess.Popen[str]]) -> None:
    print(f"{args.engine} cluster, N={args.n}, {dt:.1f} s after {args.warmup:g} s of warm-up:")
    total = 0.0
    for role in pids:
        user = (cpu1[role][0] - cpu0[role][0]) / dt
        system = (cpu1[role][1] - cpu0[role][1]) / dt
        reads = (io1[role][0] - io0[role][0]) / dt
        writes = (io1[role][1] - io0[role][1]) / dt
        total += user + system
        print(f"  {role:10s} user {user:5.3f}  system {system:5.3f}  cores;  "
              f"{reads:8,.0f} reads/s  {writes:8,.0f} writes/s")
    print(f"  {'total':10s} {total:5.3f} cores")
    for role, popen in perfs.items():
        err = popen.communicate()[1]
        counts = []
        for line in err.splitlines():
            fields = line.split(",")
            if len(fields) > 2 and fields[0].replace(".", "").isdigit():
                counts.append(f"{fields[2].rsplit(':', 1)[-1].replace('sys_enter_', '')} "
                              f"{float(fields[0]) / args.window:,.0f}")
        print(f"  {role} system calls/s: " + ", ".join(counts))
    for role, values in m1.items():
        for name in sorted(values):
            rate = (values[name] - m0[role].get(name, 0.0)) / dt
            if rate >= 1:
                print(f"  {name} {rate:,.0f}/s")


def hot(pids: dict[str, int]) -> None:
    found: dict[str, profile.Profile] = {}

    def sample(role: str, pid: int) -> None:
        try:
            found[role] = profile.sample(pid, 15, process=role, native=False)
        except RuntimeError as exc:
            print(f"  {role}: {exc}")

    threads = [threading.Thread(target=sample, args=item) for item in pids.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for role, prof in found.items():
        print(f"  py-spy {role}: {prof.samples} busy samples")
        for h in prof.hotspots[:12]:
            print(f"    {h.self_pct:5.1f} % self {h.total_pct:5.1f} % total  {h.function}")


if __name__ == "__main__":
    sys.exit(main())
