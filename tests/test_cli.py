"""The installed ``goworld`` console script, run as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOWORLD = Path(sys.executable).with_name("goworld")


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(GOWORLD), *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_config_shows_the_shipped_cluster() -> None:
    result = run("config")
    assert result.returncode == 0, result.stderr
    assert "1 dispatcher(s), 1 game(s), 1 gate(s)" in result.stdout
    assert "storage  sqlite" in result.stdout
    assert "gate1        tcp+kcp 0.0.0.0:14001  ws://127.0.0.1:24001/ws" in result.stdout


def test_config_error_names_file_section_key_value(tmp_path: Path) -> None:
    ini = tmp_path / "bad.ini"
    ini.write_text(
        "[deployment]\ndesired_dispatchers = 1\ndesired_games = 1\ndesired_gates = 1\n"
        "[gate1]\nlisten_addr = nope\n"
    )
    result = run("config", "--ini", str(ini))
    assert result.returncode == 2
    assert result.stdout == ""
    assert str(ini) in result.stderr
    assert "[gate1]" in result.stderr
    assert "listen_addr = 'nope'" in result.stderr
    assert "Traceback" not in result.stderr


TLS_WITHOUT_KEYS = (
    "[deployment]\ndesired_dispatchers = 1\ndesired_games = 1\ndesired_gates = 1\n"
    "[gate_common]\nencrypt_connection = 1\nrsa_key = keys/gate.key\n"
)


def test_config_reports_a_missing_tls_key(tmp_path: Path) -> None:
    ini = tmp_path / "goworld.ini"
    ini.write_text(TLS_WITHOUT_KEYS)
    result = run("config", "--ini", str(ini))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(
        f"goworld: config error: {ini} [gate_common] rsa_key = 'keys/gate.key': "
    ), result.stderr
    assert str(tmp_path / "keys" / "gate.key") in result.stderr
    assert "Traceback" not in result.stderr


def test_start_refuses_a_config_error_before_starting_anything(tmp_path: Path) -> None:
    ini = tmp_path / "goworld.ini"
    ini.write_text(TLS_WITHOUT_KEYS)
    result = run("start", str(ROOT / "examples" / "chatroom_demo"), "--ini", str(ini))
    assert result.returncode == 2
    assert "starting" not in result.stdout
    assert f"goworld: config error: {ini} [gate_common] rsa_key = 'keys/gate.key'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / ".goworld").exists()  # no process was spawned
    assert sorted(p.name for p in tmp_path.iterdir()) == ["goworld.ini"]  # no log, no database


# ---- the start-tag watch (cli._TagWatch): only what is appended after the spawn counts ----------

TAG = "<!--XSUPERVISOR:BEGIN--> GAME STARTED <!--XSUPERVISOR:END-->"


def test_tag_watch_ignores_the_tags_already_in_the_log(tmp_path: Path) -> None:
    import cli

    log = tmp_path / "game1.log"
    log.write_text(f"x {TAG}\n")  # the game a reload replaces started earlier
    watch = cli._TagWatch(log, TAG)
    assert not watch.found()
    with open(log, "a") as f:
        f.write("restoring...\n")
    assert not watch.found()
    with open(log, "a") as f:
        f.write(f"y {TAG}\n")
    assert watch.found()


def test_tag_watch_sees_a_tag_written_across_two_reads_and_a_file_created_later(tmp_path: Path) -> None:
    import cli

    log = tmp_path / "gate1.log"
    watch = cli._TagWatch(log, TAG)  # start rotated the old log away: no file yet
    assert not watch.found()
    with open(log, "a") as f:
        f.write("start " + TAG[:10])
    assert not watch.found()
    with open(log, "a") as f:
        f.write(TAG[10:] + "\n")
    assert watch.found()


def test_tag_watch_follows_a_size_rotation(tmp_path: Path) -> None:
    import cli

    log = tmp_path / "game1.log"
    log.write_text("old lines\n")
    watch = cli._TagWatch(log, TAG)
    with open(log, "a") as f:
        f.write(f"z {TAG}\n")  # written, then the process rotated its log before we looked
    os.replace(log, tmp_path / "game1.log.1")
    log.write_text("after the rotation\n")
    assert watch.found()
    again = cli._TagWatch(log, TAG)
    os.replace(log, tmp_path / "game1.log.1")
    log.write_text("nothing\n")
    assert not again.found()


def test_last_lines_reads_only_the_end_of_a_big_log(tmp_path: Path) -> None:
    import cli

    log = tmp_path / "game1.log"
    log.write_text("".join(f"line {i}\n" for i in range(200_000)))
    assert cli._last_lines(log, 3) == ["line 199997", "line 199998", "line 199999"]


def test_tag_watch_finds_a_tag_rotated_twice_before_it_looked(tmp_path: Path) -> None:
    """A reload's standby and the game it replaces both rotate game1.log by size: the tag may be
    written to a file that two rotations carry to game1.log.2 before the CLI looks again."""
    import cli

    log = tmp_path / "game1.log"
    log.write_text("the running game\n")
    (tmp_path / "game1.log.1").write_text(f"an older run {TAG}\n")
    watch = cli._TagWatch(log, TAG)

    def rotate() -> None:
        for n in (2, 1):
            if (tmp_path / f"game1.log.{n}").exists():
                os.replace(tmp_path / f"game1.log.{n}", tmp_path / f"game1.log.{n + 1}")
        os.replace(log, tmp_path / "game1.log.1")
        log.write_text("")

    rotate()
    with open(log, "a") as f:
        f.write(f"standby {TAG}\n")
    rotate()
    with open(log, "a") as f:
        f.write("more lines\n")
    assert "standby" in (tmp_path / "game1.log.1").read_text()
    assert watch.found()
    again = cli._TagWatch(log, TAG)
    rotate()
    rotate()
    assert not again.found()  # only the older run's tag, which was there before


# ---- reload: the standby may restore (and rename the freeze file) before the CLI looks --------

FAKE_GAME = """
import os, signal, sys, time
from pathlib import Path
root, mode = Path(sys.argv[1]), sys.argv[2]
def freeze(*_):
    if mode == "restored-at-once":  # the freeze file, renamed as a quick standby does
        (root / "game1_freezed.dat").write_bytes(b"state")
        os.replace(root / "game1_freezed.dat", root / "game1_freezed.restored")
    os._exit(0)  # mode "nothing": exits without writing a freeze file
