"""Running (or importing) the benchmark scripts under ``scripts/`` of the source checkout."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import tempfile
import sys
from pathlib import Path
from types import ModuleType
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
    """Run ``scripts/name`` with this interpreter; its stdout (BenchError if it fails)."""
    try:
        proc = subprocess.run(
            [sys.executable, str(path(name)), *args],
            cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{command(name, *args)} took more than {timeout:.0f} s") from exc
    if proc.returncode != 0:
        raise BenchError(
            f"{command(name, *args)} exited {proc.returncode}\n{proc.stdout[-2000:]}\n"
            f"{proc.stderr[-2000:]}"
        )
    return proc.stdout


def run_json(name: str, *args: str, timeout: float) -> tuple[str, Any]:
    """Run ``scripts/name *args --json FILE``; its stdout and the figures it wrote to FILE."""
    with tempfile.TemporaryDirectory(prefix="goworld-bench-") as tmp:
        out_file = Path(tmp) / "figures.json"
        stdout = run(name, *args, "--json", str(out_file), timeout=timeout)
        try:
            return stdout, json.loads(out_file.read_text())
        except (OSError, ValueError) as exc:
            raise BenchError(f"{command(name, *args)} wrote no figures: {exc}\n{stdout[-2000:]}") from exc


def load(name: str) -> ModuleType:
    """Import ``scripts/name`` as a module (to reuse its functions)."""
    p = path(name)
    spec = importlib.util.spec_from_file_location(f"_bench_{p.stem}", p)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
