"""``goworld bench --quick``, run as a real process: the results file and the report."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from goworld.bench import profile

ROOT = Path(__file__).resolve().parent.parent
GOWORLD = Path(sys.executable).with_name("goworld")


def test_quick_bench_writes_results_and_report(tmp_path: Path) -> None:
    out = tmp_path / "tmp"
    result = subprocess.run(
        [str(GOWORLD), "bench", "--quick", "--only", "codec,aoi", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=90,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    records = [json.loads(line) for line in (out / "bench-results.jsonl").read_text().splitlines()]
    assert sorted(r["scenario"] for r in records) == ["aoi", "codec"]
    for r in records:
        assert r["quick"] is True
        assert r["figures"], r
        assert all(isinstance(v, (int, float)) for v in r["figures"].values()), r["figures"]
        assert r["rows"] and r["commands"]
    codec = next(r for r in records if r["scenario"] == "codec")
    assert codec["figures"]["call.encode_per_s"] > 0
    aoi = next(r for r in records if r["scenario"] == "aoi")
    assert aoi["figures"]["walk.1000.ms_per_tick"] > 0

    report = (out / "BENCHMARKS.md").read_text()
    assert "## Machine" in report and "- cores: " in report and "- python: " in report
    assert "## Wire codec" in report and "| message | bytes | encode/s | decode/s |" in report
    assert "## AOI" in report and "| moves | moves/tick | ms/tick |" in report
    assert "scripts/bench_codec.py" in report and "scripts/bench_aoi.py" in report


def test_unknown_scenario_is_a_usage_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(GOWORLD), "bench", "--only", "nope", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 2
    assert "unknown scenario" in result.stderr and "codec" in result.stderr


def test_capacity_options_are_checked(tmp_path: Path) -> None:
    for args, why in [
        (["--only", "routing", "--steps", "10"], "--steps applies to capacity"),
        (["--only", "codec", "--bot", "python"], "--bot applies to capacity"),
        (["--only", "capacity", "--steps", "20,10"], "increasing positive bot counts"),
        (["--only", "capacity", "--steps", "a,b"], "increasing positive bot counts"),
    ]:
        result = subprocess.run(
            [str(GOWORLD), "bench", *args, "--out", str(tmp_path)],
            capture_output=True, text=True, timeout=30,
        )
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert why in result.stderr, (args, result.stderr)
    assert not (tmp_path / "bench-results.jsonl").exists()


def test_capacity_on_2_2_2_records_every_process_and_a_profile(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(GOWORLD), "bench", "--quick", "--only", "capacity-222", "--steps", "6",
         "--window", "2", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (record,) = [json.loads(line) for line in (tmp_path / "bench-results.jsonl").read_text().splitlines()]
    assert record["scenario"] == "capacity-222"
    figures = record["figures"]
    # The load is GoWorld's own Go bot: all 6 connected, no error line, things counted from
    # its per-second profile during the window.
    assert figures["6.connected"] == 6 and figures["capacity_n"] == 6, record["notes"]
    assert figures["6.errors"] == 0 and figures["no_error_n"] == 6
    assert figures["6.things"] > 0
    assert "GoWorld's Go bot (test_client -strict)" in record["title"]
    for proc in ("dispatcher1", "dispatcher2", "game1", "game2", "gate1", "gate2", "bots"):
        assert f"6.{proc}.rss_mb" in figures, sorted(figures)
    assert figures["6.bots.rss_mb"] > 0  # the Go bot process was measured
    assert record["columns"][7:10] == ["2 dispatchers CPU / RSS MB", "2 games CPU / RSS MB",
                                       "2 gates CPU / RSS MB"]
    assert "--steps 6 --window 2" in record["commands"][0]
    # py-spy sampled the busiest cluster process after the window; at 6 bots it may have
    # been idle for all 5 s, which the report then says instead of listing functions.
    prof = record["series"]["profile"]
    assert prof["process"] in ("dispatcher1", "dispatcher2", "game1", "game2", "gate1", "gate2")
    assert "error" not in prof and prof["samples"] >= 0
    if prof["samples"]:
        assert prof["top"] and any("Where the time goes at N=6: py-spy on " in n
                                   for n in record["notes"]), record["notes"]
    else:
        assert any("found no busy sample" in n for n in record["notes"]), record["notes"]
    report = (tmp_path / "BENCHMARKS.md").read_text()
    assert "## Capacity (examples/test_game on 2 + 2 + 2" in report
    assert "bench-capacity-222-rtt.png" in report and (tmp_path / "bench-capacity-222-rtt.png").exists()


RAW = textwrap.dedent("""\
    <module> (/x/app.py:10);run (/x/.venv/lib/python3.11/site-packages/grpc/aio/_call.py:5);write (libc.so.6) 30
    <module> (/x/app.py:10);handle (/x/app.py:20) 50
    <module> (/x/app.py:10);handle (/x/app.py:21);encode (/x/app.py:30) 20
    <module> (/x/app.py:10);run_forever (/usr/lib/python3.11/asyncio/base_events.py:600);epoll_wait (libc.so.6) 400
