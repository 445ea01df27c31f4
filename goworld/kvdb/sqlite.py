"""SQLite KVDB: the ``kv`` table of an SQLite file (the embedded default).

It runs on the same kind of worker as the entity storage (:class:`SQLiteWorker`, documented in
:mod:`goworld.storage.sqlite`): one thread per instance owns the connection, jobs run in call
order, jobs queued together share one transaction, WAL with ``synchronous=NORMAL``, and a
busy database (another game writing the same file) is waited for and retried.

``get_or_put`` reads and conditionally inserts inside one ``BEGIN IMMEDIATE`` transaction,
which holds the database's write lock, so it is atomic across processes sharing the file.
The table may share its file with the entity storage (``entities`` table).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from goworld.kvdb.base import check_str
from goworld.sqlite_worker import SQLiteWorker, WorkerStatistics

__all__ = ["SQLiteKVDB"]

_KV_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    key   TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID
"""

_GET = "SELECT value FROM kv WHERE key = ?"


def _get(key: str) -> Callable[[sqlite3.Connection], str | None]:
    def run(conn: sqlite3.Connection) -> str | None:
        row = conn.execute(_GET, (key,)).fetchone()
        return None if row is None else str(row[0])

    return run


def _put(key: str, value: str) -> Callable[[sqlite3.Connection], None]:
    def run(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO kv (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    return run


def _get_or_put(key: str, value: str) -> Callable[[sqlite3.Connection], str | None]:
    # Runs inside BEGIN IMMEDIATE (the job writes): no other connection can write in between.
    def run(conn: sqlite3.Connection) -> str | None:
        row = conn.execute(_GET, (key,)).fetchone()
        if row is not None:
            return str(row[0])
        conn.execute("INSERT INTO kv (key, value) VALUES (?, ?)", (key, value))
        return None

    return run


def _get_range(
    begin: str, end: str | None
) -> Callable[[sqlite3.Connection], list[tuple[str, str]]]:
    def run(conn: sqlite3.Connection) -> list[tuple[str, str]]:
        if end is None:
            rows = conn.execute("SELECT key, value FROM kv WHERE key >= ? ORDER BY key", (begin,))
        else:
            rows = conn.execute(
                "SELECT key, value FROM kv WHERE key >= ? AND key < ? ORDER BY key", (begin, end)
            )
        return [(str(k), str(v)) for k, v in rows]

    return run


class SQLiteKVDB:
    """:class:`~goworld.kvdb.base.KVDB` in the ``kv`` table of an SQLite file.

    Keyword arguments are passed to :class:`SQLiteWorker` (``busy_timeout``, ``retry_for``,
    ``max_batch``).
    """

    def __init__(self, path: str | Path, **worker_options: Any) -> None:
        self._worker = SQLiteWorker(Path(path), _KV_SCHEMA, label="sqlite kvdb", **worker_options)

    @property
    def path(self) -> Path:
        return self._worker.path

    def get(self, key: str) -> asyncio.Future[str | None]:
        check_str("key", key)
        return self._worker.submit(_get(key), writes=False, what=f"get {key!r}")

    def put(self, key: str, value: str) -> asyncio.Future[None]:
        check_str("key", key)
        check_str("value", value)
        return self._worker.submit(_put(key, value), writes=True, what=f"put {key!r}")

    def get_or_put(self, key: str, value: str) -> asyncio.Future[str | None]:
        check_str("key", key)
        check_str("value", value)
        return self._worker.submit(_get_or_put(key, value), writes=True, what=f"get_or_put {key!r}")

    def get_range(self, begin: str, end: str | None) -> asyncio.Future[list[tuple[str, str]]]:
        check_str("begin", begin)
        if end is not None:
            check_str("end", end)
        return self._worker.submit(
            _get_range(begin, end), writes=False, what=f"get_range [{begin!r}, {end!r})"
        )

    def statistics(self) -> WorkerStatistics:
        """The worker's counters (jobs, transactions, largest batch, busy retries, queued)."""
        return self._worker.statistics()

    async def close(self) -> None:
        await self._worker.close()
