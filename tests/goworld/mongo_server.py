"""A real MongoDB-wire server for the MongoDB backend tests (a test helper, not project code).

Which server
    * ``GOWORLD_TEST_MONGODB_URL`` set (e.g. ``mongodb://127.0.0.1:27017/``): that server, so the
      suites also run against real MongoDB. Tests use databases named
      ``goworld_test_<pid>_<n>``, each dropped after its test (and any left over when the
      server context ends).
    * otherwise **mongo-java-server** (``de.bwaldvogel:mongo-java-server:1.46.0``, an in-memory
      MongoDB-wire server in Java) from Maven Central, started on a free loopback port through
      the launcher in ``tests/tools/mongo_server/`` (a TEST TOOL: the jars have no launcher that
      takes a port, and the server must announce MongoDB 4.4 for PyMongo to talk to it). The
      classpath (``mvn dependency:build-classpath`` on ``tests/tools/mongo_server/pom.xml``) and
      the compiled launcher are cached in ``~/.cache/goworld-test/mongo_server-<hash>/``.
    * neither (no ``java``/``javac``/``mvn``, or Maven cannot fetch the jars): the test FAILS
      with the reason. It is not skipped.

A fresh machine needs a JDK (17+, ``javac`` and ``java``) and Maven on PATH, with access to
Maven Central (Debian: ``apt-get install openjdk-17-jdk-headless maven``).

Use
    * :func:`mongodb_url`: a module-scoped pytest fixture (one server per test module), to
      import into the test module: ``from tests.goworld.mongo_server import mongodb_url``.
    * :func:`fresh_database`: a unique database name, dropped when the test ends; each test
      isolates itself with one.
    * :func:`mongo_server`: the context manager behind the fixture; it always stops what it
      started.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import os
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pymongo
import pytest

ENV_URL = "GOWORLD_TEST_MONGODB_URL"
TOOL_DIR = Path(__file__).resolve().parent.parent / "tools" / "mongo_server"
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "goworld-test"
DB_PREFIX = f"goworld_test_{os.getpid()}_"
_START_TIMEOUT = 30.0
_database_numbers = itertools.count(1)


# -- building the launcher ------------------------------------------------------------------------


def _run(argv: list[str], what: str, cwd: Path | None = None) -> str:
    """Run a build step; '' on success, else why it failed."""
    try:
        proc = subprocess.run(
            argv, cwd=cwd, capture_output=True, text=True, timeout=600, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{what} failed: {exc}"
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip()[-3000:]
        return f"{what} failed (exit {proc.returncode}); `{' '.join(argv)}` said:\n{output}"
    return ""


@functools.cache
def _launcher() -> tuple[list[str] | None, str]:
    """The command starting mongo-java-server (host and port to append), or (None, why not)."""
    tools = {name: shutil.which(name) for name in ("java", "javac", "mvn")}
    missing = [name for name, path in tools.items() if path is None]
    if missing:
        return None, (
            f"the MongoDB tests need a MongoDB-wire server: set {ENV_URL}=mongodb://host:port/ "
            f"or install a JDK (17+) and Maven so the fixture can run mongo-java-server "
            f"(Debian: apt-get install openjdk-17-jdk-headless maven); not on PATH: "
            f"{', '.join(missing)}"
        )
    java, javac, mvn = (str(tools[name]) for name in ("java", "javac", "mvn"))
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
            return [
                java,
                "-cp",
                f"{target / 'classes'}{os.pathsep}{classpath}",
                "MongoServerMain",
            ], ""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE_DIR) as tmp:
        build = Path(tmp) / "build"
        build.mkdir()
        why = _run(
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(TOOL_DIR / "pom.xml"),
                "dependency:build-classpath",
                f"-Dmdep.outputFile={build / 'classpath.txt'}",
            ],
            "resolving de.bwaldvogel:mongo-java-server from Maven Central",
        )
        if why:
            return None, why
        classpath = (build / "classpath.txt").read_text().strip()
        why = _run(
            [
                javac,
                "-cp",
                classpath,
                "-d",
                str(build / "classes"),
                str(TOOL_DIR / "MongoServerMain.java"),
            ],
            "compiling tests/tools/mongo_server/MongoServerMain.java",
        )
        if why:
            return None, why
        shutil.rmtree(target, ignore_errors=True)
        os.replace(build, target)
    return [java, "-cp", f"{target / 'classes'}{os.pathsep}{classpath}", "MongoServerMain"], ""


# -- running it -----------------------------------------------------------------------------------


def _ping(url: str, timeout: float) -> str:
    """'' once the server answers a ping, else the last error."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            client: pymongo.MongoClient[dict[str, Any]]
            with pymongo.MongoClient(url, serverSelectionTimeoutMS=1000) as client:
                client.admin.command("ping")
            return ""
        except pymongo.errors.PyMongoError as exc:
            if time.monotonic() >= deadline:
                return f"{url} does not answer a ping: {exc}"
        time.sleep(0.05)


