"""DispatcherServicer with a TokenVerifier on a real in-process gRPC server: a real gate link
with the secret joins; streams without it, with another secret, or with a token for another
identity are refused with their status, logged, and never reach the service."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence

import grpc
import pytest
import pytest_asyncio

from dispatcher.server import DispatcherServicer
from dispatcher.service import DispatcherService
from goworld.cluster import auth
from goworld.cluster.envelopes import Batch, Envelope
from goworld.cluster.link import DispatcherLink
from goworld.proto.msgtypes import MsgType
from goworld.rpc import cluster_pb2_grpc

SECRET = auth.ClusterSecret(b"k" * 32, "test")
GATE1 = auth.Identity("gate", 1)
GAME1 = auth.Identity("game", 1)

Metadata = Sequence[tuple[str, str]]


class Connections:
    """Records what the service hears of (the real DispatcherService's connect calls)."""

    def __init__(self, service: DispatcherService) -> None:
        self.seen: list[str] = []
        gate_connected, game_connected = service.gate_connected, service.game_connected

        def on_gate(gate_id: int, *args: object) -> None:
            self.seen.append(f"gate{gate_id}")
            gate_connected(gate_id, *args)  # type: ignore[arg-type]

        def on_game(game_id: int, *args: object) -> None:
            self.seen.append(f"game{game_id}")
            game_connected(game_id, *args)  # type: ignore[arg-type]

        service.gate_connected = on_gate  # type: ignore[method-assign]
        service.game_connected = on_game  # type: ignore[method-assign]


@pytest_asyncio.fixture
async def dispatcher() -> AsyncIterator[tuple[str, DispatcherServicer, Connections]]:
    service = DispatcherService(1, desired_games=1, desired_gates=1, clock=time.monotonic)
    connections = Connections(service)
    servicer = DispatcherServicer(service, auth.TokenVerifier(SECRET, 1))
    server = grpc.aio.server()
    cluster_pb2_grpc.add_DispatcherServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", servicer, connections
    finally:
        await server.stop(0)


def _hello(identity: auth.Identity) -> Envelope:
    if identity.role == "gate":
        return Envelope(msgtype=MsgType.SET_GATE_ID, gate_id=identity.id, name="x")
    return Envelope(msgtype=MsgType.SET_GAME_ID, game_id=identity.id)


async def _stream(address: str, claims: auth.Identity, metadata: Metadata | None) -> grpc.StatusCode:
    async with grpc.aio.insecure_channel(address) as channel:
        call = cluster_pb2_grpc.DispatcherStub(channel).Connect(metadata=metadata)
        try:
            if auth.ACCEPTED_METADATA in tuple(await call.initial_metadata() or ()):
                await call.write(Batch(messages=[_hello(claims)]))
            await asyncio.wait_for(call.read(), 2)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        except TimeoutError:
            return grpc.StatusCode.OK  # still open: accepted
        finally:
            call.cancel()
        return grpc.StatusCode.OK


def _token(identity: auth.Identity, secret: bytes = SECRET.value) -> Metadata:
    return ((auth.METADATA_KEY, auth.make_token(secret, identity, 1, time.time())),)


@pytest.mark.asyncio
async def test_a_real_link_with_the_secret_is_taken(
    dispatcher: tuple[str, DispatcherServicer, Connections],
) -> None:
    address, servicer, connections = dispatcher
    link = DispatcherLink(
        1, address, hello=lambda: _hello(GATE1), on_message=lambda d, e: None,
        auth=auth.TokenSigner(SECRET, GATE1),
    )
    link.start()
    try:
        await asyncio.wait_for(link.connected.wait(), 10)
        for _ in range(100):
            if connections.seen:
                break
            await asyncio.sleep(0.02)
        assert connections.seen == ["gate1"] and servicer.refused == 0
    finally:
        await link.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("case", ["none", "garbage", "other-secret", "other-identity", "other-role"])
async def test_impostors_are_refused_before_the_service_hears_of_them(
    dispatcher: tuple[str, DispatcherServicer, Connections], case: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    address, servicer, connections = dispatcher
    metadata, expected = {
        "none": (None, grpc.StatusCode.UNAUTHENTICATED),
        "garbage": (((auth.METADATA_KEY, "v1:gate1:x"),), grpc.StatusCode.UNAUTHENTICATED),
        "other-secret": (_token(GATE1, b"o" * 32), grpc.StatusCode.UNAUTHENTICATED),
        "other-identity": (_token(auth.Identity("gate", 2)), grpc.StatusCode.PERMISSION_DENIED),
        "other-role": (_token(GAME1), grpc.StatusCode.PERMISSION_DENIED),
    }[case]
    with caplog.at_level(logging.WARNING, logger="goworld.dispatcher"):
        for _ in range(3):
            assert await _stream(address, GATE1, metadata) == expected
            if metadata is not None and expected is grpc.StatusCode.PERMISSION_DENIED:
                metadata = _token(auth.Identity("gate", 2) if case == "other-identity" else GAME1)
    assert connections.seen == [] and servicer.refused == 3
    lines = [r.getMessage() for r in caplog.records if "refused a cluster stream" in r.message]
    assert len(lines) == 3 and all("from ipv4:127.0.0.1:" in line for line in lines), lines


@pytest.mark.asyncio
async def test_a_replayed_token_is_refused(
    dispatcher: tuple[str, DispatcherServicer, Connections],
) -> None:
    address, servicer, connections = dispatcher
    once = _token(GATE1)
    assert await _stream(address, GATE1, once) == grpc.StatusCode.OK
    assert await _stream(address, GATE1, once) == grpc.StatusCode.UNAUTHENTICATED
    assert connections.seen == ["gate1"] and servicer.refused == 1


@pytest.mark.asyncio
async def test_a_link_with_another_secret_is_refused_and_says_why(
    dispatcher: tuple[str, DispatcherServicer, Connections], caplog: pytest.LogCaptureFixture,
) -> None:
    address, servicer, connections = dispatcher
    other = auth.ClusterSecret(b"o" * 32, "test")
    link = DispatcherLink(
        1, address, hello=lambda: _hello(GATE1), on_message=lambda d, e: None,
        auth=auth.TokenSigner(other, GATE1), retry_interval=0.05,
    )
    with caplog.at_level(logging.WARNING, logger="goworld.cluster"):
        link.start()
        try:
            for _ in range(200):
                if servicer.refused >= 2:
                    break
                await asyncio.sleep(0.02)
        finally:
            await link.close()
    assert servicer.refused >= 2 and connections.seen == []
    assert not link.connected.is_set()
    lost = [r.getMessage() for r in caplog.records if r.name == "goworld.cluster"]
    assert lost and all(
        "refused: UNAUTHENTICATED: wrong cluster credentials (another cluster secret?)" in m
        for m in lost
    ), lost
    assert not any("connected" in m for m in lost)


@pytest.mark.asyncio
async def test_a_dispatcher_without_a_secret_takes_links_with_or_without_credentials() -> None:
    service = DispatcherService(1, desired_games=1, desired_gates=2, clock=time.monotonic)
    connections = Connections(service)
    server = grpc.aio.server()
    cluster_pb2_grpc.add_DispatcherServicer_to_server(DispatcherServicer(service), server)
    address = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    await server.start()
    gate2 = auth.Identity("gate", 2)
    links = [
        DispatcherLink(1, address, hello=lambda: _hello(GATE1), on_message=lambda d, e: None,
                       auth=auth.TokenSigner(SECRET, GATE1)),
        DispatcherLink(1, address, hello=lambda: _hello(gate2), on_message=lambda d, e: None),
    ]
    try:
        for link in links:
            link.start()
        for _ in range(200):
            if len(connections.seen) == 2:
                break
            await asyncio.sleep(0.02)
        assert sorted(connections.seen) == ["gate1", "gate2"]
    finally:
        for link in links:
            await link.close()
        await server.stop(0)
