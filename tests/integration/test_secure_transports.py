"""Gates with compress_connection and encrypt_connection: snappy inside TLS on TCP and KCP,
snappy inside wss:// on WebSocket (PROTOCOL.md §3.1, §3.2)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from goworld.client import GoWorldClient
from goworld.testing import ClusterRunner, make_key_pair

APP = Path(__file__).resolve().parents[1] / "apps" / "cluster_app"


@pytest.fixture(scope="module")
def secure_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterRunner]:
    directory = tmp_path_factory.mktemp("secure")
    make_key_pair(directory)
    runner = ClusterRunner(
        directory,
        APP,
        dispatchers=1,
        games=1,
        gates=1,
        gate_extra="compress_connection = 1\nencrypt_connection = 1\n"
        "rsa_key = rsa.key\nrsa_certificate = rsa.crt",
    )
    runner.start()
    try:
        runner.wait_for_log("created here", count=5)
        yield runner
    finally:
        runner.stop()
        runner.kill()


@pytest.mark.asyncio
@pytest.mark.parametrize("transport", ["tcp", "ws", "kcp"])
async def test_tls_and_snappy_on_every_transport(secure_cluster: ClusterRunner, transport: str) -> None:
    client = await GoWorldClient.connect(
        "127.0.0.1", secure_cluster.gate(0, transport), transport=transport, tls=True, compress=True
    )
    try:
        account = await client.wait_player("Account")
        client.call(account.id, "Login", f"secure-{transport}")
        await client.wait_player("Avatar")
        big = "x" * 100_000  # spans several snappy chunks and TLS records
        for seq in range(20):
            client.call_player("Echo", seq, big if seq % 5 == 0 else "small")
        await client.wait_until(lambda: len([c for c in client.calls if c.method == "OnEcho"]) == 20)
        echoes = [c.args for c in client.calls if c.method == "OnEcho"]
        assert echoes == [(seq, big if seq % 5 == 0 else "small") for seq in range(20)]
    finally:
        await client.aclose()


@pytest.mark.asyncio
async def test_wss_text_frames_carrying_binary_packets_are_accepted(
    secure_cluster: ClusterRunner,
) -> None:
    """GoWorld's Go bot over wss:// writes snappy-compressed packets in text frames."""
    client = await GoWorldClient.connect(
        "127.0.0.1", secure_cluster.gate(0, "ws"), transport="ws", tls=True, compress=True,
        ws_text_frames=True,
    )
    try:
        account = await client.wait_player("Account")
        client.call(account.id, "Login", "secure-ws-text")
        await client.wait_player("Avatar")
        client.call_player("Echo", 255, "\xff" * 1000)
        await client.wait_call("OnEcho")
        assert [c.args for c in client.calls if c.method == "OnEcho"] == [(255, "\xff" * 1000)]
    finally:
        await client.aclose()


@pytest.mark.asyncio
async def test_a_plaintext_client_is_refused_by_a_tls_gate(secure_cluster: ClusterRunner) -> None:
    client = await GoWorldClient.connect("127.0.0.1", secure_cluster.gate(0, "tcp"))
    try:
        await client.wait_until(lambda: client.is_closed, timeout=10)
        assert client.player is None
    finally:
        await client.aclose()
