"""The dispatcher's figures for ``/metrics`` and ``/status`` (:mod:`goworld.metrics`), read at
scrape time from what the service and its streams count anyway: ``DispatcherService.stats``,
the peers' :class:`~goworld.cluster.streams.BatchWriter` counters and backlogs, the queues it
holds (:meth:`DispatcherService.held`) and the clients it paused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client.core import Metric

from dispatcher.server import StreamPeer
from dispatcher.service import DispatcherService, Peer
from goworld.metrics import counter, gauge

__all__ = ["DispatcherFigures"]

_STATS = (
    ("goworld_dispatcher_routed_messages", "routed", "envelopes routed to a game or gate"),
    (
        "goworld_dispatcher_dropped_messages",
        "dropped",
        "envelopes dropped (a peer too far behind, a full queue, a dead game's entity...)",
    ),
    (
        "goworld_dispatcher_dropped_syncs",
        "dropped_syncs",
        "client position syncs dropped (their game is behind or their entity blocked)",
    ),
    (
        "goworld_dispatcher_paused",
        "paused",
        "clients paused at their gate (PAUSE_CLIENTS) because their game was behind",
    ),
)


class DispatcherFigures:
    """:class:`goworld.metrics.Figures` of one dispatcher."""

    def __init__(self, service: DispatcherService, refused: Callable[[], int] = lambda: 0) -> None:
        self.service = service
        self._refused = refused  # streams refused by the cluster authentication

    def collect(self) -> Iterable[Metric]:
        s = self.service
        yield gauge(
            "goworld_dispatcher_entities",
            "entities this dispatcher routes (its shard)",
            values=[((), len(s.entities))],
        )
        yield gauge("goworld_dispatcher_games", "games, by state", ["state"], _game_states(s))
        yield gauge("goworld_dispatcher_gates", "gates connected", values=[((), len(s.gates))])
        yield gauge(
            "goworld_dispatcher_kvreg_entries", "entries of the kvreg", values=[((), len(s.kvreg))]
        )
        yield gauge(
            "goworld_dispatcher_deployment_ready",
            "1 once every desired game and gate joined",
            values=[((), float(s.deployment_ready))],
        )
        for name, key, doc in _STATS:
            yield counter(name, doc, values=[((), s.stats.get(key, 0))])
        yield gauge(
            "goworld_dispatcher_paused_clients",
            "clients paused at their gates now",
            values=[((), s.paused_clients())],
        )
        held = sorted(s.held().items())
        yield gauge(
            "goworld_dispatcher_held_messages",
            "envelopes held instead of routed, by queue",
            ["queue"],
            ((queue, n) for queue, (n, _) in held),
        )
        yield gauge(
            "goworld_dispatcher_held_bytes",
            "bytes held instead of routed, by queue",
            ["queue"],
            ((queue, size) for queue, (_, size) in held),
        )
        yield counter(
            "goworld_dispatcher_refused_streams",
            "cluster streams refused by the authentication (impostors, another cluster's secret)",
            values=[((), self._refused())],
        )
        yield from _peer_families(_peers(s))

    def summary(self) -> dict[str, Any]:
        s = self.service
        return {
            "clients": None,
            "entities": len(s.entities),
            "games": sorted(gid for gid, g in s.games.items() if g.alive),
            "gates": sorted(s.gates),
        }


def _game_states(s: DispatcherService) -> list[tuple[tuple[str], int]]:
    counts = {"up": 0, "hung": 0, "frozen": 0, "away": 0, "down": 0}
    for game in s.games.values():
        state = (
            "away"  # its stream broke: held for game_reconnect_grace
            if game.away_until
            else "frozen"
            if game.frozen
            else "down"
            if game.peer is None
            else ("hung" if game.hung else "up")
        )
        counts[state] += 1
    return [((state,), n) for state, n in counts.items()]


def _peers(s: DispatcherService) -> list[tuple[str, Peer]]:
    peers: list[tuple[str, Peer]] = [
        (f"game{gid}", g.peer) for gid, g in sorted(s.games.items()) if g.peer is not None
    ]
    peers += [(f"gate{gid}", peer) for gid, peer in sorted(s.gates.items())]
    return peers


def _peer_families(peers: list[tuple[str, Peer]]) -> list[Metric]:
    streams = [(name, p) for name, p in peers if isinstance(p, StreamPeer)]
    return [
        gauge(
            "goworld_dispatcher_peer_backlog_bytes",
            "bytes queued for a game or gate and not written yet (how far behind it is)",
            ["peer"],
            ((name, p.backlog_bytes) for name, p in peers),
        ),
        counter(
            "goworld_dispatcher_peer_sent_messages",
            "envelopes written to a game or gate (since its stream started)",
            ["peer"],
            ((name, p.writer.messages_sent) for name, p in streams),
        ),
        counter(
            "goworld_dispatcher_peer_sent_bytes",
            "bytes written to a game or gate, as the "
            "queue bounds weigh them (since its stream started)",
            ["peer"],
            ((name, p.writer.bytes_sent) for name, p in streams),
        ),
        counter(
            "goworld_dispatcher_peer_sent_batches",
            "gRPC messages (batches of envelopes) written to a game or gate",
            ["peer"],
            ((name, p.writer.batches_sent) for name, p in streams),
        ),
        counter(
            "goworld_dispatcher_peer_received_batches",
            "gRPC messages (batches of envelopes) received from a game or gate",
            ["peer"],
            ((name, p.received_batches) for name, p in streams),
        ),
        counter(
            "goworld_dispatcher_peer_received_messages",
            "envelopes received from a game or gate (since its stream started)",
            ["peer"],
            ((name, p.received) for name, p in streams),
        ),
    ]
