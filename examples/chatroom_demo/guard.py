"""LoginGuard: the brute-force guard on Login (a service, 1 shard).

Two counts, over ``LOGIN_WINDOW`` seconds:

- per user name, whatever the connection: ``LOGIN_MAX_FAILURES`` failed logins lock that name
  for ``LOGIN_LOCKOUT`` seconds (one account guessed at from many addresses);
- per client host (``client.host_key``: the host part of ``client.address`` as the gate saw
  the connection, an IPv6 address as its /64, since one machine has a whole /64), whatever
  the names: ``LOGIN_HOST_MAX_FAILURES`` failed logins lock logins from that address
  for ``LOGIN_HOST_LOCKOUT`` seconds (one address trying many names, over many connections).

And registrations: ``REGISTER_HOST_MAX`` attempts per client host within ``REGISTER_WINDOW``
seconds (an attempt counts when it is let through, whatever comes of it: parallel connections
cannot slip past the count), except from ``REGISTER_HOST_EXEMPT`` (this machine).

A successful login clears its name's count, not its address's: one valid account must not let
an address go on guessing others. Both counts share one table, address keys prefixed with "@"
(user names cannot start with it). Times are Unix seconds in fields: a reload keeps them.
"""

from __future__ import annotations

import time

import goworld

from . import settings

#: names and addresses tracked at most (failures of unknown names count too, so that this is
#: no oracle)
MAX_NAMES = 50_000


def host_key(host: str) -> str:
    return "@" + host


def register_key(host: str) -> str:
    return "#" + host


class LoginGuard(goworld.Entity):
    def on_init(self) -> None:
        self.failures: dict[str, list[float]] = {}  # name or @host -> failure times in the window
        self.locked: dict[str, float] = {}  # name or @host -> locked until
        self.registered: dict[str, list[float]] = {}  # #host -> registrations in the window

    def on_created(self) -> None:
        self.add_timer(60.0, "prune")

    def _registrations(self) -> dict[str, list[float]]:
        """:attr:`registered`; a reload (full or in place) keeps the fields of the code it
        replaced, so a field this code added starts empty here."""
        registered: dict[str, list[float]] | None = getattr(self, "registered", None)
        if registered is None:
            registered = self.registered = {}
        return registered

    def _wait(self, name: str, now: float) -> float:
        until = self.locked.get(name)
        if until is None:
            return 0.0
        if until <= now:
            del self.locked[name]
            return 0.0
        return until - now

    @goworld.rpc(name="Check")
    def check(self, account_id: str, seq: int, name: str, host: str = "") -> None:
        """Answers ``account.OnGuardAnswer(seq, seconds locked or 0, "name" or "address")``."""
        now = time.time()
        by_host = self._wait(host_key(host), now) if host else 0.0
        if by_host:
            self.call(account_id, "OnGuardAnswer", seq, by_host, "address")
            return
        self.call(account_id, "OnGuardAnswer", seq, self._wait(name, now), "name")

    @goworld.rpc(name="CheckRegister")
    def check_register(self, account_id: str, seq: int, host: str = "") -> None:
        """Answers ``account.OnRegisterAnswer(seq, seconds to wait or 0)``; a registration let
        through counts against its host."""
        if not host or host in settings.REGISTER_HOST_EXEMPT:
            self.call(account_id, "OnRegisterAnswer", seq, 0.0)
            return
        now = time.time()
        key = register_key(host)
        registered = self._registrations()
        times = [t for t in registered.get(key, ()) if t > now - settings.REGISTER_WINDOW]
        if len(times) >= settings.REGISTER_HOST_MAX:
            registered[key] = times
            self.call(account_id, "OnRegisterAnswer", seq, times[0] + settings.REGISTER_WINDOW - now)
            return
        times.append(now)
        if key not in registered and len(registered) >= MAX_NAMES:
            registered.pop(next(iter(registered)))  # the oldest entry
        registered[key] = times
        self.call(account_id, "OnRegisterAnswer", seq, 0.0)

    @goworld.rpc(name="Failed")
    def failed(self, account_id: str, name: str, host: str = "") -> None:
        now = time.time()
        if self._count(name, now, settings.LOGIN_MAX_FAILURES, settings.LOGIN_LOCKOUT):
            self.call(account_id, "OnLockedOut", name, settings.LOGIN_LOCKOUT, "name")
        if host and self._count(
            host_key(host), now, settings.LOGIN_HOST_MAX_FAILURES, settings.LOGIN_HOST_LOCKOUT
        ):
            self.call(account_id, "OnLockedOut", name, settings.LOGIN_HOST_LOCKOUT, "address")

    def _count(self, key: str, now: float, limit: int, lockout: float) -> bool:
        """One more failure for ``key``; True when it locks ``key`` now."""
        if self._wait(key, now):
            return False
        times = [t for t in self.failures.get(key, ()) if t > now - settings.LOGIN_WINDOW]
        times.append(now)
        if len(times) >= limit:
            self.failures.pop(key, None)
            if key not in self.locked and len(self.locked) >= MAX_NAMES:
                self.locked.pop(next(iter(self.locked)))  # the oldest lock, the soonest over
            self.locked[key] = now + lockout
            return True
        if key not in self.failures and len(self.failures) >= MAX_NAMES:
            self.failures.pop(next(iter(self.failures)))  # the oldest entry
        self.failures[key] = times
        return False

    @goworld.rpc(name="Succeeded")
    def succeeded(self, name: str) -> None:
        self.failures.pop(name, None)

    def prune(self) -> None:
        now = time.time()
        self.locked = {n: u for n, u in self.locked.items() if u > now}
        self.failures = {
            n: ts for n, ts in self.failures.items() if ts and ts[-1] > now - settings.LOGIN_WINDOW
        }
        self.registered = {
            h: ts for h, ts in self._registrations().items() if ts and ts[-1] > now - settings.REGISTER_WINDOW
        }
