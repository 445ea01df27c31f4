"""``python -m gate -gateid N [-configfile goworld.ini]``: the composition root."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

from gate.limits import GateLimits
from gate.listeners import start_kcp, start_tcp, start_websocket, tls_context
from gate.metrics import GateFigures
from gate.service import GateService
from goworld import process, runctl
from goworld.cluster.envelopes import Envelope, pack
from goworld.cluster.link import DispatcherLink
from goworld.metrics import Exporter, ops_token
from goworld.proto.dialect import Dialect
from goworld.proto.msgtypes import MsgType

logger = logging.getLogger("goworld.gate")


def main(argv: list[str] | None = None) -> int:
    _keep_big_buffers_out_of_the_heap()
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
            limits=_fit_descriptors(GateLimits.from_config(gcfg)),
        )

        # Which gate process this is: a dispatcher that sees the same instance come back
        # after a broken stream keeps its clients (GATE_RECONNECT_GRACE in dispatcher.service).
        hello = Envelope(
            msgtype=MsgType.SET_GATE_ID, gate_id=args.id, name=f"{os.getpid()}-{secrets.token_hex(8)}"
        )

        # Bind every listener before joining the dispatchers: a gate whose ports are taken (a
        # second cluster on the same ini) must fail here, not replace the running gate.
        tls = None
        if gcfg.encrypt_connection:
            tls = tls_context(str(gcfg.rsa_certificate), str(gcfg.rsa_key))
        host, port = gcfg.listen_addr.host, gcfg.listen_addr.port
        section = f"[gate{args.id}]"
        figures = GateFigures(gate, links)  # /metrics and /status on http_addr
        ops = Exporter("gate", args.id, token=ops_token(cfg), figures=figures)
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
                ops=ops,
            )
            what = f"{section} listen_addr = {gcfg.listen_addr} (KCP, UDP)"
            kcp = await start_kcp(gate, host, port, tls=tls)
            figures.kcp = kcp
        except OSError as exc:
            logger.critical("gate%d cannot listen on %s: %s", args.id, what, exc.strerror or exc)
            return 1
        signer = process.cluster_signer(cfg, "gate", args.id)
        cluster_tls = process.cluster_tls(cfg, f"gate{args.id}")
        for did, dcfg in cfg.dispatchers.items():
            links[did] = DispatcherLink(
                did,
                str(dcfg.advertise_addr),
                hello=lambda: hello,
                on_message=gate.handle_dispatcher_message,
                reconnect=True,  # GoWorld's gate quits; ours keeps its clients and comes back
                auth=signer,
                tls=cluster_tls,
                flush_interval=gcfg.link_flush_interval_ms / 1000,
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
        ops.start()
        jobs = [
            asyncio.create_task(_flush_syncs(gate, gcfg.position_sync_interval_ms / 1000)),
            asyncio.create_task(_watch_links(gate, links)),
            asyncio.create_task(_sweep(gate)),
        ]

        drained: dict[str, object] = {}  # _drain's report, once done
        askers: set[int] = set()  # dispatchers whose DRAIN_GATE waits for the report

        def answer() -> None:
            """The report, to the status file (goworld stop here) and to each dispatcher
            that asked (goworld stop --cluster elsewhere)."""
            _write_drained(gate.gate_id, drained)
            for did in sorted(askers):
                send(did, Envelope(msgtype=MsgType.GATE_DRAINED, gate_id=args.id, payload=pack(drained)))
            askers.clear()

        def on_drain(asker: int | None = None) -> None:
            if asker is not None:
                askers.add(asker)
            if not gate.draining:
                tcp.close()  # new TCP connections are refused; WS and KCP ones closed at once
                jobs.append(asyncio.create_task(_drain(gate, links, drained, done=answer)))
            elif drained:  # asked again (a second goworld stop): the same answer
                answer()

        asyncio.get_running_loop().add_signal_handler(runctl.DRAIN_SIGNAL, on_drain)
        gate.drain_requested = on_drain
        await stop.wait()
        logger.info("gate%d stopping: closing %d clients", args.id, len(gate.clients))
        for job in jobs:
            job.cancel()
        tcp.close()
        ws.close()
        kcp.close()
        gate.close_all()
        gate.summary.flush(force=True)
        await asyncio.sleep(0.05)  # let the disconnect notices reach the writers
        for link in links.values():
            await link.close(flush_timeout=2.0)
        return 0

    return process.run_loop(serve, alive=runctl.proc_name("gate", args.id))


async def _drain(
    gate: GateService,
    links: dict[int, DispatcherLink],
    report: dict[str, object],
    *,
    done: Callable[[], None],
    quiet: float = 0.2,
    max_wait: float = 3.0,
) -> None:
    """DRAIN_SIGNAL or DRAIN_GATE: :meth:`GateService.drain`, then wait until everything the
    clients sent is with the dispatchers and the replies have stopped coming (``quiet``
    seconds without a batch from any dispatcher; at most ``max_wait``), then fill ``report``
    and call ``done`` (which tells ``goworld stop``)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    clients = len(gate.clients)
    told = gate.drain()
    gate.flush_syncs()
    last_seen, last_change = -1, started
    while loop.time() - started < max_wait:
        await asyncio.sleep(0.05)
        received = sum(link.batches_received for link in links.values())
        now = loop.time()
        if received != last_seen:
            last_seen, last_change = received, now
        backlog = sum(link.backlog_bytes for link in links.values())
        if not backlog and now - last_change >= quiet:
            break
    seconds = round(loop.time() - started, 3)
    logger.info("gate%d drained in %.2f s", gate.gate_id, seconds)
    report.update(clients=clients, told=told, seconds=seconds)
    done()


