"""The demo's output: a table of spliced/TCP ratios, or one JSON document."""

from __future__ import annotations

import json
from statistics import median
from typing import Any

from socksplice.tools.demo.running import WorkloadResult

# For latency lower is better; for throughput higher is better. The ratio is always spliced/plain.
FIGURES = {"rr": ("p50_us", "p99_us"), "stream": ("gbit_per_s",)}
RATIO_NAMES = {"p50_us": "p50_ratio", "p99_us": "p99_ratio", "gbit_per_s": "throughput_ratio"}
LABELS = {"p50_us": "p50 µs", "p99_us": "p99 µs", "gbit_per_s": "Gbit/s"}


def summarize(result: WorkloadResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        "workload": result.workload.name,
        "kind": result.workload.kind,
        "size": result.workload.size,
    }
    for mode in ("plain", "spliced"):
        runs = [r for r in result.runs if r.mode == mode]
        out[mode] = {f: median(r.figures[f] for r in runs) for f in FIGURES[result.workload.kind]}
        out[mode]["runs"] = len(runs)
        out[mode]["bytes_redirected"] = sum(r.bytes_redirected for r in runs)
    ratios = {}
    for f in FIGURES[result.workload.kind]:
        plain = out["plain"][f]
        ratios[RATIO_NAMES[f]] = round(out["spliced"][f] / plain, 3) if plain else None
    out["ratio"] = ratios
    return out


def render_json(results: list[WorkloadResult]) -> str:
    return json.dumps({"workloads": [summarize(r) for r in results]}, indent=2)


def render_text(results: list[WorkloadResult]) -> str:
    lines = [
        f"{'workload':<15} {'figure':<11} {'plain TCP':>12} {'spliced':>12} {'spliced/TCP':>12}  verdict",
    ]
    for r in results:
        s = summarize(r)
        for f in FIGURES[r.workload.kind]:
            plain, spliced = s["plain"][f], s["spliced"][f]
            ratio = spliced / plain if plain else float("nan")
            better = ratio < 1 if f.endswith("_us") else ratio > 1
            label = LABELS[f]
            lines.append(
                f"{r.workload.name:<15} {label:<11} {plain:>12.2f} {spliced:>12.2f} {ratio:>11.2f}x"
                f"  {'faster' if better else 'SLOWER'}"
            )
        if s["spliced"]["bytes_redirected"] == 0:
            lines.append(f"{'':<15} warning: no bytes were redirected in the spliced runs")
    lines.append("ratios are medians of the interleaved runs; latency: lower is better, throughput: higher")
    return "\n".join(lines)
