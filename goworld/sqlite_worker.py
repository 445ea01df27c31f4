"""The worker thread that runs every sqlite3 call of one SQLite backend (storage or KVDB).

Threading
    Every ``sqlite3`` call of a backend instance runs on **one dedicated thread** that owns the
    connection (:class:`SQLiteWorker`). The event loop only serialises the record, puts a job
    on a queue and gets an :class:`asyncio.Future` back; results return to the loop in one
    ``call_soon_threadsafe`` per batch. One thread and one FIFO queue means operations apply
    in submission order.

Batching
    The worker takes the first job, then every job already queued (up to ``max_batch``), and
    runs them all in **one transaction** (``BEGIN IMMEDIATE`` when any of them writes). A burst
    of saves therefore costs a few commits instead of one per save. If a batch fails for any
    reason other than a busy database, it is rolled back and each job is retried in its own
    transaction, so one bad job fails alone.

Several processes may open the same file. A busy database is waited for (``busy_timeout``) and
retried with back-off for up to ``retry_for`` seconds before the job fails with
:class:`~goworld.errors.StorageError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Generic, TypeVar

from goworld.errors import StorageError
from goworld.log import get_logger

__all__ = ["SQLiteWorker", "WorkerStatistics"]

logger = get_logger("storage")

T = TypeVar("T")
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6


@dataclass(frozen=True, slots=True)
class WorkerStatistics:
    """Counters of one :class:`SQLiteWorker` since it started."""

    jobs: int  # jobs finished (succeeded or failed)
    transactions: int  # transactions committed, batches and single retries alike
    largest_batch: int  # the most jobs committed in one transaction
    busy_retries: int  # times a transaction was retried because the database was busy
    queued: int  # jobs submitted and not finished yet


@dataclass(slots=True)
class _Job(Generic[T]):
    run: Callable[[sqlite3.Connection], T]
    writes: bool
    what: str  # for error messages: "save Avatar/1234"
    future: asyncio.Future[T]
    loop: asyncio.AbstractEventLoop


@dataclass(slots=True)
class _Stop:
    future: asyncio.Future[None]
    loop: asyncio.AbstractEventLoop


_Outcome = tuple[asyncio.Future[Any], Any, BaseException | None]


def _is_busy(exc: BaseException) -> bool:
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


def _deliver(outcomes: list[_Outcome]) -> None:
    """Runs on the event loop: complete the futures of a finished batch."""
    for future, result, error in outcomes:
        if future.done():  # cancelled by its caller: the operation still happened
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


class SQLiteWorker:
    """One thread owning one ``sqlite3`` connection; runs submitted jobs in batches.

    Args:
        path: the database file (created if missing; its directory must exist).
        schema: SQL statements (``;``-separated) run once after connecting.
        label: names the backend in thread names and error messages.
        busy_timeout: seconds SQLite itself waits for a lock before reporting busy.
        retry_for: seconds a busy job keeps being retried before it fails.
        max_batch: the most jobs run in one transaction.
    """

    def __init__(
        self,
        path: Path,
        schema: str,
        *,
        label: str,
        busy_timeout: float = 5.0,
        retry_for: float = 60.0,
        max_batch: int = 2000,
    ) -> None:
        self.path = Path(path)
        self._schema = schema
        self._label = label
        self._busy_timeout = busy_timeout
        self._retry_for = retry_for
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Job[Any] | _Stop] = queue.SimpleQueue()
        self._conn: sqlite3.Connection | None = None
        self._stopped: asyncio.Future[None] | None = None
        self._dead = False  # set by the worker thread when it ends
        self._dead_lock = threading.Lock()
        self._submitted = self._finished = self._transactions = 0
        self._largest_batch = self._busy_retries = 0
        self._thread = threading.Thread(
            target=self._main, name=f"goworld-{label}-sqlite", daemon=True
        )
        self._thread.start()

    # ------------------------------------------------------------------ loop side

    @property
    def closed(self) -> bool:
        return self._stopped is not None

    def submit(
        self, run: Callable[[sqlite3.Connection], T], *, writes: bool, what: str
    ) -> asyncio.Future[T]:
        """Queue ``run(conn)`` for the worker; its result or error completes the future."""
        if self._stopped is not None or self._dead:
            raise StorageError(f"{self._label} {self.path}: {what}: the backend is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Job(run, writes, what, future, loop))
        self._submitted += 1
        return future

    def statistics(self) -> WorkerStatistics:
        finished = self._finished
        return WorkerStatistics(
            jobs=finished,
            transactions=self._transactions,
            largest_batch=self._largest_batch,
            busy_retries=self._busy_retries,
            queued=self._submitted - finished,
        )

    async def close(self) -> None:
        """Run every job already queued, close the connection and end the thread."""
        if self._stopped is None:
            loop = asyncio.get_running_loop()
            self._stopped = loop.create_future()
            with self._dead_lock:
                if self._dead:
                    self._stopped.set_result(None)
                else:
                    self._queue.put(_Stop(self._stopped, loop))
        await asyncio.shield(self._stopped)

    # ------------------------------------------------------------------ worker thread

    def _main(self) -> None:
        stop: _Stop | None = None
        try:
            while stop is None:
                item = self._queue.get()
                batch: list[_Job[Any]] = []
                while True:
                    if isinstance(item, _Stop):
                        stop = item  # close() forbids later submissions: nothing follows
                        break
                    batch.append(item)
                    if len(batch) >= self._max_batch:
                        break
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                if batch:
                    self._post(batch, self._execute(batch))
        except BaseException:
            logger.exception("%s %s: the worker thread crashed", self._label, self.path)
            raise
        finally:
            self._disconnect()
            with self._dead_lock:
                self._dead = True
                while stop is None:  # only after a crash: fail whatever is still queued
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if isinstance(item, _Stop):
                        stop = item
                    else:
                        error = StorageError(f"{self._label} {self.path}: the worker died")
                        self._post([item], [(item.future, None, error)])
            if stop is not None:
                self._post_stop(stop)

    def _execute(self, batch: list[_Job[Any]]) -> list[_Outcome]:
        try:
            results = self._retrying(partial(self._transaction, batch=batch))
            return [(job.future, result, None) for job, result in zip(batch, results, strict=True)]
        except Exception as exc:
            if len(batch) == 1 or _is_busy(exc):  # busy for retry_for seconds: give up on all
                return [(job.future, None, self._error(job.what, exc)) for job in batch]
        # Something in the batch failed: run each job alone so only the bad ones fail.
        outcomes: list[_Outcome] = []
        for job in batch:
            try:
                (result,) = self._retrying(partial(self._transaction, batch=[job]))
                outcomes.append((job.future, result, None))
            except Exception as exc:
                outcomes.append((job.future, None, self._error(job.what, exc)))
        return outcomes

    def _transaction(self, conn: sqlite3.Connection, batch: Sequence[_Job[Any]]) -> list[Any]:
        conn.execute("BEGIN IMMEDIATE" if any(job.writes for job in batch) else "BEGIN")
        try:
            results = [job.run(conn) for job in batch]
            conn.execute("COMMIT")
            self._transactions += 1
            self._largest_batch = max(self._largest_batch, len(batch))
        except BaseException:
            if conn.in_transaction:
                try:
                    conn.rollback()
                except sqlite3.Error:
                    logger.exception("%s %s: rollback failed", self._label, self.path)
            raise
        return results

    def _retrying(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)``, (re)connecting first, retrying while the database is busy."""
        deadline = time.monotonic() + self._retry_for
        delay = 0.001
        while True:
            try:
                if self._conn is None:
                    self._conn = self._connect()
                return fn(self._conn)
            except sqlite3.Error as exc:
                if not _is_busy(exc):
                    self._disconnect()  # reconnect for the next job, in case the link broke
                    raise
                if time.monotonic() >= deadline:
                    raise
                self._busy_retries += 1
                logger.debug("%s %s: database busy, retrying: %s", self._label, self.path, exc)
                time.sleep(delay)
                delay = min(delay * 2, 0.25)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=True
        )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA journal_size_limit=67108864")  # trim the WAL to 64 MiB
            for statement in self._schema.split(";"):
                if statement.strip():
                    conn.execute(statement)
        except BaseException:
            conn.close()
            raise
        logger.debug("%s %s: connected", self._label, self.path)
        return conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except sqlite3.Error:
                logger.exception("%s %s: closing the connection failed", self._label, self.path)
            self._conn = None

    def _error(self, what: str, exc: Exception) -> StorageError:
        error = StorageError(f"{self._label} {self.path}: {what} failed: {exc}")
        error.__cause__ = exc
        return error

    def _post(self, batch: list[_Job[Any]], outcomes: list[_Outcome]) -> None:
        self._finished += len(batch)  # only the worker thread writes it
        by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
        for job, outcome in zip(batch, outcomes, strict=True):
            by_loop.setdefault(job.loop, []).append(outcome)
        for loop, items in by_loop.items():
            # RuntimeError: the loop is closed: nobody is waiting any more
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_deliver, items)

    def _post_stop(self, stop: _Stop) -> None:
        try:
            done: list[_Outcome] = [(stop.future, None, None)]
            stop.loop.call_soon_threadsafe(_deliver, done)
        except RuntimeError:
            pass
