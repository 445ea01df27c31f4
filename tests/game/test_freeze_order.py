"""A freezing game writes its freeze file only after its storage and KVDB writes are done: the
process restoring it must not have its own newer saves overtaken by this one's retries."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

import pytest

import game.__main__ as game_main
from goworld import runctl


class SlowBackend:
    """A backend whose close waits for queued writes (a storage outage being waited out)."""

    def __init__(self, name: str, events: list[str], freeze_path: Path) -> None:
        self.name, self.events, self.freeze_path = name, events, freeze_path

    async def close(self) -> None:
        await asyncio.sleep(0.2)
        self.events.append(f"{self.name} closed, freeze file there: {self.freeze_path.exists()}")


class FakeRuntime:
    game_id = 7
    entities: dict[str, Any] = {}

    def collect_syncs(self) -> None:
        pass


class FakeLink:
    def __init__(self, events: list[str]) -> None:
        self.events = events

    async def close(self, flush_timeout: float) -> None:
        self.events.append("link closed")


class Exited(Exception):
    pass


@pytest.mark.asyncio
async def test_the_freeze_file_comes_after_storage_and_kvdb_are_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    runctl.run_dir(tmp_path).mkdir(parents=True, exist_ok=True)
    path = runctl.freeze_file(tmp_path, FakeRuntime.game_id)
    events: list[str] = []

    def exit_(code: int) -> None:
        raise Exited(code)

    monkeypatch.setattr(os, "_exit", exit_)
    monkeypatch.setattr(logging, "shutdown", lambda: None)
    with pytest.raises(Exited):
        await game_main._write_freeze(
            FakeRuntime(), {1: FakeLink(events)},  # type: ignore[arg-type, dict-item]
            SlowBackend("storage", events, path), SlowBackend("kvdb", events, path), b"state",
        )
    assert events == [
        "storage closed, freeze file there: False",
        "kvdb closed, freeze file there: False",
        "link closed",
    ]
    assert path.read_bytes() == b"state"
