"""``python -m game -gid N -app DIR [-configfile goworld.ini]``: the composition root.

Builds, in order: config, the game package's registry, storage and KVDB, the runtime (and
its migration, services and crontab parts), the nil space, one link per dispatcher. Then it
announces GAME STARTED and runs the periodic jobs (position sync, load reports, saves) until
SIGTERM, when it destroys every entity (saving the persistent ones), waits for storage, and
closes the links. Shutdown runs in reverse order of construction.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time

from game.crontab import Crontab
from game.handlers import GameHandlers
from game.loader import GamePackageError, load_game_package
from game.migration import Migration
from game.runtime import GameRuntime
from game.services import ServiceManager
from goworld import process
from goworld.cluster.envelopes import Envelope, pack
from goworld.cluster.link import DispatcherLink
from goworld.entity import runtime as runtime_binding
from goworld.entity.space import Space
from goworld.errors import StorageError
from goworld.kvdb import open_kvdb
from goworld.proto.msgtypes import MsgType
from goworld.storage import open_storage

logger = logging.getLogger("goworld.game")


def main(argv: list[str] | None = None) -> int:
    args = process.parse_role_args("game", "gid", argv)
    cfg = process.load_config_or_exit(args.configfile)
    if args.id not in cfg.games:
        print(f"game{args.id} is not in {cfg.path}", file=sys.stderr)
        return 2
    gcfg = cfg.games[args.id]
    process.setup_logging(args.log or gcfg.log_level, gcfg.log_file, gcfg.log_stderr)
    app = args.app or os.environ.get("GOWORLD_APP")
    if not app:
        logger.critical("no game package: pass -app DIR")
        return 2
    try:
        registry = load_game_package(app, boot_entity=gcfg.boot_entity)
    except GamePackageError as exc:
        logger.critical("game%d: %s", args.id, exc)
        return 2

    async def serve(stop: asyncio.Event) -> int:
        try:
            storage = open_storage(cfg.storage)
            kvdb = open_kvdb(cfg.kvdb) if cfg.kvdb is not None else None
        except StorageError as exc:
            logger.critical("game%d: %s", args.id, exc)
            return 2
        links: dict[int, DispatcherLink] = {}
        rt = GameRuntime(
            args.id,
            registry,
            num_dispatchers=len(cfg.dispatchers),
            send=lambda did, env: links[did].send(env),
            storage=storage,
            kvdb=kvdb,
            boot_entity=gcfg.boot_entity,
        )
        rt.migration = Migration(rt)
        rt.services = ServiceManager(rt)
        rt.crontab = Crontab(asyncio.get_running_loop())
        runtime_binding.bind(rt)

        def on_ready() -> None:
            logger.info("game%d: deployment ready", args.id)
            nil = rt.nil_space
            if nil is not None:
                nil._safe_hook("on_game_ready")
            rt.services.start()

        handlers = GameHandlers(rt, on_ready)
        connected_once: set[int] = set()

        def hello_for(did: int) -> Envelope:
            eids = [eid for eid in rt.entities if rt.shard(eid) == did]
            info = {
                "reconnect": did in connected_once,
                "restore": False,
                "ban_boot": gcfg.ban_boot_entity,
                "eids": eids,
            }
            connected_once.add(did)
            return Envelope(msgtype=MsgType.SET_GAME_ID, game_id=args.id, payload=pack(info))

        for did, dcfg in cfg.dispatchers.items():
            links[did] = DispatcherLink(
                did,
                str(dcfg.advertise_addr),
                hello=lambda did=did: hello_for(did),
                on_message=handlers.handle,
                reconnect=True,
            )
        rt.create_nil_space()
        for link in links.values():
            link.start()
        await asyncio.gather(*(link.connected.wait() for link in links.values()))
        logger.info(
            "game%d running %s with %d entity types (%s)",
            args.id,
            app,
            len(registry.types),
            process.pid_info(),
        )
        process.announce_started("game")
        jobs = [
            asyncio.create_task(_every(gcfg.position_sync_interval_ms / 1000, rt.collect_syncs)),
            asyncio.create_task(_every(1.0, _lbc_reporter(rt))),
            asyncio.create_task(_every(float(gcfg.save_interval), rt.save_all)),
        ]
        await stop.wait()
        for job in jobs:
            job.cancel()
        await _shutdown(rt, links, storage, kvdb)
        return 0

    return process.run_loop(serve)


async def _every(interval: float, fn: object) -> None:
    assert callable(fn)
    while True:
        await asyncio.sleep(interval)
        try:
            fn()
        except Exception:
            logger.exception("periodic job %r failed", fn)


def _lbc_reporter(rt: GameRuntime) -> object:
    last = [time.monotonic(), time.process_time()]

    def report() -> None:
        now, cpu = time.monotonic(), time.process_time()
        percent = 100.0 * (cpu - last[1]) / max(now - last[0], 1e-6)
        last[0], last[1] = now, cpu
        rt.send_to_all_dispatchers(Envelope(msgtype=MsgType.GAME_LBC_INFO, payload=pack(percent)))

    return report


async def _shutdown(rt: GameRuntime, links: dict[int, DispatcherLink], storage: object, kvdb: object) -> None:
    """Destroy every entity (persistent ones are saved), wait for storage, close the links."""
    entities = list(rt.entities.values())
    logger.info("game%d stopping: destroying %d entities", rt.game_id, len(entities))
    for entity in entities:
        if not isinstance(entity, Space):
            rt.destroy_entity(entity)
    for entity in list(rt.entities.values()):
        rt.destroy_entity(entity)
    rt.collect_syncs()
    if rt.pending_saves:
        await asyncio.wait(list(rt.pending_saves), timeout=60)
    for backend in (storage, kvdb):
        close = getattr(backend, "close", None)
        if close is not None:
            try:
                await close()
            except Exception:
                logger.exception("closing %r failed", backend)
    for link in links.values():
        await link.close(flush_timeout=5.0)
    logger.info("game%d stopped", rt.game_id)


if __name__ == "__main__":
    sys.exit(main())
