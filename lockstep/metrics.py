"""The lockstep process's figures for ``/metrics`` and ``/status`` (:mod:`goworld.metrics`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client.core import Metric

from goworld.metrics import LinkLike, counter, gauge, link_families, links_summary

if TYPE_CHECKING:
    from lockstep.server import LockstepServer

__all__ = ["LockstepFigures"]


class LockstepFigures:
    def __init__(self, server: LockstepServer, links: Mapping[int, LinkLike]) -> None:
        self.server = server
        self.links = links

    def collect(self) -> Iterable[Metric]:
        server = self.server
        rooms = server.rooms
        traffic = server.traffic
        yield gauge("goworld_lockstep_rooms", "rooms that exist", values=[((), len(rooms.rooms))])
        yield gauge(
            "goworld_lockstep_players_in_rooms",
            "members of the existing rooms",
            values=[((), rooms.players_in_rooms())],
        )
        yield gauge(
            "goworld_lockstep_sessions",
            "client sessions (KCP and WebSocket)",
            values=[((), len(server.sessions))],
        )
        yield counter(
            "goworld_lockstep_sessions_opened",
            "sessions opened, by transport",
            ["transport"],
            sorted(traffic.sessions_opened.items()),
        )
        yield counter(
            "goworld_lockstep_sessions_closed_by_server",
            "sessions the server closed, by reason",
            ["reason"],
            sorted(traffic.sessions_closed.items()),
        )
        for name in ("packets_in", "bytes_in", "packets_out", "bytes_out"):
            yield counter(
                f"goworld_lockstep_{name}",
                name.replace("_", " "),
                values=[((), getattr(traffic, name))],
            )
        for name, value in rooms.stats.items():
            yield counter(f"goworld_lockstep_{name}", name.replace("_", " "), values=[((), value)])
        journal = rooms.journal
        if journal is not None:
            yield counter("goworld_lockstep_journal_records", "records written to room journals",
                          values=[((), journal.records)])
            yield counter("goworld_lockstep_journal_write_errors",
                          "room journal writes that failed (that room would not survive a crash)",
                          values=[((), journal.write_errors)])
        late = sorted(server.tick_lateness)
        yield gauge(
            "goworld_lockstep_tick_lateness_p99_seconds",
            "99th percentile of how late room ticks ran (recent 4096 ticks)",
            values=[((), late[max(0, int(len(late) * 0.99) - 1)] if late else 0.0)],
        )
        yield from link_families(self.links)

    def summary(self) -> dict[str, Any]:
        from lockstep.server import describe

        return {**describe(self.server), "links": links_summary(self.links)}
