"""Entity storage and KVDB throughput per backend (not a test; prints figures).

Usage: .venv/bin/python scripts/bench_storage.py [--entities 10000] [--size 1024]
           [--kv-ops 20000] [--rounds 3] [--backends sqlite,redis] [--mongodb-url URL] [--raw]

Each backend is opened the way a game opens it (``open_storage``/``open_kvdb``, so behind the
resilient wrapper; ``--raw`` adds rows for the bare backends to show the wrapper's cost):

* SQLite: a file in a temporary directory (WAL, ``synchronous=NORMAL``);
* Redis: a ``redis-server`` this script starts on a free loopback port in a temporary
  directory, without persistence (``--redis-aof`` turns on ``appendonly`` with ``everysec``);
* MongoDB: only with ``--mongodb-url`` (a server you run), in a database of its own that is
  dropped afterwards; reported as skipped while the backend is not available.

Figures, each the median of ``rounds`` runs:

* ``save/s``: ``entities`` records of about ``size`` bytes (msgpack) saved as a game's
  ``save_all`` does (all called at once, then awaited), over existing records;
* ``load/s``: the same records loaded all at once; ``load 1by1/s``: loaded one at a time,
  each awaited before the next (the latency of one round trip);
* ``list_ids``: one ``list_ids`` of the type, in milliseconds;
* KVDB: ``put/s``, ``get/s``, ``get_or_put/s`` over ``kv-ops`` keys (called at once),
  and ``get_range`` of all of them in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from goworld.config import KVDBConfig, StorageConfig
from goworld.errors import StorageError
from goworld.kvdb import KVDB, open_kvdb
from goworld.storage import EntityStorage, open_storage
from goworld.storage.base import pack_data

Opener = Callable[[], Any]


def record(i: int, size: int) -> dict[str, Any]:
    """A plausible avatar record of about ``size`` bytes once packed."""
    data: dict[str, Any] = {
        "name": f"player-{i:06d}",
        "level": i % 100,
        "exp": i * 37,
        "hp": 100.0,
        "pos": [float(i % 1000), 0.0, float(i // 1000)],
        "bag": {f"item{k}": k * 3 for k in range(12)},
        "quests": [{"id": q, "done": q % 2 == 0, "step": q * 2} for q in range(6)],
        "flags": [True, False, None],
        "blob": b"",
    }
    pad = size - len(pack_data(data))
    data["blob"] = b"x" * max(0, pad - 2)
    return data


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def redis_server(directory: Path, aof: bool) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed: run scripts/install-test-deps")
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "yes" if aof else "no", "--appendfsync", "everysec",
            "--dir", str(directory)]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"redis-server did not start on port {port}")
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def timed(fn: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await fn()
    return time.perf_counter() - start


async def bench_storage(open_one: Opener, n: int, size: int, rounds: int) -> dict[str, float]:
    records = [record(i, size) for i in range(n)]
    ids = [f"{i:08d}-{uuid.uuid4().hex[:8]}" for i in range(n)]
    kind = f"Avatar{uuid.uuid4().hex[:6]}"  # a type of its own: runs do not see each other
    storage: EntityStorage = open_one()
    try:
        await asyncio.gather(*(storage.save(kind, e, r) for e, r in zip(ids, records, strict=True)))
        saves, loads, one_by_one, listing = [], [], [], []
        for _ in range(rounds):

            async def save_all() -> None:
                await asyncio.gather(*(storage.save(kind, e, r) for e, r in zip(ids, records, strict=True)))

            async def load_all() -> None:
                loaded = await asyncio.gather(*(storage.load(kind, e) for e in ids))
                assert loaded[-1] == records[-1]

            async def load_some() -> None:
                for e in ids[:2000]:
                    await storage.load(kind, e)

            async def list_all() -> None:
                assert len(await storage.list_ids(kind)) == n

            saves.append(n / await timed(save_all))
            loads.append(n / await timed(load_all))
            one_by_one.append(min(n, 2000) / await timed(load_some))
            listing.append(await timed(list_all) * 1000)
    finally:
        await storage.close()
    return {
        "save/s": statistics.median(saves),
        "load/s": statistics.median(loads),
        "load 1by1/s": statistics.median(one_by_one),
        "list_ids ms": statistics.median(listing),
    }


async def bench_kvdb(open_one: Opener, n: int, rounds: int) -> dict[str, float]:
    kvdb: KVDB = open_one()
    prefix = f"mail{uuid.uuid4().hex[:6]}"  # keys of its own: runs do not see each other
    keys = [f"{prefix}${i % 97:03d}${i:010d}" for i in range(n)]
    value = "v" * 40
    try:
        puts, gets, gops, ranges = [], [], [], []
        for r in range(rounds):

            async def put_all() -> None:
                await asyncio.gather(*(kvdb.put(k, value) for k in keys))

            async def get_all() -> None:
                got = await asyncio.gather(*(kvdb.get(k) for k in keys))
                assert got[-1] == value

            async def get_or_put_all() -> None:
                await asyncio.gather(*(kvdb.get_or_put(f"gop{r}${k}", value) for k in keys))  # noqa: B023 (awaited in this iteration)

            async def range_all() -> None:
                assert len(await kvdb.get_range(prefix + "$", prefix + "%")) == n

            puts.append(n / await timed(put_all))
            gets.append(n / await timed(get_all))
            gops.append(n / await timed(get_or_put_all))
            ranges.append(await timed(range_all) * 1000)
    finally:
        await kvdb.close()
    return {
        "put/s": statistics.median(puts),
        "get/s": statistics.median(gets),
        "get_or_put/s": statistics.median(gops),
        "get_range ms": statistics.median(ranges),
    }


def _raw(opened: Any) -> Any:
    return getattr(opened, "inner", opened)


async def run(args: argparse.Namespace, tmp: Path) -> None:
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if args.mongodb_url and "mongodb" not in backends:
        backends.append("mongodb")
    rows: list[tuple[str, dict[str, float]]] = []
    kv_rows: list[tuple[str, dict[str, float]]] = []
    with contextmanager_for_redis(backends, tmp, args.redis_aof) as redis_url:
        for backend in backends:
            mongo_db = f"goworld_bench_{uuid.uuid4().hex[:8]}"
            if backend == "sqlite":
                s_cfg = StorageConfig(type="sqlite", path=tmp / "bench.db")
                k_cfg = KVDBConfig(type="sqlite", path=tmp / "bench_kv.db")
            elif backend == "redis":
                s_cfg = StorageConfig(type="redis", url=redis_url, db="1")
                k_cfg = KVDBConfig(type="redis", url=redis_url, db="2")
            elif backend == "mongodb":
                if not args.mongodb_url:
                    print("mongodb: skipped (give --mongodb-url)")
                    continue
                s_cfg = StorageConfig(type="mongodb", url=args.mongodb_url, db=mongo_db)
                k_cfg = KVDBConfig(
                    type="mongodb", url=args.mongodb_url, db=mongo_db, collection="__kv__"
                )
            else:
                raise SystemExit(f"unknown backend {backend!r}")
            try:
                open_storage(s_cfg)  # only checks the backend exists: nothing connects yet
            except StorageError as exc:
                print(f"{backend}: skipped ({exc})")
                continue
            openers: list[tuple[str, Opener, Opener]] = [
                (backend, lambda c=s_cfg: open_storage(c), lambda c=k_cfg: open_kvdb(c))
            ]
            if args.raw:
                openers.append(
                    (
                        f"{backend} (raw)",
                        lambda c=s_cfg: _raw(open_storage(c)),
                        lambda c=k_cfg: _raw(open_kvdb(c)),
                    )
                )
            try:
                for label, open_s, open_k in openers:
                    rows.append(
                        (label, await bench_storage(open_s, args.entities, args.size, args.rounds))
                    )
                    kv_rows.append((label, await bench_kvdb(open_k, args.kv_ops, args.rounds)))
            finally:
                if backend == "mongodb":
                    await drop_mongodb(args.mongodb_url, mongo_db)
    print_table(
        f"entity storage: {args.entities} records of ~{args.size} B, median of {args.rounds}", rows
    )
    print_table(f"KVDB: {args.kv_ops} keys, median of {args.rounds}", kv_rows)


@contextmanager
def contextmanager_for_redis(backends: list[str], tmp: Path, aof: bool) -> Iterator[str]:
    if "redis" not in backends:
        yield ""
        return
    directory = tmp / "redis"
    directory.mkdir()
    with redis_server(directory, aof) as url:
        yield url


async def drop_mongodb(url: str, db: str) -> None:
    try:
        from pymongo import AsyncMongoClient
    except ImportError:
        return
    client: Any = AsyncMongoClient(url)
    try:
        await client.drop_database(db)
    finally:
        await client.close()


def print_table(title: str, rows: list[tuple[str, dict[str, float]]]) -> None:
    if not rows:
        return
    columns = list(rows[0][1])
    print(f"\n{title}")
    print(f"{'backend':<16}" + "".join(f"{c:>15}" for c in columns))
    for label, figures in rows:
        print(f"{label:<16}" + "".join(f"{figures[c]:>15,.0f}" for c in columns))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entities", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=1024, help="bytes per record (msgpack)")
    parser.add_argument("--kv-ops", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,redis")
    parser.add_argument("--mongodb-url", default="", help="also bench MongoDB on this server")
    parser.add_argument("--redis-aof", action="store_true", help="appendonly yes (everysec)")
    parser.add_argument("--raw", action="store_true", help="also bench the unwrapped backends")
    args = parser.parse_args()
    print(
        f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
        f"record ~{len(pack_data(record(0, args.size)))} B packed"
    )
    with tempfile.TemporaryDirectory(prefix="goworld-bench-") as tmp:
        asyncio.run(run(args, Path(tmp)))


if __name__ == "__main__":
    sys.exit(main())
