"""Running the benchmark scripts under ``scripts/`` of the source checkout."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from goworld.bench.result import BenchError

ROOT = Path(__file__).resolve().parents[3]
SCRIPTS = ROOT / "scripts"


def path(name: str) -> Path:
    p = SCRIPTS / name
    if not p.exists():
        raise BenchError(f"{p} not found: goworld bench runs from a source checkout")
    return p


def command(name: str, *args: str) -> str:
    """The command line, as a reader of the report would type it at the repository root."""
    return " ".join([".venv/bin/python", f"scripts/{name}", *args])


def run(name: str, *args: str, timeout: float) -> str:
    """Run ``scripts/name`` with this interpreter; its stdout (BenchError if it fails).

    On timeout the script gets SIGINT first, so its ``finally`` blocks stop the clusters and
    servers it started, then its whole process group is killed.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            [sys.executable, str(path(name)), *args],
            cwd=ROOT, stdout=out, stderr=err, text=True, start_new_session=True,
        )
        try:
            returncode = proc.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            _stop_group(proc)
            raise BenchError(f"{command(name, *args)} took more than {timeout:.0f} s") from exc
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if returncode != 0:
        raise BenchError(
            f"{command(name, *args)} exited {returncode}\n{stdout[-2000:]}\n{stderr[-2000:]}"
        )
    return stdout


def _stop_group(proc: subprocess.Popen[str], grace: float = 30.0) -> None:
    try:
        proc.send_signal(signal.SIGINT)
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def run_json(name: str, *args: str, timeout: float) -> tuple[str, Any]:
    """Run ``scripts/name *args --json FILE``; its stdout and the figures it wrote to FILE."""
    with tempfile.TemporaryDirectory(prefix="goworld-bench-") as tmp:
        out_file = Path(tmp) / "figures.json"
        stdout = run(name, *args, "--json", str(out_file), timeout=timeout)
        try:
            return stdout, json.loads(out_file.read_text())
        except (OSError, ValueError) as exc:
            raise BenchError(f"{command(name, *args)} wrote no figures: {exc}\n{stdout[-2000:]}") from exc
