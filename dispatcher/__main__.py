"""``python -m dispatcher -dispid N [-configfile goworld.ini]``: the composition root."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Any

import grpc

from dispatcher.metrics import DispatcherFigures
from dispatcher.server import DispatcherServicer
from dispatcher.service import DispatcherService
from goworld import ops_http, process, runctl
from goworld.cluster.auth import AuthRefused, TokenVerifier
from goworld.cluster.streams import GRPC_OPTIONS
from goworld.config import DispatcherConfig
from goworld.rpc import cluster_pb2_grpc
from goworld.safestop import DRAIN_WAIT

logger = logging.getLogger("goworld.dispatcher")

#: a peer uses one stream per connection; a reconnect opens a new connection
MAX_STREAMS_PER_CONNECTION = 4


def main(argv: list[str] | None = None) -> int:
    args, cfg, dcfg = process.start_role("dispatcher", argv)
    verifier = process.cluster_verifier(cfg, args.id)  # exits if it needs a secret it lacks
    tls = process.cluster_tls(cfg, f"dispatcher{args.id}")  # None: plaintext gRPC

    async def serve(stop: asyncio.Event) -> int:
        service = DispatcherService(
            args.id,
            desired_games=cfg.deployment.desired_games,
            desired_gates=cfg.deployment.desired_gates,
            frozen_queue_max_bytes=dcfg.frozen_queue_max_bytes,
            peer_max_backlog_bytes=dcfg.peer_max_backlog_bytes,
            pause_backlog_bytes=dcfg.pause_backlog_bytes,
            game_hang_timeout=dcfg.game_hang_timeout,
            boot_wait_timeout=dcfg.boot_wait_timeout,
            game_reconnect_grace=dcfg.game_reconnect_grace,
            clock=time.monotonic,
        )
        server = grpc.aio.server(options=[*GRPC_OPTIONS, *_port_bounds(dcfg)])
        servicer = DispatcherServicer(
            service, verifier, flush_interval=dcfg.link_flush_interval_ms / 1000
        )
        cluster_pb2_grpc.add_DispatcherServicer_to_server(servicer, server)
        addr = str(dcfg.listen_addr)
        try:
            if tls is None:
                server.add_insecure_port(addr)
            else:  # mutual TLS: a client certificate of the cluster's CA is required
                server.add_secure_port(addr, tls.server_credentials())
        except RuntimeError:
            logger.critical(
                "dispatcher%d cannot listen on [dispatcher%d] listen_addr = %s: the address is "
                "in use (another cluster?) or not local to this host",
                args.id, args.id, addr,
            )
            return 1
        await server.start()
        logger.info(
            "dispatcher%d listening on %s%s (%s)",
            args.id, addr, " (mutual TLS)" if tls else "", process.pid_info(),
        )
        ops = ops_http.start_ops_server(
            "dispatcher", args.id, cfg, dcfg.http_addr,
            DispatcherFigures(service, lambda: servicer.refused),
            actions={ops_http.DRAIN_PATH: lambda: _drain_gates(service)},
            check_action=None if verifier is None else lambda token: _check_order(verifier, token),
        )
        process.announce_started("dispatcher")
        ticker = asyncio.create_task(_tick(service))
        reliever = asyncio.create_task(_relieve(service))
        await stop.wait()
        logger.info("dispatcher%d stopping", args.id)
        ticker.cancel()
        reliever.cancel()
        await ops.close()
        await server.stop(0)
        return 0

    return process.run_loop(serve, alive=runctl.proc_name("dispatcher", args.id))


def _check_order(verifier: TokenVerifier, token: str | None) -> ops_http.Refusal | None:
    """An action's credentials: a fresh token of the cluster secret for ``ops``."""
    try:
        identity = verifier.verify(token)
    except AuthRefused as exc:
        return ops_http.Refusal(403, str(exc))
    if identity.role != "ops":
        return ops_http.Refusal(403, f"credentials of {identity}, not of an operator's command")
    return None


async def _drain_gates(service: DispatcherService, wait: float = DRAIN_WAIT) -> dict[str, Any]:
    """``POST /drain`` (``goworld stop --cluster``): every connected gate drains; the answer
    holds each one's report (null: no answer within ``wait`` seconds)."""
    loop = asyncio.get_running_loop()
    asked = service.drain_gates()
    deadline = loop.time() + wait
    while loop.time() < deadline and any(g not in service.drain_reports for g in asked):
        await asyncio.sleep(0.05)
    reports = {f"gate{g}": service.drain_reports.get(g) for g in asked}
    return {"dispatcher": service.dispatcher_id, "gates": reports}


def _port_bounds(dcfg: DispatcherConfig) -> list[tuple[str, int]]:
    """gRPC server options bounding what strangers can hold on the cluster port.

    Every peer keeps one stream open for its life; anything else is a stranger (or a peer
    whose authentication failed): at most ``max_cluster_connections`` connections at once
    (more are closed as they come, instead of running the process out of file descriptors),
    ``cluster_handshake_timeout`` to send the HTTP/2 preface and settings (and finish TLS),
    ``cluster_idle_timeout`` without any stream, and a few streams per connection.
    SO_REUSEPORT is grpc's default: a second dispatcher on the same port would then share it
    with the first (and half the games would join the wrong cluster). Refused instead."""
    return [
        ("grpc.so_reuseport", 0),
        ("grpc.max_allowed_incoming_connections", dcfg.max_cluster_connections),
        ("grpc.server_handshake_timeout_ms", int(dcfg.cluster_handshake_timeout * 1000)),
        ("grpc.max_connection_idle_ms", int(dcfg.cluster_idle_timeout * 1000)),
        ("grpc.max_concurrent_streams", MAX_STREAMS_PER_CONNECTION),
    ]


async def _relieve(service: DispatcherService, interval: float = 0.05) -> None:
    """Resume paused clients soon after their game has caught up."""
    while True:
        await asyncio.sleep(interval)
        service.relieve()


async def _tick(service: DispatcherService, stats_interval: float = 5.0) -> None:
    """Expire blocks every second; log traffic figures every ``stats_interval`` seconds."""
    last_routed = service.stats["routed"]
    last_time = time.monotonic()
    while True:
        await asyncio.sleep(1.0)
        service.tick()
        now = time.monotonic()
        if now - last_time >= stats_interval:
            routed = service.stats["routed"]
            if routed != last_routed:
                logger.info(
                    "stats: routed %d messages (%.0f/s), dropped %d, paused %d clients, "
                    "dropped %d syncs, %d entities, %d games, %d gates",
                    routed,
                    (routed - last_routed) / (now - last_time),
                    service.stats["dropped"],
                    service.stats["paused"],
                    service.stats["dropped_syncs"],
                    len(service.entities),
                    sum(1 for g in service.games.values() if g.alive),
                    len(service.gates),
                )
            last_routed, last_time = routed, now


if __name__ == "__main__":
    sys.exit(main())
