"""The installed ``goworld`` console script, run as a real process."""

from __future__ import annotations

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
