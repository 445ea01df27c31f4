"""A game's or gate's stream to one dispatcher (client side of ``Dispatcher.Connect``).

A :class:`DispatcherLink` connects, sends its hello (SET_GAME_ID / SET_GATE_ID, built fresh by a
callback on every (re)connect so it can list the current entities), then writes queued
envelopes one batch per loop iteration and hands every received envelope to ``on_message``.

With ``auth`` (a :class:`~goworld.cluster.auth.TokenSigner`) every stream opens with a fresh
token in its call metadata. The link writes nothing before the dispatcher has taken the stream
(its initial metadata); a dispatcher that refuses it ends the stream (UNAUTHENTICATED, or
PERMISSION_DENIED after a hello for another identity), which the link logs with the
dispatcher's reason and retries like any other loss. With ``tls`` (a
:class:`~goworld.cluster.tls.ClusterTLS`) the channel is mutual TLS; a failed handshake looks
like an unreachable dispatcher.

Envelopes sent while the link is down are kept and written, in order, after the next hello.
Batches are numbered (:mod:`goworld.cluster.sequence`): after a reconnect to the same
dispatcher process the last ones written are written again first, so what the broken stream
lost in flight arrives after all, and what arrives twice (from either side) is taken once.
On loss the link either reconnects every ``retry_interval`` seconds (games) or reports the
loss through ``on_lost`` and stops (gates quit when a dispatcher goes away, as in GoWorld).

What waits for the dispatcher (while it is down or slow) is bounded: past ``max_backlog_bytes``
an envelope is dropped and counted in :attr:`DispatcherLink.dropped`, with an ERROR (repeats are
summarised by the log filter). Owners read :attr:`DispatcherLink.backlog_bytes` to push back
before that (a gate stops reading its clients).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import grpc

from goworld.cluster.auth import ACCEPTED_METADATA, TokenSigner
from goworld.cluster.envelopes import Batch, Envelope
from goworld.cluster.sequence import EPOCH, Incoming, Outgoing
from goworld.cluster.streams import GRPC_OPTIONS, BatchWriter, envelope_size
from goworld.cluster.tls import ClusterTLS
from goworld.rpc import cluster_pb2_grpc

__all__ = ["DEFAULT_MAX_BACKLOG_BYTES", "DispatcherLink"]

#: Bytes a link holds for its dispatcher (down or behind) before it drops envelopes.
DEFAULT_MAX_BACKLOG_BYTES = 256 * 1024 * 1024
#: Seconds between the WARNINGs of a link whose dispatcher cannot be reached (gRPC itself keeps
#: trying silently): on another host, a wrong advertise_addr or a firewall shows this way.
UNREACHABLE_WARNING_INTERVAL = 10.0
#: The cluster's own traffic never goes through an HTTP proxy (gRPC would use one named by
#: http_proxy/https_proxy/grpc_proxy for any address not in no_proxy: another host's).
_CHANNEL_OPTIONS = [*GRPC_OPTIONS, ("grpc.enable_http_proxy", 0)]

logger = logging.getLogger("goworld.cluster")


class DispatcherLink:
    def __init__(
        self,
        dispatcher_id: int,
        address: str,
        *,
        hello: Callable[[], Envelope],
        on_message: Callable[[int, Envelope], None],
        on_connected: Callable[[int], None] | None = None,
        on_lost: Callable[[int], None] | None = None,
        reconnect: bool = True,
        retry_interval: float = 1.0,
        max_backlog_bytes: int = DEFAULT_MAX_BACKLOG_BYTES,
        auth: TokenSigner | None = None,
        tls: ClusterTLS | None = None,
        flush_interval: float = 0.0,
    ) -> None:
        self.dispatcher_id = dispatcher_id
        self.flush_interval = flush_interval  # BatchWriter.min_interval (link_flush_interval_ms)
        self.address = address
        self._auth = auth  # None: no credentials (a dispatcher without a secret)
        self._tls = tls  # None: plaintext gRPC
        self._hello = hello
        self._on_message = on_message
        self._on_connected = on_connected
        self._on_lost = on_lost
        self._reconnect = reconnect
        self._retry = retry_interval
        self._pending: list[Envelope] = []
        self._pending_bytes = 0
        self.max_backlog_bytes = max_backlog_bytes
        self.dropped = 0
        #: batches received from the dispatcher (a stopping gate waits until it stays put)
        self.batches_received = 0
        self._writer: BatchWriter | None = None
        #: the conversation with the dispatcher process (numbering kept across reconnects)
        self.incoming = Incoming()
        self.outgoing = Outgoing(incoming=self.incoming)
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.connected = asyncio.Event()

    @property
    def backlog_bytes(self) -> int:
        """Bytes waiting for the dispatcher: queued, in flight, or held while it is down."""
        writer = self._writer
        return self._pending_bytes + (writer.backlog_bytes if writer is not None else 0)

    def send(self, env: Envelope) -> None:
        """Queue ``env`` for the dispatcher (kept across a reconnect, within the bound)."""
        writer = self._writer
        if writer is not None and writer.backlog_bytes < self.max_backlog_bytes:
            writer.send(env)
        elif writer is None and self._pending_bytes < self.max_backlog_bytes:
            self._pending.append(env)
            self._pending_bytes += envelope_size(env)
        else:
            self.dropped += 1
            logger.error(
                "dispatcher%d is %s and %d bytes are waiting for it (max %d): dropped message "
                "type %d",
                self.dispatcher_id, "behind" if writer is not None else "unreachable",
                self.backlog_bytes, self.max_backlog_bytes, env.msgtype,
            )

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"link-dispatcher{self.dispatcher_id}")

    async def close(self, *, flush_timeout: float = 5.0) -> None:
        """Write what is queued (up to ``flush_timeout``), then close the stream."""
        self._closing = True
        writer = self._writer
        if writer is not None:
            writer.close()
            deadline = asyncio.get_running_loop().time() + flush_timeout
            while writer.queued and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self) -> None:
        first = True
        while not self._closing:
            try:
                await self._session(first)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # grpc errors of every kind end the session
                if not self._closing:
                    logger.warning(
                        "dispatcher%d at %s: stream lost: %s",
                        self.dispatcher_id,
                        self.address,
                        _short(exc),
                    )
            first = False
            if self._writer is not None:
                taken = self._writer.take()
                self._pending[:0] = taken
                self._pending_bytes += sum(envelope_size(e) for e in taken)
                self._writer = None
            self.connected.clear()
            if self._closing:
                return
            if not self._reconnect:
                if self._on_lost is not None:
                    self._on_lost(self.dispatcher_id)
                return
            await asyncio.sleep(self._retry)

    async def _session(self, first: bool) -> None:
        async with self._channel() as channel:
            await self._wait_ready(channel)
            stub = cluster_pb2_grpc.DispatcherStub(channel)
            auth = self._auth
            call = stub.Connect(metadata=auth.metadata(self.dispatcher_id) if auth else None)
            if ACCEPTED_METADATA not in tuple(await call.initial_metadata() or ()):
                # refused (bad credentials): no write yet, so the status is the dispatcher's
                raise ConnectionError(
                    f"refused: {(await call.code()).name}: {await call.details()}"
                )
            writer = BatchWriter(call.write, self.flush_interval, self.outgoing)
            # the hello alone and unnumbered, then what the last stream may have lost
            writer.write_first([Batch(messages=[self._hello()], epoch=EPOCH), *self.outgoing.resend()])
            for env in self._pending:
                writer.send(env)
            self._pending = []
            self._pending_bytes = 0
            self._writer = writer
            writer_task = asyncio.create_task(writer.run())
            self.connected.set()
            logger.info(
                "dispatcher%d at %s: %s",
                self.dispatcher_id,
                self.address,
                "connected" if first else "reconnected",
            )
            if self._on_connected is not None:
                self._on_connected(self.dispatcher_id)
            on_message = self._on_message
            did = self.dispatcher_id
            incoming = self.incoming
            try:
                while True:
                    batch = await call.read()
                    if batch is grpc.aio.EOF:
                        raise ConnectionError("dispatcher closed the stream")
                    self.batches_received += 1
                    if batch.epoch:
                        self.outgoing.peer_epoch = batch.epoch
                    if not incoming.accept(batch):
                        continue
                    for env in batch.messages:
                        on_message(did, env)
                    if writer_task.done():
                        writer_task.result()
            finally:
                writer_task.cancel()
                call.cancel()

    def _channel(self) -> grpc.aio.Channel:
        tls = self._tls
        if tls is None:
            return grpc.aio.insecure_channel(self.address, options=_CHANNEL_OPTIONS)
        return grpc.aio.secure_channel(
            self.address, tls.channel_credentials(),
            options=[*_CHANNEL_OPTIONS, *tls.channel_options()],
        )

    async def _wait_ready(self, channel: grpc.aio.Channel) -> None:
        """``channel.channel_ready()``, saying so every :data:`UNREACHABLE_WARNING_INTERVAL` s
        while the dispatcher cannot be reached (the address is its advertise_addr: it must be
        reachable from this host)."""
        ready = asyncio.ensure_future(channel.channel_ready())
        waited = 0.0
        hint = " (or the TLS handshake fails: CA, certificates, server name)" if self._tls else ""
        try:
            while not (await asyncio.wait({ready}, timeout=UNREACHABLE_WARNING_INTERVAL))[0]:
                waited += UNREACHABLE_WARNING_INTERVAL
                logger.warning(
                    "dispatcher%d at %s (its advertise_addr) not reachable from here for %.0f s%s; "
                    "still trying", self.dispatcher_id, self.address, waited, hint,
                )
            ready.result()
        finally:
            ready.cancel()


def _short(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return f"{type(exc).__name__}: {exc}"
