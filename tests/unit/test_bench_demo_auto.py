"""The bench's and the demo's Auto reporting, on results built by hand (no kernel)."""

from __future__ import annotations

import json

from socksplice.tools.bench.cases import ALL_PATHS, Case, audit_pass, matrix
from socksplice.tools.bench.measuring import Run
from socksplice.tools.bench.running import CaseResult
from socksplice.tools.bench.summary import auto_check, summarize_case
from socksplice.tools.bench.table import render_text as bench_text
from socksplice.tools.demo.running import Run as DemoRun
from socksplice.tools.demo.running import Verdict, WorkloadResult
from socksplice.tools.demo.table import render_json, render_text
from socksplice.tools.demo.workloads import WORKLOADS

DEMOTED = Verdict(
    "Demoted",
    "would_blocking_receive (3): a blocking receive waited",
    "Demoted",
    1,
    0,
    600,
    {"blocking_receive": 3},
    {},
)
SPLICED = Verdict("Spliced", "promoted: 2 connections", "Spliced", 2, 1, 900, {}, {})


def _run(path: str, p50: float, p99: float, verdict: Verdict | None = None, redirected: int = 0) -> Run:
    figs = {"p50_us": p50, "p99_us": p99, "cpu_us_per_transaction": 10.0, "stalls": 0.0}
    return Run("rr-64B", path, figs, bytes_redirected=redirected, verdict=verdict)  # type: ignore[arg-type]


def test_every_tcp_case_has_an_auto_path_and_a_short_audit_pass() -> None:
    for case in matrix(quick=True):
        assert "auto" in case.paths and "plain" in case.paths
        short = audit_pass(case)
        assert short.kind == case.kind and short.name == case.name
        assert short.count <= 200 and (short.seconds <= 0.2 or case.kind == "iperf3")
    assert audit_pass(Case("i", "iperf3", 1024, ALL_PATHS, seconds=3.0)).seconds == 1.0


def test_auto_within_the_spread_of_the_runs_is_ok_and_beyond_it_is_not() -> None:
    plain = {"p50_us": 10.0, "p99_us": 20.0, "spread": {"p50_us": {"min": 9.5, "max": 10.5}}}
    auto_close = {"p50_us": 10.8, "p99_us": 19.0, "spread": {"p50_us": {"min": 10.6, "max": 11.0}}}
    check = auto_check(auto_close, plain)
    assert check["p50_us"] == {"ratio": 1.08, "spread": 0.1, "ok": True}
    assert check["p99_us"]["ok"] is True  # faster is always fine
    auto_slow = {"p50_us": 12.0, "p99_us": 20.0, "spread": {"p50_us": {"min": 11.9, "max": 12.1}}}
    assert auto_check(auto_slow, plain)["p50_us"]["ok"] is False
    tp = auto_check({"gbit_per_s": 9.0}, {"gbit_per_s": 10.0})
    assert tp["gbit_per_s"]["ok"] is False  # 10 % less throughput, no spread recorded


def test_case_summary_carries_the_verdicts_and_the_auto_ratio() -> None:
    case = Case("rr-64B", "rr", 64, ("plain", "spliced", "auto"), count=10)
    result = CaseResult(
        case,
        [
            _run("plain", 10.0, 20.0),
            _run("spliced", 5.0, 10.0, redirected=640),
            _run("auto", 10.1, 20.5, DEMOTED),
            _run("plain", 10.2, 20.0),
            _run("spliced", 5.1, 10.0, redirected=640),
            _run("auto", 10.0, 20.0, DEMOTED),
        ],
    )
    s = summarize_case(result)
    assert s["auto"]["verdict"] == "Demoted" and s["auto"]["spliced_runs"] == 0
    assert s["auto"]["reason"].startswith("would_blocking_receive")
    assert [r["verdict"] for r in s["auto"]["runs"]] == ["Demoted", "Demoted"]
    assert s["ratio_auto"]["p50_ratio"] == 0.995
    assert s["auto_check"]["p50_us"]["ok"] and s["auto_check"]["p99_us"]["ok"]
    json.dumps(s)  # the summary is plain JSON
    text = bench_text([s], {"rr-64B": ("p50_us", "p99_us")})
    assert "Auto: Demoted (0 of 2 runs spliced): would_blocking_receive" in text


def _demo_result(i: int, verdict: Verdict, redirected: int) -> WorkloadResult:
    w = WORKLOADS[i]
    figs = {"p50_us": 10.0, "p99_us": 20.0, "gbit_per_s": 1.0}
    return WorkloadResult(
        w,
        9400 + i,
        [DemoRun("plain", figs, 0), DemoRun("auto", figs, redirected, verdict)],
    )


def test_demo_prints_each_endpoints_verdict_before_its_table() -> None:
    results = [_demo_result(0, DEMOTED, 0), _demo_result(2, SPLICED, 1 << 20)]
    lines = render_text(results).splitlines()
    assert lines[0].startswith("SocketSplice applied: demo/bench, mode Auto (evidence window 1 connections")
    assert lines[1] == "Auto's verdicts, per endpoint (client -> server:port):"
    assert "demo/client -> demo/server:9400  Demoted: would_blocking_receive" in lines[2]
    assert "demo/client -> demo/server:9402  Spliced: promoted" in lines[3]
    table = next(i for i, line in enumerate(lines) if line.startswith("workload"))
    assert table > 3
    assert any("stream-1KiB" in line and "Spliced" in line and line.endswith("yes") for line in lines)
    doc = json.loads(render_json(results))
    assert [e["verdict"] for e in doc["endpoints"]] == ["Demoted", "Spliced"]
    assert doc["endpoints"][0]["would_differ"] == {"blocking_receive": 3}
    assert doc["workloads"][1]["auto"]["bytes_redirected"] == 1 << 20
    assert doc["workloads"][0]["ratio"] == {"p50_ratio": 1.0, "p99_ratio": 1.0}
