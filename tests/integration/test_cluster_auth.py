"""The cluster's own ports are not open doors (issue 16): impostors on a dispatcher's gRPC port.

Before cluster authentication one unauthenticated stream whose hello said "gate 1" made the
dispatcher drop the real gate1 and all its clients, and a loop of streams saying "game 1"
kept game1 offline. Here a real cluster (started by the CLI, so with the secret it generated
in .goworld/cluster.secret) has a logged-in player; impostors open ``Dispatcher.Connect``
streams without credentials, with credentials made from another secret, with a real token
for game1 whose hello claims gate1, and with a replayed token. Each is refused with its gRPC
status, each refusal is logged with the peer's address, and the player never notices.
"""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import grpc
import pytest

from goworld import runctl
from goworld.client import GoWorldClient
from goworld.cluster import auth
from goworld.cluster.envelopes import Batch, Envelope
from goworld.proto.msgtypes import MsgType
from goworld.rpc import cluster_pb2_grpc
from goworld.testing import ClusterRunner, login, make_key_pair, parse_metrics, running_cluster

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "tests" / "apps" / "cluster_app"

Metadata = Sequence[tuple[str, str]]
LOCAL_POOL = [("grpc.use_local_subchannel_pool", 1)]


def _hello(role: str) -> Envelope:
    if role == "gate":
        return Envelope(msgtype=MsgType.SET_GATE_ID, gate_id=1, name="impostor")
    return Envelope(msgtype=MsgType.SET_GAME_ID, game_id=1)


async def _impostor(address: str, role: str, metadata: Metadata | None) -> tuple[grpc.StatusCode, str]:
    """One stream saying it is ``role``1: the status and details the dispatcher ends it with
    (OK if it kept the stream open: taken for the real one)."""
    # its own connection, as separate impostors have: grpcio would otherwise share one between
    # channels to the same address, and the dispatcher's cap of streams per connection refuses
    # the excess of a flood with RST_STREAM (REFUSED_STREAM) before authentication is reached
    async with grpc.aio.insecure_channel(address, options=LOCAL_POOL) as channel:
        call = cluster_pb2_grpc.DispatcherStub(channel).Connect(metadata=metadata)
        try:
            # as our links do: write once the dispatcher took the stream (grpcio's aio client
            # reports a write racing the refusal as INTERNAL instead of the status, grpc#36066)
            if auth.ACCEPTED_METADATA in tuple(await call.initial_metadata() or ()):
                await call.write(Batch(messages=[_hello(role)]))
            while True:  # an accepted impostor would be sent the routing traffic: read it all
                if await asyncio.wait_for(call.read(), 5) is grpc.aio.EOF:
                    break
        except grpc.aio.AioRpcError:
            pass
        except TimeoutError:
            call.cancel()
            return grpc.StatusCode.OK, "kept open"
        return await call.code(), await call.details()


def _token(secret: bytes, identity: auth.Identity) -> Metadata:
    return ((auth.METADATA_KEY, auth.make_token(secret, identity, 1, time.time())),)


async def _echo(client: GoWorldClient, seq: int) -> None:
    client.call_player("Echo", seq)

    def seen() -> bool:
        return any(c.method == "OnEcho" and c.args[0] == seq for c in client.calls)

    await client.wait_until(seen, 30)


def _refusals(runner: ClusterRunner) -> list[str]:
    return runner.grep("refused a cluster stream from")


def _attempts(secret: bytes) -> list[tuple[str, Metadata | None, grpc.StatusCode, str]]:
    """(hello's role, metadata, expected status, expected reason): every kind of impostor."""
    wrong = b"not-the-cluster-secret-0123456789"
    gate1, game1 = auth.Identity("gate", 1), auth.Identity("game", 1)
    unauthenticated, denied = grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED
    return [
        ("gate", None, unauthenticated, "no cluster credentials"),
        ("gate", ((auth.METADATA_KEY, "v1:gate1:garbage"),), unauthenticated, "malformed"),
        ("gate", _token(wrong, gate1), unauthenticated, "wrong cluster credentials"),
        ("gate", _token(secret, game1), denied, "authenticated as game1, but its hello says gate1"),
        ("game", None, unauthenticated, "no cluster credentials"),
        ("game", _token(wrong, game1), unauthenticated, "wrong cluster credentials"),
        ("game", _token(secret, gate1), denied, "authenticated as gate1, but its hello says game1"),
    ]


