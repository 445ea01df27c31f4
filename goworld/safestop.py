"""``goworld stop``: stop a cluster without losing anything, and say what happens.

The order (each step shown as it happens; :class:`SafeStop`):

1. **Drain the gates**, all of them before any closes: :data:`~goworld.runctl.DRAIN_SIGNAL`
   makes a gate refuse new clients, tell its clients that the server is going down (a notice
   our SDK and browser client show; GoWorld's clients see only the disconnect later) and stop
   reading them; it writes its ``drained`` status file once what it read is with the
   dispatchers and the replies have stopped coming.
2. **Stop the gates** (SIGTERM): they close their clients; the games hear of each.
3. **Stop the games**, all at once (SIGTERM): each first makes sure everything its dispatchers
   had for it is handled (:mod:`game.shutdown`), then destroys its entities, saving the
   persistent ones, and reports each step in its ``stopping`` status file.
4. **Stop the dispatchers.**

``timeout`` bounds the whole stop (0: no bound): a process still running when it is over is
killed (SIGKILL), named, and the stop fails, so that an operator (or a service manager) is
never left waiting on a hung process, and knows what was not saved.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from goworld import runctl
from goworld.runctl import ProcFile

__all__ = ["SafeStop", "StopTarget"]

#: How long one gate may take to report drained (it gives up waiting for quiet after 3 s).
DRAIN_WAIT = 6.0
#: Each role's own bound on its exit after SIGTERM (within the overall timeout).
EXIT_WAIT = {"gate": 30.0, "game": 600.0, "dispatcher": 30.0, "lockstep": 30.0}
_POLL = 0.05
#: How long a gate or dispatcher may still take once the timeout is over.
_LATE_GRACE = 1.0


class _Proc(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def role(self) -> str: ...


class StopTarget(Protocol):
    """What :class:`SafeStop` needs of the CLI's ``Cluster``."""

    def procs(self, role: str) -> Sequence[Any]: ...

    def pid(self, proc: Any) -> int | None: ...

    def file(self, proc: Any, kind: ProcFile) -> Path: ...


