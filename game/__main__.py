"""``python -m game -gid N -app DIR [-configfile goworld.ini]``: the composition root.

``main`` loads the config and the game package's registry; ``_serve`` then builds, in order:
storage and KVDB (``_open_backends``), the runtime with its migration, services and crontab
parts, the operator's ``GameControl``, the message handlers and one link per dispatcher
(``_build``), the state to restore (``_load_state``: with ``-restore``, the freeze file, after
the standby handshake when ``-after-pid`` is given: a standby has everything built before it
says it is ready, so that the clients' pause holds only the restore itself), the restored
entities or a fresh nil space (``_restore_or_create``); it connects every link (``_connect``),
announces GAME STARTED and runs the periodic jobs (position sync, load reports, saves;
``_start_jobs``) until SIGTERM or a completed freeze. Then ``_stop``: after SIGTERM
:func:`game.shutdown.shutdown` makes sure what the dispatchers had for the game is handled,
destroys every entity (saving the persistent ones), waits for storage and closes the links;
after a freeze ``_write_freeze`` writes the freeze file and closes without destroying.
Shutdown runs in reverse order of construction. The files, flags and signals shared with the
CLI are ``goworld.runctl``'s.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from game import freeze, shutdown
from game.call_limits import CallPolicy
from game.handlers import GameHandlers
from game.hotswap import reload_in_place
from game.loader import GamePackageError, load_game_package
from game.metrics import GameFigures
from game.runtime import GameRuntime
from goworld import ops_http, process, runctl
from goworld.cluster.envelopes import Envelope, pack
from goworld.cluster.link import DispatcherLink
from goworld.config import ClusterConfig, GameConfig
from goworld.entity import runtime as runtime_binding
from goworld.entity.registry import Registry
from goworld.errors import StorageError
from goworld.kvdb import open_kvdb
from goworld.process import RoleArgs
from goworld.proto.msgtypes import MsgType
from goworld.runctl import GameState, ProcFile, ReloadResult
from goworld.storage import open_storage
from goworld.storage.base import redact_url
from goworld.storage.resilient import DEFAULT_CLOSE_TIMEOUT, is_transient

logger = logging.getLogger("goworld.game")


class _StartupFailed(Exception):
    """Logged as critical by ``_serve``, which then exits with status 2."""


@dataclass
class _Boot:
    """What ``main`` hands to the event loop: flags, config, this game's section, the code."""

    args: RoleArgs
    cfg: ClusterConfig
    gcfg: GameConfig
    app: str
    registry: Registry

    @property
    def game_id(self) -> int:
        return self.args.id


@dataclass
class _Game:
    """The parts ``_build`` wires together; shut down in reverse order."""

    rt: GameRuntime
    control: GameControl
    links: dict[int, DispatcherLink]
    storage: object
    kvdb: object
    jobs: list[asyncio.Task[None]] = field(default_factory=list)


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
    boot = _Boot(args, cfg, gcfg, app, registry)
    return process.run_loop(lambda stop: _serve(boot, stop), alive=runctl.proc_name("game", args.id))


async def _serve(boot: _Boot, stop: asyncio.Event) -> int:
    try:
        storage, kvdb = _open_backends(boot)
        await _probe_backends(boot, storage, kvdb)
        game = _build(boot, boot.args.restore, storage, kvdb, stop)
        state, prebuilt = await _load_state(boot, game.rt)
        _restore_or_create(game, state, prebuilt)
    except _StartupFailed:
        return 2
    await _connect(game, restored=state is not None)
    logger.info(
        "game%d running %s with %d entity types (%s)",
        boot.game_id, boot.app, len(boot.registry.types), process.pid_info(),
    )
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(runctl.FREEZE_SIGNAL, game.control.request_freeze)
    loop.add_signal_handler(runctl.RELOAD_SIGNAL, game.control.request_in_place_reload)
    figures = GameFigures(game.rt, game.links, {"storage": game.storage, "kvdb": game.kvdb})
    ops = ops_http.start_ops_server("game", boot.game_id, boot.cfg, boot.gcfg.http_addr, figures)
    process.announce_started("game")
    _start_jobs(game, boot.gcfg)
    await stop.wait()
    await _stop(game)
    await ops.close()
    return 0