def _write_drained(gate_id: int, report: dict[str, object]) -> None:
    try:
        runctl.write_status(
            runctl.run_dir(Path.cwd()), runctl.proc_name("gate", gate_id),
            runctl.ProcFile.DRAINED, json.dumps(report),
        )
    except OSError as exc:
        logger.error("cannot write the drained status file: %s", exc)


async def _watch_links(gate: GateService, links: dict[int, DispatcherLink], interval: float = 0.05) -> None:
    """Hold every client while the gate's links to the dispatchers are behind."""
    while True:
        await asyncio.sleep(interval)
        gate.link_backlog(max((link.backlog_bytes for link in links.values()), default=0))


async def _flush_syncs(gate: GateService, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        gate.flush_syncs()


async def _sweep(gate: GateService) -> None:
    """The time bounds (handshake, partial packet, idle) and the log summaries, every second."""
    while True:
        await asyncio.sleep(_SWEEP_INTERVAL)
        gate.sweep()


def _keep_big_buffers_out_of_the_heap() -> None:
    """glibc: blocks of 1 MiB and more always come from mmap and go back to the OS when freed.

    Without it glibc raises its mmap threshold after the first big free (up to 32 MiB), and the
    partial packets of an attack (up to ``partial_frame_budget``) then stay in the gate's heap,
    in its RSS, after they are gone.
    """
    if sys.platform != "linux":
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_THRESHOLD, 1024 * 1024)
    except (OSError, AttributeError):
        pass


_M_MMAP_THRESHOLD = -3
_SWEEP_INTERVAL = 1.0
#: Descriptors kept for everything but clients (dispatcher links, logs, listeners, pipes).
_SPARE_DESCRIPTORS = 256


def _fit_descriptors(limits: GateLimits) -> GateLimits:
    """Raise the soft RLIMIT_NOFILE toward ``max_clients``; lower ``max_clients`` (with a
    warning) if even the hard limit cannot hold that many clients."""
    if not limits.max_clients:
        return limits
    want = limits.max_clients + _SPARE_DESCRIPTORS
    soft = process.raise_open_file_limit(want)
    if soft < want:
        fitted = max(soft - _SPARE_DESCRIPTORS, 1)
        logger.warning(
            "max_clients = %d does not fit the open-file limit (%d): using %d",
            limits.max_clients,
            soft,
            fitted,
        )
        return dataclasses.replace(limits, max_clients=fitted)
    return limits


if __name__ == "__main__":
    sys.exit(main())
