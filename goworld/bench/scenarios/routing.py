"""Routing: an entity-to-entity RPC flood between two games through one dispatcher
(scripts/bench_routing.py), with game-like senders and with a pre-encoded load generator."""

from __future__ import annotations

from goworld.bench.result import Result
from goworld.bench.scenarios import _script

TITLE = "Routing (one dispatcher, entity-to-entity calls between two games)"
TARGET = 300_000
_KINDS = {
    "link": "games on DispatcherLink (an Envelope per call, as real games)",
    "raw": "pre-encoded load generator",
}


def run(quick: bool) -> Result:
    args = ["--seconds", "1", "--repeat", "1"] if quick else ["--seconds", "10", "--repeat", "3"]
    _, data = _script.run_json("bench_routing.py", *args, timeout=300)
    rows, figures = [], {}
    for kind, label in _KINDS.items():
        r = data["senders"][kind]
        per_core = 1e6 / r["dispatcher_us_per_msg"]
        rows.append([label, round(r["messages_per_s"]), round(r["dispatcher_us_per_msg"], 2),
                     round(per_core), round(r["senders_us_per_msg"], 2)])
        figures[f"{kind}.messages_per_s"] = r["messages_per_s"]
        figures[f"{kind}.dispatcher_us_per_msg"] = r["dispatcher_us_per_msg"]
        figures[f"{kind}.senders_us_per_msg"] = r["senders_us_per_msg"]
    raw, link = data["senders"]["raw"], data["senders"]["link"]
    best = raw["messages_per_s"]
    verdict = "met" if best >= TARGET else f"missed by {TARGET - best:,.0f}/s"
    return Result(
        scenario="routing",
        title=TITLE,
        commands=[_script.command("bench_routing.py", *args)],
        columns=["senders", "routed messages/s", "dispatcher CPU µs/msg",
                 "msgs/s per dispatcher CPU-second", "senders CPU µs/msg"],
        rows=rows,
        figures=figures,
        summary=(f"{best:,.0f} messages/s through one dispatcher fed by a pre-encoded load "
                 f"generator (target ≥ {TARGET:,}: {verdict}); "
                 f"{link['messages_per_s']:,.0f}/s when two game-like senders on the same 2 "
                 f"cores build an Envelope per call, which costs them "
                 f"{link['senders_us_per_msg']:.1f} µs per message against the dispatcher's "
                 f"{link['dispatcher_us_per_msg']:.1f} µs."),
        notes=[
            "The dispatcher, the senders and the receivers share the machine's 2 cores; the "
            "dispatcher's gRPC threads can use more than one of them.",
            "Dispatcher CPU per message is its whole process (all threads) from /proc, divided "
            "by the messages delivered back to the games.",
        ],
    )