@pytest.mark.asyncio
async def test_impostors_are_refused_logged_and_the_real_gate_and_game_are_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(auth.SECRET_ENV, raising=False)  # the secret goworld start makes
    with running_cluster(tmp_path, APP, dispatchers=1, games=1, gates=1) as runner:
        address = f"127.0.0.1:{runner.ports['dispatcher'][0]}"
        secret_file = runctl.run_dir(tmp_path) / runctl.CLUSTER_SECRET_FILE
        secret = secret_file.read_text().strip().encode()
        assert secret_file.stat().st_mode & 0o077 == 0
        player = await login(runner, "alice")
        try:
            await _echo(player, 1)
            for role, metadata, status, reason in _attempts(secret):
                got = await _impostor(address, role, metadata)
                assert got[0] == status and reason in got[1], (role, got, runner.logs())
            # a real token used twice: its second use is a replay
            once = _token(secret, auth.Identity("game", 1))
            assert (await _impostor(address, "gate", once))[0] == grpc.StatusCode.PERMISSION_DENIED
            got = await _impostor(address, "game", once)
            assert got == (grpc.StatusCode.UNAUTHENTICATED, "replayed cluster credentials"), got
            await _echo(player, 2)

            # each refusal is one WARNING naming the peer's address and the reason (9 so far:
            # under the log's repeat limit, 10 per template per 10 s)
            text = "\n".join(_refusals(runner))
            for reason in ("no cluster credentials", "malformed cluster credentials",
                           "wrong cluster credentials", "authenticated as game1, but its hello says gate1",
                           "authenticated as gate1, but its hello says game1",
                           "replayed cluster credentials"):
                assert reason in text, (reason, text)
            assert len(_refusals(runner)) == 9, text
            assert re.search(r"WARNING goworld.dispatcher: refused a cluster stream from "
                             r"ipv4:127\.0\.0\.1:[0-9]+: no cluster credentials", text), text

            # loops of impostors saying gate1 or game1 while the players play
            for round_ in range(3):
                for role, metadata, status, _ in _attempts(secret):
                    assert (await _impostor(address, role, metadata))[0] == status
                await _echo(player, 10 + round_)
            flood = await asyncio.gather(*(_impostor(address, "game", None) for _ in range(30)))
            got_flood = sorted({f"{code.name}: {details}" for code, details in flood})
            assert got_flood == ["UNAUTHENTICATED: no cluster credentials"], got_flood
            # an operator's credentials (goworld stop --cluster's) are no stream's
            ops = await _impostor(address, "gate", _token(secret, auth.Identity("ops", 1)))
            assert ops == (grpc.StatusCode.PERMISSION_DENIED, "authenticated as ops1, but its hello says gate1"), ops
            await _echo(player, 100)
            assert not player.is_closed
            newcomer = await asyncio.wait_for(login(runner, "bob"), 30)  # game1 takes new players
            await _echo(newcomer, 200)
            newcomer.close()

            assert len(_refusals(runner)) <= 10, "the flood is summarised, not logged line by line"
            assert _refused_metric(runner) >= 9 + 3 + 30  # every refusal counted in /metrics
            assert not runner.grep("connected again: dropping its previous connection"), runner.logs()
            assert not runner.grep("gate1 disconnected") and not runner.grep("game1 disconnected")
            assert not runner.grep("game1 is down")
            logs = "\n".join(p.read_text() for p in tmp_path.glob("*.log"))
            assert secret.decode() not in logs
        finally:
            player.close()


def _refused_metric(runner: ClusterRunner) -> float:
    """goworld_dispatcher_refused_streams_total from dispatcher1's /metrics (loopback: no token)."""
    addr = runner.config().dispatchers[1].http_addr
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=5) as resp:
        scraped = parse_metrics(resp.read().decode())
    return scraped["goworld_dispatcher_refused_streams_total"][()]


async def _tls_impostor(
    address: str, credentials: grpc.ChannelCredentials | None, *, hello: bool = True
) -> grpc.StatusCode:
    """A stream saying it is gate1 over plaintext or TLS with ``credentials``: how it ends
    (OK: taken; without ``hello``, as soon as the dispatcher takes it)."""
    channel = (
        grpc.aio.insecure_channel(address) if credentials is None
        else grpc.aio.secure_channel(address, credentials,
                                     options=[("grpc.ssl_target_name_override", "goworld")])
    )
    async with channel:
        call = cluster_pb2_grpc.DispatcherStub(channel).Connect()
        try:
            if auth.ACCEPTED_METADATA in tuple(await asyncio.wait_for(call.initial_metadata(), 10) or ()):
                if not hello:
                    call.cancel()
                    return grpc.StatusCode.OK
                await call.write(Batch(messages=[_hello("gate")]))
                await asyncio.wait_for(call.read(), 3)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        except TimeoutError:
            call.cancel()
            return grpc.StatusCode.OK  # taken
        return await call.code()


