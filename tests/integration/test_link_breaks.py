"""A broken cluster connection is not a dead process: real processes (tests/apps/cluster_app,
1 + 1 + 1 started by ``goworld start``) whose streams to the dispatcher run through a TCP relay
in this test (the dispatcher's advertise_addr). The relay resets every connection it carries,
as a flaky network or a restarted middlebox would: the game's and the gate's links reconnect,
the dispatcher holds the game's entities (``game_reconnect_grace``) and the gate's clients (its
own grace) meanwhile, and the players notice nothing but a delay: no client is closed, a call
made during the break is answered, the avatars keep their state.

Nothing is timed: outcomes are awaited with generous bounds."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from goworld.testing import ClusterRunner, login

APP = Path(__file__).resolve().parents[1] / "apps" / "cluster_app"
WAIT = 60.0


class Relay:
    """127.0.0.1:port -> target; :meth:`reset_all` aborts every connection (RST both ways)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.pairs: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self.accepted = 0
        self.refusing = False  # while True, new connections are reset at once (a partition)
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer, up_writer)
        self.pairs.append(pair)
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            with contextlib.suppress(ValueError):
                self.pairs.remove(pair)
            writer.transport.abort()
            up_writer.transport.abort()

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        dst.transport.abort()

    def reset_all(self) -> int:
        pairs, self.pairs = self.pairs, []
        for a, b in pairs:
            a.transport.abort()
            b.transport.abort()
        return len(pairs)

    async def close(self) -> None:
        self.reset_all()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def wait_for_log(path: Path, text: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT
    while text not in path.read_text():
        assert asyncio.get_running_loop().time() < deadline, f"no {text!r} in {path}"
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def relayed_cluster(directory: Path, **ini: str) -> AsyncIterator[tuple[ClusterRunner, Relay]]:
    runner = ClusterRunner(directory, APP, dispatchers=1, games=1, gates=1, **ini)
    relay = Relay(runner.ports["dispatcher"][0])
    port = await relay.start()
    text = runner.ini.read_text()
    text, n = re.subn(r"(?m)^advertise_addr = 127\.0\.0\.1:\d+$", f"advertise_addr = 127.0.0.1:{port}", text)
    assert n == 1
    runner.ini.write_text(text + "[supervisor]\nrestart_backoff = 0.2\n")
    try:
        # goworld start blocks until the game serves: the relay must run meanwhile
        await asyncio.to_thread(runner.start)
        yield runner, relay
    finally:
        await asyncio.to_thread(runner.stop)
        await asyncio.to_thread(runner.kill)
        await relay.close()


@pytest_asyncio.fixture
async def relayed(tmp_path: Path) -> AsyncIterator[tuple[ClusterRunner, Relay]]:
    async with relayed_cluster(tmp_path) as pair:
        yield pair


@pytest.mark.asyncio
async def test_players_ride_out_a_reset_of_every_cluster_connection(
    relayed: tuple[ClusterRunner, Relay],
) -> None:
    runner, relay = relayed
    players = [await login(runner, f"rider{i}") for i in range(3)]
    try:
        for i, client in enumerate(players):
            client.call_player("Echo", i, "before")
            assert (await client.wait_call("OnEcho", WAIT)).args == (i, "before")
        links_before = relay.accepted
        assert relay.reset_all() == 2  # the game's stream and the gate's
        # A call made while the links are down is queued (the gate's link, then the
        # dispatcher's hold for the game) and answered once they are back.
        seen = [len(client.calls) for client in players]
        for i, client in enumerate(players):
            client.call_player("Echo", 100 + i, "during")
        for i, client in enumerate(players):
            call = await client.wait_call("OnEcho", WAIT, start=seen[i])
            assert call.args == (100 + i, "during")
        assert relay.accepted >= links_before + 2  # both reconnected through the relay
        for client in players:
            assert not client.is_closed, (client.close_code, client.close_reason)
        # the game is healthy again: a newcomer logs in and is served
        newcomer = await login(runner, "newcomer")
        newcomer.call_player("Echo", 7, "after")
        assert (await newcomer.wait_call("OnEcho", WAIT)).args == (7, "after")
        await newcomer.aclose()
    finally:
        for client in players:
            await client.aclose()
    dispatcher_log = (runner.dir / "dispatcher1.log").read_text()
    assert "game1's stream ended: its entities and their clients are kept" in dispatcher_log
    assert "game1 reconnected within its grace" in dispatcher_log
    assert "game1 is down" not in dispatcher_log


@pytest.mark.asyncio
async def test_a_game_back_after_its_grace_drops_the_clients_the_gates_closed(tmp_path: Path) -> None:
    """The links stay down longer than game_reconnect_grace (1 s here): the dispatcher takes the
    game for dead and the gate closes its players (told why); when the same game process does
    come back, it is told, and its avatars lose their clients too (saved and destroyed by
    cluster_app) instead of waiting for clients that no longer exist. The players log in again."""
    async with relayed_cluster(tmp_path, dispatcher_extra="game_reconnect_grace = 1") as (runner, relay):
        players = [await login(runner, f"late{i}") for i in range(2)]
        relay.refusing = True
        relay.reset_all()
        try:
            await wait_for_log(runner.dir / "dispatcher1.log", "game1 did not reconnect within 1 s")
            await asyncio.sleep(1.0)  # still partitioned a while after the grace
        finally:
            relay.refusing = False
        for client in players:
            await asyncio.wait_for(asyncio.shield(client.closed), WAIT)
            assert client.close_code == "game_lost", client.close_reason
        await wait_for_log(runner.dir / "dispatcher1.log", "game1 reconnected after it was taken for dead")
        await wait_for_log(runner.dir / "game1.log", "2 entities lost their clients")
        for i in range(2):
            again = await login(runner, f"late{i}")
            again.call_player("Echo", i, "again")
            assert (await again.wait_call("OnEcho", WAIT)).args == (i, "again")
            await again.aclose()


@pytest.mark.asyncio
async def test_traffic_in_flight_at_a_reset_arrives_once_and_in_order(
    relayed: tuple[ClusterRunner, Relay],
) -> None:
    """Players pump Echo calls every few ms while every cluster connection is reset, twice:
    each call is answered exactly once, in order. What the broken streams held in flight is
    written again by both sides after the reconnect (goworld.cluster.sequence) and what had
    arrived already is taken once."""
    runner, relay = relayed
    players = [await login(runner, f"pump{i}") for i in range(3)]
    sent = 0
    resets = 0

    async def pump() -> None:
        nonlocal sent
        while resets < 2 or sent < mark + 100:
            for client in players:
                client.call_player("Echo", sent, "x")
            sent += 1
            await asyncio.sleep(0.005)

    mark = 100
    try:
        pumping = asyncio.create_task(pump())
        log = runner.dir / "dispatcher1.log"

        def back() -> bool:  # both streams up again since the last reset, calls flowing
            text = log.read_text()
            return (sent >= mark and text.count("game1 reconnected within its grace") == resets
                    and text.count("gate1 reconnected within its grace") == resets)

        for _ in range(2):
            while not back():
                await asyncio.sleep(0.01)
            assert relay.reset_all() >= 2
            resets += 1
            mark = sent + 100
        await pumping
        for client in players:
            deadline = asyncio.get_running_loop().time() + WAIT
            while sum(1 for c in client.calls if c.method == "OnEcho") < sent:
                assert asyncio.get_running_loop().time() < deadline, (
                    f"{sum(1 for c in client.calls if c.method == 'OnEcho')} of {sent} answered")
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # and nothing more comes (no duplicate)
            seqs = [c.args[0] for c in client.calls if c.method == "OnEcho"]
            assert seqs == list(range(sent)), "lost, duplicated or reordered echoes"
            assert not client.is_closed
    finally:
        for client in players:
            await client.aclose()
    text = (runner.dir / "dispatcher1.log").read_text()
    assert text.count("game1 reconnected within its grace") == 2
