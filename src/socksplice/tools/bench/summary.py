"""From runs to figures: per path the median of each figure with its spread, and the ratios.

Latency, CPU cost: lower is better. Throughput, rates: higher is better. Every ratio is
``spliced / other`` of the medians, so for latency a ratio below 1 and for throughput a ratio
above 1 means the splice wins. Stalls (round trips over 10 ms) are summed over all runs, not
taken as a median: one stall anywhere is one too many.
"""

from __future__ import annotations

from typing import Any

from socksplice.tools.bench.cases import Case
from socksplice.tools.bench.running import CaseResult
from socksplice.tools.workloads.stats import ratio, summarize

HIGHER_IS_BETTER = frozenset({"gbit_per_s", "connections_per_s", "transactions_per_s"})
THROUGHPUT = HIGHER_IS_BETTER
RATIO_NAMES = {
    "p50_us": "p50_ratio",
    "p90_us": "p90_ratio",
    "p99_us": "p99_ratio",
    "p999_us": "p999_ratio",
    "max_us": "max_ratio",
    "mean_us": "mean_ratio",
    "gbit_per_s": "throughput_ratio",
    "connections_per_s": "throughput_ratio",
    "transactions_per_s": "throughput_ratio",
    "cpu_us_per_transaction": "cpu_ratio",
    "cpu_s_per_gb": "cpu_ratio",
}


def headline(case: Case) -> tuple[str, ...]:
    """The figures the terminal table shows for a case."""
    if case.kind in ("stream", "iperf3"):
        return ("gbit_per_s", "cpu_s_per_gb")
    if case.kind == "crr":
        return ("connections_per_s", "p50_us", "p99_us", "cpu_us_per_transaction")
    if case.kind == "conc":
        return ("transactions_per_s", "p50_us", "p99_us", "cpu_us_per_transaction")
    return ("p50_us", "p99_us", "p999_us", "max_us", "cpu_us_per_transaction")


def _path_summary(result: CaseResult, path: str) -> dict[str, Any]:
    runs = [r for r in result.runs if r.path == path]
    if not runs:
        return {"runs": 0}
    names = [n for n in runs[0].figures if n != "stalls"]
    out: dict[str, Any] = {"runs": len(runs)}
    spread: dict[str, dict[str, float]] = {}
    for name in names:
        s = summarize([r.figures[name] for r in runs])
        out[name] = round(s.median, 4)
        spread[name] = {"min": round(s.min, 4), "max": round(s.max, 4), "iqr": round(s.iqr, 4)}
    if "stalls" in runs[0].figures:
        out["stalls"] = int(sum(r.figures["stalls"] for r in runs))
    out["spurious_eagain"] = sum(r.spurious_eagain for r in runs)
    if path != "unix":
        out["bytes_redirected"] = sum(r.bytes_redirected for r in runs)
    out["spread"] = spread
    return out


def ratios(spliced: dict[str, Any], other: dict[str, Any]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name, ratio_name in RATIO_NAMES.items():
        if name in spliced and name in other:
            r = ratio(spliced[name], other[name])
            out[ratio_name] = None if r is None else round(r, 3)
    return out


def summarize_case(result: CaseResult) -> dict[str, Any]:
    case = result.case
    paths = {p: _path_summary(result, p) for p in case.paths}
    out: dict[str, Any] = {
        "workload": case.name,
        "kind": case.kind,
        "size": case.size,
        "paths": paths,
        "ratio": ratios(paths["spliced"], paths["plain"]),
    }
    if case.connections:
        out["connections"] = case.connections
    if "unix" in paths:
        out["ratio_vs_unix"] = ratios(paths["spliced"], paths["unix"])
    if case.latency and case.kind != "conc":
        out["stalls"] = {p: s.get("stalls", 0) for p, s in paths.items()}
    return out


def summarize_all(results: list[CaseResult]) -> list[dict[str, Any]]:
    return [summarize_case(r) for r in results]
