"""The lockstep service in a real cluster started by the CLI, played by protocol clients.

One cluster (1 dispatcher, 1 game, 1 gate, the lockstep process) runs tests/apps/lockstep_app,
whose RoomKeeper service asks for rooms from game code. Rooms made through the HTTP API are
played by :mod:`goworld.lockstep.client` over KCP and WebSocket at once (real UDP and TCP on
127.0.0.1): every member must receive the same inputs in the same frames.
"""

from __future__ import annotations

import asyncio
import http.client
import itertools
import json
import os
import signal
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from goworld import runctl
from goworld.lockstep import replay
from goworld.lockstep.client import LockstepClient, open_kcp, open_ws
from goworld.lockstep.codec import ErrorCode, MsgId
from goworld.testing import ClusterRunner, free_port

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "tests" / "apps" / "lockstep_app"
_room_ids = itertools.count(1000)

Frame = tuple[int, tuple[tuple[int, int, int, int, int], ...]]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterRunner]:
    runner = ClusterRunner(
        tmp_path_factory.mktemp("lockstep"), APP, dispatchers=1, games=1, gates=1,
        lockstep="max_players = 8\nsession_timeout = 2\nstale_seconds = 1\nlog_level = info\n"
        "replay_dir = replays\nhttp_rooms_per_ip = 0",  # every room here comes from 127.0.0.1
    )
    runner.start()
    try:
        yield runner
    finally:
        stopped = runner.stop()
        runner.kill()
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr


def _http(runner: ClusterRunner, path: str) -> str:
    port = runner.ports["lockstep_http"][0]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
        return reply.read().decode()


def _create(runner: ClusterRunner, members: Sequence[int]) -> int:
    room = next(_room_ids)
    text = _http(runner, f"/create?room={room}&member={','.join(map(str, members))}")
    assert text.startswith(f"room.ID=[{room}] room.Secret=[test_room] room.Time=["), text
    assert text.endswith(f"room.Member=[{','.join(map(str, members))}]"), text
    return room


async def _open(runner: ClusterRunner, transport: str) -> LockstepClient:
    if transport == "kcp":
        return await open_kcp("127.0.0.1", runner.ports["lockstep_kcp"][0])
    return await open_ws(f"ws://127.0.0.1:{runner.ports['lockstep_http'][0]}/ws")


def _with_inputs(client: LockstepClient) -> list[Frame]:
    """The frames that carry inputs, each once (a resync may repeat a frame)."""
    seen: dict[int, Frame] = {}
    for frame in client.frames:
        if frame[1]:
            seen.setdefault(frame[0], frame)
    return [seen[k] for k in sorted(seen)]


async def _join(clients: Sequence[LockstepClient], room: int, players: Sequence[int]) -> None:
    for client, player in zip(clients, players, strict=True):
        assert await client.connect(player, room) == ErrorCode.ERR_Ok
        client.start_heartbeats(0.3)
    for client in clients:
        client.ready()
    for client in clients:
        await client.wait_for(MsgId.MSG_Start, 10)


async def _play(clients: Sequence[LockstepClient], moves: int, gap: float = 0.04) -> None:
    """Each client sends ``moves`` inputs, waiting ``gap`` between rounds (more than a tick:
    one input per player per frame is all the server keeps)."""
    for move in range(moves):
        for seat, client in enumerate(clients, 1):
            client.send_input(move, seat, -move)
        await asyncio.sleep(gap)


async def _finish(clients: Sequence[LockstepClient]) -> None:
    await asyncio.sleep(0.3)  # the last inputs' frame goes out on the next tick
    for client in clients:
        client.result(1)
    await asyncio.wait_for(asyncio.gather(*(c.closed.wait() for c in clients)), 10)


