"""The cluster .proto: generated code is current, and a real gRPC stream carries batches."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from goworld.proto.msgtypes import MsgType
from goworld.rpc import cluster_pb2, cluster_pb2_grpc

ROOT = Path(__file__).resolve().parents[3]
GENERATED = ["cluster_pb2.py", "cluster_pb2.pyi", "cluster_pb2_grpc.py"]


def test_generated_code_is_current(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_proto.py"), str(tmp_path)], check=True
    )
    for name in GENERATED:
        fresh = (tmp_path / "goworld" / "rpc" / name).read_text()
        committed = (ROOT / "goworld" / "rpc" / name).read_text()
        assert fresh == committed, f"goworld/rpc/{name} is stale: run scripts/gen_proto.py"


def test_envelope_round_trip() -> None:
    env = cluster_pb2.Envelope(
        msgtype=MsgType.CALL_ENTITY_METHOD,
        entity_id="A" * 16,
        game_id=2,
        gate_id=3,
        client_id="C" * 16,
        name="Say",
        payload=b"\x00\xd3" * 10,
    )
    batch = cluster_pb2.Batch(messages=[env, env])
    again = cluster_pb2.Batch.FromString(batch.SerializeToString())
    assert list(again.messages) == [env, env]
    assert again.messages[0].payload == b"\x00\xd3" * 10


class _EchoDispatcher(cluster_pb2_grpc.DispatcherServicer):
    """Answers every batch with the same batch, msgtypes incremented by 1000."""

    async def Connect(
        self, request_iterator: AsyncIterator[cluster_pb2.Batch], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[cluster_pb2.Batch]:
        async for batch in request_iterator:
            for env in batch.messages:
                env.msgtype += 1000
            yield batch


@pytest.mark.asyncio
async def test_batches_over_a_real_grpc_stream() -> None:
    server = grpc.aio.server()
    cluster_pb2_grpc.add_DispatcherServicer_to_server(_EchoDispatcher(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = cluster_pb2_grpc.DispatcherStub(channel)
            call = stub.Connect()
            received = []
            for tick in range(3):
                batch = cluster_pb2.Batch(
                    messages=[
                        cluster_pb2.Envelope(msgtype=i, payload=bytes([tick, i])) for i in range(64)
                    ]
                )
                await call.write(batch)
                received.append(await asyncio.wait_for(call.read(), 10))
            await call.done_writing()
        assert [len(b.messages) for b in received] == [64, 64, 64]
        assert [e.msgtype for e in received[2].messages] == [1000 + i for i in range(64)]
        assert received[1].messages[5].payload == bytes([1, 5])
    finally:
        await server.stop(None)
