"""The bench's non-blocking (``-nb``) workloads: in the matrix, on their own servers, in the table
and the plots (no kernel)."""

from __future__ import annotations

from socksplice.tools.bench.cases import ALL_PATHS, Case, audit_pass, matrix
from socksplice.tools.bench.measuring import Run
from socksplice.tools.bench.plots import throughput_vs_write
from socksplice.tools.bench.running import SSLG_NB_PORTS, SSLG_PORTS, CaseResult, target_key
from socksplice.tools.bench.summary import headline, summarize_case
from socksplice.tools.bench.table import render_text
from socksplice.tools.demo.running import Verdict


def test_the_matrix_has_non_blocking_twins_on_every_path() -> None:
    for quick in (True, False):
        by_name = {c.name: c for c in matrix(quick)}
        nb = [c for c in by_name.values() if c.nonblock]
        assert {c.name for c in nb} >= {"rr-64B-nb", "echo-16KiB-nb", "stream-128KiB-nb"}
        for case in nb:
            assert case.paths == ALL_PATHS and case.kind in ("echo", "rr", "stream")
            twin = by_name[case.name.removesuffix("-nb")]
            assert not twin.nonblock and (twin.kind, twin.size, twin.paths) == (
                case.kind,
                case.size,
                case.paths,
            )
            assert (twin.count, twin.seconds) == (case.count, case.seconds)
            assert audit_pass(case).nonblock  # the audit pass reads the way the measured run does
        assert not by_name["crr-64B"].nonblock and "unix" not in by_name["crr-64B"].paths


def test_non_blocking_cases_have_their_own_servers() -> None:
    assert target_key(Case("rr-64B", "rr", 64, ALL_PATHS, count=1)) == "rr"
    assert target_key(Case("rr-64B-nb", "rr", 64, ALL_PATHS, count=1, nonblock=True)) == "rr-nb"
    assert target_key(Case("s", "stream", 1024, ALL_PATHS, seconds=1, nonblock=True)) == "sink-nb"
    assert target_key(Case("c", "crr", 64, ALL_PATHS, seconds=1)) == "rr"
    assert target_key(Case("i", "iperf3", 1024, ALL_PATHS, seconds=1)) == "iperf3"
    ports = [*SSLG_PORTS.values(), *SSLG_NB_PORTS.values()]
    assert len(set(ports)) == len(ports) and set(SSLG_NB_PORTS) == set(SSLG_PORTS)


SPLICED = Verdict(
    "Spliced", "promoted: 1 connections in 1 s, 630.0 messages per connection", "Spliced", 2, 1, 900, {}, {}
)


def _stream_result(case: Case, gbit: dict[str, float]) -> CaseResult:
    runs = [
        Run(
            case.name,
            path,  # type: ignore[arg-type]
            {"gbit_per_s": v, "cpu_s_per_gb": 0.5},
            bytes_redirected=0 if path in ("plain", "unix") else 10**9,
            verdict=SPLICED if path == "auto" else None,
        )
        for path, v in gbit.items()
    ]
    return CaseResult(case, runs)


def test_summary_and_table_carry_the_non_blocking_case() -> None:
    nb = Case("stream-128KiB-nb", "stream", 128 * 1024, ALL_PATHS, seconds=1.0, nonblock=True)
    blocking = Case("stream-128KiB", "stream", 128 * 1024, ALL_PATHS, seconds=1.0)
    figures = {"plain": 12.0, "spliced": 20.0, "auto": 19.0, "unix": 60.0}
    s_nb = summarize_case(_stream_result(nb, figures))
    s_bl = summarize_case(_stream_result(blocking, figures))
    assert s_nb["io"] == "nonblocking" and s_bl["io"] == "blocking"
    assert s_nb["auto"]["verdict"] == "Spliced" and s_nb["ratio_auto"]["throughput_ratio"] == round(
        19 / 12, 3
    )
    text = render_text([s_nb], {nb.name: headline(nb)})
    lines = text.splitlines()
    # The longest name still leaves a column of space: every figure column starts where the header's does.
    assert lines[2].startswith("stream-128KiB-nb Gbit/s ")
    assert lines[0].index("figure") == lines[2].index("Gbit/s")
    assert "Auto: Spliced (1 of 1 runs spliced)" in text


def test_throughput_plot_leaves_out_the_non_blocking_stream() -> None:
    # Without matplotlib there is no plot to draw; the series selection is what matters here.
    nb = summarize_case(
        _stream_result(Case("s-nb", "stream", 1024, ALL_PATHS, seconds=1, nonblock=True), {"plain": 1.0})
    )
    assert throughput_vs_write([nb], None) is None  # type: ignore[arg-type]
