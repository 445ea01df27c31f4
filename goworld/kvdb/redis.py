"""Redis KVDB through ``redis.asyncio``, with ``get_range`` (which GoWorld's Redis KVDB lacks).

Layout
    * each value is a Redis string at ``_KV_<key>``, as in GoWorld, so a GoWorld database's
      values can be read with ``get``;
    * a sorted set ``_KVKEYS_`` holds every key with score 0: Redis orders equal-score members
      by their bytes (``memcmp``), which for UTF-8 is Unicode code-point order, so
      ``ZRANGEBYLEX _KVKEYS_ [begin (end`` is exactly the keys of ``[begin, end)``.

    ``put`` and ``get_or_put`` update the value and the index together in one Lua script
    (scripts run atomically), and ``get_range`` reads the index and the values in one script,
    so nobody ever sees a key in one and not the other. ``get_or_put`` is atomic across
    processes: the script reads, and writes only if the key is missing. Keys written by GoWorld
    itself are not in the index, so ``get_range`` does not see them (``get`` does).

    The index key does not start with ``_KV_``, so it never collides with a value key, nor with
    the entity storage's ``_ENT_<type>`` hashes: storage and KVDB may share a database.

The connection, the ``db`` index, ordering and pipelining are those of the entity storage
(:class:`goworld.storage.redis.RedisWorker`): one worker task per instance sends operations in
call order, in pipelines, and a failure is reported as :class:`~goworld.errors.StorageError`
for the resilient wrapper (:mod:`goworld.kvdb.resilient`) to retry.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis

from goworld.kvdb.base import check_str
from goworld.storage.redis import RedisWorker

__all__ = ["INDEX_KEY", "KEY_PREFIX", "RedisKVDB"]

#: Prefix of every value key (GoWorld's).
KEY_PREFIX = "_KV_"
#: The sorted set of every key, for get_range.
INDEX_KEY = "_KVKEYS_"

_PUT = """
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], 0, ARGV[2])
return 1
"""

_GET_OR_PUT = """
local current = redis.call('GET', KEYS[1])
if current then
  return current
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], 0, ARGV[2])
return false
"""

_GET_RANGE = """
local keys = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], ARGV[2])
local out = {}
for i = 1, #keys do
  local value = redis.call('GET', ARGV[3] .. keys[i])
  if value then
    out[#out + 1] = keys[i]
    out[#out + 1] = value
  end
end
return out
"""


def _text(reply: bytes | None) -> str | None:
    return None if reply is None else reply.decode("utf-8")


def _ok(reply: Any) -> None:
    return None


def _pairs(reply: list[bytes]) -> list[tuple[str, str]]:
    it = iter(reply)
    return [(key.decode("utf-8"), value.decode("utf-8")) for key, value in zip(it, it, strict=False)]


class RedisKVDB:
    """:class:`~goworld.kvdb.base.KVDB` in Redis (see the module docs).

    Keyword arguments go to :class:`~goworld.storage.redis.RedisWorker` (``socket_timeout``,
    ``connect_timeout``, ``max_batch``).
    """

    def __init__(self, url: str, db: int = 0, **worker_options: Any) -> None:
        self._worker = RedisWorker(url, db, label="redis kvdb", **worker_options)

    @property
    def describe(self) -> str:
        return self._worker.describe

    @property
    def failing(self) -> bool:
        """True from a connection failure until a command goes through again."""
        return self._worker.failing

    def client(self) -> aioredis.Redis:
        """The underlying redis-py client (tests and tools)."""
        return self._worker.client()

    def get(self, key: str) -> asyncio.Future[str | None]:
        check_str("key", key)
        name = KEY_PREFIX + key
        return self._worker.submit(lambda pipe: pipe.get(name), _text, f"get {key!r}")

    def put(self, key: str, value: str) -> asyncio.Future[None]:
        check_str("key", key)
        check_str("value", value)
        name = KEY_PREFIX + key
        return self._worker.submit(
            lambda pipe: pipe.eval(_PUT, 2, name, INDEX_KEY, value, key), _ok, f"put {key!r}"
        )

    def get_or_put(self, key: str, value: str) -> asyncio.Future[str | None]:
        check_str("key", key)
        check_str("value", value)
        name = KEY_PREFIX + key
        return self._worker.submit(
            lambda pipe: pipe.eval(_GET_OR_PUT, 2, name, INDEX_KEY, value, key),
            _text,
            f"get_or_put {key!r}",
        )

    def get_range(self, begin: str, end: str | None) -> asyncio.Future[list[tuple[str, str]]]:
        check_str("begin", begin)
        if end is not None:
            check_str("end", end)
        low = b"[" + begin.encode("utf-8")
        high = b"+" if end is None else b"(" + end.encode("utf-8")
        return self._worker.submit(
            lambda pipe: pipe.eval(_GET_RANGE, 1, INDEX_KEY, low, high, KEY_PREFIX),
            _pairs,
            f"get_range [{begin!r}, {end!r})",
        )

    async def close(self) -> None:
        await self._worker.close()
