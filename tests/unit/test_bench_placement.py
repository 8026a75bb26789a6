"""--placement: the CPUs each pod's processes are pinned to, applied to real child processes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from socksplice.tools.bench.main import build_parser, placement_line
from socksplice.tools.bench.placement import PinnedPod, cpu_sets, describe
from socksplice.tools.workloads.loadgen import HostRunner

AFFINITY = [
    sys.executable,
    "-c",
    "import os; print(sorted(os.sched_getaffinity(0)), os.environ.get('SS_PREEXEC', '-'))",
]


def test_the_placements_name_the_first_two_cpus() -> None:
    assert cpu_sets("free", {0, 1}) == (None, None)
    assert cpu_sets("same", {3, 1, 2}) == (frozenset({1}), frozenset({1}))
    assert cpu_sets("split", {3, 1, 2}) == (frozenset({1}), frozenset({2}))
    with pytest.raises(ValueError, match="--placement split needs two CPUs; this process may use 1"):
        cpu_sets("split", {0})
    assert describe("split", frozenset({0}), frozenset({1})) == {
        "mode": "split",
        "client_cpus": [0],
        "server_cpus": [1],
    }
    assert describe("free", None, None) == {"mode": "free", "client_cpus": None, "server_cpus": None}


def test_a_pinned_pods_children_run_on_its_cpus_and_keep_their_own_preexec() -> None:
    cpu = min(os.sched_getaffinity(0))
    pod = PinnedPod(HostRunner(), frozenset({cpu}))
    proc = pod.popen(AFFINITY, stdout=subprocess.PIPE, preexec_fn=lambda: os.putenv("SS_PREEXEC", "ran"))
    out, _ = proc.communicate(timeout=30)
    assert out.decode().strip() == f"[{cpu}] ran"
    free = PinnedPod(HostRunner(), None).popen(AFFINITY, stdout=subprocess.PIPE)
    out, _ = free.communicate(timeout=30)
    assert out.decode().strip() == f"{sorted(os.sched_getaffinity(0))} -"
    assert (pod.name, pod.ipv4, pod.ipv6) == ("host", "127.0.0.1", "::1")


def test_the_cli_takes_a_placement_and_refuses_others() -> None:
    assert build_parser().parse_args([]).placement == "free"
    assert build_parser().parse_args(["--placement", "same"]).placement == "same"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--placement", "anywhere"])


def test_the_table_says_where_the_processes_ran() -> None:
    assert placement_line(describe("same", frozenset({0}), frozenset({0}))) == (
        "placement: same (client on CPU 0, server on CPU 0)"
    )
    assert placement_line(describe("free", None, None)) == (
        "placement: free (client and server wherever the scheduler put them)"
    )


def test_observation_refuses_a_placement_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from socksplice.tools.bench.main import main

    with pytest.raises(SystemExit) as exc:
        main(["--observation", "--placement", "same"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        "socksplice bench: error: --placement pins the matrix's pods; "
        "--observation runs its own cluster unpinned"
    )
