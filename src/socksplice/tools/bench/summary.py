"""From runs to figures: per path the median of each figure with its spread, and the ratios.

Latency, CPU cost: lower is better. Throughput, rates: higher is better. Every ratio is
``spliced / other`` (``ratio``: over plain TCP, ``ratio_vs_unix``: over the AF_UNIX socketpair,
``ratio_vs_unix2``: over AF_UNIX between two processes) or ``auto / plain`` (``ratio_auto``) of
the medians, so for latency a ratio below 1 and for throughput a ratio above 1 means the splice
wins. Stalls (round trips over 10 ms) are summed over all runs, not taken as a median: one stall
anywhere is one too many.

Auto's acceptance (``auto_check``): for p50, p99 and the throughput figure, Auto is no worse than
plain TCP beyond the run-to-run spread, the larger of the two paths' ``(max - min) / median``.
"""

from __future__ import annotations

from typing import Any

from socksplice.tools.bench.cases import Case
from socksplice.tools.bench.running import CaseResult
from socksplice.tools.workloads.stats import ratio, summarize

UNIX_PATHS = frozenset({"unix", "unix2"})
"""The AF_UNIX references: no TCP, so nothing for the data path to redirect."""
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
    if path not in UNIX_PATHS:
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


CHECKED = ("p50_us", "p99_us", "gbit_per_s", "connections_per_s", "transactions_per_s")


def _relative_spread(fig: dict[str, Any], name: str) -> float:
    med, spread = fig.get(name), fig.get("spread", {}).get(name)
    if not med or spread is None:
        return 0.0
    return float((spread["max"] - spread["min"]) / med)


def auto_check(auto: dict[str, Any], plain: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per checked figure: the auto/plain ratio, the spread it is allowed, and whether Auto is
    within it (not slower, or slower by no more than the runs differ among themselves)."""
    out: dict[str, dict[str, Any]] = {}
    for name in CHECKED:
        r = ratio(auto[name], plain[name]) if name in auto and name in plain else None
        if r is None:
            continue
        spread = max(_relative_spread(auto, name), _relative_spread(plain, name))
        worse = (1 - r) if name in HIGHER_IS_BETTER else (r - 1)
        out[name] = {"ratio": round(r, 3), "spread": round(spread, 3), "ok": worse <= spread}
    return out


def auto_verdicts(result: CaseResult) -> dict[str, Any]:
    """The verdicts the ``auto`` runs reached: each run's, and the one most runs reached."""
    runs = [r for r in result.runs if r.path == "auto" and r.verdict is not None]
    if not runs:
        return {}
    per_run = [r.verdict.to_dict() | {"bytes_redirected": r.bytes_redirected} for r in runs if r.verdict]
    names = [v["verdict"] for v in per_run]
    common = max(set(names), key=names.count)
    first = next(v for v in per_run if v["verdict"] == common)
    return {
        "verdict": common,
        "reason": first["reason"],
        "spliced_runs": sum(1 for r in runs if r.bytes_redirected > 0),
        "runs": per_run,
    }


def summarize_case(result: CaseResult) -> dict[str, Any]:
    case = result.case
    paths = {p: _path_summary(result, p) for p in case.paths}
    out: dict[str, Any] = {
        "workload": case.name,
        "kind": case.kind,
        "size": case.size,
        "io": "nonblocking" if case.nonblock else "blocking",
        "paths": paths,
        "ratio": ratios(paths["spliced"], paths["plain"]),
    }
    if "auto" in paths:
        out["ratio_auto"] = ratios(paths["auto"], paths["plain"])
        out["auto_check"] = auto_check(paths["auto"], paths["plain"])
        out["auto"] = auto_verdicts(result)
    if case.connections:
        out["connections"] = case.connections
    if "unix" in paths:
        out["ratio_vs_unix"] = ratios(paths["spliced"], paths["unix"])
    if "unix2" in paths:
        out["ratio_vs_unix2"] = ratios(paths["spliced"], paths["unix2"])
    if case.latency and case.kind != "conc":
        out["stalls"] = {p: s.get("stalls", 0) for p, s in paths.items()}
    return out


def summarize_all(results: list[CaseResult]) -> list[dict[str, Any]]:
    return [summarize_case(r) for r in results]
