"""``python -m gate -gateid N [-configfile goworld.ini]``: the composition root."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

from gate.listeners import start_kcp, start_tcp, start_websocket, tls_context
from gate.service import GateService
from goworld import process
from goworld.cluster.envelopes import Envelope
from goworld.cluster.link import DispatcherLink
from goworld.proto.dialect import Dialect
from goworld.proto.msgtypes import MsgType

logger = logging.getLogger("goworld.gate")


def main(argv: list[str] | None = None) -> int:
    args, cfg, gcfg = process.start_role("gate", argv)
    dialect = Dialect.from_config(gcfg.legacy_client_protocol)

    async def serve(stop: asyncio.Event) -> int:
        links: dict[int, DispatcherLink] = {}

        def send(dispatcher_id: int, env: Envelope) -> None:
            links[dispatcher_id].send(env)

        gate = GateService(
            args.id,
            num_dispatchers=len(cfg.dispatchers),
            send=send,
            dialect=dialect,
            compress=gcfg.compress_connection,
        )

        def lost(dispatcher_id: int) -> None:
            logger.error("lost dispatcher%d: the gate shuts down", dispatcher_id)
            stop.set()

        # Bind every listener before joining the dispatchers: a gate whose ports are taken (a
        # second cluster on the same ini) must fail here, not replace the running gate.
        tls = None
        if gcfg.encrypt_connection:
            tls = tls_context(str(gcfg.rsa_certificate), str(gcfg.rsa_key))
        host, port = gcfg.listen_addr.host, gcfg.listen_addr.port
        section = f"[gate{args.id}]"
        try:
            what = f"{section} listen_addr = {gcfg.listen_addr} (TCP)"
            tcp = await start_tcp(gate, host, port, tls=tls, start_serving=False)
            what = f"{section} http_addr = {gcfg.http_addr} (WebSocket)"
            ws = await start_websocket(
                gate,
                gcfg.http_addr.host,
                gcfg.http_addr.port,
                tls=tls,
                static_dir=Path(args.static) if args.static else None,
                start_serving=False,
            )
            what = f"{section} listen_addr = {gcfg.listen_addr} (KCP, UDP)"
            kcp = await start_kcp(gate, host, port, tls=tls)
        except OSError as exc:
            logger.critical("gate%d cannot listen on %s: %s", args.id, what, exc.strerror or exc)
            return 1
        for did, dcfg in cfg.dispatchers.items():
            links[did] = DispatcherLink(
                did,
                str(dcfg.advertise_addr),
                hello=lambda: Envelope(msgtype=MsgType.SET_GATE_ID, gate_id=args.id),
                on_message=gate.handle_dispatcher_message,
                on_lost=lost,
                reconnect=False,
            )
            links[did].start()
        try:
            await asyncio.wait_for(
                asyncio.gather(*(link.connected.wait() for link in links.values())), 30
            )
        except TimeoutError:
            logger.critical("gate%d could not reach every dispatcher within 30 s", args.id)
            return 1

        await tcp.start_serving()
        await ws.start_serving()
        logger.info(
            "gate%d listening: tcp+kcp %s, ws %s/ws (%s)",
            args.id,
            gcfg.listen_addr,
            gcfg.http_addr,
            process.pid_info(),
        )
        process.announce_started("gate")
        jobs = [asyncio.create_task(_flush_syncs(gate, gcfg.position_sync_interval_ms / 1000))]
        if gcfg.heartbeat_check_interval > 0:
            jobs.append(asyncio.create_task(_check_heartbeats(gate, gcfg.heartbeat_check_interval)))
        await stop.wait()
        logger.info("gate%d stopping: closing %d clients", args.id, len(gate.clients))
        for job in jobs:
            job.cancel()
        tcp.close()
        ws.close()
        kcp.close()
        gate.close_all()
        await asyncio.sleep(0.05)  # let the disconnect notices reach the writers
        for link in links.values():
            await link.close(flush_timeout=2.0)
        return 0

    return process.run_loop(serve)


async def _flush_syncs(gate: GateService, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        gate.flush_syncs()


async def _check_heartbeats(gate: GateService, max_idle: float) -> None:
    """Off by default, as in GoWorld (which never enforces it): only when the ini sets it."""
    while True:
        await asyncio.sleep(max(max_idle / 4, 0.5))
        gate.close_idle(max_idle)


if __name__ == "__main__":
    sys.exit(main())
