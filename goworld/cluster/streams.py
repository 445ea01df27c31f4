"""Batched gRPC stream plumbing shared by the dispatcher (server side) and games/gates (clients).

:class:`BatchWriter` queues envelopes and writes everything queued as **one** ``Batch`` per
loop iteration: ``send`` only appends and wakes the writer task, which swaps the queue out and
awaits the write. While a write is in flight new envelopes accumulate, so under load batches
grow by themselves and the per-item gRPC cost (~75 µs) is paid once per batch, not per message.
With ``min_interval`` (the ini's ``link_flush_interval_ms``, 2 ms by default) a write that
follows the previous one sooner waits for the rest of the interval, gathering what comes
meanwhile: an idle stream writes at once, a busy one at most once per interval (GoWorld's
connections wait a little before a flush too). Measured under GoWorld's bot at N=1000 on
1+1+1: 2 ms saves ~5 % of the cluster's CPU per bot action (dispatcher ~6 %) for ~0.5 ms more
latency; 10 ms saved ~12 % for ~8 ms.

With an ``outgoing`` (:class:`~goworld.cluster.sequence.Outgoing`, the conversation with the
peer, kept across its streams) every batch is numbered and retained for a resend; batches
given to :meth:`BatchWriter.write_first` (a hello, a resend) go out before anything queued.

The writer counts the bytes it holds (queued and in flight, each envelope as its payload plus
:data:`ENVELOPE_OVERHEAD`): :attr:`BatchWriter.backlog_bytes` is how far behind the peer is.
It does not refuse anything itself; its owners bound it (the dispatcher per peer, a link per
dispatcher) and decide what to hold back or drop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from goworld.cluster.envelopes import Batch, Envelope
from goworld.cluster.sequence import Outgoing

__all__ = ["BatchWriter", "ENVELOPE_OVERHEAD", "GRPC_OPTIONS", "envelope_size"]

#: What an envelope costs beyond its payload, as counted against queue bounds.
ENVELOPE_OVERHEAD = 64


def envelope_size(env: Envelope) -> int:
    """An envelope's weight in queue bounds (cheap: no serialisation)."""
    return len(env.payload) + ENVELOPE_OVERHEAD

#: Channel/server options: large batches are fine (client packets go up to 32 MiB).
GRPC_OPTIONS = [
    ("grpc.max_send_message_length", 256 * 1024 * 1024),
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
]


class BatchWriter:
    """Collects envelopes for one stream and writes them in batches from one task."""

    __slots__ = (
        "_queue", "_wakeup", "_closed", "_write", "batches_sent", "messages_sent", "backlog_bytes",
        "_queued_bytes", "bytes_sent", "min_interval", "outgoing", "_first",
    )

    def __init__(
        self,
        write: Callable[[Batch], Awaitable[object]],
        min_interval: float = 0.0,
        outgoing: Outgoing | None = None,
    ) -> None:
        self.min_interval = min_interval  # seconds from one write to the next, at least
        self.outgoing = outgoing
        self._first: list[Batch] = []
        self._queue: list[Envelope] = []
        self._wakeup = asyncio.Event()
        self._closed = False
        self._write = write
        self.batches_sent = 0
        self.messages_sent = 0
        #: bytes written, as :func:`envelope_size` weighs them (not the exact wire size)
        self.bytes_sent = 0
        #: bytes queued or being written (see :func:`envelope_size`)
        self.backlog_bytes = 0
        self._queued_bytes = 0  # the part still in the queue

    def send(self, env: Envelope) -> None:
        """Queue ``env``; it goes out with the next batch, in order."""
        size = len(env.payload) + ENVELOPE_OVERHEAD
        self.backlog_bytes += size
        self._queued_bytes += size
        self._queue.append(env)
        if len(self._queue) == 1:
            self._wakeup.set()

    def write_first(self, batches: list[Batch]) -> None:
        """Write these (already built) batches before anything queued, in order."""
        if batches:
            self._first.extend(batches)
            self._wakeup.set()

    @property
    def queued(self) -> int:
        return len(self._queue)

    def take(self) -> list[Envelope]:
        """Remove and return everything not yet written (used when a stream breaks)."""
        queue, self._queue = self._queue, []
        self.backlog_bytes -= self._queued_bytes
        self._queued_bytes = 0
        return queue

    def close(self) -> None:
        """Stop the writer task after it has written what is queued."""
        self._closed = True
        self._wakeup.set()

    async def run(self) -> None:
        """Write batches until :meth:`close`; exceptions from the stream propagate."""
        loop = asyncio.get_running_loop()
        interval = self.min_interval
        last = -interval
        while self._first:
            await self._write(self._first.pop(0))
            self.batches_sent += 1
        outgoing = self.outgoing
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if interval and self._queue and not self._closed:
                wait = last + interval - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)  # gather what comes meanwhile
                last = loop.time()
            if self._queue:
                messages, self._queue = self._queue, []
                in_flight, self._queued_bytes = self._queued_bytes, 0
                if outgoing is None:
                    await self._write(Batch(messages=messages))
                else:
                    await self._write(outgoing.stamp(messages, in_flight))
                self.backlog_bytes -= in_flight
                self.batches_sent += 1
                self.messages_sent += len(messages)
                self.bytes_sent += in_flight
                if self._queue:
                    self._wakeup.set()
            if self._closed and not self._queue:
                return
