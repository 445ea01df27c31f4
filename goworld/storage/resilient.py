"""Behaviour under trouble: queue, retry with backoff and keep call order, around any backend.

:func:`goworld.storage.open_storage` and :func:`goworld.kvdb.open_kvdb` wrap every real backend
(SQLite, Redis, later MongoDB; not the in-memory one) in :class:`ResilientEntityStorage` /
:class:`~goworld.kvdb.resilient.ResilientKVDB`. Both sit on :class:`RetryQueue`, which keeps
the backend contract (futures returned at once, operations applied in call order, ``close``
waits for what was called before it) and adds:

* **Nothing blocks the game loop.** Operations are handed to the backend (which works off the
  loop or asynchronously) and never awaited by the wrapper on the caller's behalf.
* **Transient failures are retried.** A backend error whose cause is a lost connection, a
  timeout, a busy or unopenable SQLite file, Redis loading/readonly/OOM… (:func:`is_transient`)
  starts an **outage**: from then on new operations are held in the wrapper, and once
  everything already handed to the backend has come back, the failed operation and every
  operation called after it are sent again, in call order, after a backoff that doubles from
  ``backoff_min`` (0.1 s) to ``backoff_max`` (5 s). When one attempt goes through without a
  transient failure the outage ends and the held operations follow, still in order.
* **Order is kept across retries.** The state left behind is that of running every operation
  once, in call order. An attempt re-runs *everything* from the first failed operation on,
  including later operations that happened to succeed (the backend may have come back in
  between): writes (``save``, ``put``) are idempotent, reads are run again and their first
  result thrown away. Before each attempt, successive writes of one key with no read of that key
  in between are merged: only the newest is sent, and the older ones complete with it. So a
  long outage holds at most one pending save per record, and a record is never set back to an
  older value while the queue drains (unless a read of it sits between the two saves: the read
  must see the older value, and the newer one is written right after).
* **Reads see every write called before them.** When an attempt was cut off midway (the
  server died with a pipeline in flight, or came back while one was failing), a re-run read may
  also see a write called *after* it: a newer value, never an older one.
* **Writes wait as long as it takes; reads have a deadline.** ``save``, ``put`` and
  ``get_or_put`` are retried until they land (or ``close`` gives up on them). ``load``,
  ``exists``, ``list_ids``, ``get`` and ``get_range`` fail with
  :class:`~goworld.errors.StorageError` once they are ``read_timeout`` (60 s) old and the
  backend still fails.
* **Errors that are not transient fail at once**: bad arguments raise at call time (the
  wrapper validates and snapshots data when called, as every backend does), a corrupt record
  or a Redis type error fails that one operation's future.
* **One log line per outage**, not per attempt: a WARNING (logger ``goworld.storage``) when it
  starts, with the reason, and an INFO line when it ends, with how long it lasted, how many
  operations waited and how many attempts it took.
* ``close()`` waits for every queued operation, retrying as usual, for up to
  ``close_timeout`` (300 s); if that expires it logs an ERROR naming what is lost, fails those
  futures and closes the backend.
* **Counted**: per kind of operation (``save``, ``load``, ``get``...), how many finished, how
  many of them failed, and a histogram of their latency from the call to the outcome
  (retries and time held in an outage included), in :attr:`RetryStatistics.operations`; the
  game's ``/metrics`` shows them (:mod:`game.metrics`).

``get_or_put`` is not idempotent: if an attempt was cut off after Redis ran it, the retry finds
the caller's own value already there. The wrapper then reports ``None`` ("you stored it"),
which is what happened unless another writer stored the very same value in between.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from goworld.errors import StorageError
from goworld.histogram import Histogram
from goworld.log import get_logger
from goworld.storage.base import EntityData, EntityStorage, check_name, pack_data, unpack_data

__all__ = [
    "READ",
    "SCAN",
    "OperationStats",
    "UPDATE",
    "WRITE",
    "ResilientEntityStorage",
    "RetryQueue",
    "RetryStatistics",
    "failing_probe",
    "is_transient",
]

logger = get_logger("storage")

DEFAULT_READ_TIMEOUT = 60.0
DEFAULT_CLOSE_TIMEOUT = 300.0
DEFAULT_BACKOFF_MIN = 0.1
DEFAULT_BACKOFF_MAX = 5.0

_REDIS_TRANSIENT_REPLIES = (
    "LOADING",
    "BUSY",
    "MASTERDOWN",
    "READONLY",
    "TRYAGAIN",
    "OOM",
    "NOSCRIPT",
    "MISCONF",  # writes refused while the server cannot save its snapshot to disk
    "NOREPLICAS",  # min-replicas-to-write not met
)


def _redis_reply(exc: BaseException) -> str:
    """The server's error reply inside a redis-py ResponseError, which may prefix it
    ("Command # 2 (HSET ...) of pipeline caused error: MISCONF ...")."""
    text = str(exc.args[-1]) if exc.args else str(exc)
    _, marker, reply = text.partition("caused error: ")
    return reply if marker else text


def _transient_one(exc: BaseException) -> bool:
    if isinstance(exc, (OSError, TimeoutError, sqlite3.OperationalError)):
        return True  # OSError covers ConnectionError (refused, reset) and socket timeouts
    redis_errors = sys.modules.get("redis.exceptions")  # loaded iff a Redis backend is in use
    if redis_errors is not None:
        if isinstance(exc, (redis_errors.ConnectionError, redis_errors.TimeoutError)):
            return True
        transient_replies = (
            redis_errors.OutOfMemoryError,
            redis_errors.ReadOnlyError,
            redis_errors.NoScriptError,
            redis_errors.TryAgainError,
            redis_errors.ClusterDownError,  # and MasterDownError
        )
        if isinstance(exc, transient_replies):
            return True
        if isinstance(exc, redis_errors.ResponseError):
            return _redis_reply(exc).startswith(_REDIS_TRANSIENT_REPLIES)
    mongo_errors = sys.modules.get("pymongo.errors")  # ready for the MongoDB backend
    if mongo_errors is not None:
        if isinstance(exc, mongo_errors.ConnectionFailure):  # AutoReconnect, timeouts, selection
            return True
        has_label = getattr(exc, "has_error_label", None)
        if has_label is not None and has_label("RetryableWriteError"):
            return True
    return False


def is_transient(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or an exception it was raised from) means "try again later".

    Lost or refused connections, timeouts, ``sqlite3.OperationalError`` (busy, locked, cannot
    open, I/O), Redis ``LOADING``/``READONLY``/``OOM``/``BUSY``… replies, PyMongo connection
    failures. A corrupt record (``ValueError``), a Redis ``WRONGTYPE`` reply or a closed
    backend are not.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if _transient_one(exc):
            return True
        exc = exc.__cause__
    return False


def _reason(exc: BaseException | None) -> str:
    """The innermost cause, as ``Type: message``."""
    while exc is not None and exc.__cause__ is not None:
        exc = exc.__cause__
    return "unknown error" if exc is None else f"{type(exc).__name__}: {exc}"


#: Kinds of operation, for retries and merging.
WRITE = "write"  # overwrites ``key`` (save, put): idempotent, merged with a later write of key
READ = "read"  # reads ``key`` (load, exists, get)
UPDATE = "update"  # reads and maybe writes ``key`` (get_or_put): never merged
SCAN = "scan"  # reads many keys (list_ids, get_range)


class _Op:
    """One operation: how to (re)send it, its caller's future, its state in the queue.

    It is also the done-callback of the backend's future (no closure per operation)."""

    __slots__ = (
        "queue", "seq", "what", "kind", "key", "fn", "args", "adapt", "future", "born",
        "followers", "attempts", "waited", "settled", "result", "error", "abandoned", "started",
    )  # fmt: skip

    def __init__(
        self,
        queue: RetryQueue,
        seq: int,
        what: str,
        kind: str,
        key: object,
        fn: Callable[..., asyncio.Future[Any]],
        args: tuple[Any, ...],
        adapt: Callable[[Any], Any] | None,
        future: asyncio.Future[Any],
        born: float,
    ) -> None:
        self.queue = queue
        self.seq = seq
        self.what = what
        self.kind = kind
        self.key = key
        self.fn = fn  # fn(*args) (re)submits the operation to the backend
        self.args = args
        self.adapt = adapt  # fixes the result of a re-run (get_or_put)
        self.future = future
        self.born = born
        self.followers: list[_Op] | None = None  # older writes merged into this one
        self.attempts = 0
        self.waited = False  # counted in the current outage
        self.settled = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.abandoned = False
        self.started = time.perf_counter()  # for the latency figure (the loop's clock is coarse)

    @property
    def writes(self) -> bool:
        return self.kind in (WRITE, UPDATE)

    def __call__(self, inner: asyncio.Future[Any]) -> None:
        self.queue._settled(self, inner)


