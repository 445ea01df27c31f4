"""A game's or gate's link to a dispatcher on another host: it says which one it cannot reach,
and it never goes through an HTTP proxy named in the environment."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from goworld.cluster import link as link_module
from goworld.cluster.envelopes import Envelope
from goworld.cluster.link import DispatcherLink
from goworld.testing import free_port


def make_link(address: str) -> DispatcherLink:
    return DispatcherLink(1, address, hello=lambda: Envelope(), on_message=lambda d, e: None)


@pytest.mark.asyncio
async def test_a_link_names_the_dispatcher_it_cannot_reach(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(link_module, "UNREACHABLE_WARNING_INTERVAL", 0.1)
    caplog.set_level(logging.WARNING, "goworld.cluster")
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    link = make_link(address)
    link.start()
    try:
        for _ in range(100):  # a bound for a stuck test, not a measurement
            if "not reachable" in caplog.text:
                break
            await asyncio.sleep(0.05)
    finally:
        await link.close(flush_timeout=0)
    assert f"dispatcher1 at {address} (its advertise_addr) not reachable from here for 0 s" in caplog.text
    assert not link.connected.is_set()


@pytest.mark.asyncio
async def test_a_link_ignores_http_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = socket.socket()
    proxy.bind(("127.0.0.1", 0))
    proxy.listen()
    proxy.setblocking(False)
    url = f"http://127.0.0.1:{proxy.getsockname()[1]}"
    for name in ("http_proxy", "https_proxy", "grpc_proxy"):
        monkeypatch.setenv(name, url)
    monkeypatch.delenv("no_proxy", raising=False)
    link = make_link(f"127.0.0.1:{free_port()}")
    link.start()
    try:
        await asyncio.sleep(1.0)  # gRPC would have sent its CONNECT to the proxy by now
    finally:
        await link.close(flush_timeout=0)
    with proxy, pytest.raises(BlockingIOError):
        proxy.accept()
