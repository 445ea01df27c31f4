"""GoWorld's own server programs (dispatcher, gate, test_game), as a reference to measure against.

They are test tools, not part of the project: GoWorld's sources are in ``../shared/goworld-go``
and ``../shared/tools/build-goworld`` builds them. :func:`build_servers` builds the three into
``.cache/goworld-go/`` and reuses them while a stamp (the build script, every ``*.go`` file and
``go.mod``/``go.sum`` of goworld-go, ``go version``) is unchanged, as :mod:`goworld.gobot` does
for the bot.

:class:`GoWorldCluster` runs one of each from a goworld.ini (GoWorld's format, §5 of
PROTOCOL.md: ``-dispid N``/``-gid N`` and ``-configfile``) the way GoWorld's own CLI does:
dispatchers, then games, then gates, each once its predecessor logged its start tag; it is up
when test_game logs that all its services are ready. Each process runs in the cluster's
directory (log files are relative to it) with stdout and stderr in ``<name>.stderr``.
:meth:`GoWorldCluster.stop` sends SIGTERM in GoWorld's order (gates, games, dispatchers),
waiting for each, and kills whatever is left.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from goworld import gobot

__all__ = ["CACHE_DIR", "TARGETS", "GoWorldCluster", "build_servers"]

logger = logging.getLogger("goworld.bench")

ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = ROOT / ".cache" / "goworld-go"
TARGETS = ("dispatcher", "gate", "test_game")
#: What each process logs (at info level, whatever log_level says) once it runs.
START_TAGS = {"dispatcher": "DISPATCHER STARTED", "game": "GAME STARTED", "gate": "GATE STARTED"}
#: test_game's line once every service entity exists (it checks every second).
SERVICES_READY = "ALL SERVICES ARE READY"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


def _stamp(go: Path, build_script: Path, source: Path) -> str:
    digest = hashlib.sha256()
    files = [build_script, source / "go.mod", source / "go.sum", *sorted(source.rglob("*.go"))]
    for path in files:
        digest.update(str(path.relative_to(source.parent)).encode() + b"\0")
        digest.update(path.read_bytes() if path.exists() else b"<missing>")
        digest.update(b"\0")
    version = subprocess.run([str(go), "version"], capture_output=True, text=True, timeout=60,
                             check=False).stdout
    digest.update(version.encode())
    return digest.hexdigest()


def build_servers(cache_dir: Path = CACHE_DIR, *, build_script: Path = gobot.BUILD_SCRIPT,
                  source: Path = gobot.GOWORLD_GO, timeout: float = 900.0) -> dict[str, Path]:
    """Build GoWorld's dispatcher, gate and test_game into ``cache_dir`` (or reuse them);
    {target: binary}. Raises :class:`goworld.gobot.GoToolchainMissing` without a Go
    toolchain, :class:`goworld.gobot.BuildError` when the build fails."""
    go = gobot.find_go()
    if go is None:
        raise gobot.GoToolchainMissing(
            "GoWorld's servers need a Go toolchain: no `go` on PATH nor in /usr/local/go/bin "
            "(apt-get install -y golang-go; scripts/install-test-deps does)")
    if not build_script.is_file():
        raise gobot.BuildError(f"{build_script} not found (GoWorld's sources are expected beside it)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    binaries = {t: cache_dir / t for t in TARGETS}
    stamp_file = cache_dir / "servers.stamp"
    with (cache_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamp = _stamp(go, build_script, source)
        if (all(b.is_file() for b in binaries.values()) and stamp_file.is_file()
                and stamp_file.read_text().strip() == stamp):
            return binaries
        logger.info("building GoWorld's %s with %s", ", ".join(TARGETS), go)
        env = {**os.environ, "PATH": f"{go.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
            try:
                proc = subprocess.run([str(build_script), tmp, *TARGETS], capture_output=True,
                                      text=True, env=env, timeout=timeout, check=False)
            except subprocess.TimeoutExpired as exc:
                raise gobot.BuildError(f"building GoWorld's servers took more than {timeout:.0f} s") from exc
            if proc.returncode != 0:
                raise gobot.BuildError(f"{build_script} {tmp} {' '.join(TARGETS)} exited "
                                       f"{proc.returncode}:\n{(proc.stdout + proc.stderr).strip()[-4000:]}")
            for target, binary in binaries.items():
                os.replace(Path(tmp) / target, binary)
        stamp_file.write_text(stamp + "\n")
        return binaries


class GoWorldCluster:
    """GoWorld's dispatcher1, game1 (test_game) and gate1 from ``ini`` (1 + 1 + 1), run in
    ``ini``'s directory. :meth:`start` raises RuntimeError (with the log's tail) when a process
    dies or does not start in time; :meth:`stop` always leaves nothing running."""

    def __init__(self, ini: Path, binaries: Mapping[str, Path]) -> None:
        self.ini = ini.resolve()
        self.dir = self.ini.parent
        self.binaries = dict(binaries)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.procs.items()}

    def start(self, timeout: float = START_TIMEOUT) -> None:
        try:
            self._spawn("dispatcher1", self.binaries["dispatcher"], "-dispid", "dispatcher", timeout)
            self._spawn("game1", self.binaries["test_game"], "-gid", "game", timeout)
            self._spawn("gate1", self.binaries["gate"], "-gid", "gate", timeout)
            self._wait_for("game1", SERVICES_READY, timeout)
        except BaseException:
            self.stop()
            raise

    def _spawn(self, name: str, binary: Path, id_flag: str, role: str, timeout: float) -> None:
        log = self.dir / f"{name}.log"
        log.unlink(missing_ok=True)
        with (self.dir / f"{name}.stderr").open("wb") as err:
            self.procs[name] = subprocess.Popen(
                [str(binary), id_flag, name.removeprefix(role), "-configfile", str(self.ini)],
                cwd=self.dir, stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT)
        logger.info("GoWorld's %s started (pid %d)", name, self.procs[name].pid)
        self._wait_for(name, START_TAGS[role], timeout)

    def _wait_for(self, name: str, needle: str, timeout: float) -> None:
        log = self.dir / f"{name}.log"
        deadline = time.monotonic() + timeout
        while True:
            try:
                if needle in log.read_text(errors="replace"):
                    return
            except OSError:
                pass
            code = self.procs[name].poll()
            if code is not None or time.monotonic() > deadline:
                why = f"exited {code}" if code is not None else f"did not log {needle!r} in {timeout:.0f} s"
                raise RuntimeError(f"GoWorld's {name} {why}\n{self.tail(name)}")
            time.sleep(0.1)

    def tail(self, name: str, lines: int = 30) -> str:
        out = []
        for path in (self.dir / f"{name}.log", self.dir / f"{name}.stderr"):
            try:
                text = path.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                continue
            out.append(f"---- {path.name}\n" + "\n".join(text))
        return "\n".join(out)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM to gates, then games (which save), then dispatchers, each waited for; then
        SIGKILL for whatever is left."""
        try:
            for prefix in ("gate", "game", "dispatcher"):
                for name, proc in self.procs.items():
                    if name.startswith(prefix) and proc.poll() is None:
                        proc.send_signal(signal.SIGTERM)
                        try:
                            proc.wait(timeout)
                        except subprocess.TimeoutExpired:
                            logger.warning("GoWorld's %s ignored SIGTERM for %.0f s", name, timeout)
        finally:
            for proc in self.procs.values():
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