async def _load_state(
    boot: _Boot, rt: GameRuntime
) -> tuple[dict[str, Any] | None, freeze.Prebuilt | None]:
    """With -restore, the freeze file's state (a standby first tells the CLI it is up and
    waits for the freezing process, filling the AOIs from the layout that process writes
    first); else None."""
    args = boot.args
    if not args.restore:
        return None, None
    path = runctl.freeze_file(Path.cwd(), args.id)
    prebuilt = None
    if args.after_pid:
        layout = _layout_file(Path.cwd(), args.id)
        layout.unlink(missing_ok=True)  # an earlier reload's
        name = runctl.proc_name("game", args.id)
        runctl.write_status(runctl.run_dir(Path.cwd()), name, ProcFile.STANDBY, str(os.getpid()))
        prebuilt = await _wait_for_freeze(args.after_pid, path, layout, rt)
        layout.unlink(missing_ok=True)  # not seen before the freeze file
    t0 = time.perf_counter()
    try:
        state = freeze.load(path)
    except (OSError, freeze.FreezeError) as exc:
        logger.critical("game%d cannot restore: %s", args.id, exc)
        raise _StartupFailed from exc
    logger.info("game%d read %s in %.0f ms", args.id, path.name, (time.perf_counter() - t0) * 1000)
    return state, prebuilt


def _layout_file(root: Path, game_id: int) -> Path:
    """Where a freezing game writes its AOI layout (:func:`game.freeze.aoi_layout`) for the
    standby, before its snapshot."""
    return runctl.freeze_file(root, game_id).with_suffix(".aoi")


def _open_backends(boot: _Boot) -> tuple[object, object]:
    cfg = boot.cfg
    try:
        storage = open_storage(cfg.storage)
        kvdb = open_kvdb(cfg.kvdb) if cfg.kvdb is not None else None
    except StorageError as exc:
        logger.critical("game%d: %s", boot.game_id, exc)
        raise _StartupFailed from exc
    return storage, kvdb


#: Seconds the start-up read of each backend may take (then the game starts all the same).
PROBE_TIMEOUT = 10.0
_PROBE_KEY = "__goworld_probe__"


async def _probe_backends(boot: _Boot, storage: object, kvdb: object) -> None:
    """One read from each backend's own client, past the retry queue: an error that retrying
    cannot mend (a Redis ``db`` the server does not have, a file that is not a SQLite
    database, a refused password) stops the game at start, naming the section, instead of
    failing every save while the cluster says it serves. An outage (the server down or slow)
    only warns: the game starts, its operations held until the server answers."""
    checks: list[tuple[str, object, str, tuple[str, ...]]] = [
        ("storage", getattr(storage, "inner", storage), "load", (_PROBE_KEY, "0"))
    ]
    if kvdb is not None:
        checks.append(("kvdb", getattr(kvdb, "inner", kvdb), "get", (_PROBE_KEY,)))
    for section, backend, method, args in checks:
        what = f"{boot.cfg.path} [{section}] {describe_backend(boot.cfg, section)}"
        try:
            await asyncio.wait_for(getattr(backend, method)(*args), PROBE_TIMEOUT)
        except TimeoutError:
            logger.warning("game%d: %s did not answer a first read within %.0f s: starting all the "
                           "same (its operations wait for it)", boot.game_id, what, PROBE_TIMEOUT)
        except Exception as exc:
            if is_transient(exc):
                logger.warning("game%d: %s is not reachable yet (%s): starting all the same (its "
                               "operations wait for it)", boot.game_id, what, exc)
                continue
            logger.critical("game%d: %s cannot be used: %s", boot.game_id, what, exc)
            raise _StartupFailed from exc


def describe_backend(cfg: ClusterConfig, section: str) -> str:
    """``type = ...`` and where, of ``[storage]`` or ``[kvdb]``, as the ini says."""
    backend = cfg.storage if section == "storage" else cfg.kvdb
    if backend is None:
        return "(none)"
    parts = [f"type = {backend.type}"]
    for key in ("url", "db", "path", "collection"):
        value = getattr(backend, key, "")
        if value:
            parts.append(f"{key} = {redact_url(str(value)) if key == 'url' else value}")
    return ", ".join(parts)


