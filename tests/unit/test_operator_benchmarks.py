"""SpliceBenchmark: the objects a run creates, the client's output, and the run's state machine."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

import pytest

from socksplice.api.socketsplice import parse_socketsplice
from socksplice.errors import InvalidSpec
from socksplice.operator import benchmarks
from socksplice.operator.benchmarks import Facts, Phase, advance

BODY: dict[str, Any] = {
    "apiVersion": "socksplice.io/v1alpha1",
    "kind": "SpliceBenchmark",
    "metadata": {"name": "ab", "namespace": "bench", "uid": "0b6c7d8e-9f00-4a1b-8c2d-3e4f5a6b7c8d"},
    "spec": {
        "nodeName": "node-a",
        "image": "socksplice:dev",
        "durationSeconds": 2,
        "settleSeconds": 3,
        "workloads": [
            {"name": "rr-64", "type": "rr", "size": 64, "rounds": 200},
            {"name": "stream-16k", "type": "stream", "size": 16384},
        ],
    },
}
B = benchmarks.parse_benchmark(BODY)

RR = '{"workload":"rr","size":64,"resp":64,"count":200,"p50_us":21.5,"p99_us":60.0}'
STREAM = '{"write_size":16384,"bytes":1000,"elapsed_s":2.0,"gbit_per_s":5.0}'
PLAIN_LOG = f"RESULT rr-64 {RR}\nsome noise\nRESULT stream-16k {STREAM}\n"
SPLICED_LOG = PLAIN_LOG.replace('"p50_us":21.5', '"p50_us":8.6').replace(
    '"gbit_per_s":5.0', '"gbit_per_s":20.0'
)


def test_objects_are_pinned_owned_and_labelled() -> None:
    pod = benchmarks.server_pod(B)
    job = benchmarks.client_job(B, "plain", "10.244.1.6")
    splice = benchmarks.benchmark_splice(B)
    for obj in (pod, job, splice):
        meta = obj["metadata"]
        assert meta["namespace"] == "bench"
        assert meta["labels"][benchmarks.LABEL] == "ab"
        assert meta["ownerReferences"][0]["uid"] == BODY["metadata"]["uid"]
        assert meta["ownerReferences"][0]["controller"] is True
    assert [m["metadata"]["name"] for m in (pod, job, splice)] == ["ab-server", "ab-plain", "ab-splice"]
    assert pod["spec"]["nodeName"] == "node-a"
    assert [c["command"][2:] for c in pod["spec"]["containers"]] == [
        ["--port", "9400", "--mode", "rr"],
        ["--port", "9401", "--mode", "sink"],
    ]
    template = job["spec"]["template"]
    assert template["spec"]["nodeName"] == "node-a"
    assert template["metadata"]["labels"][benchmarks.LABEL] == "ab"
    assert job["spec"]["backoffLimit"] == 0
    parsed = parse_socketsplice(splice)  # the SocketSplice the run creates is a valid one
    assert parsed.spec.pod_selector.matches({benchmarks.LABEL: "ab"})


def test_client_command() -> None:
    plain = benchmarks.client_command(B, "10.244.1.6", 0)
    assert "sleep" not in plain
    assert "sslg rr --host 10.244.1.6 --port 9400 --req 64 --resp 64 --count 200" in plain
    assert "sslg stream --host 10.244.1.6 --port 9401 --write 16384 --seconds 2" in plain
    spliced = benchmarks.client_job(B, "spliced", "10.244.1.6")
    assert spliced["spec"]["template"]["spec"]["containers"][0]["command"][2].startswith("set -e\nsleep 3\n")
    subprocess.run(["sh", "-n", "-c", plain], check=True)


def test_parse_client_log() -> None:
    parsed = benchmarks.parse_client_log(PLAIN_LOG, B.workloads)
    assert parsed["rr-64"]["p50_us"] == 21.5
    assert parsed["stream-16k"]["gbit_per_s"] == 5.0
    with pytest.raises(InvalidSpec, match="no result for stream-16k"):
        benchmarks.parse_client_log(f"RESULT rr-64 {RR}\nRESULT stream-16k not json\n", B.workloads)


def test_a_whole_run() -> None:
    status: dict[str, Any] = {}

    def step(facts: Facts) -> benchmarks.Step:
        s = advance(B, status, facts)
        status.update(s.status)
        return s

    s = step(Facts())
    assert (status["phase"], [o["kind"] for o in s.create]) == ("Pending", ["Pod"])
    assert step(Facts(server_phase="Pending")).status == {}
    s = step(Facts(server_phase="Running", server_ip="10.244.1.6"))
    assert (status["phase"], [o["metadata"]["name"] for o in s.create]) == ("RunningPlain", ["ab-plain"])
    running = Facts(server_phase="Running", server_ip="10.244.1.6", plain_job="Active")
    assert step(running).create == []
    s = step(
        Facts(server_phase="Running", server_ip="10.244.1.6", plain_job="Succeeded", plain_log=PLAIN_LOG)
    )
    assert (status["phase"], [o["kind"] for o in s.create]) == ("Splicing", ["SocketSplice"])
    assert status["plain"]["rr-64"]["p50_us"] == 21.5
    waiting = Facts(server_phase="Running", server_ip="10.244.1.6", plain_job="Succeeded", splice_ready=False)
    assert step(waiting).create == []
    s = step(Facts(server_phase="Running", server_ip="10.244.1.6", plain_job="Succeeded", splice_ready=True))
    assert (status["phase"], [o["metadata"]["name"] for o in s.create]) == ("RunningSpliced", ["ab-spliced"])
    s = step(
        Facts(
            server_phase="Running",
            server_ip="10.244.1.6",
            plain_job="Succeeded",
            splice_ready=True,
            spliced_job="Succeeded",
            spliced_log=SPLICED_LOG,
        )
    )
    assert status["phase"] == "Succeeded"
    assert sorted(s.delete) == ["plain", "server", "splice", "spliced"]
    rows = {(r["workload"], r["metric"]): r for r in status["results"]}
    assert rows[("rr-64", "p50_us")]["ratio"] == 0.4
    assert rows[("stream-16k", "gbit_per_s")] == {
        "workload": "stream-16k",
        "metric": "gbit_per_s",
        "unit": "Gbit/s",
        "better": "higher",
        "plain": 5.0,
        "spliced": 20.0,
        "ratio": 4.0,
    }
    assert advance(B, status, Facts()).status == {}  # finished runs stay finished


@pytest.mark.parametrize(
    ("status", "facts", "message"),
    [
        ({"phase": "Pending"}, Facts(server_phase="Failed"), "server pod failed"),
        (
            {"phase": "RunningPlain"},
            Facts(server_phase="Running", plain_job="Failed"),
            "plain client job failed",
        ),
        (
            {"phase": "RunningPlain"},
            Facts(server_phase="Running", plain_job="Succeeded", plain_log="x"),
            "plain run",
        ),
        (
            {"phase": "RunningSpliced"},
            Facts(server_phase="Running", spliced_job="Failed"),
            "spliced client job failed",
        ),
    ],
)
def test_failures_clean_up(status: dict[str, Any], facts: Facts, message: str) -> None:
    s = advance(B, status, facts)
    assert s.status["phase"] == Phase.FAILED
    assert s.status["message"].startswith(message)
    assert sorted(s.delete) == ["plain", "server", "splice", "spliced"]


def test_invalid_benchmark() -> None:
    with pytest.raises(InvalidSpec, match=r"spec\.nodeName: required"):
        benchmarks.parse_benchmark({**BODY, "spec": {"image": "i"}})


@pytest.mark.kernel
def test_client_script_against_real_sslg_servers() -> None:
    """The generated server commands and client script, run with the real sslg in a throwaway netns;
    the operator's parser reads what the client printed."""
    from socksplice.tools.workloads.loadgen import LoadgenMissing, loadgen_path

    try:
        sslg = loadgen_path()
    except LoadgenMissing as exc:
        pytest.skip(str(exc))
    if shutil.which("unshare") is None:
        pytest.skip("unshare not in PATH")
    servers = " ".join(
        f'{" ".join(c["command"])} >/dev/null 2>&1 & pids="$pids $!";'
        for c in benchmarks.server_pod(B)["spec"]["containers"]
    )
    script = (
        f"ip link set lo up; {servers} sleep 0.5; "
        + benchmarks.client_command(B, "127.0.0.1", 0).replace("set -e\n", "")
        + "\nkill $pids; wait"
    )
    env = {**os.environ, "PATH": f"{sslg.parent}:{os.environ.get('PATH', '')}"}
    out = subprocess.run(
        ["unshare", "--net", "--pid", "--fork", "--kill-child", "sh", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    parsed = benchmarks.parse_client_log(out.stdout, B.workloads)
    assert parsed["rr-64"]["count"] == 200
    assert parsed["stream-16k"]["bytes"] > 0
    rows = benchmarks.results_table(B.workloads, parsed, parsed)
    assert {r["ratio"] for r in rows} == {1.0}
