"""The game's figures for ``/metrics`` and ``/status`` (:mod:`goworld.metrics`), read at scrape time.

From what the game keeps anyway or counts with a dict increment: the entity table (entities
and spaces per type, clients: one walk of the table per scrape), the RPCs run per type and
method and the freeze/restore/reload times (:class:`game.stats.GameStats`), the refusals of
:mod:`game.call_limits`, the storage and KVDB operations of their resilient wrappers
(:class:`goworld.storage.resilient.RetryStatistics`), the links' backlogs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client.core import Metric

from goworld.entity.space import Space
from goworld.metrics import LinkLike, counter, gauge, histogram, link_families, links_summary
from goworld.storage.resilient import RetryStatistics

if TYPE_CHECKING:
    from game.runtime import GameRuntime

__all__ = ["GameFigures"]


class GameFigures:
    """:class:`goworld.metrics.Figures` of one game. ``backends``: ``{"storage": ...,
    "kvdb": ...}`` (a backend without ``statistics()``, the in-memory one, shows nothing)."""

    def __init__(
        self, rt: GameRuntime, links: Mapping[int, LinkLike], backends: Mapping[str, object]
    ) -> None:
        self.rt = rt
        self.links = links
        self.backends = backends

    def _census(self) -> tuple[dict[str, int], dict[str, int], int]:
        """Entities (spaces apart) per type, spaces per kind, and the entities with a client."""
        entities: dict[str, int] = {}
        spaces: dict[str, int] = {}
        clients = 0
        for entity in self.rt.entities.values():
            if isinstance(entity, Space):  # one space type (GoWorld's): told apart by kind
                kind = str(entity.kind)
                spaces[kind] = spaces.get(kind, 0) + 1
            else:
                name = entity.desc.name
                entities[name] = entities.get(name, 0) + 1
            clients += entity.client is not None
        return entities, spaces, clients

    def collect(self) -> Iterable[Metric]:
        rt = self.rt
        entities, spaces, clients = self._census()
        yield gauge(
            "goworld_game_entities",
            "entities (spaces apart), by type",
            ["type"],
            (((t,), n) for t, n in sorted(entities.items())),
        )
        yield gauge(
            "goworld_game_spaces",
            "spaces, by kind (the nil space is kind 0)",
            ["kind"],
            (((k,), n) for k, n in sorted(spaces.items(), key=lambda item: int(item[0]))),
        )
        yield gauge("goworld_game_clients", "entities with a client", values=[((), clients)])
        yield from self._call_families()
        yield gauge(
            "goworld_game_pending_saves",
            "entity saves not confirmed by storage yet",
            values=[((), len(rt.pending_saves))],
        )
        yield gauge(
            "goworld_game_deployment_ready",
            "1 once the deployment is ready",
            values=[((), float(rt.deployment_ready))],
        )
        stats = rt.stats
        for what, h in (("freeze", stats.freeze), ("restore", stats.restore)):
            yield histogram(
                f"goworld_game_{what}_seconds",
                f"{what}s for a reload (goworld reload), by how long they took",
                series=[((), h)],
            )
        yield histogram(
            "goworld_game_reload_seconds",
            "in-place code reloads (goworld reload --in-place) that succeeded, by how long they took",
            series=[((), stats.reload)],
        )
        yield from _storage_families(self.backends)
        yield from link_families(self.links)

    def _call_families(self) -> Iterable[Metric]:
        """RPCs run and failed per type and method; calls from clients refused, kicks."""
        stats = self.rt.stats
        yield counter(
            "goworld_game_rpcs",
            "RPCs run (arguments bound), by entity type, method and caller (a client or a server)",
            ["type", "method", "caller"],
            [
                ((t, m, "client" if c else "server"), n)
                for (t, m, c), n in sorted(stats.rpcs.items())
            ],
        )
        yield counter(
            "goworld_game_rpc_errors",
            "RPCs whose method raised, by entity type and method",
            ["type", "method"],
            sorted(stats.rpc_errors.items()),
        )
        limiter = self.rt.client_calls
        yield counter(
            "goworld_game_client_calls_refused",
            "calls from clients refused, by reason (game.call_limits)",
            ["reason"],
            (((k,), n) for k, n in sorted(limiter.refused_by_kind.items())),
        )
        yield counter(
            "goworld_game_clients_kicked",
            "clients closed for too many refused calls",
            values=[((), limiter.kicked_total)],
        )

    def summary(self) -> dict[str, Any]:
        entities, spaces, clients = self._census()
        return {
            "clients": clients,
            "entities": sum(entities.values()),
            "spaces": sum(spaces.values()),
            "links": links_summary(self.links),
        }


def _storage_families(backends: Mapping[str, object]) -> list[Metric]:
    stats: list[tuple[str, RetryStatistics]] = []
    for name, backend in sorted(backends.items()):
        read = getattr(backend, "statistics", None)
        figures = read() if callable(read) else None
        if isinstance(figures, RetryStatistics):
            stats.append((name, figures))
    ops = [(b, op, o) for b, s in stats for op, o in sorted(s.operations.items())]
    return [
        counter(
            "goworld_storage_operations",
            "storage and KVDB operations finished, by backend and operation",
            ["backend", "operation"],
            (((b, op), o.count) for b, op, o in ops),
        ),
        counter(
            "goworld_storage_errors",
            "storage and KVDB operations that failed",
            ["backend", "operation"],
            (((b, op), o.errors) for b, op, o in ops),
        ),
        histogram(
            "goworld_storage_operation_seconds",
            "storage and KVDB operations by how long "
            "they took from the call to the outcome (retries included)",
            ["backend", "operation"],
            (((b, op), o.seconds) for b, op, o in ops),
        ),
        counter(
            "goworld_storage_retries",
            "operations sent to the backend again after a transient failure",
            ["backend"],
            (((b,), s.retried) for b, s in stats),
        ),
        counter(
            "goworld_storage_outages",
            "outages of the backend (transient failures, then retries until it answered)",
            ["backend"],
            (((b,), s.outages) for b, s in stats),
        ),
        gauge(
            "goworld_storage_queued",
            "operations called and not finished yet",
            ["backend"],
            (((b,), s.queued) for b, s in stats),
        ),
        gauge(
            "goworld_storage_in_outage",
            "1 while the backend is unavailable",
            ["backend"],
            (((b,), float(s.in_outage)) for b, s in stats),
        ),
    ]
