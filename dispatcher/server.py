"""The dispatcher's gRPC adapter: one ``Connect`` stream per game and per gate.

Thin on purpose: it identifies the peer from the first envelope (SET_GAME_ID or SET_GATE_ID),
gives the :class:`~dispatcher.service.DispatcherService` a peer whose ``send`` queues into a
:class:`~goworld.cluster.streams.BatchWriter`, and feeds every received envelope to the
service. Routing decisions all live in the service.

With a :class:`~goworld.cluster.auth.TokenVerifier`, a stream is first checked from its call
metadata alone, before anything is read from it or kept for it: a missing, wrong, stale or
replayed token ends the call with UNAUTHENTICATED, and a hello naming another game or gate
than the token does with PERMISSION_DENIED. Either is one WARNING naming the peer's address
and the reason (repeats summarised by the log filter); the service never hears of that
stream, so the real game or gate keeps its own. A stream taken is answered at once with
``ACCEPTED_METADATA`` (initial metadata), which the link waits for before it writes.

Batches are numbered both ways (:mod:`goworld.cluster.sequence`): the conversation with each
peer process (by name and epoch) outlives its streams, so when the same process connects again
the batches last written to it are written again first, and what it resends is taken once. What
the broken stream's writer had not written yet goes back to the service, which holds it for the
peer (a game within its reconnect grace, a gate within its own).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import grpc

from dispatcher.service import DispatcherService
from goworld.cluster.auth import (
    ACCEPTED_METADATA,
    METADATA_KEY,
    AuthRefused,
    Identity,
    TokenVerifier,
)
from goworld.cluster.envelopes import Batch, Envelope
from goworld.cluster.sequence import Incoming, Outgoing
from goworld.cluster.streams import BatchWriter
from goworld.proto.msgtypes import MsgType
from goworld.rpc import cluster_pb2_grpc

__all__ = ["DispatcherServicer", "StreamPeer"]

#: A joined stream: its peer id, peer, message handler, health note (games) and leave handler.
_Joined = tuple[
    int,
    "StreamPeer",
    Callable[[int, Envelope], None],
    Callable[[int], None] | None,
    Callable[[int, "StreamPeer"], None],
]

logger = logging.getLogger("goworld.dispatcher")


class StreamPeer:
    """A connected game or gate: ``send`` batches, ``close`` cancels its stream handler."""

    def __init__(self, name: str, writer: BatchWriter, task: asyncio.Task[object]) -> None:
        self.name = name
        self.writer = writer
        self.send = writer.send
        self._task = task
        #: envelopes received on this stream (counted per batch; /metrics)
        self.received = 0
        #: batches (gRPC messages) received on this stream
        self.received_batches = 0

    def close(self) -> None:
        self.writer.close()
        self._task.cancel()

    @property
    def backlog_bytes(self) -> int:
        return self.writer.backlog_bytes

    def __repr__(self) -> str:
        return f"<StreamPeer {self.name}>"


@dataclass
class Conversation:
    """This dispatcher and one peer process (``peer_epoch``), across that process's streams."""

    peer_epoch: int
    outgoing: Outgoing
    incoming: Incoming = field(default_factory=Incoming)

    def __post_init__(self) -> None:
        # each direction acknowledges the other (sequence module docstring)
        self.outgoing.incoming = self.incoming
        self.incoming.outgoing = self.outgoing


def _peer_key(hello: Envelope) -> str | None:
    """The name of the peer a hello comes from (``game1``, ``gate2``, ``lockstep1``)."""
    if hello.msgtype == MsgType.SET_GAME_ID:
        return f"game{hello.game_id}"
    if hello.msgtype == MsgType.SET_GATE_ID:
        return f"gate{hello.gate_id}"
    if hello.msgtype == MsgType.SET_LOCKSTEP_ID:
        return f"lockstep{hello.game_id}"
    return None