@pytest.mark.parametrize("players", [2, 5, 8])
@pytest.mark.asyncio
async def test_members_over_kcp_and_websocket_get_the_same_frames(
    cluster: ClusterRunner, players: int
) -> None:
    members = list(range(1, players + 1))
    room = _create(cluster, members)
    clients = [await _open(cluster, "kcp" if i % 2 else "ws") for i in range(players)]
    try:
        await _join(clients, room, members)
        joined = await clients[-1].join_room()
        assert joined.roomseatid == players
        assert list(joined.others) == members[:-1]  # seat order, not map order
        await _play(clients, 12)
        await _finish(clients)
        first = _with_inputs(clients[0])
        for client in clients:
            assert client.room_closed and client.error is None
            assert _with_inputs(client) == first
            assert client.last_frame_id == clients[0].last_frame_id
        inputs = [item for _, frame in first for item in frame]
        for seat, player in enumerate(members, 1):
            mine = [item for item in inputs if item[0] == player]
            assert [m[1] for m in mine] == list(range(12)), mine  # every move, in order, once
            assert all(m[4] == seat and m[2] == seat and m[3] == -m[1] for m in mine)
        for frame_id, frame in first:  # one input per player per frame
            assert len({item[0] for item in frame}) == len(frame), frame_id
        # the input log the room saved replays to the same frames
        saved = list((cluster.dir / "replays").glob(f"room-{room}-*.json"))
        assert len(saved) == 1, saved
        assert replay.check(replay.load(saved[0])) == first
    finally:
        for client in clients:
            await client.close()


@pytest.mark.asyncio
async def test_a_reconnecting_player_gets_exactly_the_frames_it_missed(cluster: ClusterRunner) -> None:
    room = _create(cluster, [1, 2, 3])
    clients = [await _open(cluster, t) for t in ("kcp", "ws", "kcp")]
    try:
        await _join(clients, room, [1, 2, 3])
        await _play(clients, 5)
        leaver = clients[2]
        await asyncio.sleep(0.3)
        resume = leaver.next_frame_id
        had = list(leaver.frames)
        await leaver.close()
        await _play(clients[:2], 8)  # the room plays on without player 3
        back = await _open(cluster, "ws")
        clients[2] = back
        assert await back.connect(3, room, resume_frame=resume) == ErrorCode.ERR_Ok
        back.start_heartbeats(0.3)
        back.ready()
        start = await back.wait_for(MsgId.MSG_Start, 5)
        assert start.timeStamp > 0
        await _play(clients, 4)
        await _finish(clients)
        resent = [f for f in back.frames if f[0] < resume]
        assert resent == [], f"frames before {resume} sent again: {resent[:3]}"
        combined = {f[0]: f for f in had + back.frames if f[1]}
        assert [combined[k] for k in sorted(combined)] == _with_inputs(clients[0])
        assert back.last_frame_id == clients[0].last_frame_id
    finally:
        for client in clients:
            await client.close()


@pytest.mark.asyncio
async def test_a_silent_member_does_not_stall_the_others(cluster: ClusterRunner) -> None:
    room = _create(cluster, [1, 2, 3])
    clients = [await _open(cluster, "kcp") for _ in range(3)]
    try:
        await _join(clients, room, [1, 2, 3])
        silent = clients[2]
        silent.stop_heartbeats()  # it sends nothing from now on, and reads nothing
        before = silent.last_frame_id or 0
        await _play(clients[:2], 40, gap=0.05)  # 2 s: past stale_seconds and session_timeout
        await _finish(clients[:2])
        for client in clients[:2]:
            moves = [i for _, f in _with_inputs(client) for i in f]
            assert len(moves) == 80, len(moves)
        assert clients[0].last_frame_id is not None and clients[0].last_frame_id > before + 40
        assert (silent.last_frame_id or 0) < before + 45  # frames stopped going to it
    finally:
        for client in clients:
            await client.close()
    assert cluster.grep("nothing received for 2 s"), cluster.logs()


def _events(runner: ClusterRunner) -> list[dict[str, Any]]:
    path = runner.dir / "lockstep_events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def _wait_event(runner: ClusterRunner, kind: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in _events(runner) if e["event"] == kind]
        if found:
            return found[-1]
        time.sleep(0.1)
    raise AssertionError(f"no {kind} event: {_events(runner)}\n{runner.logs()}")