def _build(
    boot: _Boot, restoring: bool, storage: object, kvdb: object, stop: asyncio.Event
) -> _Game:
    """The runtime and its parts, the operator's control, the handlers, the links (not yet
    started)."""
    links: dict[int, DispatcherLink] = {}
    rt = GameRuntime(
        boot.game_id,
        boot.registry,
        num_dispatchers=len(boot.cfg.dispatchers),
        send=lambda did, env: links[did].send(env),
        storage=storage,
        kvdb=kvdb,
        boot_entity=boot.gcfg.boot_entity,
        on_serving=lambda: control.announce_serving(),
        call_policy=CallPolicy.from_config(boot.gcfg),
    )
    rt.services.failover_timeout = boot.gcfg.service_failover_timeout
    control = GameControl(rt, links, stop, boot.app)
    runtime_binding.bind(rt)

    def on_ready() -> None:
        logger.info("game%d: deployment ready", rt.game_id)
        nil = rt.nil_space
        if nil is not None:
            nil.run_hook("on_game_ready")
        rt.services.start()

    handlers = GameHandlers(rt, on_ready, control.freeze_acked, control.barrier.answered)
    hello = _hello_factory(rt, restoring, boot.gcfg.ban_boot_entity)
    signer = process.cluster_signer(boot.cfg, "game", boot.game_id)
    tls = process.cluster_tls(boot.cfg, f"game{boot.game_id}")
    for did, dcfg in boot.cfg.dispatchers.items():
        links[did] = DispatcherLink(
            did,
            str(dcfg.advertise_addr),
            hello=functools.partial(hello, did),
            on_message=handlers.handle,
            reconnect=True,
            auth=signer,
            tls=tls,
            flush_interval=boot.gcfg.link_flush_interval_ms / 1000,
        )
    return _Game(rt, control, links, storage, kvdb)


def _hello_factory(
    rt: GameRuntime, restoring: bool, ban_boot: bool
) -> Callable[[int], Envelope]:
    """SET_GAME_ID for a (re)connecting link: a first connection after a restore says so,
    a later one is a reconnect; both list the entities this game has on that shard and the
    kvreg entries that dispatcher keeps, as this game knows them."""
    connected_once: set[int] = set()

    def hello_for(did: int) -> Envelope:
        eids = [eid for eid in rt.entities if rt.outbox.shard(eid) == did]
        info = {
            "reconnect": did in connected_once,
            "restore": restoring and did not in connected_once,
            "ban_boot": ban_boot,
            "eids": eids,
            # what this game knows of that dispatcher's kvreg: a restarted dispatcher starts
            # empty and rebuilds it from the games (services keep their shards)
            "kvreg": {k: v for k, v in rt.kvreg.items() if rt.outbox.kvreg_shard(k) == did},
        }
        connected_once.add(did)
        return Envelope(msgtype=MsgType.SET_GAME_ID, game_id=rt.game_id, payload=pack(info))

    return hello_for


def _restore_or_create(
    game: _Game, state: dict[str, Any] | None, prebuilt: freeze.Prebuilt | None = None
) -> None:
    rt = game.rt
    if state is None:
        rt.create_nil_space()
        return
    t0 = time.perf_counter()
    try:
        freeze.restore(rt, state, prebuilt)
    except Exception as exc:
        logger.critical("game%d cannot restore: %s", rt.game_id, exc, exc_info=True)
        raise _StartupFailed from exc
    logger.info("game%d restore took %.0f ms", rt.game_id, (time.perf_counter() - t0) * 1000)
    game.control.restored_at = time.perf_counter()


async def _connect(game: _Game, *, restored: bool) -> None:
    """Start every link and wait until each dispatcher has taken the game; a restored game
    then sets its freeze file aside."""
    for link in game.links.values():
        link.start()
    await asyncio.gather(*(link.connected.wait() for link in game.links.values()))
    if restored:
        gid = game.rt.game_id
        runctl.freeze_file(Path.cwd(), gid).replace(runctl.restored_file(Path.cwd(), gid))
        logger.info(
            "game%d back on every dispatcher (%.0f ms after the restore)",
            gid, (time.perf_counter() - game.control.restored_at) * 1000,
        )


async def _stop(game: _Game) -> None:
    for job in game.jobs:
        job.cancel()
    game.rt.client_calls.summarise()  # refusals of the last, unfinished interval
    if game.control.frozen is not None:
        await _write_freeze(game.rt, game.links, game.storage, game.kvdb, game.control.frozen)
    else:
        report = shutdown.status_writer(
            lambda text: runctl.write_status(
                game.control.run_dir, game.control.name, ProcFile.STOPPING, text
            )
        )
        await shutdown.shutdown(
            game.rt, game.links, (game.storage, game.kvdb), game.control.barrier, report
        )


