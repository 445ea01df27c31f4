"""Routing: an entity-to-entity RPC flood between two games through one dispatcher
(scripts/bench_routing.py)."""

from __future__ import annotations

import re

from goworld.bench.result import BenchError, Result
from goworld.bench.scenarios import _script

TITLE = "Routing (one dispatcher, entity-to-entity calls between two games)"
TARGET = 300_000


def _number(out: str, label: str) -> float:
    m = re.search(rf"^{label}\s+([\d,.]+)", out, re.MULTILINE)
    if m is None:
        raise BenchError(f"no {label!r} in bench_routing.py output:\n{out}")
    return float(m[1].replace(",", ""))


def run(quick: bool) -> Result:
    args = ["--seconds", "1", "--repeat", "1"] if quick else ["--seconds", "10", "--repeat", "3"]
    out = _script.run("bench_routing.py", *args, timeout=300)
    rate = _number(out, "routed messages/s")
    disp_us = _number(out, "dispatcher CPU per msg")
    senders_us = _number(out, "senders CPU per msg")
    per_core = 1e6 / disp_us
    verdict = "met" if rate >= TARGET else f"missed by {TARGET - rate:,.0f}/s"
    return Result(
        scenario="routing",
        title=TITLE,
        commands=[_script.command("bench_routing.py", *args)],
        columns=["routed messages/s", "dispatcher CPU µs/msg", "msgs/s per dispatcher core",
                 "senders CPU µs/msg"],
        rows=[[round(rate), round(disp_us, 2), round(per_core), round(senders_us, 2)]],
        figures={"messages_per_s": rate, "dispatcher_us_per_msg": disp_us,
                 "per_dispatcher_core_per_s": per_core, "senders_us_per_msg": senders_us},
        summary=(f"{rate:,.0f} messages/s through one dispatcher (target ≥ {TARGET:,}: {verdict}); "
                 f"the dispatcher spends {disp_us:.2f} µs per message, {per_core:,.0f}/s per core. "
                 "The two sending games run in the benchmark process on the same 2 cores, and "
                 "they need more CPU per message than the dispatcher: they are the limit here."),
    )