""")


def test_profile_summary_counts_self_and_total_time_and_leaves_waits_out() -> None:
    busy, hot = profile.summarize(RAW)
    assert busy == 100  # the 400 epoll_wait samples are waiting, not working
    by_name = {h.function: h for h in hot}
    assert by_name["handle (/x/app.py)"].self_pct == 50.0  # lines 20 and 21 are one function
    assert by_name["handle (/x/app.py)"].total_pct == 70.0
    assert by_name["write (libc.so.6)"].self_pct == 30.0
    assert by_name["encode (/x/app.py)"].total_pct == 20.0
    assert "run (grpc/aio/_call.py)" not in by_name  # never innermost
    assert [h.function for h in hot][0] == "handle (/x/app.py)"


def test_profile_samples_a_real_busy_process() -> None:
    busy = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""\
        def spin_here():
            x = 0
            while True:
                x += 1
        spin_here()
    """)])
    try:
        p = profile.sample(busy.pid, 1.0, process="spinner")
    finally:
        busy.kill()
        busy.wait()
    assert p.samples > 10
    assert p.hotspots[0].function.startswith("spin_here ("), p.hotspots[:3]
    assert "spinner" in p.one_line()


def test_quick_cluster_scenarios_measure_something(tmp_path: Path) -> None:
    # Every scenario that starts processes, shrunk to seconds: the script runs, writes its
    # JSON, and the scenario turns it into positive figures (the plumbing must not rot).
    result = subprocess.run(
        [str(GOWORLD), "bench", "--quick", "--only", "routing,fanout,memory,reload",
         "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    records = {r["scenario"]: r for r in map(json.loads, (tmp_path / "bench-results.jsonl")
                                              .read_text().splitlines())}
    assert sorted(records) == ["fanout", "memory", "reload", "routing"]
    expect = {
        "routing": ["link.messages_per_s", "raw.messages_per_s", "raw.dispatcher_us_per_msg"],
        "fanout": ["filtered_packets_per_s", "sync_packets_per_s"],
        "memory": ["gate_bytes_per_client", "game_bytes_per_entity"],
        "reload": ["200.pause_ms", "200.freeze_kb"],
    }
    for scenario, keys in expect.items():
        for key in keys:
            assert records[scenario]["figures"][key] > 0, (scenario, key, records[scenario])


def test_quick_lockstep_measures_rooms_and_lateness(tmp_path: Path) -> None:
    # issue 18's benchmark, shrunk to 2 and 4 rooms of 4 for a second each: the cluster with a
    # [lockstep] section starts, the load's KCP sessions play, and every figure comes back.
    result = subprocess.run(
        [str(GOWORLD), "bench", "--quick", "--only", "lockstep", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (record,) = [json.loads(line) for line in (tmp_path / "bench-results.jsonl").read_text().splitlines()]
    assert record["scenario"] == "lockstep" and record["quick"] is True
    figures = record["figures"]
    assert figures["tick_hz"] == 30 and figures["players_per_room"] == 4
    for rooms in (2, 4):
        # every player gets a frame message at least every 3 ticks: >= 10/s each
        assert figures[f"{rooms}.frames_per_s"] >= 10 * 4 * rooms * 0.8, figures
        assert figures[f"{rooms}.server_cpu"] > 0 and figures[f"{rooms}.rooms_per_core"] > 0
        for key in ("late_p50_ms", "late_p99_ms", "late_max_ms", "gap_p99_ms", "tick_late_p99_ms"):
            assert figures[f"{rooms}.{key}"] >= 0, (key, figures)
        assert figures[f"{rooms}.late_p50_ms"] <= figures[f"{rooms}.late_p99_ms"] <= figures[f"{rooms}.late_max_ms"]
    assert [row[0] for row in record["rows"]] == [2, 4]
    assert "goworld bench --only lockstep --quick" in record["commands"][0]
    assert "scripts/bench_lockstep.py --steps 2,4" in record["commands"][1]
    report = (tmp_path / "BENCHMARKS.md").read_text()
    assert "## Lockstep rooms" in report and "| rooms | players | frame msgs/s |" in report
