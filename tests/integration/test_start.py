"""``goworld start`` and friends as an operator sees them: start returns when the cluster can
serve, a second cluster on the same ports fails loudly and leaves the first alone, and
GoWorld's command forms (``goworld stop|status|kill|reload APP``) work."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from goworld.testing import ClusterRunner, login, make_key_pair

APP = Path(__file__).resolve().parents[1] / "apps" / "cluster_app"
SERVICE_SHARDS = 2 + 3  # cluster_app: SpaceService x2, EchoService x3


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ClusterRunner, str]]:
    """A running 2+2+2 cluster and what `goworld start` printed."""
    runner = ClusterRunner(tmp_path_factory.mktemp("first"), APP)
    result = runner.cli("start", str(APP))
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        yield runner, result.stdout
    finally:
        runner.stop()
        runner.kill()


def test_start_returns_once_every_game_serves(first: tuple[ClusterRunner, str]) -> None:
    runner, out = first
    assert "waiting for services  ok" in out
    # No waiting here: every shard exists when start returns, and each game said so.
    assert len(runner.grep("created here")) == SERVICE_SHARDS
    assert len(runner.grep("serving: deployment ready, 2 services with 5 shards")) == 2
    assert sorted(p.name for p in (runner.dir / ".goworld").glob("*.serving")) == [
        "game1.serving", "game2.serving"
    ]


@pytest.mark.asyncio
async def test_a_second_cluster_on_the_same_ports_is_refused_and_the_first_carries_on(
    first: tuple[ClusterRunner, str], tmp_path: Path
) -> None:
    runner, _ = first
    shutil.copy(runner.ini, tmp_path / "goworld.ini")
    second = ClusterRunner.__new__(ClusterRunner)
    second.dir, second.app, second.ini, second.ports = tmp_path, APP, tmp_path / "goworld.ini", runner.ports
    result = second.cli("start", str(APP))
    assert result.returncode == 1
    gate_port = runner.ports["gate_tcp"][0]
    assert f"dispatcher1's [dispatcher1] listen_addr = 127.0.0.1:{runner.ports['dispatcher'][0]} (gRPC): the address is in use" in result.stderr
    assert f"gate1's [gate1] listen_addr = 127.0.0.1:{gate_port} (KCP clients): the address is in use" in result.stderr
    assert not list(tmp_path.glob(".goworld/*.pid"))  # nothing was started

    # The processes refuse by themselves too (started by hand, without the CLI's check): the
    # dispatcher does not share its port (grpc's SO_REUSEPORT is off), and a gate binds its
    # listeners before it joins the dispatchers, so it never replaces the running gate1.
    for role, flag in (("dispatcher", "-dispid"), ("gate", "-gateid")):
        proc = subprocess.run(
            [sys.executable, "-m", role, flag, "1", "-configfile", str(second.ini)],
            cwd=tmp_path, capture_output=True, text=True, timeout=60,
        )
        assert proc.returncode == 1, (role, proc.stdout, proc.stderr)
        log = (tmp_path / f"{role}1.log").read_text()
        assert f"{role}1 cannot listen on [{role}1]" in log, log

    status = runner.cli("status")
    assert status.returncode == 0 and "2/2 dispatchers, 2/2 games" in status.stdout
    assert "2/2 gates running" in status.stdout
    client = await login(runner, "after-the-intruder", "tcp", 0)
    try:
        client.call_player("Echo", 7, "still here")
        await client.wait_call("OnEcho")
    finally:
        await client.aclose()


def test_goworld_forms_with_the_app_argument(first: tuple[ClusterRunner, str], tmp_path: Path) -> None:
    runner, _ = first
    status = runner.cli("status", str(APP))
    assert status.returncode == 0 and "2/2 gates running" in status.stdout
    other = tmp_path / "other_app"
    other.mkdir()
    for command in ("status", "stop", "kill", "reload"):
        refused = runner.cli(command, str(other))
        assert refused.returncode == 1, command
        assert f"runs {APP}, not {other}" in refused.stderr, (command, refused.stderr)
    assert runner.cli("status").returncode == 0  # nothing was stopped


def test_stop_and_kill_with_the_app_argument(tmp_path: Path) -> None:
    runner = ClusterRunner(tmp_path, APP, dispatchers=1, games=1, gates=1)
    try:
        runner.start()
        stopped = runner.cli("stop", str(APP))
        assert stopped.returncode == 0, stopped.stderr
        assert "stopping game1" in stopped.stdout
        assert runner.cli("status", str(APP)).returncode == 3  # nothing running
        runner.start()
        killed = runner.cli("kill", str(APP))
        assert killed.returncode == 0 and "killed game1" in killed.stdout
    finally:
        runner.kill()


def test_start_fails_with_the_log_tail_when_a_service_never_comes(tmp_path: Path) -> None:
    app = tmp_path / "broken_service"
    app.mkdir()
    (app / "__init__.py").write_text(textwrap.dedent('''
        import logging
        import time

        import goworld

        class Account(goworld.Entity):
            pass

        class NeverService(goworld.Entity):
            def on_created(self):
                logging.getLogger("goworld.game").error("NeverService is stuck")
                time.sleep(30)  # a hung service creation: the game's loop never comes back

        goworld.register_entity(Account)
        goworld.register_service(NeverService, 1)
    '''))
    cluster_dir = tmp_path / "cluster"
    cluster_dir.mkdir()
    runner = ClusterRunner(cluster_dir, app, dispatchers=1, games=1, gates=1)
    try:
        result = runner.cli("start", str(app), "--timeout", "3")
        assert result.returncode == 1
        assert "game1 did not report serving within 3 s" in result.stderr
        assert "NeverService is stuck" in result.stderr  # the game's log tail
        assert not list((cluster_dir / ".goworld").glob("*.pid"))  # what started was stopped
    finally:
        runner.kill()


def test_commands_on_a_running_cluster_do_not_check_the_files_start_checked(tmp_path: Path) -> None:
    """A TLS key removed after start (rotated, a cleaned-up directory) must not stop an operator
    from running status, stop or kill: only config and start check the files the ini names."""
    make_key_pair(tmp_path)
    runner = ClusterRunner(
        tmp_path, APP, dispatchers=1, games=1, gates=1,
        gate_extra="encrypt_connection = 1\nrsa_key = rsa.key\nrsa_certificate = rsa.crt",
    )
    try:
        runner.start()
        (tmp_path / "rsa.key").unlink()
        assert runner.cli("config").returncode == 2  # the check is still there for config
        status = runner.cli("status")
        assert status.returncode == 0 and "1/1 gates running" in status.stdout, status.stderr
        stopped = runner.stop()
        assert stopped.returncode == 0 and "stopping gate1" in stopped.stdout, stopped.stderr
    finally:
        runner.kill()


def test_a_storage_that_cannot_be_used_stops_the_start_naming_the_section(tmp_path: Path) -> None:
    """A file that is not a SQLite database as [storage] path: every save would fail (an error
    that retrying cannot mend), so the game refuses to start and says why, naming the file
    and section, instead of serving with saves dropped."""
    (tmp_path / "not-a-db").write_bytes(b"this is not a database, " * 100)
    runner = ClusterRunner(tmp_path, APP, dispatchers=1, games=1, gates=1,
                           storage="type = sqlite\npath = not-a-db")
    try:
        result = runner.cli("start", str(APP), "--timeout", "20")
        assert result.returncode != 0, result.stdout + result.stderr
        text = result.stdout + result.stderr
        assert f"{runner.ini} [storage] type = sqlite, path = {tmp_path / 'not-a-db'} cannot be used" in text, text
        assert "file is not a database" in text, text
        assert not list((tmp_path / ".goworld").glob("*.pid"))  # what started was stopped
    finally:
        runner.kill()
