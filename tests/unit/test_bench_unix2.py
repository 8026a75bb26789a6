"""The bench's ``unix2`` path (AF_UNIX between two processes, one per pod): in the matrix and the
rotation, measured against the path-socket server, and in the summary, table, CSV and plots
(no kernel)."""

from __future__ import annotations

import csv
import io
from typing import Any, get_args

import pytest

from socksplice.tools.bench import measuring
from socksplice.tools.bench.cases import ALL_PATHS, CONNECT_PATHS, Case, Path, matrix
from socksplice.tools.bench.files import render_csv
from socksplice.tools.bench.measuring import Run, Target, measure
from socksplice.tools.bench.plots import COLORS, LEGEND
from socksplice.tools.bench.running import CaseResult, rotated
from socksplice.tools.bench.summary import headline, summarize_case
from socksplice.tools.bench.table import render_text
from socksplice.tools.workloads.loadgen import HostRunner
from socksplice.tools.workloads.results import LatencyResult


def test_unix2_runs_where_unix_runs_and_on_crr() -> None:
    for quick in (True, False):
        for case in matrix(quick):
            if case.kind in ("echo", "rr", "stream"):
                assert case.paths == ALL_PATHS, case.name
            elif case.kind == "crr":
                assert case.paths == CONNECT_PATHS and "unix" not in case.paths
            else:  # iperf3 and conc: TCP only
                assert "unix2" not in case.paths and "unix" not in case.paths, case.name


def test_rotation_puts_unix2_in_every_position() -> None:
    orders = [rotated(ALL_PATHS, r) for r in range(len(ALL_PATHS))]
    assert sorted(order.index("unix2") for order in orders) == list(range(len(ALL_PATHS)))
    assert all(sorted(order) == sorted(ALL_PATHS) for order in orders)


def test_every_path_has_a_color_and_a_legend() -> None:
    assert set(COLORS) == set(LEGEND) == set(get_args(Path))
    assert LEGEND["unix2"] == "AF_UNIX two processes"
    assert len(set(COLORS.values())) == len(COLORS)


def _latency(p50: float) -> LatencyResult:
    return LatencyResult("rr", 64, 1000, p50, p50, p50, p50, p50, p50, 0, 0.01, 0.02, 0.1)


def test_unix2_connects_to_the_path_socket_and_counts_its_server(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []

    def fake_rr(*args: Any, **kwargs: Any) -> LatencyResult:
        calls.append(kwargs)
        return _latency(12.0)

    cpu = {100: [1.0, 1.5], 200: [2.0, 2.25]}  # pid: CPU seconds before and after the run
    monkeypatch.setattr(measuring, "run_rr", fake_rr)
    monkeypatch.setattr(measuring, "process_cpu_s", lambda pid: cpu[pid].pop(0))
    target = Target("198.18.0.2", 9401, 100, "/run/socksplice/bench-x/rr.sock", 200)
    case = Case("rr-64B", "rr", 64, ALL_PATHS, count=1000)

    run = measure(case, "unix2", HostRunner(), target, samples=False)
    assert calls[-1]["unix_path"] == "/run/socksplice/bench-x/rr.sock" and calls[-1]["unix"] is False
    # The client's 0.03 s and the path-socket server's 0.25 s, not the TCP server's.
    assert run.figures["cpu_us_per_transaction"] == pytest.approx((0.03 + 0.25) / 1000 * 1e6)

    run = measure(case, "plain", HostRunner(), target, samples=False)
    assert calls[-1]["unix_path"] is None
    assert run.figures["cpu_us_per_transaction"] == pytest.approx((0.03 + 0.5) / 1000 * 1e6)


def test_unix2_needs_a_path_socket_server() -> None:
    case = Case("rr-64B", "rr", 64, ALL_PATHS, count=10)
    with pytest.raises(ValueError, match="no AF_UNIX twin"):
        measure(case, "unix2", HostRunner(), Target("198.18.0.2", 9401, 100), samples=False)
    conc = Case("conc-100", "conc", 64, (*CONNECT_PATHS,), seconds=1, connections=100)
    with pytest.raises(ValueError, match="conc has no unix2 path"):
        measure(conc, "unix2", HostRunner(), Target("h", 1, 1, "/x.sock", 2), samples=False)


P50 = {"plain": 40.0, "spliced": 20.0, "auto": 21.0, "unix": 10.0, "unix2": 16.0}


def _rr_result() -> tuple[Case, CaseResult]:
    case = Case("rr-64B", "rr", 64, ALL_PATHS, count=1000)
    runs = [
        Run(
            case.name,
            path,  # type: ignore[arg-type]
            {
                "p50_us": v,
                "p99_us": 2 * v,
                "p999_us": 3 * v,
                "max_us": 4 * v,
                "cpu_us_per_transaction": v / 2,
            },
            bytes_redirected=0 if path in ("plain", "unix", "unix2") else 10**6,
        )
        for _ in range(2)
        for path, v in P50.items()
    ]
    return case, CaseResult(case, runs)


def test_summary_has_ratio_vs_unix2_beside_ratio_vs_unix() -> None:
    _, result = _rr_result()
    s = summarize_case(result)
    assert s["paths"]["unix2"]["runs"] == 2 and s["paths"]["unix2"]["p50_us"] == 16.0
    assert "bytes_redirected" not in s["paths"]["unix2"] and "bytes_redirected" not in s["paths"]["unix"]
    assert s["ratio_vs_unix2"]["p50_ratio"] == round(20 / 16, 3)
    assert s["ratio_vs_unix"]["p50_ratio"] == 2.0
    assert s["ratio_vs_unix2"]["cpu_ratio"] == round(10 / 8, 3)
    assert set(s["stalls"]) == set(ALL_PATHS)


def test_no_ratio_vs_unix2_without_the_path() -> None:
    case = Case("iperf3-1KiB", "iperf3", 1024, ("plain", "spliced", "auto"), seconds=1)
    runs = [Run(case.name, p, {"gbit_per_s": 5.0, "cpu_s_per_gb": 1.0}) for p in case.paths]
    s = summarize_case(CaseResult(case, runs))
    assert "ratio_vs_unix2" not in s and "ratio_vs_unix" not in s


def test_table_has_an_af_unix_two_process_column() -> None:
    case, result = _rr_result()
    text = render_text([summarize_case(result)], {case.name: headline(case)})
    head, _, p50 = text.splitlines()[:3]
    assert "AF_UNIX 2p" in head and "spl/UX2p" in head
    # Each value sits under its header (right-aligned columns).
    for title, value in (("AF_UNIX 2p", "16.00"), ("spl/UX2p", "1.250"), ("AF_UNIX", "10.00")):
        end = head.index(title) + len(title)
        assert p50[end - len(value) : end] == value, (title, p50)
    assert "unix2 0" in text  # the stalls line names every path


def test_csv_has_unix2_rows_and_the_ratio() -> None:
    _, result = _rr_result()
    rows = list(csv.DictReader(io.StringIO(render_csv([summarize_case(result)]))))
    assert {r["figure"] for r in rows if r["path"] == "unix2"} >= {
        "p50_us",
        "p99_us",
        "cpu_us_per_transaction",
    }
    ratio = [r for r in rows if r["path"] == "spliced/unix2" and r["figure"] == "p50_ratio"]
    assert len(ratio) == 1 and float(ratio[0]["median"]) == 1.25
