"""``goworld bench --only sidebyside`` at a tiny size, end to end, and what it relies on.

The bench starts our cluster and GoWorld's own (built from ../shared/goworld-go) on
mongo-java-server and drives both with GoWorld's Go bot, so it needs Go, a JDK and Maven
(scripts/install-test-deps installs them): without them these tests skip, saying which is
missing. Timings are the bench's business, not asserted here.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pymongo
import pytest

from goworld import config as gwconfig
from goworld import gobot
from goworld.bench import BenchError, mongo_java
from goworld.bench.scenarios import sidebyside
from goworld.testing import write_ini

ROOT = Path(__file__).resolve().parent.parent
GOWORLD = Path(sys.executable).with_name("goworld")


def _missing() -> list[str]:
    missing = [] if gobot.find_go() else ["go (Go toolchain)"]
    return missing + mongo_java.missing_tools()


needs_tools = pytest.mark.skipif(
    bool(_missing()),
    reason=f"the side-by-side bench needs Go, a JDK and Maven; missing: {', '.join(_missing())}",
)


def _run_bench(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """The bench as a process; on timeout SIGINT first (its finally blocks stop the clusters),
    then SIGKILL to its process group."""
    proc = subprocess.Popen([str(GOWORLD), "bench", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        pytest.fail(f"goworld bench {' '.join(args)} took more than {timeout} s\n{out[-3000:]}\n{err[-3000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.slow
@needs_tools
def test_sidebyside_measures_both_engines(tmp_path: Path) -> None:
    result = _run_bench(["--quick", "--only", "sidebyside", "--steps", "5", "--window", "8",
                         "--out", str(tmp_path)], timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (record,) = [json.loads(line) for line in (tmp_path / "bench-results.jsonl").read_text().splitlines()]
    assert record["scenario"] == "sidebyside" and record["quick"] is True
    figures = record["figures"]
    for engine in ("python", "go"):
        key = f"5.{engine}"
        # The same strict Go bot passed against both: exit 0, no error line, 5 connected.
        assert figures[f"{key}.rc"] == 0 and figures[f"{key}.errors"] == 0, record["notes"]
        assert figures[f"{key}.connected"] == 5, record["notes"]
        assert figures[f"{key}.things"] > 0
        assert 0 < figures[f"{key}.avg_ms"] <= figures[f"{key}.max_ms"]
        for role in ("dispatcher", "game", "gate"):
            assert figures[f"{key}.rss_mb.{role}"] > 0
            assert figures[f"{key}.cpu_s.{role}"] >= 0
        assert figures[f"{key}.cpu_per_1k.total"] > 0
        # the kernel part of the gate's CPU, and its socket calls (every bot reads and writes)
        assert 0 <= figures[f"{key}.sys_per_1k.gate"] <= figures[f"{key}.cpu_per_1k.gate"]
        assert figures[f"{key}.writes_per_s.gate"] > 0 and figures[f"{key}.reads_per_s.gate"] > 0
        assert figures[f"{key}.cpu_s.storage"] >= 0  # mongo-java-server, measured apart
    for ratio in ("cpu_per_1k.total", "avg_ms", "rss_mb.total", "things"):
        assert figures[f"5.ratio.{ratio}"] > 0, ratio
    assert [row[1] for row in record["rows"]] == ["ours (Python)", "GoWorld (Go)", "**Python/Go**"]
    assert "--steps 5 --window 8" in record["commands"][0]
    report = (tmp_path / "BENCHMARKS.md").read_text()
    assert "## Side by side with GoWorld" in report
    assert "![bench-sidebyside.png](bench-sidebyside.png)" in report
    assert (tmp_path / "bench-sidebyside.png").stat().st_size > 0


def test_sidebyside_refuses_a_port_in_use(tmp_path: Path) -> None:
    ports = write_ini(tmp_path, dispatchers=1, games=1, gates=1)
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", ports["gate_tcp"][0]))
        holder.listen()
        with pytest.raises(BenchError, match="refusing to run, a port is not free: gate1"):
            sidebyside.preflight(gwconfig.load(tmp_path / "goworld.ini", check_files=False))


@needs_tools
def test_mongo_java_server_answers_getnonce(tmp_path: Path) -> None:
    # GoWorld's Go driver (mgo) sends the legacy getnonce on every connection.
    with mongo_java.running(tmp_path / "mongo.log") as server:
        client: pymongo.MongoClient[dict[str, object]]
        with pymongo.MongoClient(server.url, serverSelectionTimeoutMS=10_000) as client:
            reply = client.admin.command("getnonce")
            assert reply["ok"] == 1
            nonce = reply["nonce"]
            assert isinstance(nonce, str) and len(nonce) == 16 and int(nonce, 16) >= 0
            client.admin.command("ping")  # the connection is still good
    assert server.proc.poll() is not None  # stopped


def _fake_run(engine: str, things: int, avg_ms: float, game_cpu: float, *, rc: int = 0,
              reason: str = "") -> sidebyside.Run:
    r = sidebyside.Run(engine, 100, 40, rc=rc, connected=100, things=things, avg_ms=avg_ms,
                       max_ms=2 * avg_ms, seconds=41.0, reason=reason)
    r.cpu_s = {"dispatcher": things / 1000, "game": game_cpu, "gate": things / 1000}
    r.peak_rss_mb = {"dispatcher": 50.0, "game": 60.0 + avg_ms, "gate": 55.0}
    r.sys_s = {role: cpu / 2 for role, cpu in r.cpu_s.items()}
    r.syscalls = dict.fromkeys(r.cpu_s, (100.0, 300.0))
    return r


def test_repeated_runs_are_reported_as_medians_with_their_spread() -> None:
    runs = [
        _fake_run("python", 1000, 10.0, 1.0),  # game: 1.0 s per 1k things
        _fake_run("python", 2000, 30.0, 6.0),  # 3.0
        _fake_run("python", 1500, 20.0, 3.0),  # 2.0
        _fake_run("python", 0, 0.0, 0.0, rc=1, reason="did not start"),  # left out of medians
        _fake_run("go", 1000, 40.0, 2.0),
    ]
    m = sidebyside._median_run(runs[:4])
    assert (m.runs, m.things, m.avg_ms, m.max_ms) == (3, 1500, 20.0, 60.0)
    assert m.per_1k("game") == pytest.approx(2.0)
    assert m.per_1k("total") == pytest.approx(4.0)
    assert m.total_range == pytest.approx((3.0, 5.0)) and m.avg_range == (10.0, 30.0)
    assert m.rc == 1 and m.reason == ""  # the failed run shows in the exit column and the notes
    result = sidebyside._result(runs, {"steps": [100], "window": 40.0, "repeat": 4},
                                quick=False, custom=True)
    assert result.figures["100.python.cpu_per_1k.total"] == pytest.approx(4.0)
    assert result.figures["100.ratio.cpu_per_1k.total"] == pytest.approx(4.0 / 4.0)
    assert result.figures["100.ratio.avg_ms"] == pytest.approx(0.5)
    assert "--repeat 4" in result.commands[0]
    assert any("did not start" in note for note in result.notes)


def test_memory_per_client_is_the_rss_growth_between_the_smallest_and_largest_n() -> None:
    def at(engine: str, n: int, rss: float) -> sidebyside.Run:
        r = _fake_run(engine, 1000, 10.0, 1.0)
        r.n = n
        r.peak_rss_mb = {"dispatcher": rss, "game": rss, "gate": rss}
        return r

    runs = [at("python", 100, 50), at("go", 100, 10), at("python", 1100, 51), at("go", 1100, 20)]
    result = sidebyside._result(runs, {"steps": [100, 1100], "window": 40.0, "repeat": 1},
                                quick=False, custom=True)
    assert result.figures["python.rss_kb_per_client"] == pytest.approx(3 * 1024 / 1000)
    assert result.figures["go.rss_kb_per_client"] == pytest.approx(30 * 1024 / 1000)
    assert result.figures["ratio.rss_kb_per_client"] == pytest.approx(0.1)
    assert "Memory per connected client" in result.summary


def test_kernel_share_says_how_much_of_the_half_budget_our_gate_kernel_time_leaves() -> None:
    py = _fake_run("python", 1000, 10.0, 1.0)  # 1 s per 1k things in each role: 3 in total
    py.sys_s["gate"] = 0.6  # 0.6 s per 1k things in the kernel
    py.syscalls["gate"] = (3800.0, 13900.0)
    go = _fake_run("go", 1000, 20.0, 2.0)  # 1 + 2 + 1 = 4 s per 1k things
    result = sidebyside._result([py, go], {"steps": [100], "window": 40.0, "repeat": 1},
                                quick=False, custom=True)
    assert result.figures["100.python.sys_per_1k.gate"] == pytest.approx(0.6)
    assert result.figures["100.python.writes_per_s.gate"] == pytest.approx(13900.0)
    (note,) = [n for n in result.notes if n.startswith("Kernel share")]
    assert "ours 0.50/0.50/0.60, GoWorld's 0.50/1.00/0.50" in note
    assert "ours 13,900 writes and 3,800 reads per second" in note
    # 0.6 of GoWorld's 4.0 is 15 %; half of 4.0 minus 0.6 leaves 1.4, 35 %
    assert "kernel time alone is 15 % of GoWorld's whole cluster CPU" in note
    assert "leave 35 % of it" in note