@pytest.mark.asyncio
async def test_game_code_rooms_survive_a_reload_and_report_their_result(cluster: ClusterRunner) -> None:
    created = _wait_event(cluster, "created")
    info = created["data"]
    refused = _wait_event(cluster, "refused")
    assert "too many players" in refused["data"]["error"]
    assert info["members"] == [11, 12, 13]
    assert info["kcp"] == f"127.0.0.1:{cluster.ports['lockstep_kcp'][0]}"
    tokens = {int(k): v for k, v in info["tokens"].items()}
    room = info["room"]
    clients = [await _open(cluster, t) for t in ("kcp", "ws", "kcp")]
    try:
        assert await clients[0].connect(11, room, token="forged") == ErrorCode.ERR_Token
        assert await clients[0].connect(11, room, token=tokens[12]) == ErrorCode.ERR_Token
        for client, player in zip(clients, (11, 12, 13), strict=True):
            assert await client.connect(player, room, token=tokens[player]) == ErrorCode.ERR_Ok
            client.start_heartbeats(0.3)
            client.ready()
        for client in clients:
            await client.wait_for(MsgId.MSG_Start, 10)
        await _play(clients, 5)
        reload = await asyncio.to_thread(cluster.cli, "reload")
        assert reload.returncode == 0, reload.stdout + reload.stderr
        await _play(clients, 5)  # the room played on through the reload
        await asyncio.sleep(0.3)
        for client in clients:
            client.result(12)
        await asyncio.wait_for(asyncio.gather(*(c.closed.wait() for c in clients)), 10)
        frames = _with_inputs(clients[0])
        assert sum(len(f) for _, f in frames) == 30
        for client in clients:
            assert _with_inputs(client) == frames
    finally:
        for client in clients:
            await client.close()
    result = _wait_event(cluster, "result")
    assert result["pid"] != created["pid"], "the result reached the reloaded game"
    data = result["data"]
    assert data["room"] == room and data["reason"] == "results"
    assert {int(k): v for k, v in data["results"].items()} == {11: 12, 12: 12, 13: 12}
    assert data["members"] == [11, 12, 13] and data["started"] is True
    assert data["frames"] >= clients[0].last_frame_id


def test_the_room_api_and_metrics(cluster: ClusterRunner) -> None:
    room = _create(cluster, [5, 6])
    assert _http(cluster, f"/create?room={room}&member=5,6") == f"room id[{room}] exists"
    assert "<form" in _http(cluster, "/")
    assert _http(cluster, "/?room=1") == ""
    metrics = _http(cluster, "/metrics")
    assert 'goworld_lockstep_rooms{id="1",role="lockstep"}' in metrics
    assert "goworld_lockstep_rooms_created_total" in metrics
    status = json.loads(_http(cluster, "/status"))
    assert status["role"] == "lockstep" and status["rooms"] >= 1
    shown = cluster.cli("status")
    assert "lockstep1" in shown.stdout and "1/1 locksteps" in shown.stdout, shown.stdout


@pytest.mark.asyncio
async def test_hostile_sessions_are_closed_alone(cluster: ClusterRunner) -> None:
    """An oversized body, a message before Connect, a packet flood and raw garbage each cost
    only their own session (one log line each); a room playing meanwhile never notices."""
    room = _create(cluster, [1, 2])
    players = [await _open(cluster, "kcp"), await _open(cluster, "ws")]
    hostile: list[LockstepClient] = []
    try:
        await _join(players, room, [1, 2])
        big = await _open(cluster, "kcp")
        big.send_raw(b"\x07\xd0\x01" + b"x" * 2000)  # a body of 2000 bytes announced
        early = await _open(cluster, "ws")
        early.send(MsgId.MSG_JoinRoom)  # before Connect
        flood = await _open(cluster, "kcp")
        flood.send_raw(b"\x00\x00\x02" * 1000)  # 1000 heartbeats at once
        hostile += [big, early, flood]
        sock = await asyncio.get_running_loop().create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=("127.0.0.1", cluster.ports["lockstep_kcp"][0])
        )
        for n in range(50):  # not KCP at all
            sock[0].sendto(bytes([n]) * (n + 1))
        sock[0].close()
        await _play(players, 10)
        await _finish(players)
        await asyncio.wait_for(early.disconnected.wait(), 5)
    finally:
        for client in players + hostile:
            await client.close()
    first = _with_inputs(players[0])
    assert _with_inputs(players[1]) == first and sum(len(f) for _, f in first) == 20
    cluster.wait_for_log("1024")
    cluster.wait_for_log("message 10 before Connect")
    cluster.wait_for_log("over max_packets_per_sec = 200")
    assert not cluster.grep("Traceback"), cluster.logs()


def _own_cluster(
    factory: pytest.TempPathFactory, name: str, lockstep: str = ""
) -> tuple[ClusterRunner, dict[str, Any], dict[int, str]]:
    """A cluster of its own (1 + 1 + 1 and the lockstep process), started; the room its game
    code made at start and the players' tokens."""
    runner = ClusterRunner(factory.mktemp(name), APP, dispatchers=1, games=1, gates=1,
                           lockstep=f"log_level = info\n{lockstep}")
    runner.start()
    try:
        info = _wait_event(runner, "created")["data"]
    except BaseException:
        runner.kill()
        raise
    return runner, info, {int(k): v for k, v in info["tokens"].items()}


