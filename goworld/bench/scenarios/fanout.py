"""Gate fan-out: filtered calls (1501) and position syncs (1502) to N clients
(scripts/bench_fanout.py)."""

from __future__ import annotations

from goworld.bench.result import Result
from goworld.bench.scenarios import _script

TITLE = "Gate fan-out (filtered calls and position syncs to N clients)"


def run(quick: bool) -> Result:
    args = (["--clients", "50", "--seconds", "2", "--movers", "10"] if quick
            else ["--clients", "500", "--seconds", "10", "--movers", "50"])
    _, data = _script.run_json("bench_fanout.py", *args, timeout=600)
    n = float(data["clients"])
    filtered = data["filtered_packets_per_s"]
    filtered_us = data["gate_us_per_filtered_packet"]
    syncs = data["sync_packets_per_s"]
    sync_us = data["gate_us_per_sync_packet"]
    return Result(
        scenario="fanout",
        title=TITLE,
        commands=[_script.command("bench_fanout.py", *args)],
        columns=["traffic", "clients", "packets/s to clients", "gate CPU µs/packet"],
        rows=[
            ["filtered calls (1501), one per client per call", int(n), round(filtered), round(filtered_us, 2)],
            ["position syncs (1502), one per client per batch", int(n), round(syncs), round(sync_us, 2)],
        ],
        figures={"clients": n, "filtered_packets_per_s": filtered, "filtered_us_per_packet": filtered_us,
                 "sync_packets_per_s": syncs, "sync_us_per_packet": sync_us},
        summary=(f"{filtered:,.0f} filtered-call packets/s to {n:.0f} clients at {filtered_us:.1f} µs "
                 f"of gate CPU each; {syncs:,.0f} position-sync packets/s at {sync_us:.1f} µs each "
                 "(a 1502 carries every moved neighbour's record, so it costs more than a call)."),
        notes=["Clients, cluster and load share the 2 cores; a packet's cost is mostly one "
               "transport write per client per loop iteration."],
    )
