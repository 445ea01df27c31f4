"""goworld.runctl's part of "logs are stored once and kept": rotation of the previous run's files,
and how a process learns that the CLI captures its stderr."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from goworld import runctl


def test_rotate_keeps_generations_and_drops_the_oldest(tmp_path: Path) -> None:
    log = tmp_path / "game1.log"
    for run in range(1, 6):
        log.write_text(f"run {run}\n")
        runctl.rotate(log, 3)
    assert not log.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["game1.log.1", "game1.log.2", "game1.log.3"]
    assert [(tmp_path / f"game1.log.{n}").read_text() for n in (1, 2, 3)] == ["run 5\n", "run 4\n", "run 3\n"]


def test_rotate_leaves_a_missing_or_empty_file_and_the_generations_alone(tmp_path: Path) -> None:
    log = tmp_path / "gate1.log"
    (tmp_path / "gate1.log.1").write_text("previous\n")
    runctl.rotate(log, 5)  # missing
    log.write_text("")
    runctl.rotate(log, 5)  # empty
    assert log.read_text() == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gate1.log", "gate1.log.1"]
    assert (tmp_path / "gate1.log.1").read_text() == "previous\n"


def test_rotate_with_no_backups_truncates_like_goworld(tmp_path: Path) -> None:
    log = tmp_path / "dispatcher1.log"
    log.write_text("old\n")
    runctl.rotate(log, 0)
    assert log.read_text() == ""
    assert [p.name for p in tmp_path.iterdir()] == ["dispatcher1.log"]


def test_stderr_is_captured_only_when_fd_2_is_the_file_the_cli_named(tmp_path: Path) -> None:
    capture, other = tmp_path / "game1.stderr", tmp_path / "elsewhere"
    check = "from goworld import runctl; print(runctl.stderr_is_captured())"
    with open(capture, "ab") as f:
        env = {**os.environ, **runctl.stderr_capture_env(f.fileno())}
    assert set(env) >= {runctl.STDERR_ENV}

    def run(stderr_path: Path, environ: dict[str, str]) -> str:
        with open(stderr_path, "ab") as err:
            return subprocess.run([sys.executable, "-c", check], stderr=err, stdout=subprocess.PIPE,
                                  env=environ, text=True, check=True).stdout.strip()

    assert run(capture, env) == "True"
    assert run(other, env) == "False"  # inherited by a process whose stderr is another file
    assert run(capture, {k: v for k, v in env.items() if k != runctl.STDERR_ENV}) == "False"
    assert runctl.stderr_is_captured({runctl.STDERR_ENV: "0:0"}) is False
    assert runctl.stderr_is_captured({}) is False
