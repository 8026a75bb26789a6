"""The JSON document and the CSV table a run writes."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict
from typing import Any


def render_json(summaries: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    return json.dumps({**meta, "workloads": summaries}, indent=2, ensure_ascii=False)


def render_csv(summaries: list[dict[str, Any]]) -> str:
    """One row per workload, path and figure: median, min, max, IQR and the ratios."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["workload", "kind", "size", "path", "figure", "median", "min", "max", "iqr", "runs"])
    for s in summaries:
        for path, fig in s["paths"].items():
            for name, spread in fig.get("spread", {}).items():
                w.writerow(
                    [
                        s["workload"],
                        s["kind"],
                        s["size"],
                        path,
                        name,
                        fig[name],
                        spread["min"],
                        spread["max"],
                        spread["iqr"],
                        fig["runs"],
                    ]
                )
            if "stalls" in fig:
                w.writerow(
                    [
                        s["workload"],
                        s["kind"],
                        s["size"],
                        path,
                        "stalls_total",
                        fig["stalls"],
                        "",
                        "",
                        "",
                        fig["runs"],
                    ]
                )
        for key, label in (
            ("ratio", "spliced/plain"),
            ("ratio_vs_unix", "spliced/unix"),
            ("ratio_vs_unix2", "spliced/unix2"),
            ("ratio_auto", "auto/plain"),
        ):
            for name, value in s.get(key, {}).items():
                w.writerow([s["workload"], s["kind"], s["size"], label, name, value, "", "", "", ""])
        if s.get("auto"):
            w.writerow(
                [s["workload"], s["kind"], s["size"], "auto", "verdict", s["auto"]["verdict"], "", "", "", ""]
            )
    return buf.getvalue()


def render_raw(case: str, runs: list[Any]) -> str:
    """Every run of one workload as it was measured, in run order: path, repeat, figures, the
    latency samples (µs) and what the data path counted, so tails can be recomputed later."""
    seen: dict[str, int] = {}
    rows = []
    for r in runs:
        repeat = seen.get(r.path, 0)
        seen[r.path] = repeat + 1
        rows.append(
            {
                "path": r.path,
                "repeat": repeat,
                "figures": r.figures,
                "samples": len(r.samples_us),
                "samples_us": list(r.samples_us),
                "bytes_redirected": r.bytes_redirected,
                "spurious_eagain": r.spurious_eagain,
                "verdict": asdict(r.verdict) if r.verdict is not None else None,
            }
        )
    return json.dumps({"workload": case, "runs": rows}, ensure_ascii=False)
