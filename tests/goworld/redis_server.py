"""A real ``redis-server`` (Debian's package) for the tests: a free loopback port, stopped after.

``scripts/install-test-deps`` installs ``redis-server`` when it is missing. If it is still not
there the tests that need it **fail** (they are not skipped) and say so.

Bind the fixture to a module-level name of a test module to use it (an assignment, not an
import, so that test parameters named after it do not trip ruff's F811)::

    from tests.goworld import redis_server as redis_fixtures

    redis_server = redis_fixtures.redis_server

``redis_server`` is module-scoped: one server per test module, each test isolating itself with
its own database index or ``FLUSHDB``. Tests that stop the server (outages) start their own
:class:`RedisServer` instead.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from goworld.testing import free_port

__all__ = ["RedisServer", "redis_server", "redis_server_binary"]


def redis_server_binary() -> str:
    """The path of ``redis-server``; fails the test (not skips it) when it is not installed."""
    path = shutil.which("redis-server")
    if path is None:
        pytest.fail(
            "redis-server is not installed: run scripts/install-test-deps "
            "(it installs Debian's redis-server package)",
            pytrace=False,
        )
    return path


class RedisServer:
    """One ``redis-server`` process in ``directory``, on 127.0.0.1:``port``.

    ``appendonly=True`` makes it keep an append-only file in ``directory``, so what it
    acknowledged survives :meth:`kill` and comes back on :meth:`start` (outage tests).
    """

    def __init__(self, directory: Path, port: int | None = None, *, appendonly: bool = False):
        self.directory = directory
        self.port = port if port is not None else free_port()
        self.appendonly = appendonly
        self.process: subprocess.Popen[bytes] | None = None
        self.log = directory / f"redis-{self.port}.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        """Start it and wait until it answers PING (raises with its log if it does not)."""
        assert self.process is None or self.process.poll() is not None, "already running"
        args = [
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always",  # acknowledged means on disk, even across kill -9
            "--dir", str(self.directory),
            "--databases", "32",
        ]  # fmt: skip
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited with {self.process.returncode} at start:\n"
                    + self.log.read_text(errors="replace")[-2000:]
                )
            if self.ping():
                return
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server on port {self.port} did not answer PING")
            time.sleep(0.02)

    def ping(self) -> bool:
        client = redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def client(self, db: int = 0) -> redis.Redis:
        """A synchronous client (close it)."""
        return redis.Redis(port=self.port, db=db, socket_timeout=5)

    def flushdb(self, db: int) -> None:
        client = self.client(db)
        try:
            client.flushdb()
        finally:
            client.close()

    def kill(self) -> None:
        """``kill -9`` it (an outage, or the last resort of :meth:`stop`)."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL after 5 s). Idempotent."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()


def start_redis(directory: Path, *, appendonly: bool = False) -> RedisServer:
    """A started server on a free port (tries a few ports: a free port can be taken meanwhile)."""
    error: Exception | None = None
    for _ in range(3):
        server = RedisServer(directory, appendonly=appendonly)
        try:
            server.start()
            return server
        except RuntimeError as exc:
            server.stop()
            error = exc
    raise RuntimeError(f"could not start redis-server: {error}")


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A running ``redis-server`` for this test module (32 databases, no persistence)."""
    server = start_redis(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()
