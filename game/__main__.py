"""``python -m game -gid N -app DIR [-configfile goworld.ini]``: the composition root.

Builds, in order: config, the game package's registry, storage and KVDB, the runtime (and
its migration, services and crontab parts), the nil space, one link per dispatcher. Then it
announces GAME STARTED and runs the periodic jobs (position sync, load reports, saves) until
SIGTERM, when it destroys every entity (saving the persistent ones), waits for storage, and
closes the links. Shutdown runs in reverse order of construction.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

from game import freeze
from game.crontab import Crontab
from game.hotswap import reload_in_place
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

#: The CLI's bookkeeping directory, relative to the cluster root (the working directory).
RUN_DIR = ".goworld"


def main(argv: list[str] | None = None) -> int:
    args, cfg, gcfg = process.start_role("game", argv)
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
        state = None
        if args.restore:
            if args.after_pid:
                run_dir = Path(RUN_DIR)
                run_dir.mkdir(exist_ok=True)
                freeze.write_atomically(run_dir / f"game{args.id}.standby", str(os.getpid()).encode())
                await _wait_for_freeze(args.after_pid, freeze.freeze_path(args.id))
            try:
                state = freeze.load(freeze.freeze_path(args.id))
            except (OSError, freeze.FreezeError) as exc:
                logger.critical("game%d cannot restore: %s", args.id, exc)
                return 2
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
        rt.services = ServiceManager(rt, on_serving=lambda: control.announce_serving())
        rt.crontab = Crontab(asyncio.get_running_loop())
        runtime_binding.bind(rt)

        def on_ready() -> None:
            logger.info("game%d: deployment ready", args.id)
            nil = rt.nil_space
            if nil is not None:
                nil._safe_hook("on_game_ready")
            rt.services.start()

        control = GameControl(rt, links, stop, app)
        handlers = GameHandlers(rt, on_ready, control.freeze_acked)
        connected_once: set[int] = set()

        def hello_for(did: int) -> Envelope:
            eids = [eid for eid in rt.entities if rt.shard(eid) == did]
            info = {
                "reconnect": did in connected_once,
                "restore": state is not None and did not in connected_once,
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
        if state is not None:
            t0 = time.perf_counter()
            try:
                freeze.restore(rt, state)
                logger.info("game%d restore took %.0f ms", args.id, (time.perf_counter() - t0) * 1000)
            except Exception as exc:
                logger.critical("game%d cannot restore: %s", args.id, exc, exc_info=True)
                return 2
        else:
            rt.create_nil_space()
        for link in links.values():
            link.start()
        await asyncio.gather(*(link.connected.wait() for link in links.values()))
        if state is not None:
            freeze.freeze_path(args.id).replace(freeze.freeze_path(args.id).with_suffix(".restored"))
            logger.info("game%d back on every dispatcher", args.id)
        logger.info(
            "game%d running %s with %d entity types (%s)",
            args.id,
            app,
            len(registry.types),
            process.pid_info(),
        )
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, control.request_freeze)
        loop.add_signal_handler(signal.SIGUSR1, control.request_in_place_reload)
        process.announce_started("game")
        jobs = [
            asyncio.create_task(_every(gcfg.position_sync_interval_ms / 1000, rt.collect_syncs)),
            asyncio.create_task(_every(1.0, _lbc_reporter(rt))),
            asyncio.create_task(_every(float(gcfg.save_interval), rt.save_all)),
        ]
        await stop.wait()
        for job in jobs:
            job.cancel()
        if control.frozen is not None:
            await _write_freeze(rt, links, storage, kvdb, control.frozen)
        else:
            await _shutdown(rt, links, storage, kvdb)
        return 0

    return process.run_loop(serve)


class GameControl:
    """The operator's signals: SIGHUP freezes the game (reload), SIGUSR1 swaps code in place."""

    def __init__(
        self, rt: GameRuntime, links: dict[int, DispatcherLink], stop: asyncio.Event, app: str
    ) -> None:
        self.rt = rt
        self.links = links
        self.stop = stop
        self.app = app
        self.state = "running"
        self.acks: set[int] = set()
        self.frozen: bytes | None = None
        self.run_dir = Path(RUN_DIR)

    def announce_serving(self) -> None:
        """Deployment ready and every service shard known: ``goworld start`` waits for this."""
        services = self.rt.registry.services
        shards = sum(desc.service_shards for desc in services.values())
        logger.info(
            "game%d serving: deployment ready, %d services with %d shards",
            self.rt.game_id, len(services), shards,
        )
        self._write_status("serving", json.dumps({"services": len(services), "shards": shards}))

    def _status_file(self, kind: str) -> Path:
        return self.run_dir / f"game{self.rt.game_id}.{kind}"

    def request_freeze(self) -> None:
        if self.state != "running":
            logger.warning("game%d: freeze requested while %s: ignored", self.rt.game_id, self.state)
            return
        logger.info("game%d: freezing (asking every dispatcher to hold its traffic)", self.rt.game_id)
        self._status_file("freeze-error").unlink(missing_ok=True)
        self.state = "freezing"
        self.acks = set()
        self.rt.send_to_all_dispatchers(
            Envelope(msgtype=MsgType.START_FREEZE_GAME, game_id=self.rt.game_id)
        )

    def freeze_acked(self, dispatcher_id: int) -> None:
        if self.state != "freezing":
            return
        self.acks.add(dispatcher_id)
        if len(self.acks) == len(self.links):
            self.state = "quiescing"
            asyncio.get_running_loop().create_task(self._freeze_when_quiet())

    async def _freeze_when_quiet(self, timeout: float = 10.0) -> None:
        """Nothing arrives from the dispatchers any more: let posted callbacks and storage/KVDB
        callbacks finish (GoWorld drains posts and async jobs), then snapshot in one step."""
        rt = self.rt
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            rt.drain_posts()
            if not rt.pending_async:
                break
            if loop.time() > deadline:
                logger.warning(
                    "game%d: freezing with %d storage/KVDB operations unfinished",
                    rt.game_id,
                    len(rt.pending_async),
                )
                break
            await asyncio.wait(list(rt.pending_async), timeout=max(0.0, deadline - loop.time()))
            await asyncio.sleep(0)
        t0 = time.perf_counter()
        data = freeze.run_freeze(rt, self._freeze_failed)
        if data is not None:
            logger.info(
                "game%d snapshot of %d entities took %.0f ms",
                rt.game_id, len(rt.entities), (time.perf_counter() - t0) * 1000,
            )
            rt.halted = True
            self.frozen = data
            self.state = "frozen"
            self.stop.set()

    def _freeze_failed(self, reason: str) -> None:
        logger.error("game%d: freeze failed, the game keeps running: %s", self.rt.game_id, reason)
        self.state = "running"
        self.rt.send_to_all_dispatchers(
            Envelope(msgtype=MsgType.CANCEL_FREEZE_GAME, game_id=self.rt.game_id)
        )
        self._write_status("freeze-error", reason)

    def request_in_place_reload(self) -> None:
        self.rt.post(self._reload_in_place)

    def _reload_in_place(self) -> None:
        try:
            summary = reload_in_place(self.rt, self.app)
            result = {"ok": True, "message": summary}
        except GamePackageError as exc:
            logger.error("game%d: in-place reload rejected, old code kept: %s", self.rt.game_id, exc)
            result = {"ok": False, "message": str(exc)}
        self._write_status("reload", json.dumps(result))

    def _write_status(self, kind: str, text: str) -> None:
        try:
            self.run_dir.mkdir(exist_ok=True)
            freeze.write_atomically(self._status_file(kind), text.encode("utf-8"))
        except OSError as exc:
            logger.error("cannot write %s: %s", self._status_file(kind), exc)


