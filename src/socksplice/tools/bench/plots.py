"""PNG plots with matplotlib (imported on use; without it, plots are skipped with a note):
a latency CDF per latency workload, and throughput against write size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from socksplice.tools.bench.running import CaseResult

COLORS = {
    "plain": "tab:blue",
    "spliced": "tab:orange",
    "auto": "tab:red",
    "unix": "tab:green",
    "unix2": "tab:purple",
}
LEGEND = {
    "plain": "plain TCP",
    "spliced": "spliced",
    "auto": "Auto",
    "unix": "AF_UNIX socketpair",
    "unix2": "AF_UNIX two processes",
}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def latency_cdf(result: CaseResult, out: Path) -> Path | None:
    """CDF of every round trip of every run, per path (x: µs, log scale). None without samples."""
    by_path = {
        p: sorted(s for r in result.runs if r.path == p for s in r.samples_us) for p in result.case.paths
    }
    if not any(by_path.values()):
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for path, xs in by_path.items():
        if xs:
            n = len(xs)
            ax.plot(xs, [(i + 1) / n for i in range(n)], color=COLORS[path], label=LEGEND[path])
    ax.set_xscale("log")
    ax.set_xlabel("round trip (µs, log scale)")
    ax.set_ylabel("fraction of round trips")
    ax.set_title(f"{result.case.name}: latency CDF (all runs)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    png = out / f"cdf-{result.case.name}.png"
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


def throughput_vs_write(summaries: list[dict[str, Any]], out: Path) -> Path | None:
    """Median throughput against write size: sslg for every path, iperf3 for the TCP paths
    (blocking sslg only: the one non-blocking stream case has no series to join)."""
    series: dict[str, list[tuple[int, float]]] = {}
    for s in summaries:
        if s["kind"] not in ("stream", "iperf3") or s.get("io") == "nonblocking":
            continue
        for path, fig in s["paths"].items():
            if "gbit_per_s" in fig:
                label = f"{LEGEND[path]} ({'sslg' if s['kind'] == 'stream' else 'iperf3'})"
                series.setdefault(label, []).append((s["size"], fig["gbit_per_s"]))
    if not series:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, points in series.items():
        points.sort()
        path_name = next(p for p, text in LEGEND.items() if label.startswith(text))
        style = "-o" if "sslg" in label else "--s"
        ax.plot([p[0] for p in points], [p[1] for p in points], style, color=COLORS[path_name], label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("write size (bytes, log scale)")
    ax.set_ylabel("Gbit/s (median)")
    ax.set_title("stream throughput against write size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    path = out / "throughput-vs-write-size.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_plots(results: list[CaseResult], summaries: list[dict[str, Any]], out: Path) -> list[Path]:
    written = [p for r in results if r.case.latency and (p := latency_cdf(r, out)) is not None]
    tp = throughput_vs_write(summaries, out)
    if tp is not None:
        written.append(tp)
    return written
