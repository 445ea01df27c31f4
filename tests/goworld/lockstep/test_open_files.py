"""The lockstep process raises its open-file limit for its sessions and room journals."""

from __future__ import annotations

import dataclasses
import logging
import resource
from pathlib import Path

import pytest

import lockstep.__main__ as lockstep_main
from goworld.config import load


def _lcfg(tmp_path: Path, **overrides: object) -> object:
    (tmp_path / "goworld.ini").write_text(
        "[deployment]\ndesired_dispatchers = 1\ndesired_games = 1\ndesired_gates = 1\n"
        "[dispatcher1]\n[game1]\n[gate1]\n[lockstep]\n"
    )
    return dataclasses.replace(load(tmp_path / "goworld.ini").lockstep_procs[1], **overrides)


def test_the_limit_is_raised_for_sessions_and_journals_or_the_keys_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    limits = {"now": (1024, 100_000)}
    monkeypatch.setattr(resource, "getrlimit", lambda _: limits["now"])
    monkeypatch.setattr(resource, "setrlimit", lambda _, value: limits.__setitem__("now", value))
    lcfg = _lcfg(tmp_path, max_sessions=3000, max_rooms=1000)
    want = 3000 + 1000 + lockstep_main.SPARE_DESCRIPTORS
    assert lockstep_main.fit_descriptors(lcfg) == want  # type: ignore[arg-type]
    assert limits["now"] == (want, 100_000)

    limits["now"] = (1024, 2048)
    caplog.set_level(logging.WARNING)
    assert lockstep_main.fit_descriptors(lcfg) == 2048  # type: ignore[arg-type]
    assert "max_sessions = 3000 and max_rooms = 1000" in caplog.text and "the limit is 2048" in caplog.text

    limits["now"] = (1024, 100_000)
    no_journal = _lcfg(tmp_path, max_sessions=3000, max_rooms=1000, room_journal=False)
    assert lockstep_main.fit_descriptors(no_journal) == 3000 + lockstep_main.SPARE_DESCRIPTORS  # type: ignore[arg-type]
