"""The terminal table: one line per workload and figure, medians and ratios."""

from __future__ import annotations

from typing import Any

from socksplice.tools.bench.summary import HIGHER_IS_BETTER, RATIO_NAMES

LABELS = {
    "p50_us": "p50 µs",
    "p90_us": "p90 µs",
    "p99_us": "p99 µs",
    "p999_us": "p99.9 µs",
    "max_us": "max µs",
    "gbit_per_s": "Gbit/s",
    "cpu_s_per_gb": "CPU s/GB",
    "connections_per_s": "conn/s",
    "transactions_per_s": "trans/s",
    "cpu_us_per_transaction": "CPU µs/trans",
}


def _num(v: float | None) -> str:
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.2f}" if abs(v) >= 10 else f"{v:.3f}"


def _verdict(figure: str, r: float | None) -> str:
    if r is None:
        return ""
    better = r > 1 if figure in HIGHER_IS_BETTER else r < 1
    return "better" if better else "WORSE"


def _auto_ok(s: dict[str, Any], fig: str) -> str:
    check = s.get("auto_check", {}).get(fig)
    if check is None:
        return ""
    return "ok" if check["ok"] else f"SLOWER (spread {check['spread']:.2f})"


REASON_WIDTH = 90

# A percentile is shown as measured only when every run has at least this many samples beyond it.
MIN_BEYOND = 20
TAIL_Q = {"p90_us": 0.90, "p99_us": 0.99, "p999_us": 0.999}


def indicative(figure: str, samples_per_run: int) -> bool:
    """True when a run of ``samples_per_run`` samples holds too few beyond the figure's percentile
    (fewer than MIN_BEYOND) for it to be more than an indication; max is always indicative."""
    if samples_per_run <= 0:
        return False
    if figure == "max_us":
        return True
    q = TAIL_Q.get(figure)
    return q is not None and samples_per_run * (1 - q) < MIN_BEYOND - 1e-9


def render_text(
    summaries: list[dict[str, Any]],
    headlines: dict[str, tuple[str, ...]],
    samples: dict[str, int] | None = None,
) -> str:
    """``samples``: per workload, the fewest latency samples of any of its runs (0 or absent: none
    recorded); tails they do not support are marked ``~`` (indicative)."""
    head = (
        f"{'workload':<16} {'figure':<13} {'plain TCP':>11} {'spliced':>11} {'Auto':>11} {'AF_UNIX':>11}"
        f" {'AF_UNIX 2p':>11} {'spl/TCP':>8} {'spl/UNIX':>8} {'spl/UX2p':>8} {'auto/TCP':>8}"
        "  spliced vs TCP  Auto vs TCP"
    )
    lines = [head, "-" * len(head)]
    marked = False
    for s in summaries:
        paths = s["paths"]
        n = (samples or {}).get(s["workload"], 0)
        for fig in headlines[s["workload"]]:
            label = LABELS[fig]
            if indicative(fig, n):
                label, marked = label + " ~", True
            r = s["ratio"].get(RATIO_NAMES[fig])
            ru = s.get("ratio_vs_unix", {}).get(RATIO_NAMES[fig])
            ru2 = s.get("ratio_vs_unix2", {}).get(RATIO_NAMES[fig])
            ra = s.get("ratio_auto", {}).get(RATIO_NAMES[fig])
            unix = paths.get("unix", {}).get(fig)
            unix2 = paths.get("unix2", {}).get(fig)
            auto = paths.get("auto", {}).get(fig)
            lines.append(
                f"{s['workload']:<16} {label:<13} {_num(paths['plain'].get(fig)):>11}"
                f" {_num(paths['spliced'].get(fig)):>11} {_num(auto):>11} {_num(unix):>11} {_num(unix2):>11}"
                f" {_num(r):>8} {_num(ru):>8} {_num(ru2):>8} {_num(ra):>8}"
                f"  {_verdict(fig, r):<14}  {_auto_ok(s, fig)}"
            )
        if s.get("auto"):
            a = s["auto"]
            reason = (
                a["reason"] if len(a["reason"]) <= REASON_WIDTH else a["reason"][: REASON_WIDTH - 1] + "…"
            )
            runs = len(a["runs"])
            lines.append(
                f"{'':<16} Auto: {a['verdict']} ({a['spliced_runs']} of {runs} runs spliced): {reason}"
            )
        if "stalls" in s:
            st = s["stalls"]
            lines.append(f"{'':<16} {'stalls >10ms':<13} " + "  ".join(f"{p} {n}" for p, n in st.items()))
        if paths["spliced"].get("bytes_redirected", 1) == 0:
            lines.append(f"{'':<16} warning: no bytes were redirected in the spliced runs")
    lines.append(
        "medians of the interleaved runs; spread (min, max, IQR) in the JSON and CSV. "
        "Latency and CPU: lower is better; throughput: higher. "
        "Auto vs TCP: ok = not slower than plain TCP beyond the runs' spread."
    )
    lines.append(
        "AF_UNIX: a socketpair in the client pod, its other end a thread of the client; "
        "AF_UNIX 2p: a path socket between the client's and the server's processes (two pods)."
    )
    if marked:
        lines.append(
            f"~ indicative: fewer than {MIN_BEYOND} samples per run beyond that percentile "
            "(take more with a full run or --repeats; raw samples in --out DIR/raw)."
        )
    return "\n".join(lines)
