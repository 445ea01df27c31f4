"""Bounds wired in gate.listeners and gate.__main__: the TLS-over-KCP handshake timer and the
fit of max_clients to the open-file limit."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import resource
import ssl
from typing import Any

import pytest

import gate.__main__ as gate_main
from gate.limits import GateLimits
from gate.listeners import _KCPTLS, tls_context
from gate.service import GateService
from goworld.testing import make_key_pair


class KCPSession:
    def __init__(self) -> None:
        self.closed = False
        self.reading = True
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.2", 4000) if name == "peername" else default


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    key, crt = make_key_pair(tmp_path_factory.mktemp("tls"))
    return tls_context(str(crt), str(key))


def _gate(**limits: Any) -> GateService:
    return GateService(
        1, num_dispatchers=1, send=lambda d, e: None,
        limits=dataclasses.replace(GateLimits(), **limits),
    )


@pytest.mark.asyncio
async def test_a_kcp_session_without_a_tls_handshake_is_closed(
    context: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    gate = _gate(handshake_timeout=0.05)
    proxy = gate.new_proxy("kcp")
    session = KCPSession()
    tls = _KCPTLS(gate, proxy, context)
    tls.connection_made(session)
    assert proxy.reader is session  # rate limits pause the KCP session itself
    caplog.set_level(logging.WARNING, "goworld.gate")
    await asyncio.sleep(0.5)
    assert session.closed
    assert any("no TLS handshake" in r.getMessage() for r in caplog.records)
    assert gate.clients == {}


@pytest.mark.asyncio
async def test_the_kcp_tls_timer_stops_with_the_session(context: ssl.SSLContext) -> None:
    gate = _gate(handshake_timeout=0.05)
    session = KCPSession()
    tls = _KCPTLS(gate, gate.new_proxy("kcp"), context)
    tls.connection_made(session)
    tls.connection_lost(None)
    await asyncio.sleep(0.2)
    assert not session.closed  # closed by nobody: the timer was cancelled


def test_max_clients_is_fitted_to_the_open_file_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    limits: dict[str, tuple[int, int]] = {"now": (1024, 2048)}

    def getrlimit(_: int) -> tuple[int, int]:
        return limits["now"]

    def setrlimit(_: int, value: tuple[int, int]) -> None:
        limits["now"] = value

    monkeypatch.setattr(resource, "getrlimit", getrlimit)
    monkeypatch.setattr(resource, "setrlimit", setrlimit)
    fitted = gate_main._fit_descriptors(GateLimits(max_clients=10_000))
    assert limits["now"] == (2048, 2048)  # raised to the hard limit
    assert fitted.max_clients == 2048 - gate_main._SPARE_DESCRIPTORS
    limits["now"] = (1024, 100_000)
    assert gate_main._fit_descriptors(GateLimits(max_clients=5000)).max_clients == 5000
    assert limits["now"] == (5000 + gate_main._SPARE_DESCRIPTORS, 100_000)


@pytest.mark.asyncio
async def test_the_kcp_listener_takes_the_gates_connection_caps() -> None:
    from gate.listeners import start_kcp

    server = await start_kcp(_gate(max_clients=7, max_connections_per_ip=3), "127.0.0.1", 0)
    try:
        assert (server.config.max_sessions, server.config.max_sessions_per_address) == (7, 3)
    finally:
        server.close()
    server = await start_kcp(_gate(max_clients=0, max_connections_per_ip=0), "127.0.0.1", 0)
    try:  # the gate's 0 is "no bound", not "none allowed"
        assert min(server.config.max_sessions, server.config.max_sessions_per_address) >= 1 << 30
    finally:
        server.close()