def _merged(*args: Any) -> asyncio.Future[Any]:
    raise AssertionError("a merged write is never sent")


def _merge_writes(ops: list[_Op]) -> list[_Op]:
    """Drop each write followed by a write of the same key with no read of that key between;
    the dropped one becomes a follower of the later one (it completes with it)."""
    later: dict[object, _Op] = {}  # key -> the next write of it, no read of it in between
    kept: list[_Op] = []
    for op in reversed(ops):
        if op.kind == SCAN:
            later.clear()
        elif op.kind == WRITE and op.key in later:
            newer = later[op.key]
            if newer.followers is None:
                newer.followers = []
            newer.followers.append(op)
            if op.followers:
                newer.followers += op.followers
            op.followers = None
            op.fn, op.args = _merged, ()  # let the snapshot go: the newer write replaces it
            continue
        elif op.kind == WRITE:
            later[op.key] = op
        else:  # READ, UPDATE
            later.pop(op.key, None)
        kept.append(op)
    kept.reverse()
    return kept


@dataclass(slots=True)
class _Outage:
    start: float
    reason: str
    waited: int = 0
    attempts: int = 0


@dataclass(slots=True)
class OperationStats:
    """Live counters of one kind of operation (``save``, ``get``...) of one :class:`RetryQueue`."""

    count: int = 0  # finished, successfully or not
    errors: int = 0  # finished with an error
    seconds: Histogram = field(default_factory=Histogram)  # from the call to the outcome


