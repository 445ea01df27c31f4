"""The dispatcher's gRPC adapter: one ``Connect`` stream per game and per gate.

Thin on purpose: it identifies the peer from the first envelope (SET_GAME_ID or SET_GATE_ID),
gives the :class:`~dispatcher.service.DispatcherService` a peer whose ``send`` queues into a
:class:`~goworld.cluster.streams.BatchWriter`, and feeds every received envelope to the
service. Routing decisions all live in the service.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import grpc

from dispatcher.service import DispatcherService
from goworld.cluster.envelopes import Batch, Envelope
from goworld.cluster.streams import BatchWriter
from goworld.proto.msgtypes import MsgType
from goworld.rpc import cluster_pb2_grpc

__all__ = ["DispatcherServicer", "StreamPeer"]

logger = logging.getLogger("goworld.dispatcher")


class StreamPeer:
    """A connected game or gate: ``send`` batches, ``close`` cancels its stream handler."""

    def __init__(self, name: str, writer: BatchWriter, task: asyncio.Task[object]) -> None:
        self.name = name
        self.writer = writer
        self.send = writer.send
        self._task = task

    def close(self) -> None:
        self.writer.close()
        self._task.cancel()

    @property
    def backlog_bytes(self) -> int:
        return self.writer.backlog_bytes

    def __repr__(self) -> str:
        return f"<StreamPeer {self.name}>"


class DispatcherServicer(cluster_pb2_grpc.DispatcherServicer):
    def __init__(self, service: DispatcherService) -> None:
        self.service = service

    async def Connect(
        self, request_iterator: AsyncIterator[Batch], context: grpc.aio.ServicerContext
    ) -> None:
        it = request_iterator.__aiter__()
        try:
            first = await it.__anext__()
        except StopAsyncIteration:
            return
        if not first.messages:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "empty first batch")
        hello = first.messages[0]
        task = asyncio.current_task()
        assert task is not None
        writer = BatchWriter(context.write)
        service = self.service
        handle: Callable[[int, Envelope], None]
        heard: Callable[[int], None] | None = None  # a game's health: it sends something
        if hello.msgtype == MsgType.SET_GAME_ID:
            peer_id = hello.game_id
            peer = StreamPeer(f"game{peer_id}", writer, task)
            service.game_connected(peer_id, peer, hello)
            handle = service.handle_game
            heard = service.game_heard
        elif hello.msgtype == MsgType.SET_GATE_ID:
            peer_id = hello.gate_id
            peer = StreamPeer(f"gate{peer_id}", writer, task)
            service.gate_connected(peer_id, peer, hello.name)
            handle = service.handle_gate
        else:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"first message must be SET_GAME_ID or SET_GATE_ID, got {hello.msgtype}",
            )
            return
        writer_task = asyncio.create_task(writer.run(), name=f"writer-{peer.name}")
        try:
            for env in first.messages[1:]:
                handle(peer_id, env)
            async for batch in it:
                if heard is not None:
                    heard(peer_id)
                for env in batch.messages:
                    handle(peer_id, env)
        except asyncio.CancelledError:
            logger.info("%s: stream closed by the dispatcher", peer.name)
        finally:
            writer_task.cancel()
            if hello.msgtype == MsgType.SET_GAME_ID:
                service.game_disconnected(peer_id, peer)
            else:
                service.gate_disconnected(peer_id, peer)

