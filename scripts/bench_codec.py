"""Encode and decode rates of the client wire codec (not a test; prints figures).

Usage: .venv/bin/python scripts/bench_codec.py [--seconds 0.5] [--repeat 7] [--json FILE]

For each message it runs `repeat` timed rounds of about `seconds` each and prints the median
rate in messages per second (and the spread), for encode_payload and decode_payload.
``--json FILE`` also writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from goworld.proto import (
    CallEntityMethodFromClient,
    CreateEntityOnClient,
    PositionRecord,
    SyncPositionYawOnClients,
    decode_payload,
    encode_payload,
    new_entity_id,
)
from goworld.proto.messages import Message


def _samples() -> dict[str, tuple[str, Message]]:
    """key (as in goworld bench's figures) -> (name as printed, message)."""
    eid = new_entity_id()
    attrs = {
        "name": "无名",
        "level": 12,
        "exp": 34567,
        "prof": 3,
        "hp": 100.0,
        "hpmax": 100.0,
        "spaceKind": 42,
        "mails": {},
        "testListField": [1, 2, 3],
        "online": True,
    }
    return {
        "call": ("CALL (11) Say(world, text)", CallEntityMethodFromClient(
            eid, "Say", ("world", "hello from bot 17")
        )),
        "create": ("CREATE (1002) 10-key attrs", CreateEntityOnClient(
            1, new_entity_id(), True, eid, "Avatar", 1.0, 0.0, -3.5, 90.0, attrs
        )),
        "sync": ("SYNC (1502) 100 records", SyncPositionYawOnClients(
            tuple(
                PositionRecord(new_entity_id(), i * 0.5, 0.0, -i * 0.25, float(i % 360))
                for i in range(100)
            )
        )),
    }


def _rate(fn: Callable[[], object], seconds: float, repeat: int) -> tuple[float, float, float]:
    n = 1
    while True:  # calibrate the batch size to about `seconds`
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        if dt >= seconds / 4:
            break
        n *= 2
    n = max(1, int(n * seconds / dt))
    rates = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates), min(rates), max(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()
    print(f"# {platform.python_implementation()} {platform.python_version()} on {platform.machine()}")
    print(f"# median of {args.repeat} rounds of ~{args.seconds}s; messages/s (min..max)")
    print(f"{'message':30} {'bytes':>6} {'encode/s':>22} {'decode/s':>22}")
    messages = []
    for key, (name, msg) in _samples().items():
        payload = encode_payload(msg)
        enc = _rate(lambda msg=msg: encode_payload(msg), args.seconds, args.repeat)
        dec = _rate(lambda payload=payload: decode_payload(payload), args.seconds, args.repeat)
        enc_s = f"{enc[0]:,.0f} ({enc[1]:,.0f}..{enc[2]:,.0f})"
        dec_s = f"{dec[0]:,.0f} ({dec[1]:,.0f}..{dec[2]:,.0f})"
        print(f"{name:30} {len(payload):6d} {enc_s:>22} {dec_s:>22}")
        messages.append({
            "key": key, "name": name, "bytes": len(payload),
            "encode_per_s": enc[0], "encode_per_s_min": enc[1], "encode_per_s_max": enc[2],
            "decode_per_s": dec[0], "decode_per_s_min": dec[1], "decode_per_s_max": dec[2],
        })
    if args.json:
        Path(args.json).write_text(json.dumps({
            "python": f"{platform.python_implementation()} {platform.python_version()}",
            "seconds": args.seconds, "repeat": args.repeat, "messages": messages,
        }, indent=1))


if __name__ == "__main__":
    main()
