"""CPU time and RSS of a process, and how busy the machine is, from /proc (Linux)."""

from __future__ import annotations

import os
import time
from pathlib import Path

__all__ = ["busy_fraction", "cpu_rss", "cpu_seconds", "cpu_split", "io_syscalls",
           "machine_cpu_seconds", "peak_rss_bytes", "rss_bytes"]

_CLK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_rss(pid: int) -> tuple[float, int]:
    """(user + system CPU seconds so far, RSS bytes) of ``pid``; OSError if it is gone."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK, int(fields[21]) * _PAGE


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds so far of ``pid``, every thread; OSError if it is gone."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / _CLK, int(fields[12]) / _CLK


def io_syscalls(pid: int) -> tuple[int, int]:
    """(read-type, write-type) system calls so far of ``pid``, every thread (/proc/PID/io
    syscr and syscw: read()/readv()/recv... and write()/writev()/send... on any file or
    socket); OSError if it is gone or not readable (another user's process)."""
    found: dict[str, int] = {}
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            key, _, value = line.partition(":")
            found[key] = int(value)
    return found["syscr"], found["syscw"]


def cpu_seconds(pid: int) -> float:
    return cpu_rss(pid)[0]


def rss_bytes(pid: int) -> int:
    return cpu_rss(pid)[1]


def peak_rss_bytes(pid: int) -> int:
    """The largest RSS ``pid`` has had so far (VmHWM); OSError if it is gone."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError(f"no VmHWM in /proc/{pid}/status")


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of every core since boot, from /proc/stat: busy is user, nice,
    system, irq and softirq time (what processes cost; idle, iowait and steal are not), total
    adds the rest. The difference of two samples says how busy the machine was between them."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    fields += [0] * (8 - len(fields))
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    busy = user + nice + system + irq + softirq
    return busy / _CLK, (busy + idle + iowait + steal) / _CLK


def busy_fraction(seconds: float = 1.0) -> float:
    """How busy the machine's CPUs were over ``seconds`` (0..1; 0 if /proc/stat is unreadable)."""
    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return idle, sum(fields)

    try:
        i0, t0 = sample()
        time.sleep(seconds)
        i1, t1 = sample()
    except (OSError, ValueError, IndexError):
        return 0.0
    return 1.0 - (i1 - i0) / max(1, t1 - t0)
