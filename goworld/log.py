"""Named loggers and the one place that configures logging handlers.

Loggers in use (``grep -rn "getLogger(\\|get_logger(" goworld game gate dispatcher lockstep``):

- ``goworld.dispatcher`` (dispatcher/), ``goworld.gate`` (gate/), ``goworld.gate.ws`` (the
  websockets server's own logger, gate/listeners.py), ``goworld.game`` (game/, and code that
  runs in a game: goworld/api.py, goworld/entity/entity.py and state.py);
- ``goworld.cluster`` (the dispatcher links), ``goworld.storage`` (storage backends, the SQLite
  worker), ``goworld.net.kcp``, ``goworld.net.tls``, ``goworld.config``, ``goworld.process``,
  ``goworld.gobot``, ``goworld.supervisor`` (its own log, ``.goworld/supervisor.log``),
  ``goworld.metrics`` (the metrics and status endpoints, goworld/metrics.py and ops_http.py),
  ``goworld.bench`` (the side-by-side bench's GoWorld cluster and mongo-java-server),
  ``goworld.lockstep`` (lockstep/ and its rooms, goworld/lockstep/room.py and rooms.py),
  ``goworld.lockstep.ws`` (the websockets server's own logger in lockstep/server.py),
  ``goworld.lockstep.client`` (the protocol's test client).

Library modules only ask for a logger (``logging.getLogger("goworld.x")`` or :func:`get_logger`);
the roles' start-up (``goworld.process``) calls :func:`configure`. The CLI logs nothing: it
reports with ``click.echo``. Formatting is lazy (``%s``); traffic logging sits behind
``logger.isEnabledFor(logging.DEBUG)`` guards.

Floods. :func:`configure` puts a :class:`RepeatFilter` on every handler: records are counted
per (logger name, message template ``record.msg``, level) in fixed intervals; past
``repeat_limit`` WARNING records of one key in an interval (5x that for ERROR and above, 100x
for INFO and DEBUG) the rest are dropped, and once the interval is over one line per such key
says how many were (``1990 more like this suppressed in the last 10 s: player %s complains``).
A client that makes a game warn on every call thus writes a bounded number of lines, and so
does a churn of connections (``client %s connected over %s from %s``: 1,000 per 10 s, then
counted). INFO gets the most: it narrates logins and connections, which come in bursts in
normal operation. The key is the template, not the text: one template with a ``%s`` reason
shares one allowance across reasons.
"""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "get_logger",
    "configure",
    "flush_repeats",
    "LEVELS",
    "RepeatFilter",
    "REPEAT_LIMIT",
    "REPEAT_INTERVAL",
    "ERROR_ALLOWANCE_FACTOR",
    "INFO_ALLOWANCE_FACTOR",
]

#: goworld.ini log levels (GoWorld's names) -> logging levels.
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "panic": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}

#: Default records of one (logger, template, level) written per interval (WARNING).
REPEAT_LIMIT = 10
#: Default interval, in seconds, over which :data:`REPEAT_LIMIT` applies.
REPEAT_INTERVAL = 10.0
#: ERROR and above may repeat this many times more than warnings.
ERROR_ALLOWANCE_FACTOR = 5
#: INFO and DEBUG may repeat this many times more than warnings.
INFO_ALLOWANCE_FACTOR = 100

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Set on a record once the filter decided; a second handler reuses the decision.
_VERDICT = "_goworld_repeat_verdict"

_Key = tuple[str, str, int]
Sink = Callable[[logging.LogRecord], None]


class RepeatFilter(logging.Filter):
    """Let ``limit`` records per (logger, template, level) through per ``interval`` seconds
    (WARNING; ``error_factor`` times that at ERROR and above, ``info_factor`` times below WARNING).

    Records below ``min_level`` always pass. Share one instance between every handler of a
    logger: the first handler's decision is stored on the record and reused by the others,
    so a record counts once. When an interval is over (noticed on the next record at or above
    ``min_level``, or by :meth:`flush`), one summary record per key that went over its limit
    is given to ``sink``, which hands it to the handlers (it passes the filter).

    At most ``max_keys`` distinct keys are counted per interval; records of further keys share
    one key per logger and level (a flood of distinct, pre-formatted messages is bounded too).
    Cost per record at or above ``min_level``: a clock read, a lock, a dict update.
    """

    def __init__(
        self,
        *,
        limit: int = REPEAT_LIMIT,
        interval: float = REPEAT_INTERVAL,
        error_factor: int = ERROR_ALLOWANCE_FACTOR,
        info_factor: int = INFO_ALLOWANCE_FACTOR,
        min_level: int = logging.NOTSET,
        max_keys: int = 1000,
        clock: Callable[[], float] = time.monotonic,
        sink: Sink | None = None,
    ) -> None:
        super().__init__()
        if limit < 1 or interval <= 0 or error_factor < 1 or info_factor < 1 or max_keys < 1:
            raise ValueError("limit, interval, the factors and max_keys must be positive")
        self.limit = limit
        self.error_limit = limit * error_factor
        self.info_limit = limit * info_factor
        self.interval = interval
        self.min_level = min_level
        self.max_keys = max_keys
        self.clock = clock
        self.sink = sink
        self._lock = threading.Lock()
        self._counts: dict[_Key, int] = {}
        self._window_end = float("-inf")
        self._over = False  # some key went over its limit in the current interval

    def _allowance(self, level: int) -> int:
        if level >= logging.WARNING:
            return self.error_limit if level >= logging.ERROR else self.limit
        return self.info_limit

    def filter(self, record: logging.LogRecord) -> bool:
        verdict: bool | None = record.__dict__.get(_VERDICT)
        if verdict is not None:
            return verdict
        level = record.levelno
        if level < self.min_level:
            return True
        msg = record.msg
        template = msg if type(msg) is str else f"<{type(msg).__qualname__}>"
        key = (record.name, template, level)
        with self._lock:
            now = self.clock()
            due = self._roll(now) if now >= self._window_end else []
            counts = self._counts
            if key not in counts and len(counts) >= self.max_keys:
                key = (record.name, "<more distinct messages than the per-interval key budget>", level)
            n = counts.get(key, 0) + 1
            counts[key] = n
            verdict = n <= self._allowance(level)
            if not verdict:
                self._over = True
        record.__dict__[_VERDICT] = verdict
        self._emit(due)
        return verdict

    def flush(self) -> None:
        """Write the summaries of an interval that is over (no new record needed)."""
        if not self._over:
            return
        with self._lock:
            now = self.clock()
            due = self._roll(now) if now >= self._window_end else []
        self._emit(due)

    def flush_all(self) -> None:
        """Write the summaries of the current interval now, even if it is not over (at exit)."""
        with self._lock:
            due = self._roll(self.clock())
        self._emit(due)

    def _roll(self, now: float) -> list[logging.LogRecord]:
        """Start a new interval at ``now``; the summaries of the one that ended. Lock held."""
        due = []
        if self._over:
            for (name, template, level), n in self._counts.items():
                suppressed = n - self._allowance(level)
                if suppressed > 0:
                    due.append(self._summary(name, template, level, suppressed))
        self._counts = {}
        self._over = False
        self._window_end = now + self.interval
        return due

    def _summary(self, name: str, template: str, level: int, suppressed: int) -> logging.LogRecord:
        record = logging.LogRecord(
            name, level, __file__, 0,
            "%d more like this suppressed in the last %g s: %s",
            (suppressed, self.interval, template), None,
        )
        record.__dict__[_VERDICT] = True
        return record

    def _emit(self, due: list[logging.LogRecord]) -> None:
        if due and self.sink is not None:
            for record in due:
                self.sink(record)


