"""The README's main job: examples/chatroom_demo on a cluster, used by scripts/chat_bots.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from goworld.testing import ClusterRunner

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("transport", ["tcp", "ws", "kcp"])
def test_chat_bots_talk_through_the_chatroom_demo(tmp_path: Path, transport: str) -> None:
    runner = ClusterRunner(tmp_path, ROOT / "examples" / "chatroom_demo", dispatchers=1, games=1, gates=1)
    runner.start()
    try:
        result = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "chat_bots.py"), "--ini", str(runner.ini),
             "--transport", transport],
            capture_output=True, text=True, timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr + runner.logs()
        assert "says 'hello bob!'" in result.stdout and "says 'hi alice'" in result.stdout
    finally:
        runner.stop()
        runner.kill()
