"""``goworld bench --quick``, run as a real process: the results file and the report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
    assert "## Not yet measured" in report


def test_unknown_scenario_is_a_usage_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(GOWORLD), "bench", "--only", "nope", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 2
    assert "unknown scenario" in result.stderr and "codec" in result.stderr