_installed: RepeatFilter | None = None
_atexit_registered = False
_root_handlers: list[logging.Handler] = []  # what configure added to the root logger


def get_logger(component: str) -> logging.Logger:
    """The logger ``goworld.<component>``."""
    return logging.getLogger(f"goworld.{component}")


def configure(
    *,
    level: str = "info",
    log_file: str | Path | None = None,
    stderr: bool = True,
    repeat_limit: int = REPEAT_LIMIT,
    repeat_interval: float = REPEAT_INTERVAL,
    max_bytes: int = 0,
    backups: int = 0,
    other_loggers: bool = True,
    clock: Callable[[], float] = time.monotonic,
) -> RepeatFilter | None:
    """Install handlers on the ``goworld`` logger (file and/or stderr) at ``level``.

    With ``other_loggers``, the same handlers are added to the root logger too: what other
    libraries log (asyncio, uvloop, grpc, at the root's level, WARNING unless set) is then a
    log record like ours, in the log file and bounded by the same filter, instead of going to
    stderr through :data:`logging.lastResort`. The root's other handlers are left alone.

    ``repeat_limit`` WARNING records per message template per ``repeat_interval`` seconds
    are written (ERROR 5x, INFO and DEBUG 100x), then summarised (:class:`RepeatFilter`);
    ``repeat_limit=0`` writes every one.
    ``max_bytes > 0`` rotates the log file once it is larger, keeping ``backups`` older
    generations (``game1.log.1`` ...; at least one). Returns the filter installed, if any.
    """
    global _installed, _atexit_registered, _root_handlers
    if not _atexit_registered:  # runs before logging's own shutdown (registered earlier)
        atexit.register(flush_repeats, final=True)
        _atexit_registered = True
    root = logging.getLogger("goworld")
    root.setLevel(LEVELS.get(level.lower(), logging.INFO))
    if _installed is not None:
        _installed.flush_all()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in _root_handlers:
        logging.getLogger().removeHandler(handler)
    _root_handlers = []
    formatter = logging.Formatter(_FORMAT)
    handlers: list[logging.Handler] = []
    if log_file is not None:
        file_handler: logging.FileHandler
        if max_bytes > 0:
            file_handler = logging.handlers.RotatingFileHandler(
                log_file, maxBytes=max_bytes, backupCount=max(backups, 1), encoding="utf-8"
            )
        else:
            file_handler = logging.FileHandler(log_file, encoding="utf-8")
        handlers.append(file_handler)
    if stderr:
        handlers.append(logging.StreamHandler(sys.stderr))
    _installed = None
    if repeat_limit > 0:
        _installed = RepeatFilter(
            limit=repeat_limit, interval=repeat_interval, clock=clock, sink=_to_every(handlers)
        )
    for handler in handlers:
        handler.setFormatter(formatter)
        if _installed is not None:
            handler.addFilter(_installed)
        root.addHandler(handler)
        if other_loggers:
            logging.getLogger().addHandler(handler)
            _root_handlers.append(handler)
    root.propagate = False
    return _installed


def _to_every(handlers: list[logging.Handler]) -> Sink:
    def sink(record: logging.LogRecord) -> None:
        for handler in handlers:
            handler.handle(record)

    return sink


def flush_repeats(*, final: bool = False) -> None:
    """Write the summaries of suppressed records whose interval is over (``final``: of the
    current interval too, before exiting). A no-op unless :func:`configure` installed a filter."""
    if _installed is not None:
        if final:
            _installed.flush_all()
        else:
            _installed.flush()
