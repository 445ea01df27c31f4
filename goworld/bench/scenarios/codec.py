"""Wire codec: encode/decode rates of three client messages (scripts/bench_codec.py)."""

from __future__ import annotations

from goworld.bench.result import BenchError, Result
from goworld.bench.scenarios import _script

TITLE = "Wire codec (messages/s, median of rounds)"


def run(quick: bool) -> Result:
    args = ["--seconds", "0.05", "--repeat", "3"] if quick else ["--seconds", "0.5", "--repeat", "7"]
    out, data = _script.run_json("bench_codec.py", *args, timeout=300)
    rows, figures = [], {}
    for m in data["messages"]:
        rows.append([m["name"], m["bytes"], round(m["encode_per_s"]), round(m["decode_per_s"])])
        figures[f"{m['key']}.bytes"] = float(m["bytes"])
        figures[f"{m['key']}.encode_per_s"] = m["encode_per_s"]
        figures[f"{m['key']}.decode_per_s"] = m["decode_per_s"]
    if not rows:
        raise BenchError(f"no figures in bench_codec.py output:\n{out}")
    best = max(rows, key=lambda r: r[2])
    return Result(
        scenario="codec",
        title=TITLE,
        commands=[_script.command("bench_codec.py", *args)],
        columns=["message", "bytes", "encode/s", "decode/s"],
        rows=rows,
        figures=figures,
        summary=f"Fastest: {best[0]} encodes at {best[2]:,}/s, decodes at {best[3]:,}/s.",
    )
