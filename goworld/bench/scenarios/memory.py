"""Memory: RSS growth per idle client at the gate and per simple entity in the game
(scripts/bench_memory.py)."""

from __future__ import annotations

from goworld.bench.result import Result
from goworld.bench.scenarios import _script

TITLE = "Memory (RSS growth per idle client and per entity)"
CLIENT_TARGET = 30 * 1024
ENTITY_TARGET = 10 * 1024


def _verdict(value: float, target: float) -> str:
    return "met" if value <= target else f"missed by {value - target:,.0f} B"


def run(quick: bool) -> Result:
    args = ["--clients", "200", "--entities", "1000"] if quick else ["--clients", "2000", "--entities", "10000"]
    _, data = _script.run_json("bench_memory.py", *args, timeout=600)
    per_client = data["gate_bytes_per_client"]
    game_per_client = data["game_bytes_per_client"]
    per_entity = data["game_bytes_per_entity"]
    return Result(
        scenario="memory",
        title=TITLE,
        commands=[_script.command("bench_memory.py", *args)],
        columns=["what", "bytes", "target", "verdict"],
        rows=[
            ["gate, per idle client", round(per_client), CLIENT_TARGET, _verdict(per_client, CLIENT_TARGET)],
            ["game, per client's boot entity", round(game_per_client), "", ""],
            ["game, per simple AOI entity", round(per_entity), ENTITY_TARGET, _verdict(per_entity, ENTITY_TARGET)],
        ],
        figures={"gate_bytes_per_client": per_client, "game_bytes_per_boot_entity": game_per_client,
                 "game_bytes_per_entity": per_entity},
        summary=(f"{per_client:,.0f} B of gate RSS per idle client (target ≤ 30 KB: "
                 f"{_verdict(per_client, CLIENT_TARGET)}); {per_entity:,.0f} B of game RSS per simple "
                 f"entity (target ≤ 10 KB: {_verdict(per_entity, ENTITY_TARGET)})."),
        notes=["RSS growth after a settle, divided by the count: memory the allocator already "
               "held is not counted, so small counts understate; kernel socket buffers are not in RSS."],
    )
