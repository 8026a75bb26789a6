"""``socksplice bench --quick`` end to end, and the load generator modes it adds.

Smoke test: the real local cluster, agent and data path; every case runs on every path and
the outputs are complete and consistent. No timing assertions: the figures are whatever this
machine gives; only their presence, their shape, that the spliced runs really were spliced
(bytes redirected), that every auto run reached a verdict and was spliced exactly when its
endpoint was promoted, that the non-blocking (``-nb``) sslg workloads are promoted and spliced
while the blocking ones are refused, that connect/request/close stays on TCP under Auto, and that
the two-process AF_UNIX reference (``unix2``) ran wherever the matrix has it are checked.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from socksplice.tools.bench.cases import matrix
from socksplice.tools.bench.main import main
from socksplice.tools.bench.running import rotated
from socksplice.tools.workloads import HostRunner, Server, run_conc, run_echo, run_rr, run_stream

pytestmark = pytest.mark.kernel

HOST = HostRunner()


def test_unix_reference_modes() -> None:
    echo = run_echo(HOST, "", 0, 16384, 200, unix=True)
    assert echo.count == 200 and echo.mismatched_blocks == 0
    rr = run_rr(HOST, "", 0, 64, 1024, 200, unix=True)
    assert rr.count == 200 and rr.resp_size == 1024
    stream = run_stream(HOST, "", 0, 1024, 0.2, unix=True)
    assert stream.bytes > 0 and stream.bytes == stream.writes * 1024
    # The -nb cases' AF_UNIX path: the same with O_NONBLOCK ends and poll() before each receive.
    echo = run_echo(HOST, "", 0, 16384, 200, unix=True, nonblock=True)
    assert echo.count == 200 and echo.mismatched_blocks == 0
    rr = run_rr(HOST, "", 0, 64, 64, 200, unix=True, nonblock=True)
    assert rr.count == 200
    stream = run_stream(HOST, "", 0, 128 * 1024, 0.2, unix=True, nonblock=True)
    assert stream.bytes > 0 and stream.bytes == stream.writes * 128 * 1024


def test_conc_keeps_every_connection_busy() -> None:
    with Server(HOST, 0, "rr") as server:
        res = run_conc(HOST, "127.0.0.1", server.port, 100, 0.3)
    assert res.connections == 100
    assert res.transactions >= 100
    assert server.result is not None and server.result.connections == 100
    assert server.result.errors == 0


def test_paths_rotate_between_repeats() -> None:
    paths = ("plain", "spliced", "unix")
    assert [rotated(paths, r) for r in range(3)] == [  # type: ignore[arg-type]
        ("plain", "spliced", "unix"),
        ("spliced", "unix", "plain"),
        ("unix", "plain", "spliced"),
    ]


def test_bench_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["--quick", "--json", "--out", str(out)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["quick"] is True and doc["repeats"] == 2
    by_name = {w["workload"]: w for w in doc["workloads"]}
    assert set(by_name) == {c.name for c in matrix(quick=True)}
    for case in matrix(quick=True):
        w = by_name[case.name]
        assert set(w["paths"]) == set(case.paths)
        for path, fig in w["paths"].items():
            assert fig["runs"] == 2, (case.name, path)
        assert w["paths"]["spliced"]["bytes_redirected"] > 0, f"{case.name}: spliced runs were not spliced"
        auto = w["auto"]
        assert len(auto["runs"]) == 2 and auto["verdict"] in ("Audit", "Spliced", "Demoted"), auto
        for r in auto["runs"]:
            assert r["reason"] and r["connections"] >= 1, (case.name, r)
            # Only a promoted endpoint's connections are spliced; one may be demoted during the run
            # (iperf3 closing with unread bytes), after its first bytes were redirected.
            if r["verdict"] != "Spliced":
                assert r["bytes_redirected"] == 0, r
            elif r["verdict_after_run"] == "Spliced":
                assert r["bytes_redirected"] > 0, r
        assert w["ratio_auto"]["p50_ratio" if case.latency else "throughput_ratio"] is not None
        assert set(w["auto_check"]) >= ({"p50_us", "p99_us"} if case.latency else set()), w["auto_check"]
        if case.nonblock:  # an event-loop application: audited, promoted, its new connections spliced
            assert auto["verdict"] == "Spliced" and w["paths"]["auto"]["bytes_redirected"] > 0, auto
            assert w["io"] == "nonblocking"
        elif case.kind == "stream":  # a blocking bulk writer's receives: Auto refuses, stays on TCP
            assert auto["verdict"] == "Demoted" and w["paths"]["auto"]["bytes_redirected"] == 0, auto
        elif case.kind in ("echo", "rr"):  # blocking request/response: accepted while it has sent
            # less than a quarter of its send buffer, refused after (docs/auto.md)
            assert auto["verdict"] in ("Spliced", "Demoted"), auto
        if case.kind == "crr":  # too short to gain (or refused): Auto leaves it on TCP
            assert auto["verdict"] != "Spliced" and w["paths"]["auto"]["bytes_redirected"] == 0, auto
        ratio = w["ratio"]
        if case.kind in ("stream", "iperf3", "crr", "conc"):
            assert ratio["throughput_ratio"] is not None
        if case.latency:
            assert ratio["p50_ratio"] is not None and ratio["p99_ratio"] is not None
        if case.kind in ("echo", "rr", "crr"):
            assert set(w["stalls"]) == set(case.paths)
        if "unix" in case.paths:
            assert "ratio_vs_unix" in w
        if "unix2" in case.paths:  # an sslg server of its own in the server pod, on a path socket
            unix2 = w["paths"]["unix2"]
            assert "bytes_redirected" not in unix2, unix2
            assert unix2["p50_us" if case.latency else "gbit_per_s"] > 0, unix2
            assert unix2["cpu_us_per_transaction" if case.latency else "cpu_s_per_gb"] > 0, unix2
            key = "p50_ratio" if case.latency else "throughput_ratio"
            assert w["ratio_vs_unix2"][key] is not None, w["ratio_vs_unix2"]
        else:
            assert "ratio_vs_unix2" not in w
    assert {c.name for c in matrix(quick=True) if "unix2" in c.paths} >= {"rr-64B", "stream-1KiB", "crr-64B"}
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert {r["workload"] for r in rows} == set(by_name)
    assert {r["workload"] for r in rows if r["path"] == "spliced/unix2"} == {
        c.name for c in matrix(quick=True) if "unix2" in c.paths
    }
    assert json.loads((out / "results.json").read_text())["workloads"] == doc["workloads"]
    assert (out / "table.txt").read_text().startswith("workload")
    assert 0 <= doc["during"]["steal_pct"] <= 100 and len(doc["during"]["loadavg_end"]) == 3
    assert doc["machine"]["cpu"] and doc["machine"]["kernel"] and doc["busy"] is None
    for case in matrix(quick=True):
        raw = json.loads((out / "raw" / f"{case.name}.json").read_text())
        assert len(raw["runs"]) == len(case.paths) * doc["repeats"]
        if case.kind in ("echo", "rr", "crr"):
            assert all(r["samples"] > 0 and len(r["samples_us"]) == r["samples"] for r in raw["runs"])
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert "throughput-vs-write-size.png" in pngs
    assert "cdf-echo-16KiB.png" in pngs


def test_bench_observation_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--observation", "--quick", "--repeats", "1", "--json", "--out", str(tmp_path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    obs = doc["observation"]
    assert set(obs) == {"plain", "auto", "spliced"}
    for path, e in obs.items():
        assert e["runs"] == {"observe": 1, "no_observe": 1, "stats": 1}, (path, e)
        assert e["programs_ns_per_transaction"] > 0 and 0 < e["programs_share_of_cpu"] < 1, (path, e)
        assert e["program_runs_per_transaction"] >= 2, (path, e)  # a receive at each end, at least
        assert e["cpu_difference_share"] is not None
    assert obs["spliced"]["bytes_redirected"]["observe"] > 0
    assert obs["plain"]["bytes_redirected"] == {"observe": 0, "no_observe": 0}
    assert (tmp_path / "observation.json").exists()
