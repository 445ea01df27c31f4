"""BENCHMARKS.md: the machine, one table per scenario, plots, the command for every figure."""

from __future__ import annotations

import importlib.metadata
import math
import os
import platform
from pathlib import Path
from typing import Any

from goworld.bench.result import Result


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import uvloop  # noqa: F401 - importable, not only installed

        loop = f"uvloop {importlib.metadata.version('uvloop')}"
    except ImportError:
        loop = "asyncio (default loop; uvloop not installed)"
    return {
        "cores": str(os.cpu_count()),
        "cpu": model,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "os": f"{platform.system()} {platform.release()} {platform.machine()}",
        "event loop": loop,
        "load average": " ".join(f"{v:.2f}" for v in os.getloadavg()),
    }


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def md_table(result: Result) -> str:
    lines = ["| " + " | ".join(result.columns) + " |", "|" + "---|" * len(result.columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in result.rows]
    return "\n".join(lines)


def text_table(result: Result) -> str:
    cells = [result.columns] + [[_cell(v) for v in row] for row in result.rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(result.columns))]
    return "\n".join("   " + "  ".join(c.rjust(w) for c, w in zip(r, widths, strict=False)) for r in cells)


def _plot_names(scenario: str) -> tuple[str, str]:
    if scenario == "capacity":
        return "bench-rtt.png", "bench-cpu.png"
    return f"bench-{scenario}-rtt.png", f"bench-{scenario}-cpu.png"


SIDEBYSIDE_PNG = "bench-sidebyside.png"


def _sidebyside_plot(result: Result, out: Path, plt: Any) -> str:
    """Both engines' total server CPU per 1000 things and average thing latency against N."""
    s = result.series
    labels = {"python": "ours (Python)", "go": "GoWorld (Go)"}
    fig, (cpu_ax, lat_ax) = plt.subplots(1, 2, figsize=(10, 3.8))
    for engine, label in labels.items():
        cpu_ax.plot(s["n"], s[f"{engine}.cpu_per_1k"], "o-", label=label)
        lat_ax.plot(s["n"], s[f"{engine}.avg_ms"], "o-", label=label)
    cpu_ax.set(xlabel="bots (N)", ylabel="CPU s per 1000 things",
               title="Server CPU (dispatcher + game + gate)")
    lat_ax.set(xlabel="bots (N)", ylabel="ms", title="Average thing latency (as the bot prints it)")
    for ax in (cpu_ax, lat_ax):
        ax.set_xscale("log")
        ax.set_xticks(s["n"], [str(n) for n in s["n"]])
        ax.minorticks_off()
        ax.margins(y=0.15)
        ax.set_ylim(bottom=0)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / SIDEBYSIDE_PNG, dpi=100)
    plt.close(fig)
    return SIDEBYSIDE_PNG


def plots(results: list[Result], out: Path) -> tuple[dict[str, list[str]], str | None]:
    """PNG files per capacity or side-by-side scenario ({scenario: files}, why skipped)."""
    caps = [r for r in results if r.scenario.startswith("capacity") and r.series.get("n")]
    sides = [r for r in results if r.scenario == "sidebyside" and r.series.get("n")]
    if not caps and not sides:
        return {}, None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {}, "matplotlib is not installed (pip install 'goworld-py[bench]'): plots skipped"
    files: dict[str, list[str]] = {}
    for cap in caps:
        s = cap.series
        rtt_png, cpu_png = _plot_names(cap.scenario)
        layout = cap.title[cap.title.find("on ") + 3:cap.title.find(",")] if "on " in cap.title else ""
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(s["n"], s["p50"], "o-", label="probe RTT p50")
        ax.plot(s["n"], s["p99"], "s-", label="probe RTT p99")
        ax.axhline(100, color="grey", linestyle="--", linewidth=1, label="100 ms")
        ax.set(xlabel="bots (N)", ylabel="ms", title=f"Probe round trip against N ({layout})")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / rtt_png, dpi=100)
        plt.close(fig)
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for name, cpu in s["cpu"].items():
            ax.plot(s["n"], cpu, "o-", label=name)
        ax.set(xlabel="bots (N)", ylabel="CPU %", title=f"CPU per process against N ({layout})")
        ax.legend(fontsize="small")
        fig.tight_layout()
        fig.savefig(out / cpu_png, dpi=100)
        plt.close(fig)
        files[cap.scenario] = [rtt_png, cpu_png]
    for side in sides:
        files[side.scenario] = [_sidebyside_plot(side, out, plt)]
    return files, None


def write(results: list[Result], out: Path, not_yet: dict[str, str]) -> Path:
    m = machine()
    lines = [
        "# Benchmarks",
        "",
        "Written by `goworld bench` from the newest record of each scenario in "
        "`bench-results.jsonl` (one JSON line per scenario run). Commands run from the "
        "repository root. The machine is shared: figures move between runs.",
        "",
        "## Machine",
        "",
        *(f"- {k}: {v}" for k, v in m.items()),
        "",
    ]
    files, skipped = plots(results, out)
    for r in results:
        lines += [f"## {r.title}", ""]
        if r.quick:
            lines += ["*Quick run (`--quick`): a smoke test, not a figure to quote.*", ""]
        lines += [r.summary, "", md_table(r), ""]
        lines += [f"- {n}" for n in r.notes]
        lines += [f"- Command: `{c}`" for c in r.commands]
        lines += [f"- Measured {r.when}, took {r.seconds} s.", ""]
        if r.scenario.startswith("capacity") or r.scenario == "sidebyside":
            lines += [f"![{f}]({f})" for f in files.get(r.scenario, [])]
            if skipped:
                lines.append(f"*{skipped}.*")
            lines.append("")
    if not_yet:
        lines += ["## Not yet measured", ""]
        lines += [f"- {k}: {v}" for k, v in not_yet.items()]
        lines.append("")
    path = out / "BENCHMARKS.md"
    path.write_text("\n".join(lines))
    if skipped:
        print(f"   {skipped}", flush=True)
    return path
