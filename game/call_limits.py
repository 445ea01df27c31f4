"""Limits on calls from clients: per-method rates and argument sizes, strikes, kicks (issue 14).

A client-callable RPC carries its limits (``@rpc(client=True, rate=..., burst=..., max_arg_bytes=...)``,
:mod:`goworld.entity.registry`); a limit it leaves out takes the game's default, a
:class:`CallPolicy` read from ``[game_common]`` (``client_rpc_*`` keys). Calls between servers
are never limited.

:class:`ClientCallLimiter` is the sans-I/O core (injected clock, ``schedule`` and ``kick``):

- :meth:`~ClientCallLimiter.admit` runs before the arguments are decoded: the size of the
  encoded arguments first, then a token bucket per (client, method): ``burst`` calls at once,
  refilled at ``rate`` calls per second. An allowed call costs a few dict lookups and some
  arithmetic. Buckets are keyed by the method's wire name.
- :meth:`~ClientCallLimiter.refuse` records a call refused for any reason the client is
  responsible for (the game calls it for an unknown entity, a method that is not exposed or
  not the client's, bad arguments; ``admit`` for size and rate). Each refusal is a strike;
  more than ``max_strikes`` within ``strike_window`` seconds and the game asks the client's
  gate to close it (``kick``, once per client, one WARNING line); its rate-limited calls are
  refused from then on. Refusals are not logged
  one by one: one WARNING per ``summary_interval`` gives their count, the clients with the
  most and each one's last reason.
- The state of a client is dropped when it disconnects (:meth:`~ClientCallLimiter.forget`,
  :meth:`~ClientCallLimiter.forget_gate`). Clients whose disconnection this game never hears
  of (they called an entity here but their owner lives on another game) are bounded by
  ``max_clients``: past it, the least recently seen of the oldest entries goes (second
  chance: one seen within ``strike_window`` is moved to the back instead, a few at most).

The rate is measured where calls arrive, at the game: calls a dispatcher held during a hot
reload or a stall arrive together, so ``burst`` must cover what an honest client sends meanwhile.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from goworld.entity.registry import RpcMethod

if TYPE_CHECKING:
    from goworld.config import GameConfig

__all__ = ["CallPolicy", "ClientCallLimiter", "REFUSAL_KINDS"]

logger = logging.getLogger("goworld.game")

#: Clients named in one summary line; clients counted per interval (beyond: "others").
SUMMARY_CLIENTS = 5
SUMMARY_TRACKED = 1000
#: Characters kept of a refused method's name and of a refusal's reason.
REASON_CHARS = 120
#: Entries looked at (and moved back if recently seen) before one is evicted anyway.
EVICTION_TRIES = 8
#: Why calls are refused, as /metrics counts them: arguments over ``max_arg_bytes``, over the
#: rate, from a client being kicked, to an entity not here, to a method the client may not
#: call, with arguments that do not decode or fit; ``other``: anything else.
REFUSAL_KINDS = ("too_large", "rate", "kicked", "no_entity", "not_allowed", "bad_arguments", "other")


@dataclass(frozen=True, slots=True)
class CallPolicy:
    """The game's defaults and bounds (``[game_common]``; 0 turns a limit off)."""

    rate: float = 50.0  # calls/s per client and method (client_rpc_rate)
    burst: float = 100.0  # bucket size (client_rpc_burst)
    max_arg_bytes: int = 64 * 1024  # encoded argument bytes (client_rpc_max_arg_bytes)
    max_strikes: int = 20  # refusals per window before the kick (client_rpc_max_strikes)
    strike_window: float = 10.0  # seconds (client_rpc_strike_window)
    max_clients: int = 50_000  # clients tracked at once (client_rpc_max_clients)
    summary_interval: float = 10.0  # seconds between summaries of refusals (log_repeat_interval)

    @classmethod
    def from_config(cls, gcfg: GameConfig) -> CallPolicy:
        return cls(
            rate=float(gcfg.client_rpc_rate),
            burst=float(max(1, gcfg.client_rpc_burst)),
            max_arg_bytes=gcfg.client_rpc_max_arg_bytes,
            max_strikes=gcfg.client_rpc_max_strikes,
            strike_window=float(gcfg.client_rpc_strike_window),
            max_clients=gcfg.client_rpc_max_clients,
            summary_interval=float(max(1, gcfg.log_repeat_interval)),
        )


class _Client:
    """One client's buckets (wire name -> [tokens, time of the last refill]) and strikes."""

    __slots__ = ("gate_id", "buckets", "strikes", "window_start", "last", "kicked")

    def __init__(self, gate_id: int, now: float) -> None:
        self.gate_id = gate_id
        self.buckets: dict[str, list[float]] = {}
        self.strikes = 0
        self.window_start = now
        self.last = now
        self.kicked = False


class _Refused:
    """One client's refusals in the current summary interval."""

    __slots__ = ("count", "gate_id", "reason")

    def __init__(self, gate_id: int, reason: str) -> None:
        self.count = 1
        self.gate_id = gate_id
        self.reason = reason


