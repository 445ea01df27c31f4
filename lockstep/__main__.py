"""``python -m lockstep -lockstepid 1 [-configfile goworld.ini]``: the composition root.

Binds the KCP and HTTP listeners of ``[lockstep]``, joins every dispatcher (so game code can
ask for rooms and hear their results), and runs until SIGTERM, when every room ends with a
Close to its players and a result ("stopped") to its owner.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import sys
from pathlib import Path
from typing import Any, cast

from goworld import process, runctl
from goworld.cluster.envelopes import Envelope, pack, unpack
from goworld.cluster.link import DispatcherLink
from goworld.config import ClusterConfig, LockstepConfig
from goworld.lockstep.journal import RoomJournal
from goworld.lockstep.room import Room, RoomSettings
from goworld.lockstep.rooms import RoomManager, RoomRefused
from goworld.metrics import Exporter, ops_token
from goworld.proto.codec import encode_args
from goworld.proto.ids import dispatcher_shard
from goworld.proto.msgtypes import MsgType
from lockstep.metrics import LockstepFigures
from lockstep.server import LockstepServer

logger = logging.getLogger("goworld.lockstep")

#: Seconds between two load reports to the dispatchers (rooms are placed by them).
LOAD_INTERVAL = 1.0


def settings_of(cfg: LockstepConfig) -> RoomSettings:
    return RoomSettings(
        tick_hz=cfg.tick_hz,
        ready_timeout=cfg.ready_seconds,
        stale_after=cfg.stale_seconds,
        max_frames=cfg.max_frames,
        lifetime=cfg.room_seconds,
    )


class ClusterSide:
    """Room requests from game code in, "room created" and results out, through the links."""

    def __init__(self, cfg: ClusterConfig, lcfg: LockstepConfig, rooms: RoomManager) -> None:
        self.cfg = cfg
        self.lcfg = lcfg
        self.rooms = rooms
        self.links: dict[int, DispatcherLink] = {}
        self.server: LockstepServer | None = None

    def on_message(self, dispatcher_id: int, env: Envelope) -> None:
        if env.msgtype == MsgType.LOCKSTEP_CREATE_ROOM:
            self._create(env)
        # nothing else is addressed to a lockstep process

    def _create(self, env: Envelope) -> None:
        owner, on_created = env.entity_id, env.name
        try:
            request = unpack(env.payload)
            members = [int(m) for m in request["members"]]
            on_result = str(request["on_result"])
            seed = int(request.get("seed", 0))
        except (ValueError, KeyError, TypeError) as exc:
            logger.error("unreadable room request from %s: %s", owner, exc)
            return
        assert self.server is not None
        try:
            room = self.rooms.create(
                self.rooms.new_room_id(),
                members,
                self.server.now(),
                seed=seed,
                with_tokens=True,
                owner=(owner, on_result),
            )
        except (RoomRefused, ValueError) as exc:
            self.call(owner, on_created, {"error": str(exc)})
            return
        self.server.room_created()
        assert room.tokens is not None
        self.call(
            owner,
            on_created,
            {
                "room": room.id,
                "tokens": dict(room.tokens),
                "kcp": str(self.lcfg.public_kcp),
                "ws": f"ws://{self.lcfg.http_addr}{self.lcfg.ws_path}",
                "members": list(room.members),
            },
        )

    def on_ended(self, room: Room) -> None:
        if room.owner is None or room.result is None:
            return
        owner, method = cast(tuple[str, str], room.owner)
        self.call(owner, method, room.result.to_dict())

    def call(self, entity_id: str, method: str, arg: Any) -> None:
        did = dispatcher_shard(entity_id, len(self.links))
        self.links[did].send(
            Envelope(
                msgtype=MsgType.CALL_ENTITY_METHOD,
                entity_id=entity_id,
                name=method,
                payload=encode_args((arg,)),
            )
        )

    async def report_load(self) -> None:
        while True:
            load = pack({"players": self.rooms.players_in_rooms(), "rooms": len(self.rooms.rooms)})
            for link in self.links.values():
                link.send(Envelope(msgtype=MsgType.LOCKSTEP_LOAD, payload=load))
            await asyncio.sleep(LOAD_INTERVAL)


#: open files beyond the sessions and the journals: listeners, links, logs, HTTP requests
SPARE_DESCRIPTORS = 256


def fit_descriptors(lcfg: LockstepConfig) -> int:
    """Raise the open-file limit for ``max_sessions`` WebSocket sessions (KCP shares one
    socket, but count them alike) and one journal file per room; warn, naming the keys, when
    the hard limit cannot hold them (sessions past it are refused, journals fail)."""
    want = lcfg.max_sessions + (lcfg.max_rooms if lcfg.room_journal else 0) + SPARE_DESCRIPTORS
    soft = process.raise_open_file_limit(want)
    if soft < want:
        logger.warning(
            "[lockstep%d] max_sessions = %d and max_rooms = %d (a journal file each) need about %d "
            "open files; the limit is %d: lower them, or raise the hard limit (ulimit -Hn)",
            lcfg.id, lcfg.max_sessions, lcfg.max_rooms, want, soft,
        )
    return soft


def main(argv: list[str] | None = None) -> int:
    args, cfg, lcfg = process.start_role("lockstep", argv)
    fit_descriptors(lcfg)

    async def serve(stop: asyncio.Event) -> int:
        journal = (
            RoomJournal(runctl.run_dir(Path.cwd()) / f"{runctl.proc_name('lockstep', args.id)}.rooms")
            if lcfg.room_journal else None
        )
        rooms = RoomManager(
            settings_of(lcfg),
            max_rooms=lcfg.max_rooms,
            max_players=lcfg.max_players,
            require_token=lcfg.require_token,
            journal=journal,
            http_max_rooms=lcfg.http_max_rooms,
            http_rooms_per_ip=lcfg.http_rooms_per_ip,
        )
        restored = rooms.restore(asyncio.get_running_loop().time())
        if restored:
            logger.warning("lockstep%d: %d rooms brought back from their journals", args.id, len(restored))
        side = ClusterSide(cfg, lcfg, rooms)
        server = LockstepServer(lcfg, rooms, on_ended=side.on_ended)
        exporter = Exporter(
            "lockstep", args.id, token=ops_token(cfg), figures=LockstepFigures(server, side.links)
        )
        server.exporter = exporter
        side.server = server
        try:
            await server.start()
        except OSError as exc:
            logger.critical(
                "lockstep cannot listen on [lockstep] listen_addr = %s (KCP) / http_addr = %s: %s",
                lcfg.listen_addr,
                lcfg.http_addr,
                exc.strerror or exc,
            )
            return 1
        hello = Envelope(
            msgtype=MsgType.SET_LOCKSTEP_ID,
            game_id=args.id,
            name=f"{os.getpid()}-{secrets.token_hex(8)}",
        )
        signer = process.cluster_signer(cfg, "lockstep", args.id)
        tls = process.cluster_tls(cfg, f"lockstep{args.id}")
        for did, dcfg in cfg.dispatchers.items():
            side.links[did] = DispatcherLink(
                did,
                str(dcfg.advertise_addr),
                hello=lambda: hello,
                on_message=side.on_message,
                reconnect=True,
                auth=signer,
                tls=tls,
                flush_interval=lcfg.link_flush_interval_ms / 1000,
            )
            side.links[did].start()
        try:
            await asyncio.wait_for(
                asyncio.gather(*(link.connected.wait() for link in side.links.values())), 30
            )
        except TimeoutError:
            logger.critical("lockstep%d could not reach every dispatcher within 30 s", args.id)
            await server.stop()
            return 1
        logger.info(
            "lockstep%d listening: kcp %s, http %s (ws %s) (%s)",
            args.id,
            lcfg.listen_addr,
            lcfg.http_addr,
            lcfg.ws_path,
            process.pid_info(),
        )
        process.announce_started("lockstep")
        exporter.start()
        load_task = asyncio.create_task(side.report_load())
        await stop.wait()
        logger.info("lockstep%d stopping: %d rooms end", args.id, len(rooms.rooms))
        load_task.cancel()
        for room in await server.stop():
            side.on_ended(room)
        for link in side.links.values():
            await link.close(flush_timeout=2.0)
        exporter.stop()
        return 0

    return process.run_loop(serve, alive=runctl.proc_name("lockstep", args.id))


if __name__ == "__main__":
    sys.exit(main())
