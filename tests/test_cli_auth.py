"""goworld start and a dispatcher refuse a cluster beyond loopback without a shared secret."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from goworld.cluster import auth
from goworld.testing import free_port

ROOT = Path(__file__).resolve().parent
GOWORLD = Path(sys.executable).with_name("goworld")
APP = ROOT / "apps" / "cluster_app"

INI = """[deployment]
desired_dispatchers = 1
desired_games = 1
desired_gates = 1
{extra}
[dispatcher1]
listen_addr = 0.0.0.0:{port}
advertise_addr = 127.0.0.1:{port}
log_file = dispatcher1.log
"""


def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(auth.SECRET_ENV, raising=False)


def test_start_refuses_a_dispatcher_beyond_loopback_without_a_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _env(monkeypatch)
    ini = tmp_path / "goworld.ini"
    ini.write_text(INI.format(extra="", port=free_port()))
    done = subprocess.run([str(GOWORLD), "start", str(APP), "--ini", str(ini)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "goworld start: refused" in done.stderr
    assert f"{ini} [deployment] cluster_secret" in done.stderr
    assert "[dispatcher1] listen_addr = 0.0.0.0:" in done.stderr
    assert auth.SECRET_ENV in done.stderr
    assert not list((tmp_path / ".goworld").glob("*.pid"))
    assert not (tmp_path / ".goworld" / "cluster.secret").exists()


def test_a_dispatcher_beyond_loopback_without_a_secret_exits_saying_where_to_set_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _env(monkeypatch)
    ini = tmp_path / "goworld.ini"
    ini.write_text(INI.format(extra="", port=free_port()))
    done = subprocess.run(
        [sys.executable, "-m", "dispatcher", "-dispid", "1", "-configfile", str(ini)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert done.returncode == 2
    log = (tmp_path / "dispatcher1.log").read_text()
    assert "CRITICAL" in log and f"{ini} [deployment] cluster_secret" in log
    assert "listens on 0.0.0.0:" in log


def test_a_dispatcher_with_a_secret_never_logs_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It starts (and is stopped here at once); its log names where the secret came from."""
    _env(monkeypatch)
    ini = tmp_path / "goworld.ini"
    ini.write_text(INI.format(extra="cluster_secret = a-very-private-secret-42", port=free_port()))
    proc = subprocess.Popen(
        [sys.executable, "-m", "dispatcher", "-dispid", "1", "-configfile", str(ini)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )
    try:
        log = tmp_path / "dispatcher1.log"
        deadline = time.monotonic() + 30
        while "DISPATCHER STARTED" not in (log.read_text() if log.exists() else ""):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    text = log.read_text()
    assert f"streams must prove the cluster secret from {ini} [deployment] cluster_secret" in text
    assert "a-very-private-secret-42" not in text + err
