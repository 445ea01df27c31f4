"""A kcp-go client set up exactly like lockstepserver's Go example client plays a room.

lockstepserver's own module cannot be fetched here, so its example client cannot run; the
kcp-go test peer (tests/goworld/net/kcp_peer, ``lockstep-client``) behaves as
../shared/LOCKSTEP.md §13 describes instead: kcp-go's default session settings (§2.2: nodelay 0,
interval 100 ms, windows 32/32, message mode, no ACK no-delay), no FEC, no crypt; Connect,
JoinRoom, Ready, then inputs {sid: 0..n-1}, one message per gap, no Heartbeat; then it closes.
On lockstepserver that client never gets a frame (§12.1: only Heartbeat keeps frames coming);
our server counts any packet as a sign of life (docs/LOCKSTEP-DESIGN.md), so it gets them all.

One cluster (1 dispatcher, 1 game, 1 gate, the lockstep process with its default [lockstep]
settings: stale_seconds 2, session_timeout 5) runs tests/apps/lockstep_app.
"""

from __future__ import annotations

import itertools
import subprocess
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from goworld.testing import ClusterRunner
from tests.goworld.net.kcp_peer_build import require_kcp_peer

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "tests" / "apps" / "lockstep_app"
GAP = "0.3s"  # the Go client waits 1 s; shorter keeps CI quick and stays far below the 2 s staleness
_room_ids = itertools.count(3000)


@pytest.fixture(scope="module")
def peer() -> Path:
    return require_kcp_peer()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, peer: Path) -> Iterator[ClusterRunner]:
    runner = ClusterRunner(
        tmp_path_factory.mktemp("lockstep_kcp_go"), APP, dispatchers=1, games=1, gates=1,
        lockstep="log_level = info",
    )
    runner.start()
    try:
        yield runner
    finally:
        stopped = runner.stop()
        runner.kill()
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr


def _create(runner: ClusterRunner, members: Sequence[int]) -> int:
    room = next(_room_ids)
    port = runner.ports["lockstep_http"][0]
    url = f"http://127.0.0.1:{port}/create?room={room}&member={','.join(map(str, members))}"
    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    assert text.startswith(f"room.ID=[{room}] "), text
    return room


@dataclass
class Played:
    """What one ``kcp_peer lockstep-client`` printed."""

    player: int
    returncode: int
    stdout: str
    stderr: str

    @property
    def messages(self) -> list[tuple[int, str]]:
        """(id, hex body) of every packet received, in order."""
        out = []
        for line in self.stdout.splitlines():
            if line.startswith("MSG "):
                _, msg_id, *body = line.split()
                out.append((int(msg_id), "".join(body)))
        return out

    @property
    def frames(self) -> list[tuple[int, tuple[tuple[int, int], ...]]]:
        """(frameID, ((player, sid), ...)) of every FrameData received."""
        out = []
        for line in self.stdout.splitlines():
            if line.startswith("FRAME "):
                _, frame_id, *rest = line.split()
                items = [item.split(":") for item in rest[0].split(",")] if rest else []
                out.append((int(frame_id), tuple((int(p), int(s)) for p, s in items)))
        return out

    @property
    def with_inputs(self) -> list[tuple[int, tuple[tuple[int, int], ...]]]:
        return [frame for frame in self.frames if frame[1]]

    def explain(self) -> str:
        return f"player {self.player} exited {self.returncode}\n{self.stdout}\n{self.stderr}"


def _play(peer: Path, runner: ClusterRunner, room: int, clients: dict[int, Sequence[str]]) -> list[Played]:
    """Run one ``lockstep-client`` per player at once (extra flags per player); wait for all."""
    address = f"127.0.0.1:{runner.ports['lockstep_kcp'][0]}"
    procs: list[tuple[int, subprocess.Popen[str]]] = []
    try:
        for player, extra in clients.items():
            argv = [str(peer), "lockstep-client", "-udp", address, "-room", str(room),
                    "-id", str(player), "-gap", GAP, *extra]
            procs.append((player, subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )))
        played = []
        for player, proc in procs:
            stdout, stderr = proc.communicate(timeout=30)
            played.append(Played(player, proc.returncode, stdout, stderr))
        return played
    finally:
        for _, proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


def _check_handshake(client: Played, seat_body: str) -> None:
    messages = client.messages
    assert messages[:2] == [(1, "0800"), (10, seat_body)], client.explain()  # ERR_Ok, JoinRoom
    rest = [m for m in messages[2:] if m[0] != 50]
    assert [m[0] for m in rest] == [30, 40], client.explain()  # Ready ack, Start; then frames only
    start = messages.index(rest[1])
    assert start + 1 < len(messages), client.explain()
    assert all(m[0] == 50 for m in messages[start + 1 :]), client.explain()
    assert "READERR" not in client.stdout and "BADFRAME" not in client.stdout, client.explain()


def test_go_example_client_settings_play_a_room(peer: Path, cluster: ClusterRunner) -> None:
    room = _create(cluster, [1, 2])
    one, two = _play(peer, cluster, room, {1: ["-inputs", "10"], 2: ["-inputs", "10"]})
    for client in (one, two):
        assert client.returncode == 0, client.explain()
    # seat 1 of members {1, 2} is byte for byte what lockstepserver sends (LOCKSTEP.md §5)
    _check_handshake(one, "0801100218002000")
    _check_handshake(two, "0802100118002000")
    assert one.with_inputs == two.with_inputs, one.explain() + two.explain()
    inputs = [item for _, frame in one.with_inputs for item in frame]
    for player in (1, 2):
        assert [sid for p, sid in inputs if p == player] == list(range(10)), one.explain()
    assert len(inputs) == 20
    for client in (one, two):
        frame_ids = [frame_id for frame_id, _ in client.frames]
        assert frame_ids == sorted(set(frame_ids)), client.explain()  # each once: no resync
        # never stale (a packet every 0.3 s): a frame message every 3 ticks or sooner
        gaps = [b - a for a, b in itertools.pairwise(frame_ids)]
        assert frame_ids[0] <= 2 and max(gaps) <= 3, client.explain()


def test_a_member_silent_after_ready_stops_getting_frames(peer: Path, cluster: ClusterRunner) -> None:
    """Player 2 sends nothing after Ready but keeps its session open (its kcp-go still ACKs
    what arrives): after stale_seconds (2 s) the room stops sending it frames; player 1, who
    keeps sending inputs, gets all of them. Player 2 closes before session_timeout (5 s)."""
    room = _create(cluster, [1, 2])
    one, two = _play(
        peer, cluster, room, {1: ["-inputs", "14"], 2: ["-inputs", "0", "-hold", "4s"]}
    )
    for client in (one, two):
        assert client.returncode == 0, client.explain()
    _check_handshake(one, "0801100218002000")
    _check_handshake(two, "0802100118002000")
    sids = [sid for _, frame in one.with_inputs for p, sid in frame if p == 1]
    assert sids == list(range(14)), one.explain()
    # player 1's inputs go out from 0.9 s to 4.8 s after Connect; player 2's last packet
    # (Ready) was at 0.6 s, so it is stale from 2.6 s on
    got = two.with_inputs
    assert got == one.with_inputs[: len(got)], one.explain() + two.explain()
    assert 0 < len(got) < 14, two.explain()
    last_frame_two = two.frames[-1][0]
    assert one.frames[-1][0] > last_frame_two + 30, one.explain() + two.explain()  # > 1 s more
