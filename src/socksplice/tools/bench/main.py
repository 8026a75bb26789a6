"""``socksplice bench [--quick] [--json] [--out DIR] [--repeats N] [--only NAME ...] [--busy]``
``[--placement free|same|split] [--observation]``.

Builds the demo's local cluster, runs the matrix (cases.py) with every path interleaved and
repeated, prints a table (or JSON with ``--json``) and, with ``--out``, writes results.json,
results.csv, table.txt and the PNG plots there. ``--observation`` measures the observation
programs' cost instead (observing.py; ``--out`` gets observation.json). Everything it creates is
removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

from socksplice.tools.bench.busy import busy_cpus
from socksplice.tools.bench.busy import describe as busy_describe
from socksplice.tools.bench.cases import matrix
from socksplice.tools.bench.files import render_csv, render_json, render_raw
from socksplice.tools.bench.machine import describe, during, snapshot
from socksplice.tools.bench.measuring import Run
from socksplice.tools.bench.placement import PLACEMENTS, Placement, cpu_sets
from socksplice.tools.bench.placement import describe as describe_placement
from socksplice.tools.bench.running import CaseResult, run_matrix
from socksplice.tools.bench.summary import headline, summarize_all
from socksplice.tools.bench.table import render_text
from socksplice.tools.demo.running import demo_env

WORKDIR_BASE = Path("/run/socksplice")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="socksplice bench", description="plain TCP vs spliced vs AF_UNIX, interleaved, with repeats"
    )
    p.add_argument("--quick", action="store_true", help="short runs (under 3 minutes in all)")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    p.add_argument("--out", type=Path, help="write results.json, results.csv, table.txt and PNG plots here")
    p.add_argument("--repeats", type=int, help="interleaved repeats per case (default: 2 quick, 5 full)")
    p.add_argument(
        "--only", nargs="+", metavar="NAME", help="run only cases whose name starts with one of these"
    )
    p.add_argument(
        "--busy",
        action="store_true",
        help="run with one spinner per CPU busy 50%% of every 10 ms (other work on the vCPUs)",
    )
    p.add_argument(
        "--placement",
        choices=PLACEMENTS,
        default="free",
        help="client and server CPUs: free (the scheduler's choice, default), same (both on the "
        "first CPU) or split (client on the first, server on the second)",
    )
    p.add_argument(
        "--observation",
        action="store_true",
        help="measure the observation programs' cost on rr-64B (with vs without, and bpf_stats) instead",
    )
    return p


def placement_describe(placement: Placement) -> dict[str, Any]:
    """``placement`` in results.json: the mode and the CPUs each pod was pinned to."""
    return describe_placement(placement, *cpu_sets(placement, os.sched_getaffinity(0)))


def placement_line(placement: dict[str, Any]) -> str:
    """The table's last line: where the client and server processes ran."""
    if placement["mode"] == "free":
        return "placement: free (client and server wherever the scheduler put them)"
    client = ",".join(map(str, placement["client_cpus"]))
    server = ",".join(map(str, placement["server_cpus"]))
    return f"placement: {placement['mode']} (client on CPU {client}, server on CPU {server})"


def _meta(
    args: argparse.Namespace, argv: list[str], repeats: int, started: float, before: dict[str, Any]
) -> dict[str, Any]:
    return {
        "command": shlex.join(["socksplice", "bench", *argv]),
        "machine": describe(),
        "during": during(before, snapshot()),
        "repeats": repeats,
        "quick": bool(args.quick),
        "busy": busy_describe() if getattr(args, "busy", False) else None,
        "placement": placement_describe(getattr(args, "placement", "free")),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": round(time.time() - started, 1),
    }


def observation_main(args: argparse.Namespace, argv: list[str]) -> int:
    from socksplice.tools.bench.observing import (
        measure_observation,
        render_observation,
        summarize_observation,
    )

    repeats = max(args.repeats or 4, 1)
    started = time.time()
    before = snapshot()
    samples = measure_observation(repeats, args.quick)
    summary = summarize_observation(samples)
    doc = json.dumps(
        {
            **_meta(args, argv, repeats, started, before),
            "observation": summary,
            "samples": [asdict(s) for s in samples],
        },
        indent=2,
        ensure_ascii=False,
    )
    text = render_observation(summary)
    print(doc if args.json else text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "observation.json").write_text(doc + "\n")
        (args.out / "observation.txt").write_text(text + "\n")
    return 0


def _progress(run: Run) -> None:
    figs = ", ".join(
        f"{k}={v:.4g}" for k, v in run.figures.items() if k in ("p50_us", "p99_us", "gbit_per_s")
    )
    extra = f", {run.bytes_redirected} B redirected" if run.bytes_redirected else ""
    if run.verdict is not None:
        extra += f", verdict {run.verdict.verdict} -> {run.verdict.after}"
    print(f"bench: {run.case} {run.path}: {figs}{extra}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace, argv: list[str]) -> tuple[list[CaseResult], dict[str, Any]]:
    cases = matrix(args.quick)
    if args.only:
        cases = [c for c in cases if any(c.name.startswith(o) for o in args.only)]
        if not cases:
            raise SystemExit(f"socksplice bench: no case matches {args.only}")
    repeats = args.repeats or (2 if args.quick else 5)
    WORKDIR_BASE.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-", dir=WORKDIR_BASE))
    started = time.time()
    before = snapshot()
    try:
        with demo_env(workdir) as env, busy_cpus() if args.busy else nullcontext():
            results = run_matrix(env, cases, repeats, _progress, args.placement)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return results, _meta(args, argv, repeats, started, before)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.observation:
        if args.placement != "free":
            parser.error("--placement pins the matrix's pods; --observation runs its own cluster unpinned")
        return observation_main(args, argv)
    results, meta = run(args, argv)
    summaries = summarize_all(results)
    fewest = {r.case.name: min((len(run.samples_us) for run in r.runs), default=0) for r in results}
    text = render_text(summaries, {r.case.name: headline(r.case) for r in results}, fewest)
    text += "\n" + placement_line(meta["placement"])
    document = render_json(summaries, meta)
    print(document if args.json else text)
    if args.out is not None:
        from socksplice.tools.bench.plots import write_plots

        out: Path = args.out
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(document + "\n")
        (out / "results.csv").write_text(render_csv(summaries))
        (out / "table.txt").write_text(text + "\n")
        raw = out / "raw"
        raw.mkdir(exist_ok=True)
        for r in results:
            (raw / f"{r.case.name}.json").write_text(render_raw(r.case.name, r.runs) + "\n")
        try:
            written = write_plots(results, summaries, out)
        except ImportError as exc:
            print(f"bench: plots skipped: {exc} (pip install matplotlib)", file=sys.stderr)
            written = []
        print(
            f"bench: wrote {out}: results.json, results.csv, table.txt, raw/, {len(written)} plots",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
