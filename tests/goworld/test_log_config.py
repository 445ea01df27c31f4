"""The log keys of every role (log_repeat_limit, log_repeat_interval, log_backups, log_max_bytes)
and how goworld.process hands them to goworld.log."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

import pytest

from goworld import log, process, runctl
from goworld.config import load
from goworld.errors import ConfigError

DEPLOYMENT = "[deployment]\ndesired_dispatchers = 1\ndesired_games = 1\ndesired_gates = 1\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "goworld.ini"
    path.write_text(DEPLOYMENT + text)
    return path


def test_defaults_for_every_role(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, ""))
    for section in (cfg.dispatchers[1], cfg.games[1], cfg.gates[1]):
        assert (section.log_repeat_limit, section.log_repeat_interval, section.log_backups,
                section.log_max_bytes) == (10, 10, 5, 0)


def test_common_and_own_sections(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, "[game_common]\nlog_repeat_limit = 0\nlog_backups = 0\n"
                               "[gate1]\nlog_repeat_interval = 60\nlog_max_bytes = 1048576\n"))
    assert (cfg.games[1].log_repeat_limit, cfg.games[1].log_backups) == (0, 0)
    assert (cfg.gates[1].log_repeat_interval, cfg.gates[1].log_max_bytes) == (60, 1048576)
    assert cfg.dispatchers[1].log_repeat_limit == 10


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[gate_common]\nlog_repeat_limit = -1\n", "log_repeat_limit"),
        ("[game1]\nlog_repeat_interval = 0\n", "log_repeat_interval"),
        ("[dispatcher1]\nlog_backups = 101\n", "log_backups"),
        ("[dispatcher_common]\nlog_max_bytes = lots\n", "log_max_bytes"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        load(write(tmp_path, text))


def test_setup_logging_applies_the_section(tmp_path: Path, goworld_logger: None,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(runctl.STDERR_ENV, raising=False)
    cfg = load(write(tmp_path, "[game_common]\nlog_repeat_limit = 3\nlog_repeat_interval = 60\n"
                               "log_max_bytes = 4096\nlog_backups = 2\n"))
    section = cfg.games[1]
    process.setup_logging("info", section.log_file, True, section)
    root = logging.getLogger("goworld")
    kinds = sorted(type(h).__name__ for h in root.handlers)
    assert kinds == ["RotatingFileHandler", "StreamHandler"]
    rotating = next(h for h in root.handlers if isinstance(h, logging.handlers.RotatingFileHandler))
    assert (rotating.maxBytes, rotating.backupCount) == (4096, 2)
    assert log._installed is not None
    assert (log._installed.limit, log._installed.interval) == (3, 60.0)
    assert all(log._installed in h.filters for h in root.handlers)


def test_setup_logging_drops_stderr_when_the_cli_captures_it(
    tmp_path: Path, goworld_logger: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(runctl, "stderr_is_captured", lambda *a, **k: True)
    process.setup_logging("info", "gate1.log", True)
    assert [type(h).__name__ for h in logging.getLogger("goworld").handlers] == ["FileHandler"]
    monkeypatch.setattr(runctl, "stderr_is_captured", lambda *a, **k: False)
    process.setup_logging("info", "gate1.log", True)
    assert [type(h).__name__ for h in logging.getLogger("goworld").handlers] == ["FileHandler", "StreamHandler"]
    process.setup_logging("info", "gate1.log", False)
    assert [type(h).__name__ for h in logging.getLogger("goworld").handlers] == ["FileHandler"]