@pytest.mark.asyncio
async def test_mutual_tls_alone_keeps_out_whoever_has_no_certificate_of_the_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """[deployment] cluster_tls_*: the dispatcher listens on every interface with no cluster
    secret (allowed with mutual TLS), games and gates dial it with the cluster's certificate;
    plaintext, a TLS client without a certificate and one with a certificate of another CA
    never get a stream, and the player never notices."""
    monkeypatch.delenv(auth.SECRET_ENV, raising=False)
    key, crt = make_key_pair(tmp_path, "cluster")  # self-signed: its own CA, CN goworld
    other_key, other_crt = make_key_pair(tmp_path, "other")
    runner = ClusterRunner(tmp_path, APP, dispatchers=1, games=1, gates=1)
    port = runner.ports["dispatcher"][0]
    text = runner.ini.read_text()
    text = text.replace("[deployment]\n", "[deployment]\ncluster_tls_ca = cluster.crt\n"
                        "cluster_tls_cert = cluster.crt\ncluster_tls_key = cluster.key\n"
                        "cluster_tls_server_name = goworld\n", 1)
    text = text.replace(f"listen_addr = 127.0.0.1:{port}", f"listen_addr = 0.0.0.0:{port}", 1)
    runner.ini.write_text(text)
    runner.start()
    try:
        assert not (runctl.run_dir(tmp_path) / runctl.CLUSTER_SECRET_FILE).exists()
        player = await login(runner, "alice")
        try:
            await _echo(player, 1)
            address = f"127.0.0.1:{port}"
            ca = crt.read_bytes()
            for credentials in (
                None,
                grpc.ssl_channel_credentials(ca),  # no client certificate
                grpc.ssl_channel_credentials(ca, other_key.read_bytes(), other_crt.read_bytes()),
            ):
                for _ in range(3):
                    assert await _tls_impostor(address, credentials) == grpc.StatusCode.UNAVAILABLE
                await _echo(player, 2)
            # the control: with the cluster's certificate a stream is taken (no secret asked)
            good = grpc.ssl_channel_credentials(ca, key.read_bytes(), crt.read_bytes())
            assert await _tls_impostor(address, good, hello=False) == grpc.StatusCode.OK
            assert not runner.grep("connected again: dropping its previous connection")
            assert runner.grep("listening on 0.0.0.0:") and runner.grep("(mutual TLS)")
            assert runner.grep("streams need a certificate of the cluster's CA")
        finally:
            player.close()
    finally:
        runner.stop()
        runner.kill()


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    """The dispatcher closed this connection within ``seconds`` (EOF or a reset)."""
    try:
        while await asyncio.wait_for(reader.read(4096), seconds):
            pass  # HTTP/2 frames it sent (its settings); EOF ends the loop
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


@pytest.mark.asyncio
async def test_a_flood_of_silent_connections_is_bounded_and_timed_out(tmp_path: Path) -> None:
    """Connections to the gRPC port are capped (max_cluster_connections: more are closed as they
    come), one that never speaks HTTP/2 is closed after cluster_handshake_timeout, and one that
    speaks it but opens no stream after cluster_idle_timeout; the cluster's own streams and the
    player never notice."""
    bounds = "max_cluster_connections = 8\ncluster_handshake_timeout = 2\ncluster_idle_timeout = 6\n"
    with running_cluster(tmp_path, APP, dispatchers=1, games=1, gates=1,
                         dispatcher_extra=bounds) as runner:
        port = runner.ports["dispatcher"][0]
        player = await login(runner, "flooded")
        conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        try:
            await _echo(player, 1)
            for _ in range(20):
                conns.append(await asyncio.open_connection("127.0.0.1", port))
            # the game and the gate hold 2 of the 8: at most 6 of these are kept for now
            early = await asyncio.gather(*(_closed_within(r, 1.0) for r, _ in conns))
            assert sum(early) >= 14, early
            # the kept ones never send the HTTP/2 preface: closed after the handshake timeout
            # (2 s), well before the idle timeout (6 s) could have done it
            late = await asyncio.gather(*(_closed_within(r, 3.0) for r, _ in conns))
            assert all(late), late
            await _echo(player, 2)
            # an HTTP/2 connection without a stream goes after the idle timeout
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                await asyncio.wait_for(channel.channel_ready(), 5)
                assert channel.get_state() == grpc.ChannelConnectivity.READY
                deadline = time.monotonic() + 15
                while channel.get_state() == grpc.ChannelConnectivity.READY:
                    assert time.monotonic() < deadline, "the idle connection was kept"
                    await asyncio.sleep(0.2)
            await _echo(player, 3)
            assert runner.grep(": reconnected") == [], runner.logs()  # nobody of the cluster lost its stream
        finally:
            for _, w in conns:
                w.close()
            await player.aclose()
