"""The gate's figures (gate/metrics.py): clients per transport, packets and bytes both ways,
refusals by reason, throttling, links, read from a GateService driven with fake transports."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from gate.limits import GateLimits
from gate.metrics import GateFigures
from gate.service import GateService
from goworld.cluster.envelopes import Envelope
from goworld.metrics import Exporter
from goworld.proto import codec
from goworld.proto.framing import frame
from goworld.proto.messages import CallEntityMethodFromClient, HeartbeatFromClient
from goworld.testing import Scraped, parse_metrics
from tests.gate.test_limits import Transport

HEARTBEAT = codec.encode(HeartbeatFromClient())


class Link:
    def __init__(self, dispatcher_id: int, backlog: int, up: bool) -> None:
        self.dispatcher_id = dispatcher_id
        self.dropped = 2
        self.connected = asyncio.Event()
        if up:
            self.connected.set()
        self.backlog_bytes = backlog


def scrape(figures: GateFigures) -> Scraped:
    """sample name -> {labels (role/id left out): value}, through the real text format."""
    return parse_metrics(Exporter("gate", 1, figures=figures).metrics_text().decode())


def connect(gate: GateService, kind: str, ip: str = "127.0.0.1") -> tuple[Any, Transport]:
    proxy = gate.new_proxy(kind)
    transport = Transport((ip, 40000 + len(gate.clients)))
    transport.protocol = proxy
    proxy.connection_made(transport)
    return proxy, transport


@pytest.mark.asyncio
async def test_clients_traffic_and_refusals_per_transport() -> None:
    gate = GateService(
        1, num_dispatchers=1, send=lambda d, e: None,
        limits=dataclasses.replace(GateLimits(), max_packets_per_sec=1000, packets_burst=5),
    )
    links = {1: Link(1, 123, True), 2: Link(2, 0, False)}
    figures = GateFigures(gate, links)
    tcp, _ = connect(gate, "tcp")
    ws, _ = connect(gate, "ws")
    connect(gate, "ws")
    call = codec.encode(CallEntityMethodFromClient("Target.Entity_01", "Hi", (1,)))
    tcp.data_received(HEARTBEAT + call)
    ws.data_received(HEARTBEAT)
    ws.data_received(HEARTBEAT * 20)  # 15 over the burst: throttled (not read for a while)
    tcp.send_payload(b"\x05\x04hello")
    tcp.send_payload(b"\x05\x04again")
    gate.flush_dirty()
    kcp, _ = connect(gate, "kcp")
    kcp.data_received(frame(b"\x01"))  # a packet without a message type: closed
    await asyncio.sleep(0)
    got = scrape(figures)
    assert got["goworld_gate_clients"] == {
        (("transport", "kcp"),): 0, (("transport", "tcp"),): 1, (("transport", "ws"),): 2
    }
    assert got["goworld_gate_received_packets_total"][(("transport", "tcp"),)] == 2
    assert got["goworld_gate_received_packets_total"][(("transport", "ws"),)] == 21
    assert got["goworld_gate_received_bytes_total"][(("transport", "tcp"),)] == len(HEARTBEAT + call)
    assert got["goworld_gate_sent_packets_total"][(("transport", "tcp"),)] == 2
    sent = len(frame(b"\x05\x04hello")) + len(frame(b"\x05\x04again"))
    assert got["goworld_gate_sent_bytes_total"][(("transport", "tcp"),)] == sent
    assert got["goworld_gate_throttled_total"][(("transport", "ws"),)] == 1
    assert got["goworld_gate_clients_not_read"][()] == 1
    assert got["goworld_gate_refused_total"] == {(("reason", "bad_packet"),): 1}
    assert got["goworld_link_connected"] == {(("dispatcher", "1"),): 1, (("dispatcher", "2"),): 0}
    assert got["goworld_link_backlog_bytes"][(("dispatcher", "1"),)] == 123
    assert got["goworld_link_dropped_total"][(("dispatcher", "2"),)] == 2
    summary = figures.summary()
    assert (summary["clients"], summary["entities"]) == (3, None)
    assert summary["links"][1] == {"dispatcher": 2, "connected": False, "backlog_bytes": 0, "dropped": 2}


def test_connections_refused_by_the_address_book_are_counted_by_reason() -> None:
    gate = GateService(
        1, num_dispatchers=1, send=lambda d, e: None,
        limits=dataclasses.replace(GateLimits(), max_connections_per_ip=1),
    )
    gate.summary.event("connection refused", "from 10.0.0.1: max_connections_per_ip", "10.0.0.1")
    gate.summary.event("connection refused", "from 10.0.0.1: max_connections_per_ip", "10.0.0.1")
    gate.summary.event("handshake timeout", "tcp+tls from 10.0.0.2", "10.0.0.2")
    got = scrape(GateFigures(gate, {}))
    assert got["goworld_gate_refused_total"] == {
        (("reason", "connection_refused"),): 2, (("reason", "handshake_timeout"),): 1
    }


def test_envelopes_are_not_needed_to_scrape_an_idle_gate() -> None:
    sent: list[Envelope] = []
    gate = GateService(1, num_dispatchers=1, send=lambda d, e: sent.append(e))
    got = scrape(GateFigures(gate, {}))
    assert got["goworld_gate_clients"][(("transport", "tcp"),)] == 0
    assert got["goworld_gate_accepting"][()] == 1
    assert sent == []
