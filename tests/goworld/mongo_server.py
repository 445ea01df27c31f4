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

import itertools
import os
import select
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pymongo
import pytest

from goworld.bench import mongo_java

ENV_URL = "GOWORLD_TEST_MONGODB_URL"
DB_PREFIX = f"goworld_test_{os.getpid()}_"
_START_TIMEOUT = 30.0
_database_numbers = itertools.count(1)


# -- building the launcher ------------------------------------------------------------------------


def _launcher() -> tuple[list[str] | None, str]:
    """The command starting mongo-java-server (host and port to append), or (None, why not).

    :func:`goworld.bench.mongo_java.launcher` builds and caches it (``goworld bench --only
    sidebyside`` runs the same server)."""
    command, why = mongo_java.launcher()
    if command is None and mongo_java.missing_tools():
        why = (f"the MongoDB tests need a MongoDB-wire server: set {ENV_URL}=mongodb://host:port/ "
               f"or install the tools so the fixture can run mongo-java-server; {why}")
    return command, why


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
