"""LoginGuard: the brute-force guard on Login (a service, 1 shard).

``LOGIN_MAX_FAILURES`` failed logins of one user name within ``LOGIN_WINDOW`` seconds lock that
name for ``LOGIN_LOCKOUT`` seconds, whatever the connection. (Per client address would be
better still, but game code does not learn a client's address.) Times are Unix seconds in
fields: a reload keeps them.
"""

from __future__ import annotations

import time

import goworld

from . import settings

#: names tracked at most (failures of unknown names count too, so that this is no oracle)
MAX_NAMES = 50_000


class LoginGuard(goworld.Entity):
    def on_init(self) -> None:
        self.failures: dict[str, list[float]] = {}  # name -> failure times within the window
        self.locked: dict[str, float] = {}  # name -> locked until

    def on_created(self) -> None:
        self.add_timer(60.0, "prune")

    def _wait(self, name: str, now: float) -> float:
        until = self.locked.get(name)
        if until is None:
            return 0.0
        if until <= now:
            del self.locked[name]
            return 0.0
        return until - now

    @goworld.rpc(name="Check")
    def check(self, account_id: str, seq: int, name: str) -> None:
        """Answers ``account.OnGuardAnswer(seq, seconds locked or 0)``."""
        self.call(account_id, "OnGuardAnswer", seq, self._wait(name, time.time()))

    @goworld.rpc(name="Failed")
    def failed(self, account_id: str, name: str) -> None:
        now = time.time()
        if self._wait(name, now):
            return
        times = [t for t in self.failures.get(name, ()) if t > now - settings.LOGIN_WINDOW]
        times.append(now)
        if len(times) >= settings.LOGIN_MAX_FAILURES:
            self.failures.pop(name, None)
            self.locked[name] = now + settings.LOGIN_LOCKOUT
            self.call(account_id, "OnLockedOut", name, settings.LOGIN_LOCKOUT)
            return
        if name not in self.failures and len(self.failures) >= MAX_NAMES:
            self.failures.pop(next(iter(self.failures)))  # the oldest name
        self.failures[name] = times

    @goworld.rpc(name="Succeeded")
    def succeeded(self, name: str) -> None:
        self.failures.pop(name, None)

    def prune(self) -> None:
        now = time.time()
        self.locked = {n: u for n, u in self.locked.items() if u > now}
        self.failures = {
            n: ts for n, ts in self.failures.items() if ts and ts[-1] > now - settings.LOGIN_WINDOW
        }
