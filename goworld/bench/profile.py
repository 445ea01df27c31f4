"""Where a process spends its time: py-spy samples summed up as its hottest functions.

:func:`sample` runs ``py-spy record --format raw`` against a live process (after a scenario's
measuring window, so the sampling does not disturb the figures) and :func:`summarize` turns
the folded stacks into a short table: each function's share of the samples where it was the
innermost frame (self) and where it was anywhere on the stack (total). Native frames
(``--native``) show what C code (upb, gRPC, libc writes) costs under the Python frames.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Hotspot", "Profile", "find_pyspy", "sample", "summarize"]

#: Innermost frames that mean "waiting, not working": samples ending in one are left out.
IDLE_LEAVES = frozenset({
    "epoll_wait", "epoll_pwait", "epoll_pwait2", "poll", "ppoll", "select", "pselect",
    "nanosleep", "clock_nanosleep", "pthread_cond_wait", "pthread_cond_timedwait", "futex_wait",
    "__futex_abstimed_wait_common", "syscall", "accept", "accept4",
})
_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
# py-spy frames look like "name (path/to/file.py:123)" or "name (libfoo.so)".
_FRAME = re.compile(r"^(?P<name>.*?) \((?P<where>[^()]*?)(?::\d+)?\)$")


@dataclass(frozen=True)
class Hotspot:
    function: str  # "name (file)" without the line number
    self_pct: float
    total_pct: float


@dataclass(frozen=True)
class Profile:
    process: str
    seconds: float
    samples: int  # busy samples (idle ones left out)
    hotspots: list[Hotspot]

    def one_line(self, top: int = 5) -> str:
        hot = "; ".join(f"{h.function} {h.self_pct:.0f} %" for h in self.hotspots[:top])
        return (f"{self.process} ({self.samples} busy samples over {self.seconds:g} s, "
                f"self time): {hot}")


_ROOT = str(Path(__file__).resolve().parents[2]) + "/"


def _short_path(where: str) -> str:
    """Paths relative to the checkout, site-packages or the standard library."""
    for marker in ("/site-packages/", "/lib/python3."):
        i = where.find(marker)
        if i >= 0:
            rest = where[i + len(marker):]
            return rest.split("/", 1)[1] if marker == "/lib/python3." and "/" in rest else rest
    return where[len(_ROOT):] if where.startswith(_ROOT) else where


def _function(frame: str) -> str:
    m = _FRAME.match(frame)
    if m is None:
        return frame
    return f"{m['name']} ({_short_path(m['where'])})"


def summarize(raw: str, top: int = 12) -> tuple[int, list[Hotspot]]:
    """(busy samples, the ``top`` functions by self time) from py-spy's raw folded stacks.

    Samples whose innermost frame is a wait (:data:`IDLE_LEAVES`) are left out, so the
    shares are of the time the process was working.
    """
    self_count: Counter[str] = Counter()
    total_count: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        m = _LINE.match(line.strip())
        if m is None:
            continue
        n = int(m["count"])
        raw_frames = [f for f in m["stack"].split(";") if f]
        if not raw_frames or raw_frames[-1].split(" (", 1)[0] in IDLE_LEAVES:
            continue
        frames = [_function(f) for f in raw_frames]
        total += n
        self_count[frames[-1]] += n
        for f in set(frames):
            total_count[f] += n
    if total == 0:
        return 0, []
    hot = [Hotspot(f, round(100 * n / total, 1), round(100 * total_count[f] / total, 1))
           for f, n in self_count.most_common(top)]
    return total, hot


def find_pyspy() -> str | None:
    """The py-spy executable (next to this interpreter, or on PATH), or None."""
    beside = Path(sys.executable).with_name("py-spy")
    if beside.exists():
        return str(beside)
    return shutil.which("py-spy")


def sample(pid: int, seconds: float, *, process: str, rate: int = 100,
           native: bool = True) -> Profile:
    """Sample ``pid`` for ``seconds``. Raises RuntimeError with py-spy's reason on failure."""
    exe = find_pyspy()
    if exe is None:
        raise RuntimeError("py-spy is not installed (pip install 'goworld-py[bench]')")
    with tempfile.TemporaryDirectory(prefix="goworld-pyspy-") as tmp:
        out = Path(tmp) / "profile.txt"
        cmd = [exe, "record", "--pid", str(pid), "--duration", f"{seconds:g}", "--rate",
               str(rate), "--format", "raw", "--output", str(out)]
        if native:
            cmd.append("--native")
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30)
        if proc.returncode != 0 or not out.exists():
            if native:  # native unwinding is not available everywhere: Python frames only
                return sample(pid, seconds, process=process, rate=rate, native=False)
            reason = (proc.stderr or proc.stdout).strip().splitlines()
            raise RuntimeError(f"py-spy failed on pid {pid}: {reason[-1] if reason else proc.returncode}")
        total, hot = summarize(out.read_text(errors="replace"))
    return Profile(process=process, seconds=seconds, samples=total, hotspots=hot)
