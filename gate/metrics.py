"""The gate's figures for ``/metrics`` and ``/status`` (:mod:`goworld.metrics`), read at scrape time.

What the gate counts as it runs, nothing more per packet than an attribute increment per read
or flush: :class:`gate.client_proxy.Traffic` per transport, the refusal totals of
:class:`gate.limits.Summary` (one per kind of refusal or close the gate logs), the KCP
listener's :class:`~goworld.net.kcp.KCPStatistics`, the links' backlogs. Clients are counted
by walking the client table at scrape time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client.core import Metric

from gate.service import GateService
from goworld.metrics import LinkLike, counter, gauge, link_families, links_summary
from goworld.net.kcp import KCPServer

__all__ = ["GateFigures"]

_KCP_DROPS = ("short", "bad_flag", "malformed", "unknown", "session_cap", "address_cap")


class GateFigures:
    """:class:`goworld.metrics.Figures` of one gate; ``kcp`` is set once its listener exists."""

    def __init__(self, gate: GateService, links: Mapping[int, LinkLike]) -> None:
        self.gate = gate
        self.links = links
        self.kcp: KCPServer | None = None

    def collect(self) -> Iterable[Metric]:
        gate = self.gate
        clients = dict.fromkeys(gate.traffic, 0)
        not_read = 0
        for proxy in gate.clients.values():
            clients[proxy.kind] = clients.get(proxy.kind, 0) + 1
            not_read += proxy.paused
        traffic = sorted(gate.traffic.items())
        yield gauge(
            "goworld_gate_clients",
            "connected clients, by transport",
            ["transport"],
            ((kind, n) for kind, n in sorted(clients.items())),
        )
        yield gauge(
            "goworld_gate_connections",
            "connections counted against max_clients (from accept(), handshakes included)",
            values=[((), gate.addresses.total)],
        )
        yield gauge(
            "goworld_gate_clients_not_read",
            "clients the gate does not read now (over a rate limit, or held by the cluster)",
            values=[((), not_read)],
        )
        for name, attr, doc in _TRAFFIC:
            yield counter(name, doc, ["transport"], ((k, getattr(t, attr)) for k, t in traffic))
        yield counter(
            "goworld_gate_refused",
            "connections refused, clients closed and position "
            "syncs dropped by the gate's bounds and checks, by reason (the log "
            "summary's kinds)",
            ["reason"],
            ((kind.replace(" ", "_"), n) for kind, n in sorted(gate.summary.totals.items())),
        )
        yield gauge(
            "goworld_gate_partial_packet_bytes",
            "bytes of partial packets the gate holds (partial_frame_budget)",
            values=[((), gate.partial_bytes)],
        )
        yield gauge(
            "goworld_gate_link_held",
            "1 while every client is held because the links to the dispatchers are behind",
            values=[((), float(gate.link_held))],
        )
        yield gauge(
            "goworld_gate_accepting",
            "1 while the gate accepts new clients",
            values=[((), float(gate.accepting))],
        )
        if self.kcp is not None:
            yield from _kcp_families(self.kcp)
        yield from link_families(self.links)

    def summary(self) -> dict[str, Any]:
        return {
            "clients": len(self.gate.clients),
            "entities": None,
            "links": links_summary(self.links),
            "draining": self.gate.draining,  # refusing new clients: the cluster is stopping
        }


_TRAFFIC = (
    ("goworld_gate_received_packets", "packets_in", "client packets received, by transport"),
    (
        "goworld_gate_received_bytes",
        "bytes_in",
        "bytes received from clients (after TLS, before decompression), by transport",
    ),
    ("goworld_gate_sent_packets", "packets_out", "packets sent to clients, by transport"),
    (
        "goworld_gate_sent_bytes",
        "bytes_out",
        "bytes sent to clients (after compression, before TLS), by transport",
    ),
    (
        "goworld_gate_throttled",
        "throttled",
        "times a client was not read for going over a rate limit, by transport",
    ),
)


def _kcp_families(kcp: KCPServer) -> list[Metric]:
    stats = kcp.statistics()
    events = [
        (f.name, getattr(stats, f.name))
        for f in dataclasses.fields(stats)
        if not f.name.startswith("dropped_")
    ]
    return [
        gauge(
            "goworld_gate_kcp_sessions", "verified KCP sessions", values=[((), len(kcp.sessions))]
        ),
        gauge(
            "goworld_gate_kcp_unverified",
            "KCP handshakes waiting for their cookie",
            values=[((), kcp.unverified)],
        ),
        counter(
            "goworld_gate_kcp_dropped_datagrams",
            "UDP datagrams the KCP listener dropped, by reason",
            ["reason"],
            ((reason, getattr(stats, "dropped_" + reason)) for reason in _KCP_DROPS),
        ),
        counter(
            "goworld_gate_kcp_events",
            "the KCP listener's other counters (datagrams, UDP "
            "bytes, cookies, handshakes, sessions, FEC)",
            ["event"],
            events,
        ),
    ]