signal.signal(signal.SIGHUP, freeze)
(root / "ready").write_text("")
while True:
    time.sleep(1)
"""


def _freeze_a_fake_game(tmp_path: Path, mode: str) -> tuple[str | None, int | str]:
    import time

    import cli
    from goworld.config import load

    (tmp_path / "goworld.ini").write_text(
        "[deployment]\ndesired_dispatchers = 1\ndesired_games = 1\ndesired_gates = 1\n"
    )
    (tmp_path / "game1_freezed.restored").write_bytes(b"an earlier reload")
    cluster = cli.Cluster(load(tmp_path / "goworld.ini", check_files=False))
    proc = cli.Proc("game", 1, tmp_path / "game.log")
    game = subprocess.Popen([sys.executable, "-c", FAKE_GAME, str(tmp_path), mode])
    try:
        deadline = time.monotonic() + 60  # a bound for a stuck test, not a measurement
        while not (tmp_path / "ready").exists():
            assert time.monotonic() < deadline and game.poll() is None
            time.sleep(0.01)
        return cli._freeze(cluster, proc, game.pid), cli._frozen_size(cluster, proc)
    finally:
        game.kill()
        game.wait()


def test_a_freeze_counts_when_the_standby_renamed_the_file_before_the_cli_looked(tmp_path: Path) -> None:
    assert _freeze_a_fake_game(tmp_path, "restored-at-once") == (None, 5)


def test_a_game_that_exits_without_a_freeze_file_is_a_failure_despite_an_old_restored_file(
    tmp_path: Path,
) -> None:
    failure, _ = _freeze_a_fake_game(tmp_path, "nothing")
    assert failure is not None and "game1 exited without writing" in failure


FAKE_STANDBY = """
import os, sys, time
from pathlib import Path
marker = Path(sys.argv[1])
time.sleep(0.3)  # still importing
marker.write_text(str(os.getpid()))
time.sleep(60)
"""


def test_the_freeze_waits_for_this_standby_not_the_marker_of_an_earlier_one(tmp_path: Path) -> None:
    # The game running now was the standby of the previous reload: its marker is still there.
    import cli
    from goworld.config import load
    from goworld.runctl import ProcFile

    (tmp_path / "goworld.ini").write_text(ONE_EACH)
    cluster = cli.Cluster(load(tmp_path / "goworld.ini", check_files=False))
    proc = cli.Proc("game", 1, tmp_path / "game.log")
    marker = cluster.file(proc, ProcFile.STANDBY)
    marker.parent.mkdir(exist_ok=True)
    marker.write_text(str(os.getpid()))  # an earlier standby's pid
    standby = subprocess.Popen([sys.executable, "-c", FAKE_STANDBY, str(marker)])
    try:
        assert cli._wait_standby(cluster, proc, standby.pid) is None
        assert marker.read_text() == str(standby.pid)
    finally:
        standby.kill()
        standby.wait()


# ---- status and restart without a running cluster ----------------------------------------------

ONE_EACH = "[deployment]\ndesired_dispatchers = 1\ndesired_games = 1\ndesired_gates = 1\n"


def test_status_json_and_exit_code_when_nothing_runs(tmp_path: Path) -> None:
    import json

    (tmp_path / "goworld.ini").write_text(ONE_EACH)
    result = run("status", "--json", "--ini", str(tmp_path / "goworld.ini"))
    assert result.returncode == 3, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["app"] is None
    assert report["supervisor"] == {"expected": False, "up": False, "pid": None}
    assert [(p["name"], p["up"], p["state"], p["restarts"]) for p in report["processes"]] == [
        ("dispatcher1", False, "down", 0), ("game1", False, "down", 0), ("gate1", False, "down", 0)
    ]
    text = run("status", "--ini", str(tmp_path / "goworld.ini"))
    assert text.returncode == 3 and "0/1 gates running; not supervised" in text.stdout


def test_restart_arguments(tmp_path: Path) -> None:
    ini = tmp_path / "goworld.ini"
    ini.write_text(ONE_EACH)
    result = run("restart", "game1", "--ini", str(ini))
    assert result.returncode == 1 and "no cluster was started here" in result.stderr
    from goworld import runctl

    runctl.write_cluster_app(runctl.run_dir(tmp_path), ROOT / "tests" / "apps" / "cluster_app")
    result = run("restart", "game9", "--ini", str(ini))
    assert result.returncode == 2 and f"{ini} has no game9" in result.stderr
    result = run("restart", "game1", "gate1", "--ini", str(ini))
    assert result.returncode == 2 and "at most one APP and one PROCESS" in result.stderr
    result = run("restart", str(tmp_path), "game1", "--ini", str(ini))
    assert result.returncode == 1 and "runs " in result.stderr and f"not {tmp_path}" in result.stderr