def _read_port(proc: subprocess.Popen[bytes], log: Path) -> int:
    assert proc.stdout is not None
    deadline = time.monotonic() + _START_TIMEOUT
    line = b""
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        ready, _, _ = select.select([proc.stdout], [], [], max(remaining, 0))
        chunk = os.read(proc.stdout.fileno(), 256) if ready else b""
        if not chunk:
            reason = "timed out" if not ready else f"exited with {proc.wait()}"
            pytest.fail(
                f"mongo-java-server {reason} before listening; its stderr:\n"
                f"{log.read_text(errors='replace')[-3000:]}",
                pytrace=False,
            )
        line += chunk
    word, port = line.decode().split()
    assert word == "LISTENING", line
    return int(port)


@contextmanager
def _java_server(command: list[str]) -> Iterator[str]:
    with tempfile.NamedTemporaryFile(prefix="mongo-java-server-", suffix=".log") as log:
        proc = subprocess.Popen(
            [*command, "127.0.0.1", "0"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
        )
        try:
            url = f"mongodb://127.0.0.1:{_read_port(proc, Path(log.name))}/"
            why = _ping(url, _START_TIMEOUT)
            if why:
                pytest.fail(f"mongo-java-server: {why}", pytrace=False)
            yield url
        finally:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.close()  # the launcher exits when its stdin closes
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stdout.close()


def _drop_databases(url: str, names: list[str] | None = None) -> None:
    """Drop ``names``, or every database this process created (``goworld_test_<pid>_*``)."""
    client: pymongo.MongoClient[dict[str, Any]]
    with pymongo.MongoClient(url, serverSelectionTimeoutMS=5000) as client:
        if names is None:
            names = [n for n in client.list_database_names() if n.startswith(DB_PREFIX)]
        for name in names:
            client.drop_database(name)


@contextmanager
def mongo_server() -> Iterator[str]:
    """The URL of a MongoDB-wire server for tests (see the module docs); FAILS if none."""
    url = os.environ.get(ENV_URL)
    if url:
        why = _ping(url, 10.0)
        if why:
            pytest.fail(f"{ENV_URL}: {why}", pytrace=False)
        try:
            yield url
        finally:
            _drop_databases(url)
        return
    command, why = _launcher()
    if command is None:
        pytest.fail(why, pytrace=False)
    with _java_server(command) as url:
        yield url


@pytest.fixture(scope="module")
def mongodb_url() -> Iterator[str]:
    """A module-scoped server: its URL (no database in it)."""
    with mongo_server() as url:
        yield url


def fresh_database(request: pytest.FixtureRequest, url: str) -> str:
    """A database name unused so far in this process, dropped when the test ends."""
    name = f"{DB_PREFIX}{next(_database_numbers)}"
    request.addfinalizer(lambda: _drop_databases(url, [name]))
    return name
