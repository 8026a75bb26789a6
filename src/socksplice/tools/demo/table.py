"""The demo's output: the verdicts Auto reached per endpoint, a table of Auto/TCP ratios, or one
JSON document.

JSON (``socksplice demo --json``): ``{"policy": <the applied SocketSplice's
name and mode>, "endpoints": [...], "workloads": [...]}``. One endpoint per workload (its own
server port): ``workload, server, client, port, verdict, reason, verdict_after_run, connections,
spliced_connections, messages, would_differ, did_differ`` as the last Auto run saw them. One
workload entry: ``workload, kind, size``, ``plain`` and ``auto`` (the medians of the compared
figures, ``runs``, ``bytes_redirected``) and ``ratio`` (auto/plain: ``p50_ratio``,
``p99_ratio`` or ``throughput_ratio``).
"""

from __future__ import annotations

import json
from statistics import median
from typing import Any

import yaml

from socksplice.tools.demo.running import SAMPLE, WorkloadResult

# For latency lower is better; for throughput higher is better. The ratio is always auto/plain.
FIGURES = {"rr": ("p50_us", "p99_us"), "stream": ("gbit_per_s",)}
RATIO_NAMES = {"p50_us": "p50_ratio", "p99_us": "p99_ratio", "gbit_per_s": "throughput_ratio"}
LABELS = {"p50_us": "p50 µs", "p99_us": "p99 µs", "gbit_per_s": "Gbit/s"}
MODES = ("plain", "auto")
SERVER, CLIENT = "demo/server", "demo/client"


def sample_policy() -> str:
    """The sample SocketSplice in one line: name, mode and its Auto settings."""
    doc = yaml.safe_load(SAMPLE.read_text())
    spec = doc["spec"]
    meta = doc["metadata"]
    text = f"{meta['namespace']}/{meta['name']}, mode {spec.get('mode', 'Auto')}"
    auto = spec.get("auto")
    if auto:
        w = auto.get("evidenceWindow", {})
        text += (
            f" (evidence window {w.get('connections', 20)} connections, {w.get('seconds', 60)} s;"
            f" minMessagesPerConnection {auto.get('minMessagesPerConnection', 4)})"
        )
    return text


def summarize(result: WorkloadResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        "workload": result.workload.name,
        "kind": result.workload.kind,
        "size": result.workload.size,
    }
    for mode in MODES:
        runs = [r for r in result.runs if r.mode == mode]
        out[mode] = {f: median(r.figures[f] for r in runs) for f in FIGURES[result.workload.kind]}
        out[mode]["runs"] = len(runs)
        out[mode]["bytes_redirected"] = sum(r.bytes_redirected for r in runs)
    ratios = {}
    for f in FIGURES[result.workload.kind]:
        plain = out["plain"][f]
        ratios[RATIO_NAMES[f]] = round(out["auto"][f] / plain, 3) if plain else None
    out["ratio"] = ratios
    return out


def endpoint(result: WorkloadResult) -> dict[str, Any]:
    """The workload's endpoint as its last Auto run saw it."""
    seen = [r.verdict for r in result.runs if r.mode == "auto" and r.verdict is not None]
    base = {"workload": result.workload.name, "server": SERVER, "client": CLIENT, "port": result.port}
    return base | (seen[-1].to_dict() if seen else {"verdict": "", "reason": "no Auto run"})


def render_json(results: list[WorkloadResult], policy: str | None = None) -> str:
    return json.dumps(
        {
            "policy": sample_policy() if policy is None else policy,
            "endpoints": [endpoint(r) for r in results],
            "workloads": [summarize(r) for r in results],
        },
        indent=2,
        ensure_ascii=False,
    )


def render_verdicts(results: list[WorkloadResult]) -> str:
    lines = ["Auto's verdicts, per endpoint (client -> server:port):"]
    for r in results:
        e = endpoint(r)
        lines.append(
            f"  {r.workload.name:<15} {CLIENT} -> {SERVER}:{r.port}  {e['verdict'] or '-'}: {e['reason']}"
        )
    return "\n".join(lines)


def render_text(results: list[WorkloadResult], policy: str | None = None) -> str:
    lines = [f"SocketSplice applied: {sample_policy() if policy is None else policy}"]
    lines += [
        render_verdicts(results),
        "",
        f"{'workload':<15} {'figure':<11} {'plain TCP':>12} {'Auto':>12} {'Auto/TCP':>12}  verdict   spliced",
    ]
    for r in results:
        s = summarize(r)
        spliced = "yes" if s["auto"]["bytes_redirected"] > 0 else "no (TCP)"
        verdict = endpoint(r)["verdict"] or "-"
        for f in FIGURES[r.workload.kind]:
            plain, auto = s["plain"][f], s["auto"][f]
            ratio = auto / plain if plain else float("nan")
            label = LABELS[f]
            lines.append(
                f"{r.workload.name:<15} {label:<11} {plain:>12.2f} {auto:>12.2f} {ratio:>11.2f}x"
                f"  {verdict:<9} {spliced}"
            )
    lines.append(
        "ratios are medians of the interleaved runs; latency: lower is better, throughput: higher; "
        "an endpoint Auto refused stays on TCP (ratio about 1)"
    )
    return "\n".join(lines)