async def _write_freeze(
    rt: GameRuntime, links: dict[int, DispatcherLink], storage: object, kvdb: object, data: bytes
) -> None:
    """Wait for queued saves, write the freeze file, then close everything without destroying."""
    rt.collect_syncs()
    if rt.pending_saves:
        await asyncio.wait(list(rt.pending_saves), timeout=60)
    path = freeze.freeze_path(rt.game_id)
    freeze.write_atomically(path, data)
    logger.info("game%d frozen: %d entities, %d bytes in %s", rt.game_id, len(rt.entities), len(data), path)
    for backend in (storage, kvdb):
        close = getattr(backend, "close", None)
        if close is not None:
            await close()
    for link in links.values():
        await link.close(flush_timeout=5.0)
    # Skip the interpreter's teardown of a large heap: the standby process is taking over.
    logging.shutdown()
    os._exit(0)


async def _wait_for_freeze(pid: int, path: Path, timeout: float = 300.0) -> None:
    """A standby restore process, everything imported: wait for the freezing process's file
    (written atomically, so its presence means complete) or for that process to end."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if path.exists():
            return
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                if f.read().rsplit(b") ", 1)[1][:1] == b"Z":
                    return  # exited, not yet reaped
        except (OSError, IndexError):
            return
        await asyncio.sleep(0.002)
    logger.error("process %d is still running after %.0f s", pid, timeout)


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