class ClientCallLimiter:
    def __init__(
        self,
        policy: CallPolicy,
        *,
        kick: Callable[[str, int, str], None],
        schedule: Callable[[float, Callable[[], None]], object],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self._kick = kick
        self._schedule = schedule
        self._clock = clock
        self._rate = policy.rate
        self._burst = policy.burst
        self._max_arg_bytes = policy.max_arg_bytes
        self._clients: OrderedDict[str, _Client] = OrderedDict()
        self._refused: dict[str, _Refused] = {}  # this interval's, per client
        self._refused_count = 0
        self._summary_scheduled = False
        self._since = 0.0  # when the first refusal of this interval came
        #: totals since the start (for tests and operators; the game's /metrics shows them)
        self.refused_total = 0
        self.kicked_total = 0
        #: refusals since the start by kind (:data:`REFUSAL_KINDS`)
        self.refused_by_kind: dict[str, int] = {}

    def __len__(self) -> int:
        """How many clients are tracked."""
        return len(self._clients)

    def __contains__(self, client_id: object) -> bool:
        return client_id in self._clients

    # ---- the hot path ------------------------------------------------------------------

    def admit(self, client_id: str, gate_id: int, method: RpcMethod, arg_bytes: int) -> bool:
        """May ``client_id`` call ``method`` now with ``arg_bytes`` of encoded arguments?
        A refusal is recorded (a strike)."""
        limit = method.max_arg_bytes
        if limit is None:
            limit = self._max_arg_bytes
        if limit and arg_bytes > limit:
            self.refuse(
                client_id, gate_id, method.wire_name, f"{arg_bytes} argument bytes, over {limit}",
                kind="too_large",
            )
            return False
        rate = method.rate
        if rate is None:
            rate = self._rate
        if not rate:
            return True
        burst = method.burst or self._burst
        now = self._clock()
        client = self._clients.get(client_id)
        if client is None:
            client = self._track(client_id, gate_id, now)
        elif client.kicked:  # its gate is closing it
            self._strike(client_id, client, method.wire_name, "kicked", now, "kicked")
            return False
        client.last = now
        bucket = client.buckets.get(method.wire_name)
        if bucket is None:
            client.buckets[method.wire_name] = [burst - 1.0, now]
            return True
        tokens = bucket[0] + (now - bucket[1]) * rate
        if tokens > burst:
            tokens = burst
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return True
        bucket[0] = tokens
        self._strike(client_id, client, method.wire_name, f"over {rate:g} calls/s", now, "rate")
        return False

    # ---- refusals, strikes, kicks ------------------------------------------------------

    def refuse(
        self, client_id: str, gate_id: int, what: str, reason: str, *, kind: str = "other"
    ) -> None:
        """Record a call of ``what`` refused because of the client (not logged on its own);
        ``kind`` (one of :data:`REFUSAL_KINDS`) is what /metrics counts it as."""
        now = self._clock()
        client = self._clients.get(client_id)
        if client is None:
            client = self._track(client_id, gate_id, now)
        client.last = now
        self._strike(client_id, client, what, reason, now, kind)

    def _strike(
        self, client_id: str, client: _Client, what: str, reason: str, now: float, kind: str
    ) -> None:
        self.refused_total += 1
        self.refused_by_kind[kind] = self.refused_by_kind.get(kind, 0) + 1
        last = f"{what[:REASON_CHARS]}: {reason[:REASON_CHARS]}"  # what a client chose, bounded
        self._note_refusal(client_id, client.gate_id, last)
        policy = self.policy
        if now - client.window_start >= policy.strike_window:
            client.window_start = now
            client.strikes = 0
        client.strikes += 1
        if policy.max_strikes and client.strikes > policy.max_strikes and not client.kicked:
            client.kicked = True
            self.kicked_total += 1
            why = f"{client.strikes} refused calls in {policy.strike_window:g} s (last: {last})"
            logger.warning("kicking client %s of gate%d: %s", client_id, client.gate_id, why)
            self._kick(client_id, client.gate_id, why)

    def _note_refusal(self, client_id: str, gate_id: int, reason: str) -> None:
        self._refused_count += 1
        entry = self._refused.get(client_id)
        if entry is not None:
            entry.count += 1
            entry.reason = reason
        elif len(self._refused) < SUMMARY_TRACKED:
            self._refused[client_id] = _Refused(gate_id, reason)
        if not self._summary_scheduled:
            self._summary_scheduled = True
            self._since = self._clock()
            self._schedule(self.policy.summary_interval, self.summarise)

    def summarise(self) -> None:
        """Write one WARNING about the refusals since the last one (none: nothing)."""
        self._summary_scheduled = False
        refused, count = self._refused, self._refused_count
        self._refused, self._refused_count = {}, 0
        if not count:
            return
        top = sorted(refused.items(), key=lambda item: -item[1].count)[:SUMMARY_CLIENTS]
        named = "; ".join(f"client {cid} of gate{r.gate_id}: {r.count}, last {r.reason}" for cid, r in top)
        more = len(refused) - len(top)
        logger.warning(
            "%d calls from %d client(s) refused in %.1f s (%s%s)",
            count,
            len(refused),
            self._clock() - self._since,
            named,
            f"; and {more} more client(s)" if more > 0 else "",
        )

    # ---- the table ---------------------------------------------------------------------

    def forget(self, client_id: str) -> None:
        """The client is gone: drop its state."""
        self._clients.pop(client_id, None)

    def forget_gate(self, gate_id: int) -> None:
        """A gate is gone, and every client of it."""
        gone = [cid for cid, c in self._clients.items() if c.gate_id == gate_id]
        for cid in gone:
            del self._clients[cid]

    def _track(self, client_id: str, gate_id: int, now: float) -> _Client:
        clients = self._clients
        if len(clients) >= self.policy.max_clients:
            self._evict(now)
        client = clients[client_id] = _Client(gate_id, now)
        return client

    def _evict(self, now: float) -> None:
        clients = self._clients
        recent = self.policy.strike_window
        for _ in range(EVICTION_TRIES):
            cid, client = clients.popitem(last=False)
            if now - client.last >= recent:
                return
            clients[cid] = client  # seen recently: a second chance, at the back
        clients.popitem(last=False)
