"""gate.acceptor on real loopback sockets: address limits at accept time, slots given back,
and the back-off when accept() runs out of descriptors."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from typing import Any

import pytest

from gate.acceptor import Acceptor, Slot, bind_tcp
from gate.limits import AddressBook, Summary

log = logging.getLogger("goworld.gate")


class Echo(asyncio.Protocol):
    def __init__(self, slot: Slot, made: list[Echo]) -> None:
        self.slot = slot
        self.transport: Any = None
        made.append(self)

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.slot.release()


Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _connect(port: int, source: str) -> Conn:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def _try_connect(port: int, source: str) -> Conn | None:
    """A connection, or None when the gate reset it before the connect call returned."""
    try:
        return await _connect(port, source)
    except ConnectionError:
        return None


async def _is_served(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    try:
        writer.write(b"ping")
        await writer.drain()
        return await asyncio.wait_for(reader.read(4), 5.0) == b"ping"
    except (ConnectionError, OSError):
        return False


@pytest.mark.asyncio
async def test_connections_over_the_address_limit_are_reset_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    book = AddressBook(max_total=100, max_per_ip=3)
    made: list[Echo] = []
    acceptor = Acceptor(
        bind_tcp("127.0.0.1", 0), lambda slot: Echo(slot, made), book=book,
        summary=Summary(log), what="tcp",
    )
    await acceptor.start_serving()
    port = acceptor.sockets[0].getsockname()[1]
    caplog.set_level(logging.WARNING, "goworld.gate")
    try:
        tried = [await _try_connect(port, "127.0.0.2") for _ in range(20)]
        attackers = [c for c in tried if c is not None]
        honest = await _connect(port, "127.0.0.1")
        served = [await _is_served(r, w) for r, w in attackers]
        assert served.count(True) == 3
        assert await _is_served(*honest)
        assert book.count("127.0.0.2") == 3 and book.count("127.0.0.1") == 1
        assert len([r for r in caplog.records if "refused: max_connections_per_ip" in r.getMessage()]) == 1
        for _, w in attackers:
            w.close()
        for _ in range(100):
            if book.count("127.0.0.2") == 0:
                break
            await asyncio.sleep(0.05)
        assert book.count("127.0.0.2") == 0  # every slot was given back
        again = await _connect(port, "127.0.0.2")
        assert await _is_served(*again)
        again[1].close()
        honest[1].close()
    finally:
        acceptor.close()
        await acceptor.wait_closed()


class _Starved:
    """A listening socket whose accept() fails with EMFILE ``failures`` times."""

    def __init__(self, sock: socket.socket, failures: int) -> None:
        self.sock = sock
        self.failures = failures

    def fileno(self) -> int:
        return self.sock.fileno()

    def accept(self) -> tuple[socket.socket, Any]:
        if self.failures:
            self.failures -= 1
            raise OSError(errno.EMFILE, "Too many open files")
        return self.sock.accept()

    def getsockname(self) -> Any:
        return self.sock.getsockname()

    def close(self) -> None:
        self.sock.close()


@pytest.mark.asyncio
async def test_accept_backs_off_when_descriptors_run_out_and_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    [real] = bind_tcp("127.0.0.1", 0)
    starved = _Starved(real, failures=4)
    made: list[Echo] = []
    acceptor = Acceptor(
        [starved],  # type: ignore[list-item]
        lambda slot: Echo(slot, made), book=AddressBook(0, 0), summary=Summary(log), what="tcp",
    )
    caplog.set_level(logging.INFO, "goworld.gate")
    await acceptor.start_serving()
    try:
        client = await _connect(real.getsockname()[1], "127.0.0.1")
        assert await _is_served(*client)  # accepted once accept() works again
        assert starved.failures == 0
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and "Too many open files" in errors[0].getMessage()
        assert any("accepting again" in r.getMessage() for r in caplog.records)
        client[1].close()
    finally:
        acceptor.close()
        await acceptor.wait_closed()


@pytest.mark.asyncio
async def test_a_failed_tls_handshake_gives_the_slot_back(tmp_path: Any) -> None:
    from gate.listeners import tls_context
    from goworld.testing import make_key_pair

    key, crt = make_key_pair(tmp_path)
    book = AddressBook(10, 10)
    acceptor = Acceptor(
        bind_tcp("127.0.0.1", 0), lambda slot: Echo(slot, []), book=book, summary=Summary(log),
        what="tcp+tls", tls=tls_context(str(crt), str(key)), handshake_timeout=0.5,
    )
    await acceptor.start_serving()
    port = acceptor.sockets[0].getsockname()[1]
    try:
        silent = await _connect(port, "127.0.0.2")  # never starts its handshake
        garbage = await _connect(port, "127.0.0.2")
        garbage[1].write(b"GET / HTTP/1.0\r\n\r\n")
        for _ in range(100):
            if book.total == 0:
                break
            await asyncio.sleep(0.05)
        assert book.total == 0
        assert await silent[0].read() == b""  # closed by the gate
        silent[1].close()
        garbage[1].close()
    finally:
        acceptor.close()
        await acceptor.wait_closed()
