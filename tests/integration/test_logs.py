"""Logs cannot be flooded (issue 14), on real processes started by the CLI: a client's flood of
calls that each make the game warn writes a bounded number of lines and one summary; every log line is stored once
(log file, not also the stderr capture); `goworld start` keeps the previous run's logs."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from goworld import runctl
from goworld.testing import ClusterRunner, write_ini

FLOOD = 300
APP_STDERR_LINE = "app import: a stderr line that is not a log record"
APP = textwrap.dedent(f'''
    import logging
    import sys

    import goworld

    print({APP_STDERR_LINE!r}, file=sys.stderr, flush=True)
    logger = logging.getLogger("goworld.game")


    class Account(goworld.Entity):
        @goworld.rpc(client=True, name="Echo", rate=None)
        def echo(self, seq: int) -> None:
            self.call_client("OnEcho", seq)

        @goworld.rpc(client=True, name="Complain", rate=None)
        def complain(self, seq: int) -> None:
            logger.warning("player %s complains (#%d)", self.id, seq)  # one WARNING per call


    goworld.register_entity(Account)
''')
LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) goworld")


def read(path: Path) -> str:
    return path.read_text(errors="replace")


async def flood_warnings(runner: ClusterRunner) -> None:
    """FLOOD calls that each make the game code warn, then an Echo: its answer means the game
    has handled every call before it."""
    from goworld.client import GoWorldClient

    client = await GoWorldClient.connect("127.0.0.1", runner.gate(0, "tcp"))
    try:
        account = await client.wait_player("Account")
        for seq in range(FLOOD):
            client.call(account.id, "Complain", seq)
        client.call(account.id, "Echo", 1)
        await client.wait_call("OnEcho", timeout=60)
    finally:
        await client.aclose()


@pytest.mark.asyncio
async def test_a_flood_is_summarised_every_line_is_stored_once_and_start_keeps_the_last_run(
    tmp_path: Path,
) -> None:
    app = make_app(tmp_path)
    cluster = tmp_path / "cluster"
    cluster.mkdir()
    # One interval for the whole run: the summary is written when the game stops.
    runner = ClusterRunner(cluster, app, dispatchers=1, games=1, gates=1,
                           game_extra="log_repeat_interval = 3600")
    run_dir = cluster / runctl.RUN_DIR
    names = ["dispatcher1", "game1", "gate1"]
    try:
        runner.start()
        # Stored once: each process's records are in its log file and not in its stderr capture,
        # which keeps what is not a log record.
        for name in names:
            log_lines = read(cluster / f"{name}.log").splitlines()
            captured = read(run_dir / f"{name}.stderr").splitlines()
            assert any(runctl.started_tag(name.rstrip("1")) in line for line in log_lines), name
            assert [line for line in captured if LOG_RECORD.match(line)] == [], (name, captured)
            assert not set(captured) & set(log_lines), name
        assert read(run_dir / "game1.stderr").splitlines() == [APP_STDERR_LINE]

        await flood_warnings(runner)
        stopped = runner.stop()
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr

        game_log = read(cluster / "game1.log").splitlines()
        summaries = [line for line in game_log if "more like this suppressed" in line]
        written = [line for line in game_log if " complains (#" in line and line not in summaries]
        assert len(written) == 10, written[:20]  # log_repeat_limit's default
        assert [line.split(" ", 2)[2] for line in summaries] == [
            f"WARNING goworld.game: {FLOOD - 10} more like this suppressed in the last 3600 s: "
            "player %s complains (#%d)"
        ]
        assert "complains" not in read(run_dir / "game1.stderr")

        # The next start keeps this run's files as .1 (log_backups = 5 by default).
        runner.start()
        for name in names:
            assert runctl.started_tag(name.rstrip("1")) in read(cluster / f"{name}.log.1"), name
        assert read(cluster / "game1.log.1").splitlines() == game_log
        assert "complains" not in read(cluster / "game1.log")
        assert read(run_dir / "game1.stderr.1").splitlines() == [APP_STDERR_LINE]
        assert read(run_dir / "game1.stderr").splitlines() == [APP_STDERR_LINE]
        assert not (cluster / "game1.log.2").exists()
    finally:
        runner.stop()
        runner.kill()


def make_app(tmp_path: Path) -> Path:
    app = tmp_path / "flood_app"
    app.mkdir()
    (app / "__init__.py").write_text(APP)
    return app


@pytest.mark.asyncio
async def test_summaries_are_written_while_the_game_runs(tmp_path: Path) -> None:
    """Nothing else need be logged after a flood: the game's loop writes the summary once the
    interval is over (here 1 s), and every call is accounted for, written or counted."""
    app = make_app(tmp_path)
    cluster = tmp_path / "cluster"
    cluster.mkdir()
    runner = ClusterRunner(cluster, app, dispatchers=1, games=1, gates=1,
                           game_extra="log_repeat_interval = 1")
    summary = re.compile(r"WARNING goworld\.game: (\d+) more like this suppressed in the last 1 s: "
                         r"player %s complains \(#%d\)$")
    try:
        runner.start()
        await flood_warnings(runner)
        deadline = time.monotonic() + 60  # a bound for a stuck test, not a measurement
        while True:
            lines = read(cluster / "game1.log").splitlines()
            suppressed = [int(m[1]) for line in lines if (m := summary.search(line))]
            written = [line for line in lines if " complains (#" in line and not summary.search(line)]
            if suppressed and len(written) + sum(suppressed) == FLOOD:
                break
            assert time.monotonic() < deadline, (len(written), suppressed)
            time.sleep(0.1)
        assert runner.cli("status").returncode == 0  # summarised by the running game
    finally:
        runner.stop()
        runner.kill()


def test_a_process_run_by_hand_logs_to_stderr_as_log_stderr_says(tmp_path: Path) -> None:
    """`log_stderr = true` (the default) keeps GoWorld's meaning outside the CLI: records go to
    the log file and to stderr; only a stderr the CLI captured (its file's identity in
    GOWORLD_STDERR, fd 2 that very file) gets none."""
    ports = write_ini(tmp_path, dispatchers=1, games=1, gates=1)
    ini = tmp_path / "goworld.ini"
    needle = "dispatcher1 cannot listen on [dispatcher1]"
    cmd = [sys.executable, "-m", "dispatcher", "-dispid", "1", "-configfile", str(ini)]
    with socket.socket() as busy:  # the dispatcher fails at once, logging why
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", ports["dispatcher"][0]))
        busy.listen()

        def run(stderr_file: Path, env: dict[str, str]) -> str:
            (tmp_path / "dispatcher1.log").unlink(missing_ok=True)
            with open(stderr_file, "ab") as err:
                proc = subprocess.run(cmd, cwd=tmp_path, stderr=err, stdout=subprocess.DEVNULL,
                                      env=env, timeout=60)
            assert proc.returncode == 1
            assert needle in read(tmp_path / "dispatcher1.log")
            return read(stderr_file)

        plain = {k: v for k, v in os.environ.items() if k != runctl.STDERR_ENV}
        assert needle in run(tmp_path / "by_hand.stderr", plain)
        captured = tmp_path / "captured.stderr"
        captured.touch()
        with open(captured, "ab") as f:
            env = {**plain, **runctl.stderr_capture_env(f.fileno())}
        assert needle not in run(captured, env)
        # The variable alone (inherited by a process with another stderr) changes nothing.
        assert needle in run(tmp_path / "other.stderr", env)


def test_start_and_reload_find_the_start_tag_in_logs_rotated_by_size(tmp_path: Path) -> None:
    """log_max_bytes rotates a game's log several times during start-up and during a reload
    (where the standby and the frozen game write the same file): the CLI still sees each tag."""
    runner = ClusterRunner(tmp_path, Path(__file__).resolve().parents[1] / "apps" / "cluster_app",
                           dispatchers=1, games=1, gates=1,
                           game_extra="log_max_bytes = 300\nlog_backups = 50")
    try:
        runner.start()
        assert (tmp_path / "game1.log.2").exists()  # rotated more than once while starting
        generations = len(list(tmp_path.glob("game1.log*")))
        reload = runner.cli("reload")
        assert reload.returncode == 0, reload.stdout + reload.stderr
        assert "restoring game1       ok" in reload.stdout
        assert len(list(tmp_path.glob("game1.log*"))) > generations
        tags = sum(read(p).count(runctl.started_tag("game")) for p in tmp_path.glob("game1.log*"))
        assert tags == 2
        assert all(p.stat().st_size <= 300 for p in tmp_path.glob("game1.log*"))
    finally:
        runner.stop()
        runner.kill()
