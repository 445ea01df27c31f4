"""BatchWriter's backlog accounting and DispatcherLink's bound (no network: a write we control)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from goworld.cluster.envelopes import Batch, Envelope
from goworld.cluster.link import DispatcherLink
from goworld.cluster.streams import ENVELOPE_OVERHEAD, BatchWriter
from goworld.proto.msgtypes import MsgType


def env(size: int) -> Envelope:
    return Envelope(msgtype=MsgType.CALL_ENTITY_METHOD, payload=b"x" * size)


@pytest.mark.asyncio
async def test_backlog_counts_queued_and_in_flight_bytes_until_written() -> None:
    gate = asyncio.Event()
    written: list[Batch] = []

    async def write(batch: Batch) -> None:
        await gate.wait()  # a stalled peer: the write does not complete
        written.append(batch)

    writer = BatchWriter(write)
    task = asyncio.create_task(writer.run())
    writer.send(env(100))
    await asyncio.sleep(0)  # the writer takes the batch: in flight now
    writer.send(env(50))
    assert writer.backlog_bytes == 150 + 2 * ENVELOPE_OVERHEAD
    gate.set()
    for _ in range(10):
        await asyncio.sleep(0)
    assert writer.backlog_bytes == 0 and len(written) == 2
    writer.close()
    await asyncio.wait_for(task, 1)


async def _batches(min_interval: float) -> list[int]:
    """Sizes of the batches written for one envelope, then 5 more sent a loop turn apart."""
    written: list[int] = []

    async def write(batch: Batch) -> None:
        written.append(len(batch.messages))

    writer = BatchWriter(write, min_interval)
    task = asyncio.create_task(writer.run())
    writer.send(env(1))
    for _ in range(3):
        await asyncio.sleep(0)
    first = list(written)
    for _ in range(5):
        writer.send(env(1))
        for _ in range(3):
            await asyncio.sleep(0)
    writer.close()
    await asyncio.wait_for(task, 1)
    assert first == [1]  # an idle stream writes at once, whatever the interval
    return written


@pytest.mark.asyncio
async def test_min_interval_gathers_what_follows_a_write_into_one_batch() -> None:
    assert await _batches(0.0) == [1, 1, 1, 1, 1, 1]  # every loop turn: a write
    assert await _batches(0.05) == [1, 5]  # the five waited for the interval, then went together


@pytest.mark.asyncio
async def test_take_gives_back_the_queue_and_its_bytes() -> None:
    writer = BatchWriter(lambda batch: asyncio.sleep(0))
    writer.send(env(10))
    writer.send(env(20))
    assert [len(e.payload) for e in writer.take()] == [10, 20]
    assert writer.backlog_bytes == 0


@pytest.mark.asyncio
async def test_a_link_to_an_unreachable_dispatcher_holds_a_bounded_backlog(
    caplog: pytest.LogCaptureFixture,
) -> None:
    link = DispatcherLink(
        1, "127.0.0.1:1", hello=lambda: Envelope(), on_message=lambda d, e: None,
        max_backlog_bytes=1000,
    )  # never started: every send waits for a connection
    caplog.set_level(logging.ERROR, "goworld.cluster")
    for _ in range(20):
        link.send(env(100))
    assert link.backlog_bytes <= 1000 + 100 + ENVELOPE_OVERHEAD
    assert link.dropped == 20 - 7
    assert "dispatcher1 is unreachable" in caplog.text
