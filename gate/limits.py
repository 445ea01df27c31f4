"""The gate's per-client and per-address bounds, as plain state (no sockets, no awaits).

* :class:`GateLimits`: every bound, from ``[gate_common]`` / ``[gateN]`` (README's config table).
* :class:`AddressBook`: live connections per source address and in total; a connection is
  counted from ``accept()`` (before any TLS or WebSocket handshake) until it is gone.
* :class:`Summary`: one log line for the first event of a kind, then a count per interval,
  so that a flood of refusals writes a bounded number of lines.

The token buckets themselves live inline in :class:`gate.client_proxy.ClientProxy` (a few float
operations per ``data_received``, not a call per packet); :func:`refill` is their arithmetic.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from goworld.address import address_key

__all__ = ["AddressBook", "GateLimits", "Summary", "address_key", "refill"]

#: Seconds between two summary lines of one kind.
SUMMARY_INTERVAL = 10.0


@dataclass(frozen=True, slots=True)
class GateLimits:
    """The gate's bounds; 0 turns a bound off (except where noted)."""

    max_packets_per_sec: int = 500
    packets_burst: int = 1000
    max_bytes_per_sec: int = 1024 * 1024
    bytes_burst: int = 33 * 1024 * 1024  # one packet of the largest size fits in a full bucket
    over_limit_close_after: float = 5.0  # s continuously over a rate limit before the close
    max_clients: int = 10_000
    max_connections_per_ip: int = 4096
    handshake_timeout: float = 10.0  # s from accept to the first complete packet
    frame_timeout: float = 60.0  # s a partial packet may wait for its next byte of progress
    partial_frame_budget: int = 64 * 1024 * 1024  # bytes of partial packets, whole gate
    link_pause_backlog_bytes: int = 4 * 1024 * 1024  # waiting for a dispatcher: hold every client
    idle_timeout: float = 120.0  # s without any packet (heartbeat_check_interval)
    ws_max_message_size: int = 256 * 1024
    max_call_bytes: int = 1024 * 1024  # one client call (method and arguments included)

    @classmethod
    def from_config(cls, gcfg: Any) -> GateLimits:
        """From a :class:`goworld.config.GateConfig`."""
        return cls(
            max_packets_per_sec=gcfg.client_max_packets_per_sec,
            packets_burst=gcfg.client_packets_burst,
            max_bytes_per_sec=gcfg.client_max_bytes_per_sec,
            bytes_burst=gcfg.client_bytes_burst,
            over_limit_close_after=float(gcfg.client_over_limit_close_after),
            max_clients=gcfg.max_clients,
            max_connections_per_ip=gcfg.max_connections_per_ip,
            handshake_timeout=float(gcfg.handshake_timeout),
            frame_timeout=float(gcfg.frame_timeout),
            partial_frame_budget=gcfg.partial_frame_budget,
            idle_timeout=float(gcfg.heartbeat_check_interval),
            ws_max_message_size=gcfg.ws_max_message_size,
            max_call_bytes=gcfg.client_call_max_bytes,
            link_pause_backlog_bytes=gcfg.link_pause_backlog_bytes,
        )


def refill(tokens: float, rate: float, burst: float, elapsed: float) -> float:
    """A token bucket's level after ``elapsed`` seconds (it may be negative: a debt)."""
    tokens += elapsed * rate
    return burst if tokens > burst else tokens


class AddressBook:
    """Connections per source address and in total, against ``max_per_ip`` and ``max_total``
    (addresses are grouped by :func:`address_key`)."""

    __slots__ = ("max_total", "max_per_ip", "total", "_per_ip")

    def __init__(self, max_total: int, max_per_ip: int) -> None:
        self.max_total = max_total
        self.max_per_ip = max_per_ip
        self.total = 0
        self._per_ip: dict[str, int] = {}

    def admit(self, ip: str) -> str | None:
        """Count a new connection from ``ip``; or return why it is refused (nothing counted)."""
        if self.max_total and self.total >= self.max_total:
            return f"max_clients ({self.max_total}) reached"
        ip = address_key(ip)
        n = self._per_ip.get(ip, 0)
        if self.max_per_ip and n >= self.max_per_ip:
            return f"max_connections_per_ip ({self.max_per_ip}) reached for {ip}"
        self._per_ip[ip] = n + 1
        self.total += 1
        return None

    def release(self, ip: str) -> None:
        ip = address_key(ip)
        n = self._per_ip.get(ip, 0)
        if n <= 0:
            return
        self.total -= 1
        if n == 1:
            del self._per_ip[ip]
        else:
            self._per_ip[ip] = n - 1

    def count(self, ip: str) -> int:
        return self._per_ip.get(address_key(ip), 0)


class Summary:
    """Rate-limited logging of repeated events, per kind.

    The first event of a kind is logged at once (``<kind>: <detail>``); later ones within
    ``interval`` are only counted, and :meth:`flush` (called periodically) writes one line per
    kind, ``<kind>: N more in the last 10 s from S source(s) (last: <detail>)``.
    """

    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval: float = SUMMARY_INTERVAL,
        level: int = logging.WARNING,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval = interval
        self.level = level
        self.clock = clock
        # kind -> [window start, count since the logged line, sources, last detail]
        self._kinds: dict[str, list[Any]] = {}
        #: kind -> events since the start (the gate's /metrics shows them by reason)
        self.totals: dict[str, int] = {}

    def event(self, kind: str, detail: str, source: str = "") -> None:
        self.totals[kind] = self.totals.get(kind, 0) + 1
        state = self._kinds.get(kind)
        now = self.clock()
        if state is not None and now - state[0] < self.interval:
            state[1] += 1
            if len(state[2]) < 10_000:
                state[2].add(source)
            state[3] = detail
            return
        if state is not None and state[1]:
            self._write(kind, state, now)
        # One format string per kind: goworld.log's RepeatFilter counts lines per format string.
        self.logger.log(self.level, kind.replace("%", "%%") + ": %s", detail)
        self._kinds[kind] = [now, 0, set(), ""]

    def flush(self, *, force: bool = False) -> None:
        """Write the counts of every kind whose interval is over (of every kind: ``force``)."""
        now = self.clock()
        for kind, state in list(self._kinds.items()):
            if force or now - state[0] >= self.interval:
                if state[1]:
                    self._write(kind, state, now)
                del self._kinds[kind]

    def _write(self, kind: str, state: list[Any], now: float) -> None:
        self.logger.log(
            self.level,
            "%s: %d more in the last %.0f s from %d source(s) (last: %s)",
            kind,
            state[1],
            now - state[0],
            len(state[2]),
            state[3],
        )