@pytest.mark.asyncio
async def test_a_room_outlives_a_killed_lockstep_process(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """kill -9 of the lockstep process in the middle of a game-code room's match: the supervisor
    restarts it, the room comes back from its journal, the players reconnect (Connect with
    their tokens and the frame they had, then Ready) and get the original Start and the frames
    after theirs; nothing any of them had seen changes, and the owner hears the result."""
    runner, info, tokens = _own_cluster(tmp_path_factory, "lockstep_crash", "replay_dir = replays")
    clients: list[LockstepClient] = []
    try:
        room, players = info["room"], (11, 12, 13)

        async def join(resume: Sequence[int | None]) -> list[int]:
            clients[:] = [await _open(runner, t) for t in ("kcp", "ws", "kcp")]
            for client, player, frame in zip(clients, players, resume, strict=True):
                code = await client.connect(player, room, token=tokens[player], resume_frame=frame)
                assert code == ErrorCode.ERR_Ok, (player, code, runner.logs())
                client.start_heartbeats(0.3)
                client.ready()
            return [(await c.wait_for(MsgId.MSG_Start, 10)).timeStamp for c in clients]

        started = await join([None, None, None])
        await _play(clients, 5)
        await asyncio.sleep(0.3)  # the last inputs' frame goes out
        had = [list(c.frames) for c in clients]
        resume = [c.next_frame_id for c in clients]
        pid = runctl.read_pid(runner.dir / ".goworld", "lockstep1")
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        for client in clients:
            await client.close()
        await asyncio.to_thread(runner.wait_for_log, "rooms brought back from their journals", 1, 60)
        assert await join(resume) == started  # the original StartMsg
        await _play(clients, 4)
        await _finish(clients)
        combined = []
        for before, client, frame in zip(had, clients, resume, strict=True):
            assert all(f[0] >= frame for f in client.frames), "a frame it had was sent again"
            seen = {f[0]: f for f in before + client.frames if f[1]}
            combined.append([seen[k] for k in sorted(seen)])
        assert combined[0] == combined[1] == combined[2]
        for player in players:
            sids = [item[1] for _, frame in combined[0] for item in frame if item[0] == player]
            assert sids == [0, 1, 2, 3, 4, 0, 1, 2, 3], (player, sids)
        saved = list((runner.dir / "replays").glob(f"room-{room}-*.json"))
        assert len(saved) == 1 and replay.check(replay.load(saved[0])) == combined[0]
        result = _wait_event(runner, "result")["data"]
        assert result["room"] == room and result["reason"] == "results"
        assert {int(k): v for k, v in result["results"].items()} == {11: 1, 12: 1, 13: 1}  # _finish
        # the journal goes with the room, after its close wait
        journals = runner.dir / ".goworld" / "lockstep1.rooms"
        deadline = time.monotonic() + 15
        while list(journals.glob("*.journal")):
            assert time.monotonic() < deadline, list(journals.iterdir())
            await asyncio.sleep(0.2)
    finally:
        for client in clients:
            await client.close()
        stopped = runner.stop()
        runner.kill()
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr


@pytest.mark.asyncio
async def test_goworld_stop_closes_rooms_and_reports_them_stopped(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The lockstep process stops after the gates and before the games: players get Close, and
    the owner (still running) hears the result, reason "stopped"."""
    runner, info, tokens = _own_cluster(tmp_path_factory, "lockstep_stop")
    clients: list[LockstepClient] = []
    try:
        for player in (11, 12, 13):
            client = await _open(runner, "kcp")
            clients.append(client)
            assert await client.connect(player, info["room"], token=tokens[player]) == ErrorCode.ERR_Ok
            client.start_heartbeats(0.3)
            client.ready()
        for client in clients:
            await client.wait_for(MsgId.MSG_Start, 10)
        await _play(clients, 3)
        stopped = await asyncio.to_thread(runner.stop)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert "stopping lockstep1" in stopped.stdout, stopped.stdout
        for client in clients:
            await asyncio.wait_for(client.closed.wait(), 5)
            assert client.room_closed  # MSG_Close, not just a lost session
    finally:
        for client in clients:
            await client.close()
        runner.kill()
    result = _wait_event(runner, "result", timeout=5)["data"]
    assert result["room"] == info["room"] and result["reason"] == "stopped"
    assert result["started"] is True and result["frames"] > 0


def test_rooms_are_placed_on_the_least_loaded_of_two_lockstep_processes(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """[lockstep] plus [lockstep2]: two processes; the dispatchers spread game code's rooms
    over them (each answer names the process's own KCP address), and goworld status shows both."""
    monkeypatch.setenv("LOCKSTEP_APP_MORE_ROOMS", "8")
    runner = ClusterRunner(
        tmp_path_factory.mktemp("lockstep_two"), APP, dispatchers=2, games=1, gates=1,
        lockstep="log_level = info",
    )
    second_kcp, second_http = free_port(udp_too=True), free_port()
    with runner.ini.open("a") as ini:
        ini.write(
            f"[lockstep2]\nlisten_addr = 127.0.0.1:{second_kcp}\n"
            f"http_addr = 127.0.0.1:{second_http}\nlog_file = lockstep2.log\n"
        )
    runner.start()
    try:
        deadline = time.monotonic() + 30
        while len(created := [e for e in _events(runner) if e["event"] == "created"]) < 9:
            assert time.monotonic() < deadline, f"{_events(runner)}\n{runner.logs()}"
            time.sleep(0.2)
        places = [e["data"]["kcp"] for e in created[1:]]  # the 8 made once both had joined
        first = f"127.0.0.1:{runner.ports['lockstep_kcp'][0]}"
        second = f"127.0.0.1:{second_kcp}"
        assert set(places) == {first, second}, places
        assert min(places.count(first), places.count(second)) >= 3, places
        shown = runner.cli("status")
        assert "2/2 locksteps" in shown.stdout and "lockstep2" in shown.stdout, shown.stdout
    finally:
        stopped = runner.stop()
        runner.kill()
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "stopping lockstep2" in stopped.stdout


@pytest.mark.asyncio
async def test_one_host_cannot_fill_the_rooms_or_the_sessions(tmp_path: Path) -> None:
    """Per-host bounds of the lockstep process: rooms made over HTTP (http_rooms_per_ip), live
    sessions (max_sessions_per_ip), and sessions that only heartbeat (connect_timeout)."""
    runner = ClusterRunner(
        tmp_path, APP, dispatchers=1, games=1, gates=1,
        lockstep="max_sessions_per_ip = 3\nconnect_timeout = 1\nhttp_rooms_per_ip = 1\nlog_level = info",
    )
    runner.start()
    clients: list[LockstepClient] = []
    try:
        room = _create(runner, [1, 2])
        port = runner.ports["lockstep_http"][0]

        def create_from(source: str, room_id: int) -> tuple[int, str]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5, source_address=(source, 0))
            try:
                conn.request("GET", f"/create?room={room_id}&member=1")
                reply = conn.getresponse()
                return reply.status, reply.read().decode()
            finally:
                conn.close()

        assert create_from("127.0.0.1", room + 1000) == (
            503, "too many rooms from 127.0.0.1 (http_rooms_per_ip = 1)")
        assert create_from("127.0.0.2", room + 1000)[0] == 200  # another host

        clients = [await _open(runner, "ws") for _ in range(4)]
        await asyncio.wait_for(clients[3].closed.wait(), 5)  # the 4th of one host: closed at once
        assert not any(c.closed.is_set() for c in clients[:3])
        assert await clients[0].connect(1, room) == ErrorCode.ERR_Ok
        for client in clients[:3]:
            client.start_heartbeats(0.2)
        # heartbeats alone do not hold a session past connect_timeout; the joined one stays
        await asyncio.wait_for(asyncio.gather(clients[1].closed.wait(), clients[2].closed.wait()), 5)
        assert not clients[0].closed.is_set()
        later = await _open(runner, "ws")  # their places are free again
        clients.append(later)
        assert await later.connect(2, room) == ErrorCode.ERR_Ok
        assert runner.grep("max_sessions_per_ip = 3 reached for 127.0.0.1"), runner.logs()
        assert len(runner.grep("no room joined within connect_timeout = 1 s")) == 2, runner.logs()
    finally:
        for client in clients:
            await client.close()
        runner.stop()
        runner.kill()
