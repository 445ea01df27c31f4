"""mongo-java-server, an in-memory MongoDB-wire server, for benchmarks that need MongoDB.

The server is a test tool of this repository (``tests/tools/mongo_server/``: a Maven pom naming
``de.bwaldvogel:mongo-java-server`` and a small Java launcher, see its README). This module
resolves its classpath with Maven, compiles the launcher once into
``~/.cache/goworld-test/mongo_server-<hash>/`` (the hash covers the pom, the launcher and
``java -version``) and runs it on a free loopback port. ``tests/goworld/mongo_server.py`` (the
MongoDB test fixture) uses the same :func:`launcher`.

The launcher prints ``LISTENING <port>`` once bound and exits when its stdin closes, so the
server never outlives what started it; :class:`MongoJavaServer` closes stdin, then kills.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from goworld.bench.result import BenchError

__all__ = ["TOOLS", "MongoJavaServer", "launcher", "missing_tools", "running"]

logger = logging.getLogger("goworld.bench")

ROOT = Path(__file__).resolve().parents[2]
TOOL_DIR = ROOT / "tests" / "tools" / "mongo_server"
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "goworld-test"
#: What building and running the launcher needs on PATH.
TOOLS = ("java", "javac", "mvn")
START_TIMEOUT = 30.0
INSTALL_HINT = "Debian: apt-get install openjdk-17-jdk-headless maven; scripts/install-test-deps does"


def missing_tools() -> list[str]:
    """The tools of :data:`TOOLS` that are not on PATH."""
    return [name for name in TOOLS if shutil.which(name) is None]


def _run(argv: list[str], what: str) -> str:
    """Run a build step; '' on success, else why it failed."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{what} failed: {exc}"
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip()[-3000:]
        return f"{what} failed (exit {proc.returncode}); `{' '.join(argv)}` said:\n{output}"
    return ""


@functools.cache
def launcher() -> tuple[list[str] | None, str]:
    """The command that starts mongo-java-server (append host and port), or (None, why not)."""
    missing = missing_tools()
    if missing:
        return None, (f"mongo-java-server needs a JDK (17+) and Maven on PATH ({INSTALL_HINT}); "
                      f"not on PATH: {', '.join(missing)}")
    java, javac, mvn = (str(shutil.which(name)) for name in TOOLS)
    digest = hashlib.sha256()
    for name in ("pom.xml", "MongoServerMain.java"):
        digest.update(name.encode() + b"\0" + (TOOL_DIR / name).read_bytes() + b"\0")
    version = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    digest.update(version.stderr.encode())
    target = CACHE_DIR / f"mongo_server-{digest.hexdigest()[:16]}"
    classpath_file = target / "classpath.txt"
    if classpath_file.exists():
        classpath = classpath_file.read_text().strip()
        if all(Path(jar).exists() for jar in classpath.split(os.pathsep)):
            return [java, "-cp", f"{target / 'classes'}{os.pathsep}{classpath}", "MongoServerMain"], ""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE_DIR) as tmp:
        build = Path(tmp) / "build"
        build.mkdir()
        why = _run([mvn, "-q", "-B", "-f", str(TOOL_DIR / "pom.xml"), "dependency:build-classpath",
                    f"-Dmdep.outputFile={build / 'classpath.txt'}"],
                   "resolving de.bwaldvogel:mongo-java-server from Maven Central")
        if why:
            return None, why
        classpath = (build / "classpath.txt").read_text().strip()
        why = _run([javac, "-cp", classpath, "-d", str(build / "classes"),
                    str(TOOL_DIR / "MongoServerMain.java")],
                   "compiling tests/tools/mongo_server/MongoServerMain.java")
        if why:
            return None, why
        shutil.rmtree(target, ignore_errors=True)
        os.replace(build, target)
    return [java, "-cp", f"{target / 'classes'}{os.pathsep}{classpath}", "MongoServerMain"], ""


class MongoJavaServer:
    """One running server on 127.0.0.1; :meth:`stop` always ends it."""

    def __init__(self, command: list[str], log: Path) -> None:
        self.log = log
        with log.open("wb") as err:
            self.proc = subprocess.Popen([*command, "127.0.0.1", "0"], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=err)
        try:
            self.port = self._read_port()
        except BaseException:
            self.stop()
            raise
        self.url = f"mongodb://127.0.0.1:{self.port}/"
        logger.info("mongo-java-server (pid %d) listens on %s", self.proc.pid, self.url)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read_port(self) -> int:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        line = b""
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self.proc.stdout], [], [], max(remaining, 0))
            chunk = os.read(self.proc.stdout.fileno(), 256) if ready else b""
            if not chunk:
                reason = "timed out" if not ready else f"exited with {self.proc.wait()}"
                tail = self.log.read_text(errors="replace")[-2000:]
                raise BenchError(f"mongo-java-server {reason} before listening; its stderr:\n{tail}")
            line += chunk
        word, _, port = line.decode().strip().partition(" ")
        if word != "LISTENING" or not port.isdigit():
            raise BenchError(f"mongo-java-server printed {line!r}, not LISTENING <port>")
        return int(port)

    def stop(self) -> None:
        """Close its stdin (the launcher then exits); kill it if it has not after 10 s."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@contextmanager
def running(log: Path) -> Iterator[MongoJavaServer]:
    """A server for the duration of the block (BenchError when it cannot run); its stderr in
    ``log``."""
    command, why = launcher()
    if command is None:
        raise BenchError(why)
    server = MongoJavaServer(command, log)
    try:
        yield server
    finally:
        server.stop()