@dataclass(frozen=True, slots=True)
class RetryStatistics:
    """Counters of one :class:`RetryQueue` since it was created."""

    outages: int  # outages that started
    retried: int  # operations sent to the backend again
    in_outage: bool  # an outage is going on now
    queued: int  # operations called and not finished yet (handed over, held or to be retried)
    #: per kind of operation (the first word of its description: save, load, get...)
    operations: dict[str, OperationStats] = field(default_factory=dict)


@dataclass(slots=True)
class _Counters:
    outages: int = 0
    retried: int = 0
    waiters: list[asyncio.Future[None]] = field(default_factory=list)


class RetryQueue:
    """Sequencer shared by the resilient storage and KVDB wrappers (see the module docs).

    Args:
        describe: names the backend in log lines and errors ("redis storage redis://… db 0").
        close_inner: closes the backend once the queue is drained (or given up on).
        failing: optional; True while the backend knows its last attempt failed and has not
            succeeded since (a failure whose futures' callbacks have not run yet). New
            operations are then held instead of sent, so none can slip through, succeed
            after the server is back and land before the failed ones are retried.
        read_timeout: seconds after which a read that still fails transiently fails.
        close_timeout: seconds ``close`` waits for queued operations before giving up on them.
        backoff_min, backoff_max: the first and the largest pause between attempts.
    """

    def __init__(
        self,
        *,
        describe: str,
        close_inner: Callable[[], Awaitable[None]],
        failing: Callable[[], bool] | None = None,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        backoff_min: float = DEFAULT_BACKOFF_MIN,
        backoff_max: float = DEFAULT_BACKOFF_MAX,
    ) -> None:
        self.describe = describe
        self._close_inner = close_inner
        self._failing = failing
        self.read_timeout = read_timeout
        self.close_timeout = close_timeout
        self._backoff_min = backoff_min
        self._backoff_max = backoff_max
        self._backoff = backoff_min
        self._seq = 0
        self._inflight: deque[_Op] = deque()  # handed to the backend, in call order
        self._redo: list[_Op] = []  # to send again at the next attempt, in call order
        self._held: deque[_Op] = deque()  # called during an outage, not sent yet
        self._failed_at: int | None = None  # first transient failure of the current round
        self._outage: _Outage | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closing = False
        self._close_task: asyncio.Task[None] | None = None
        self._counters = _Counters()
        self._operations: dict[str, OperationStats] = {}

    # ------------------------------------------------------------------ caller side

    def submit(
        self,
        what: str,
        *,
        kind: str,
        key: object,
        fn: Callable[..., asyncio.Future[Any]],
        args: tuple[Any, ...],
        first: Callable[[], asyncio.Future[Any]] | None = None,
        adapt: Callable[[Any], Any] | None = None,
    ) -> asyncio.Future[Any]:
        """Run ``fn(*args)`` on the backend now, or later if it is down; its outcome completes
        the returned future.

        ``kind`` is :data:`WRITE`, :data:`READ`, :data:`UPDATE` or :data:`SCAN` and ``key`` the
        hashable key it touches (ignored for SCAN). ``first`` is called instead when the
        operation is sent at once (e.g. with the caller's data rather than a snapshot);
        ``adapt`` maps the result of an operation that had to be run again.
        """
        if self._closing:
            raise StorageError(f"{self.describe}: {what}: the backend is closed")
        loop = asyncio.get_running_loop()
        self._seq += 1
        op = _Op(
            self, self._seq, what, kind, key, fn, args, adapt, loop.create_future(), loop.time()
        )
        if self._outage is None and not self._held and not self._failure_pending():
            # Sent at once; a synchronous error (bad arguments) propagates to the caller.
            inner = first() if first is not None else fn(*args)
            op.attempts = 1
            self._inflight.append(op)
            inner.add_done_callback(op)
        else:  # an outage, or one about to be noticed: keep it for later, in order
            self._count_waiting(op)
            self._held.append(op)
            self._schedule()
        return op.future

    def _failure_pending(self) -> bool:
        """The backend failed operations whose outcome has not reached us yet: the held
        operation is sent when they have (no need to hold when nothing is in flight)."""
        return bool(self._inflight) and self._failing is not None and self._failing()

    def statistics(self) -> RetryStatistics:
        return RetryStatistics(
            outages=self._counters.outages,
            retried=self._counters.retried,
            in_outage=self._outage is not None,
            queued=sum(
                1 + len(op.followers or ())
                for ops in (self._inflight, self._redo, self._held)
                for op in ops
            ),
            operations=dict(self._operations),
        )

    def _count(self, op: _Op, failed: bool) -> None:
        """``op`` finished (a storage operation, not a message: a dict lookup is fine here)."""
        name = op.what.partition(" ")[0]
        stats = self._operations.get(name)
        if stats is None:
            stats = self._operations[name] = OperationStats()
        stats.count += 1
        if failed:
            stats.errors += 1
        stats.seconds.observe(time.perf_counter() - op.started)

    async def close(self) -> None:
        """Wait for every queued operation (up to ``close_timeout``), then close the backend."""
        if self._close_task is None:
            self._closing = True
            self._close_task = asyncio.get_running_loop().create_task(self._close())
        await asyncio.shield(self._close_task)

    async def _close(self) -> None:
        if not self._idle():
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._counters.waiters.append(waiter)
            if self._outage is not None:
                logger.info(
                    "%s: closing during an outage: waiting up to %.0f s for %d queued operations",
                    self.describe,
                    self.close_timeout,
                    self.statistics().queued,
                )
            try:
                await asyncio.wait_for(asyncio.shield(waiter), self.close_timeout)
            except TimeoutError:
                self._abandon()
        await self._close_inner()

    # ------------------------------------------------------------------ backend side

    def _send(self, op: _Op) -> None:
        """(Re)send ``op``; a synchronous refusal settles it at once, in order."""
        op.settled = False
        try:
            inner = op.fn(*op.args)
        except Exception as exc:
            op.error = exc
            op.settled = True
            self._inflight.append(op)
            return
        op.attempts += 1
        self._inflight.append(op)
        inner.add_done_callback(op)

    def _settled(self, op: _Op, inner: asyncio.Future[Any]) -> None:
        if inner.cancelled():
            error: BaseException | None = StorageError(f"{self.describe}: {op.what}: cancelled")
        else:
            error = inner.exception()  # also marks it retrieved
        if op.abandoned:
            return
        op.settled = True
        if error is None:
            op.result = inner.result()
            inflight = self._inflight
            if self._failed_at is None and inflight[0] is op:  # the usual case, kept short
                inflight.popleft()
                if op.followers is None and op.attempts == 1:
                    self._count(op, False)
                    if not op.future.done():
                        op.future.set_result(op.result)
                else:
                    self._finish(op, result=op.result)
                if not inflight:
                    self._round_over()
                elif inflight[0].settled:
                    self._drain()
                return
        op.error = error
        self._drain()

    def _drain(self) -> None:
        """Process settled operations in call order; end the round when none is in flight."""
        while self._inflight and self._inflight[0].settled:
            self._process(self._inflight.popleft())
        if not self._inflight:
            self._round_over()

    def _process(self, op: _Op) -> None:
        error = op.error
        transient = error is not None and is_transient(error)
        if error is not None and not transient:
            self._finish(op, error=error)
            return
        if not transient and self._failed_at is None:
            self._finish(op, result=op.result)
            return
        # This operation failed transiently, or an earlier one of this round did: run it
        # again after that one, whatever its own outcome was.
        if self._failed_at is None:
            self._failed_at = op.seq
            self._begin_outage(error)
        if not op.writes and self._expired(op):
            return
        self._count_waiting(op)
        self._redo.append(op)

    def _round_over(self) -> None:
        if self._failed_at is not None:  # a transient failure: try again after a pause
            self._failed_at = None
            self._schedule()
            return
        if self._outage is not None and self._timer is None and not self._redo:
            self._end_outage()  # an attempt went through without a transient failure
        elif self._outage is None and self._held:  # held on the backend's word, no failure came
            self._send_held()
        self._check_idle()

    def _schedule(self) -> None:
        if self._timer is None and not self._inflight and self._outage is not None:
            delay = self._backoff
            self._backoff = min(self._backoff * 2, self._backoff_max)
            self._timer = asyncio.get_running_loop().call_later(delay, self._attempt)

    def _attempt(self) -> None:
        self._timer = None
        assert self._outage is not None
        ops = self._redo + list(self._held)
        self._redo = []
        self._held.clear()
        ops = _merge_writes([op for op in ops if op.writes or not self._expired(op)])
        if not ops:  # nothing left to try with: the next call schedules an attempt
            self._check_idle()
            return
        self._outage.attempts += 1
        for op in ops:
            if op.attempts:
                self._counters.retried += 1
            self._send(op)
        self._drain()

    def _begin_outage(self, error: BaseException | None) -> None:
        if self._outage is not None:
            return
        loop = asyncio.get_running_loop()
        self._outage = _Outage(start=loop.time(), reason=_reason(error))
        self._counters.outages += 1
        for op in self._held:  # held because the backend already said it was failing
            self._count_waiting(op)
        logger.warning(
            "%s: backend unavailable (%s); holding operations and retrying with backoff "
            "(%g s, doubling up to %g s)",
            self.describe,
            self._outage.reason,
            self._backoff_min,
            self._backoff_max,
        )

    def _end_outage(self) -> None:
        outage = self._outage
        assert outage is not None
        self._outage = None
        self._backoff = self._backoff_min
        lasted = asyncio.get_running_loop().time() - outage.start
        logger.info(
            "%s: backend available again after %.1f s: %d operations waited, %d attempts",
            self.describe,
            lasted,
            outage.waited,
            outage.attempts,
        )
        self._send_held()

    def _send_held(self) -> None:
        """Send the held operations (called during the last attempt), still in order."""
        held, self._held = self._held, deque()
        for op in held:
            self._send(op)
        for op in self._inflight:
            op.waited = False
        if held:
            self._drain()

    def _count_waiting(self, op: _Op) -> None:
        if not op.waited and self._outage is not None:
            op.waited = True
            self._outage.waited += 1

    def _expired(self, op: _Op) -> bool:
        """Fail a read that is ``read_timeout`` old; True if it was failed."""
        age = asyncio.get_running_loop().time() - op.born
        if age < self.read_timeout:
            return False
        reason = self._outage.reason if self._outage is not None else _reason(op.error)
        error = StorageError(
            f"{self.describe}: {op.what}: gave up after {age:.0f} s: the backend is unavailable"
            f" ({reason})"
        )
        error.__cause__ = op.error
        self._finish(op, error=error)
        return True

    def _finish(self, op: _Op, *, result: Any = None, error: BaseException | None = None) -> None:
        if error is None and op.adapt is not None and op.attempts > 1:
            result = op.adapt(result)
        for done in (op, *op.followers) if op.followers else (op,):
            self._count(done, error is not None)
            if done.future.done():  # cancelled by its caller: the operation still happened
                continue
            if error is not None:
                done.future.set_exception(error)
            else:
                done.future.set_result(result)

    def _idle(self) -> bool:
        return not self._inflight and not self._redo and not self._held

    def _check_idle(self) -> None:
        if self._idle() and self._counters.waiters:
            waiters, self._counters.waiters = self._counters.waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def _abandon(self) -> None:
        lost = [*self._inflight, *self._redo, *self._held]
        lost += [follower for op in lost for follower in op.followers or ()]
        self._inflight.clear()
        self._redo = []
        self._held.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        writes = [op.what for op in lost if op.writes]
        shown = ", ".join(writes[:20]) + (
            f", … ({len(writes) - 20} more)" if len(writes) > 20 else ""
        )
        reason = self._outage.reason if self._outage is not None else "still in progress"
        logger.error(
            "%s: gave up after waiting %.0f s at close: %d operations lost (%s), %d of them writes%s",
            self.describe,
            self.close_timeout,
            len(lost),
            reason,
            len(writes),
            f": {shown}" if writes else "",
        )
        for op in lost:
            op.abandoned = True
            self._count(op, True)
            if not op.future.done():
                op.future.set_exception(
                    StorageError(f"{self.describe}: {op.what}: lost at close ({reason})")
                )