class SafeStop:
    def __init__(
        self,
        cluster: StopTarget,
        timeout: float,
        echo: Callable[[str], None],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cluster = cluster
        self.echo = echo
        self.clock = clock
        self.deadline = clock() + timeout if timeout > 0 else float("inf")
        self.killed: list[str] = []
        self.failed: list[str] = []

    def left(self, cap: float) -> float:
        return max(0.0, min(cap, self.deadline - self.clock()))

    def run(self) -> bool:
        """The four steps; returns whether everything stopped by itself."""
        cluster = self.cluster
        gates = [p for p in cluster.procs("gate") if cluster.pid(p) is not None]
        self.drain(gates)
        for gate in gates:
            self.stop_one(gate)
        # rooms end before the games stop, so their owners still hear the results
        for room_host in cluster.procs("lockstep"):
            if cluster.pid(room_host) is not None:
                self.stop_one(room_host)
        self.stop_games([p for p in cluster.procs("game") if cluster.pid(p) is not None])
        for dispatcher in cluster.procs("dispatcher"):
            if cluster.pid(dispatcher) is not None:
                self.stop_one(dispatcher)
        return not (self.killed or self.failed)

    # ---- gates ---------------------------------------------------------------------------

    def drain(self, gates: Sequence[_Proc]) -> None:
        cluster = self.cluster
        for gate in gates:
            with contextlib.suppress(FileNotFoundError):
                cluster.file(gate, ProcFile.DRAINED).unlink()
            self._signal(gate, runctl.DRAIN_SIGNAL)
        for gate in gates:
            report = self._wait_file(gate, ProcFile.DRAINED, DRAIN_WAIT)
            if report is None:
                self.echo(f"draining {gate.name:<12} no answer (stopping it anyway)")
                continue
            self.echo(
                f"draining {gate.name:<12} new clients refused; {report.get('told', 0)} of "
                f"{report.get('clients', 0)} clients told the server is going down; drained "
                f"in {report.get('seconds', 0):.2f} s"
            )

    # ---- games ---------------------------------------------------------------------------

    def stop_games(self, games: Sequence[_Proc]) -> None:
        """SIGTERM to every game at once; show each one's steps until all have exited."""
        cluster = self.cluster
        shown: dict[str, str] = {}
        for game in games:
            with contextlib.suppress(FileNotFoundError):
                cluster.file(game, ProcFile.STOPPING).unlink()
            self._signal(game, runctl.STOP_SIGNAL)
        running = list(games)
        limit = self.clock() + self.left(EXIT_WAIT["game"])
        while running:
            for game in list(running):
                self._show_step(game, shown)
                if cluster.pid(game) is None:
                    self._show_step(game, shown)
                    self.echo(f"stopping {game.name:<12} ok")
                    running.remove(game)
            if running and self.clock() >= limit:
                for game in running:
                    self._give_up(game)
                return
            if running:
                time.sleep(_POLL)

    def _show_step(self, game: _Proc, shown: dict[str, str]) -> None:
        step = _read_json(self.cluster.file(game, ProcFile.STOPPING))
        if step is None or step.get("phase") == shown.get(game.name):
            return
        phase = str(step.get("phase"))
        shown[game.name] = phase
        if phase == "handling":
            text = f"handling what was sent to its {step.get('entities', 0)} entities"
        elif phase == "saving":
            text = (f"destroying {step.get('entities', 0)} entities, saving the "
                    f"{step.get('persistent', 0)} persistent ones")
        elif phase == "saved":
            text = (f"{step.get('entities', 0)} entities destroyed, {step.get('saved', 0)} of "
                    f"{step.get('persistent', 0)} persistent saved; took {step.get('seconds', 0):.2f} s")
            if step.get("failed") or step.get("unfinished"):
                text += (f"; {step.get('failed', 0)} saves FAILED, {step.get('unfinished', 0)} "
                         "did not finish (see its log)")
                self.failed.append(game.name)
        else:
            text = phase
        self.echo(f"stopping {game.name:<12} {text}")

    # ---- one process ---------------------------------------------------------------------

    def stop_one(self, proc: _Proc) -> None:
        self._signal(proc, runctl.STOP_SIGNAL)
        # past the timeout a gate or dispatcher still gets a moment: they stop in milliseconds
        if self._wait_exit(proc, EXIT_WAIT[proc.role], floor=_LATE_GRACE):
            self.echo(f"stopping {proc.name:<12} ok")
        else:
            self._give_up(proc)

    def _give_up(self, proc: _Proc) -> None:
        pid = self.cluster.pid(proc)
        if pid is not None and self.deadline != float("inf"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self.killed.append(proc.name)
            what = " (what it had not saved is lost)" if proc.role == "game" else ""
            self.echo(f"stopping {proc.name:<12} still running at the timeout: killed{what}")
        elif pid is not None:
            self.failed.append(proc.name)
            self.echo(f"stopping {proc.name:<12} still running (try goworld kill)")

    def _signal(self, proc: _Proc, sig: int) -> None:
        pid = self.cluster.pid(proc)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def _wait_exit(self, proc: _Proc, cap: float, *, floor: float = 0.0) -> bool:
        limit = self.clock() + max(self.left(cap), floor)
        while True:
            if self.cluster.pid(proc) is None:
                return True
            if self.clock() >= limit:
                return False
            time.sleep(_POLL)

    def _wait_file(self, proc: _Proc, kind: ProcFile, cap: float) -> dict[str, Any] | None:
        limit = self.clock() + self.left(cap)
        path = self.cluster.file(proc, kind)
        while True:
            report = _read_json(path)
            if report is not None:
                return report
            if self.cluster.pid(proc) is None or self.clock() >= limit:
                return None
            time.sleep(_POLL)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
