"""A game's orderly stop (SIGTERM: ``goworld stop``, ``goworld restart``, the supervisor).

Nothing a client or another game already sent may be lost, and every persistent entity is
saved. :func:`shutdown` runs these steps and reports each one in the game's ``stopping`` status
file (JSON, read by ``goworld stop`` to show progress):

1. ``handling``: a :class:`StopBarrier` round trip through every connected dispatcher. A
   dispatcher answers STOP_BARRIER on the game's own stream, after everything it had queued for
   the game, so when every answer is back, every message routed to this game before the stop
   began (the gates drained and stopped first) has been handled. Then posted callbacks and
   pending storage/KVDB operations run out (:func:`drain`).
2. ``saving``: every entity is destroyed (spaces last); a persistent one is saved as it goes.
3. ``saved``: the saves are waited for (``save_timeout``); how many failed or did not finish
   is reported and logged. Storage and KVDB are closed, then the links (flushed).

Bounded everywhere: a dispatcher that does not answer within ``barrier_timeout`` is given up
on (logged); ``goworld stop --timeout`` bounds the whole stop from outside.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from goworld.cluster.envelopes import Envelope
from goworld.entity.space import Space
from goworld.proto.msgtypes import MsgType

if TYPE_CHECKING:
    from game.runtime import GameRuntime
    from goworld.cluster.link import DispatcherLink

__all__ = ["StopBarrier", "drain", "shutdown"]

logger = logging.getLogger("goworld.game")

#: Progress callback: called with the JSON-able report of each step.
Report = Callable[[dict[str, Any]], None]


class StopBarrier:
    """STOP_BARRIER to each dispatcher; :meth:`wait` returns once each has answered."""

    def __init__(self, game_id: int) -> None:
        self.game_id = game_id
        self._waiting: set[int] = set()
        self._done = asyncio.Event()

    def answered(self, dispatcher_id: int) -> None:
        """A dispatcher's STOP_BARRIER came back (:class:`~game.handlers.GameHandlers`)."""
        self._waiting.discard(dispatcher_id)
        if not self._waiting:
            self._done.set()

    async def wait(self, links: dict[int, DispatcherLink], timeout: float) -> list[int]:
        """Send the barrier on every connected link; returns the dispatchers that did not
        answer within ``timeout`` (or were not connected)."""
        self._waiting = {did for did, link in links.items() if link.connected.is_set()}
        missing = sorted(set(links) - self._waiting)
        if not self._waiting:
            return missing
        self._done.clear()
        for did in sorted(self._waiting):
            links[did].send(Envelope(msgtype=MsgType.STOP_BARRIER, game_id=self.game_id))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._done.wait(), timeout)
        return sorted(missing + sorted(self._waiting))


async def drain(rt: GameRuntime, timeout: float, what: str) -> None:
    """Run posted callbacks until no storage/KVDB operation is pending (or ``timeout``;
    ``what`` names the operation in the warning)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        rt.drain_posts()
        if not rt.pending_async:
            return
        if loop.time() > deadline:
            logger.warning(
                "game%d: %s with %d storage/KVDB operations unfinished",
                rt.game_id, what, len(rt.pending_async),
            )
            return
        await asyncio.wait(list(rt.pending_async), timeout=max(0.0, deadline - loop.time()))
        await asyncio.sleep(0)


def destroy_all(rt: GameRuntime) -> int:
    """Destroy every entity, spaces last (a persistent one is saved); returns how many
    persistent entities were saved. Clients still bound to an entity here (the gates are up:
    this game alone stops) are closed, told why (code ``game_lost``, as for a dead game)."""
    entities = list(rt.entities.values())
    persistent = sum(1 for e in entities if e.desc.persistent)
    reason = f"the game server that hosted your player (game{rt.game_id}) stopped: log in again"
    for entity in entities:
        client = entity.client
        if client is not None:
            rt.outbox.kick_client(client.client_id, client.gate_id, reason, code="game_lost")
    for entity in entities:
        if not isinstance(entity, Space):
            rt.destroy_entity(entity)
    for entity in list(rt.entities.values()):
        rt.destroy_entity(entity)
    rt.collect_syncs()
    return persistent


async def wait_saves(saves: Iterable[asyncio.Future[Any]], timeout: float) -> tuple[int, int]:
    """Wait for ``saves``; returns (failed, unfinished)."""
    saves = list(saves)
    if not saves:
        return 0, 0
    done, pending = await asyncio.wait(saves, timeout=timeout)
    failed = sum(1 for f in done if not f.cancelled() and f.exception() is not None)
    return failed, len(pending)


async def shutdown(
    rt: GameRuntime,
    links: dict[int, DispatcherLink],
    backends: Iterable[object],
    barrier: StopBarrier,
    report: Report,
    *,
    barrier_timeout: float = 5.0,
    save_timeout: float = 60.0,
) -> None:
    """The stop sequence of the module docstring."""
    gid = rt.game_id
    started = time.monotonic()
    report({"phase": "handling", "entities": len(rt.entities)})
    unanswered = await barrier.wait(links, barrier_timeout)
    if unanswered:
        logger.warning(
            "game%d stopping: dispatcher(s) %s did not confirm that everything for this game "
            "was delivered", gid, ", ".join(map(str, unanswered)),
        )
    await drain(rt, barrier_timeout, "stopping")
    entities = len(rt.entities)
    logger.info("game%d stopping: destroying %d entities", gid, entities)
    persistent = destroy_all(rt)
    report({"phase": "saving", "entities": entities, "persistent": persistent})
    failed, unfinished = await wait_saves(rt.pending_saves, save_timeout)
    saved = max(persistent - failed - unfinished, 0)
    if failed or unfinished:
        logger.error(
            "game%d stopping: %d of %d saves failed, %d did not finish within %.0f s",
            gid, failed, persistent, unfinished, save_timeout,
        )
    seconds = round(time.monotonic() - started, 3)
    report({
        "phase": "saved", "entities": entities, "persistent": persistent, "saved": saved,
        "failed": failed, "unfinished": unfinished, "seconds": seconds,
    })
    for backend in backends:
        close = getattr(backend, "close", None)
        if close is not None:
            try:
                await close()
            except Exception:
                logger.exception("closing %r failed", backend)
    for link in links.values():
        await link.close(flush_timeout=5.0)
    logger.info("game%d stopped: %d persistent entities saved in %.2f s", gid, saved, seconds)


def status_writer(write: Callable[[str], object]) -> Report:
    """A :data:`Report` that writes each step as JSON with ``write`` (errors logged)."""

    def report(step: dict[str, Any]) -> None:
        try:
            write(json.dumps(step))
        except OSError as exc:
            logger.error("cannot write the stopping status file: %s", exc)

    return report