class DispatcherServicer(cluster_pb2_grpc.DispatcherServicer):
    def __init__(
        self,
        service: DispatcherService,
        verifier: TokenVerifier | None = None,
        *,
        flush_interval: float = 0.0,
    ) -> None:
        self.service = service
        self.verifier = verifier  # None: every stream is taken at its word (no secret)
        self.flush_interval = flush_interval  # BatchWriter.min_interval of every peer's stream
        self.refused = 0  # streams refused by the authentication
        #: peer name -> the conversation with its current process (batch numbering)
        self.conversations: dict[str, Conversation] = {}

    async def Connect(
        self, request_iterator: AsyncIterator[Batch], context: grpc.aio.ServicerContext
    ) -> None:
        identity = await self._admit(context)
        await context.send_initial_metadata((ACCEPTED_METADATA,))
        it = request_iterator.__aiter__()
        try:
            first = await it.__anext__()
        except StopAsyncIteration:
            return
        if not first.messages:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "empty first batch")
        hello = first.messages[0]
        if identity is not None:
            await self._check_hello(identity, hello, context)
        task = asyncio.current_task()
        assert task is not None
        conversation = self._conversation(hello, first.epoch)
        writer = BatchWriter(
            context.write, self.flush_interval,
            conversation.outgoing if conversation is not None else None,
        )
        if conversation is not None:  # the same process again: what it may have lost, first
            writer.write_first(conversation.outgoing.resend())
        joined = self._join(hello, writer, task)
        if joined is None:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"first message must be SET_GAME_ID, SET_GATE_ID or SET_LOCKSTEP_ID, got {hello.msgtype}",
            )
            return
        peer_id, peer, handle, heard, left = joined
        writer_task = asyncio.create_task(writer.run(), name=f"writer-{peer.name}")
        try:
            for env in first.messages[1:]:
                handle(peer_id, env)
            incoming = conversation.incoming if conversation is not None else None
            async for batch in it:
                if heard is not None:
                    heard(peer_id)
                peer.received_batches += 1
                if incoming is not None and not incoming.accept(batch):
                    continue  # had arrived before the stream broke
                peer.received += len(batch.messages)
                for env in batch.messages:
                    handle(peer_id, env)
        except asyncio.CancelledError:
            logger.info("%s: stream closed by the dispatcher", peer.name)
        finally:
            writer_task.cancel()
            left(peer_id, peer)
            self.service.requeue(peer.name, writer.take())

    def _conversation(self, hello: Envelope, epoch: int) -> Conversation | None:
        """The conversation with the process behind ``hello`` (None: a peer that does not
        number its batches); the same process again: what was last written to it first."""
        key = _peer_key(hello)
        if key is None or not epoch:
            return None
        known = self.conversations.get(key)
        if known is not None and known.peer_epoch == epoch:
            return known
        fresh = Conversation(epoch, Outgoing(peer_epoch=epoch))
        self.conversations[key] = fresh
        return fresh

    def _join(self, hello: Envelope, writer: BatchWriter, task: asyncio.Task[object]) -> _Joined | None:
        """Tell the service who connected (from its hello); None for a hello of no kind."""
        service = self.service
        if hello.msgtype == MsgType.SET_GAME_ID:
            peer = StreamPeer(f"game{hello.game_id}", writer, task)
            service.game_connected(hello.game_id, peer, hello)
            # a game's health: it sends something
            return hello.game_id, peer, service.handle_game, service.game_heard, service.game_disconnected
        if hello.msgtype == MsgType.SET_GATE_ID:
            peer = StreamPeer(f"gate{hello.gate_id}", writer, task)
            service.gate_connected(hello.gate_id, peer, hello.name)
            return hello.gate_id, peer, service.handle_gate, None, service.gate_disconnected
        if hello.msgtype == MsgType.SET_LOCKSTEP_ID:
            peer = StreamPeer(f"lockstep{hello.game_id}", writer, task)
            service.lockstep_connected(hello.game_id, peer, hello)
            return hello.game_id, peer, service.handle_lockstep, None, service.lockstep_disconnected
        return None

    async def _admit(self, context: grpc.aio.ServicerContext) -> Identity | None:
        """The identity the stream's token proves (None without a verifier); a refused
        stream is aborted here."""
        if self.verifier is None:
            return None
        token = None
        for key, value in context.invocation_metadata() or ():
            if key == METADATA_KEY and isinstance(value, str):
                token = value
        try:
            return self.verifier.verify(token)
        except AuthRefused as exc:
            await self._refuse(context, grpc.StatusCode.UNAUTHENTICATED, str(exc))
            raise  # not reached: abort raises

    async def _check_hello(
        self, identity: Identity, hello: Envelope, context: grpc.aio.ServicerContext
    ) -> None:
        if hello.msgtype == MsgType.SET_GAME_ID:
            claimed = Identity("game", hello.game_id)
        elif hello.msgtype == MsgType.SET_GATE_ID:
            claimed = Identity("gate", hello.gate_id)
        elif hello.msgtype == MsgType.SET_LOCKSTEP_ID:
            claimed = Identity("lockstep", hello.game_id)
        else:
            return  # refused by Connect as for any stream
        if claimed != identity:
            await self._refuse(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                f"authenticated as {identity}, but its hello says {claimed}",
            )

    async def _refuse(
        self, context: grpc.aio.ServicerContext, code: grpc.StatusCode, reason: str
    ) -> None:
        self.refused += 1
        logger.warning("refused a cluster stream from %s: %s", context.peer(), reason)
        await context.abort(code, reason)
