"""Wire codec: encode/decode rates of three client messages (scripts/bench_codec.py)."""

from __future__ import annotations

import re

from goworld.bench.result import BenchError, Result
from goworld.bench.scenarios import _script

TITLE = "Wire codec (messages/s, median of rounds)"
_LINE = re.compile(
    r"^(?P<name>\S.*?)\s+(?P<bytes>\d+)\s+(?P<enc>[\d,]+) \([\d,]+\.\.[\d,]+\)\s+"
    r"(?P<dec>[\d,]+) \([\d,]+\.\.[\d,]+\)\s*$"
)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.split("(")[0].strip().lower()).strip("_")


def run(quick: bool) -> Result:
    args = ["--seconds", "0.05", "--repeat", "3"] if quick else ["--seconds", "0.5", "--repeat", "7"]
    out = _script.run("bench_codec.py", *args, timeout=300)
    rows, figures = [], {}
    for line in out.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        enc, dec = (float(m[k].replace(",", "")) for k in ("enc", "dec"))
        rows.append([m["name"], int(m["bytes"]), round(enc), round(dec)])
        key = _slug(m["name"])
        figures[f"{key}.bytes"] = float(m["bytes"])
        figures[f"{key}.encode_per_s"] = enc
        figures[f"{key}.decode_per_s"] = dec
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