def failing_probe(inner: object) -> Callable[[], bool] | None:
    """``inner.failing`` as a callable, if the backend has that property (Redis does)."""
    if not hasattr(type(inner), "failing"):
        return None
    return lambda: bool(inner.failing)  # type: ignore[attr-defined]


class ResilientEntityStorage:
    """An :class:`~goworld.storage.base.EntityStorage` that survives its backend's outages.

    ``inner`` is the real backend; keyword arguments go to :class:`RetryQueue`
    (``read_timeout``, ``close_timeout``, ``backoff_min``, ``backoff_max``).
    """

    def __init__(
        self, inner: EntityStorage, *, describe: str | None = None, **options: Any
    ) -> None:
        self.inner = inner
        name = describe or getattr(inner, "describe", None) or type(inner).__name__
        self._queue = RetryQueue(
            describe=str(name), close_inner=inner.close, failing=failing_probe(inner), **options
        )
        self._save_packed: Callable[[str, str, bytes], asyncio.Future[None]] | None = getattr(
            inner, "save_packed", None
        )

    @property
    def describe(self) -> str:
        return self._queue.describe

    def statistics(self) -> RetryStatistics:
        return self._queue.statistics()

    def save(self, type_name: str, entity_id: str, data: EntityData) -> asyncio.Future[None]:
        check_name("type_name", type_name)
        check_name("entity_id", entity_id)
        blob = pack_data(data)  # validates, and snapshots the record for any re-run
        save_packed = self._save_packed
        first: Callable[[], asyncio.Future[None]] | None = None
        if save_packed is None:  # the backend packs again; a re-run sends the snapshot
            save_packed = self._save_snapshot
            first = partial(self.inner.save, type_name, entity_id, data)
        return self._queue.submit(
            f"save {type_name}/{entity_id}",
            kind=WRITE,
            key=(type_name, entity_id),
            fn=save_packed,
            args=(type_name, entity_id, blob),
            first=first,
        )

    def _save_snapshot(self, type_name: str, entity_id: str, blob: bytes) -> asyncio.Future[None]:
        return self.inner.save(type_name, entity_id, unpack_data(blob))

    def load(self, type_name: str, entity_id: str) -> asyncio.Future[EntityData | None]:
        check_name("type_name", type_name)
        check_name("entity_id", entity_id)
        return self._queue.submit(
            f"load {type_name}/{entity_id}",
            kind=READ,
            key=(type_name, entity_id),
            fn=self.inner.load,
            args=(type_name, entity_id),
        )

    def exists(self, type_name: str, entity_id: str) -> asyncio.Future[bool]:
        check_name("type_name", type_name)
        check_name("entity_id", entity_id)
        return self._queue.submit(
            f"exists {type_name}/{entity_id}",
            kind=READ,
            key=(type_name, entity_id),
            fn=self.inner.exists,
            args=(type_name, entity_id),
        )

    def list_ids(self, type_name: str) -> asyncio.Future[list[str]]:
        check_name("type_name", type_name)
        return self._queue.submit(
            f"list_ids {type_name}", kind=SCAN, key=None, fn=self.inner.list_ids, args=(type_name,)
        )

    async def close(self) -> None:
        await self._queue.close()
