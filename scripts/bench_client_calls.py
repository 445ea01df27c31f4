"""Micro-benchmark: the game's cost of one allowed call from a client (issue 14's hot path).

Times ``GameHandlers.handle`` for a CALL_ENTITY_METHOD_FROM_CLIENT envelope on the client's own
entity (method lookup, exposure, limits, argument decoding and binding, the call), and
``ClientCallLimiter.admit`` alone. The limits are kept on (a rate no call reaches), so the token
bucket's arithmetic is timed. Runs on a tree without ``game.call_limits`` too (no limits), to
compare: ``PYTHONPATH=<tree> python scripts/bench_client_calls.py``.

Prints the median of ``--repeat`` runs of ``--number`` calls, in microseconds per call.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import statistics
import time
from typing import Any


async def main(number: int, repeat: int) -> None:
    import goworld
    from game.handlers import GameHandlers
    from game.runtime import GameRuntime
    from goworld.cluster.envelopes import Envelope
    from goworld.entity.client import GameClient
    from goworld.entity.registry import Registry
    from goworld.proto import codec
    from goworld.proto.ids import new_client_id
    from goworld.proto.msgtypes import MsgType

    class Player(goworld.Entity):
        @goworld.rpc(client=True, name="Move")
        def move(self, x: float, y: float, text: str) -> None:
            pass

    registry = Registry()
    registry.register_entity(Player)
    extra: dict[str, Any] = {}
    limiter_type: Any = None
    if "call_policy" in inspect.signature(GameRuntime).parameters:
        from game.call_limits import CallPolicy, ClientCallLimiter

        extra["call_policy"] = CallPolicy(rate=1e12, burst=1e12)
        limiter_type = ClientCallLimiter
    rt = GameRuntime(1, registry, num_dispatchers=1, send=lambda did, env: None, boot_entity="Player", **extra)
    handlers = GameHandlers(rt, lambda: None)
    client = GameClient(new_client_id(), 1)
    player = rt.create_entity_locally("Player", client=client)
    env = Envelope(
        msgtype=MsgType.CALL_ENTITY_METHOD_FROM_CLIENT,
        entity_id=player.id,
        name="Move",
        payload=codec.encode_args((1.5, 2.5, "hello")),
        client_id=client.client_id,
        gate_id=1,
    )

    def timed(fn: Any, *args: Any) -> float:
        runs = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            for _ in range(number):
                fn(*args)
            runs.append((time.perf_counter() - t0) / number * 1e6)
        return statistics.median(runs)

    print(f"handle(CALL_ENTITY_METHOD_FROM_CLIENT): {timed(handlers.handle, 1, env):.3f} us/call")
    if limiter_type is not None:
        method = player.desc.rpcs["Move"]
        admit = rt.client_calls.admit
        print(f"ClientCallLimiter.admit: {timed(admit, client.client_id, 1, method, len(env.payload)):.3f} us/call")
        assert rt.client_calls.refused_total == 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(main(args.number, args.repeat))