def _start_jobs(game: _Game, gcfg: GameConfig) -> None:
    rt = game.rt
    game.jobs = [
        asyncio.create_task(_every(gcfg.position_sync_interval_ms / 1000, rt.collect_syncs)),
        asyncio.create_task(_every(1.0, _lbc_reporter(rt))),
        asyncio.create_task(_every(float(gcfg.save_interval), rt.save_all)),
    ]


class GameControl:
    """The operator's signals: FREEZE_SIGNAL (SIGHUP) freezes the game (reload),
    RELOAD_SIGNAL (SIGUSR1) swaps code in place. Results go to ``.goworld`` status files."""

    def __init__(
        self, rt: GameRuntime, links: dict[int, DispatcherLink], stop: asyncio.Event, app: str
    ) -> None:
        self.rt = rt
        self.links = links
        self.stop = stop
        self.app = app
        self.state = GameState.RUNNING
        self.acks: set[int] = set()
        self.frozen: bytes | None = None
        #: when the restore ended (perf_counter), for the log
        self.restored_at = 0.0
        self.run_dir = runctl.run_dir(Path.cwd())
        self.name = runctl.proc_name("game", rt.game_id)
        self.barrier = shutdown.StopBarrier(rt.game_id)

    def announce_serving(self) -> None:
        """Deployment ready and every service shard known: ``goworld start`` waits for this."""
        services = self.rt.registry.services
        shards = sum(desc.service_shards for desc in services.values())
        logger.info(
            "game%d serving: deployment ready, %d services with %d shards",
            self.rt.game_id, len(services), shards,
        )
        serving = {"services": len(services), "shards": shards}
        self._write_status(ProcFile.SERVING, json.dumps(serving))

    def request_freeze(self) -> None:
        if self.state is not GameState.RUNNING:
            logger.warning(
                "game%d: freeze requested while %s: ignored", self.rt.game_id, self.state.value
            )
            return
        logger.info("game%d: freezing (asking every dispatcher to hold its traffic)", self.rt.game_id)
        runctl.clear_status(self.run_dir, self.name, ProcFile.FREEZE_ERROR)
        self.state = GameState.FREEZING
        self.acks = set()
        self.rt.outbox.to_all(
            Envelope(msgtype=MsgType.START_FREEZE_GAME, game_id=self.rt.game_id)
        )

    def freeze_acked(self, dispatcher_id: int) -> None:
        if self.state is not GameState.FREEZING:
            return
        self.acks.add(dispatcher_id)
        if len(self.acks) == len(self.links):
            self.state = GameState.QUIESCING
            asyncio.get_running_loop().create_task(self._freeze_when_quiet())

    async def _freeze_when_quiet(self, timeout: float = 10.0) -> None:
        """Nothing arrives from the dispatchers any more: let posted callbacks and storage/KVDB
        callbacks finish (GoWorld drains posts and async jobs), let the links write what the
        game already sent, then snapshot in one step."""
        rt = self.rt
        await shutdown.drain(rt, timeout, "freezing")
        await self._flush_links()
        await shutdown.drain(rt, timeout, "freezing")
        t0 = time.perf_counter()
        data = freeze.run_freeze(rt, self._freeze_failed, early=self._write_layout)
        if data is not None:
            logger.info(
                "game%d snapshot of %d entities took %.0f ms",
                rt.game_id, len(rt.entities), (time.perf_counter() - t0) * 1000,
            )
            rt.halted = True
            self.frozen = data
            self.state = GameState.FROZEN
            self.stop.set()

    async def _flush_links(self, timeout: float = 0.05) -> None:
        """Replies to the calls handled just before the hold are still in the links' queues
        (a link writes once per interval): out with them, or their clients would wait for
        the snapshot and the restore too."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while any(link.backlog_bytes for link in self.links.values()) and loop.time() < deadline:
            await asyncio.sleep(0.001)

    def _write_layout(self, data: bytes) -> None:
        """The AOI layout for the standby (no fsync: only a head start; renamed when whole)."""
        path = _layout_file(Path.cwd(), self.rt.game_id)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)

    def _freeze_failed(self, reason: str) -> None:
        _layout_file(Path.cwd(), self.rt.game_id).unlink(missing_ok=True)
        logger.error("game%d: freeze failed, the game keeps running: %s", self.rt.game_id, reason)
        self.state = GameState.RUNNING
        self.rt.outbox.to_all(
            Envelope(msgtype=MsgType.CANCEL_FREEZE_GAME, game_id=self.rt.game_id)
        )
        self._write_status(ProcFile.FREEZE_ERROR, reason)

    def request_in_place_reload(self) -> None:
        self.rt.post(self._reload_in_place)

    def _reload_in_place(self) -> None:
        try:
            result = ReloadResult(True, reload_in_place(self.rt, self.app))
        except GamePackageError as exc:
            logger.error("game%d: in-place reload rejected, old code kept: %s", self.rt.game_id, exc)
            result = ReloadResult(False, str(exc))
        self._write_status(ProcFile.RELOAD, result.to_json())

    def _write_status(self, kind: ProcFile, text: str) -> None:
        try:
            runctl.write_status(self.run_dir, self.name, kind, text)
        except OSError as exc:
            path = runctl.status_path(self.run_dir, self.name, kind)
            logger.error("cannot write %s: %s", path, exc)


async def _write_freeze(
    rt: GameRuntime, links: dict[int, DispatcherLink], storage: object, kvdb: object, data: bytes
) -> None:
    """Close the storage and KVDB (every write queued before the snapshot lands, or is given
    up after the backend's close timeout), then write the freeze file, then close the links;
    exit without destroying anything.

    In that order because each process retries its own writes: were the file written first,
    the process restoring it could save an entity anew while this one still retried an older
    save of it (a storage outage), which would land last and win. A write given up here is
    not lost: the snapshot holds the entity as it is, and the restored game saves it again."""
    rt.collect_syncs()
    for backend in (storage, kvdb):
        close = getattr(backend, "close", None)
        if close is not None:
            await close()
    path = runctl.freeze_file(Path.cwd(), rt.game_id)
    t0 = time.perf_counter()
    runctl.write_atomically(path, data)
    logger.info(
        "game%d frozen: %d entities, %d bytes in %s (written in %.0f ms)",
        rt.game_id, len(rt.entities), len(data), path, (time.perf_counter() - t0) * 1000,
    )
    for link in links.values():
        await link.close(flush_timeout=5.0)
    # Skip the interpreter's teardown of a large heap: the standby process is taking over.
    logging.shutdown()
    os._exit(0)


async def _wait_for_freeze(
    pid: int, path: Path, layout: Path, rt: GameRuntime,
    timeout: float = DEFAULT_CLOSE_TIMEOUT + 120.0,  # the freezing game may wait out a storage outage
) -> freeze.Prebuilt | None:
    """A standby restore process, everything imported: wait for the freezing process's file
    (written atomically, so its presence means complete) or for that process to end. The
    AOI ``layout`` comes first: the AOIs are filled from it meanwhile (returned)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    prebuilt = None
    while loop.time() < deadline:
        if path.exists():
            return prebuilt
        if prebuilt is None and layout.exists():
            prebuilt = _prebuild(rt, layout)
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                if f.read().rsplit(b") ", 1)[1][:1] == b"Z":
                    return prebuilt  # exited, not yet reaped
        except (OSError, IndexError):
            return prebuilt
        await asyncio.sleep(0.002)
    logger.error("process %d is still running after %.0f s", pid, timeout)
    return prebuilt


def _prebuild(rt: GameRuntime, layout: Path) -> freeze.Prebuilt:
    """Fill the AOIs from the freezing game's layout (consumed); on any failure nothing is
    built beforehand and the restore does it all."""
    t0 = time.perf_counter()
    try:
        data = layout.read_bytes()
        layout.unlink()
        prebuilt = freeze.prebuild(rt, data)
    except Exception:
        logger.warning("game%d: AOI layout not used", rt.game_id, exc_info=True)
        return freeze.Prebuilt()
    logger.info(
        "game%d filled %d AOIs with %d entities in %.0f ms while the freeze file was written",
        rt.game_id, len(prebuilt.aois), prebuilt.entities, (time.perf_counter() - t0) * 1000,
    )
    return prebuilt


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
        rt.outbox.to_all(Envelope(msgtype=MsgType.GAME_LBC_INFO, payload=pack(percent)))

    return report


if __name__ == "__main__":
    sys.exit(main())
