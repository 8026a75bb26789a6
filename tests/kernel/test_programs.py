"""Real programs from Debian packages (``socksplice.tools.conformance.programs``) between two local pods:
plain TCP, then spliced (SpliceRelaxedReceive). Each run's traces must be those of a correct run,
and equal: the programs cannot tell the splice from TCP. Below them, the parsers of the programs'
output (no kernel needed)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from socksplice.local import LocalTopology, default_cluster
from socksplice.tools.conformance import programs
from socksplice.tools.conformance.programs import PROGRAMS, Result, expected
from tests.conftest import require_kernel
from tests.kernel.splicing import SpliceEnv, private_bpffs, splice_env, splice_yaml

PORT = 9400
CLIENT_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def programs_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpliceEnv]:
    """One topology and agent for every program (loading the data path once saves time)."""
    require_kernel()
    tmp = tmp_path_factory.mktemp("programs")
    topology = LocalTopology(default_cluster(), state_dir=tmp / "state").up()
    try:
        with private_bpffs(tmp / "bpffs") as pin_root, splice_env(topology, pin_root, tmp / "agent") as env:
            yield env
    finally:
        topology.down()


def require_binaries(program: str) -> None:
    missing = [b for b in PROGRAMS[program].binaries if shutil.which(b) is None]
    if missing:
        message = f"not installed: {', '.join(missing)} (scripts/install.sh installs them)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message} (CI=true: not skipping)", pytrace=False)
        pytest.skip(message)


def _argv(program: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "socksplice.tools.conformance.programs", program, *args]


def _last_json(out: bytes) -> Any:
    return json.loads(out.decode().strip().splitlines()[-1])


def run_program(env: SpliceEnv, program: str) -> dict[str, Any]:
    """Server in demo/server (a [::] listener), client in demo/client to its IPv4 address."""
    server, client = env.pod("server"), env.pod("client")
    srv = server.popen(
        _argv(program, "server", "--port", str(PORT), "--bind", "::"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert srv.stdout is not None and srv.stderr is not None
        line = srv.stdout.readline()
        assert line.strip() == b"READY", (line, srv.stderr.read().decode(errors="replace"))
        cli = client.popen(
            _argv(program, "client", "--host", str(server.ipv4), "--port", str(PORT)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            out, err = cli.communicate(timeout=CLIENT_TIMEOUT)
        finally:
            if cli.poll() is None:
                cli.kill()
                cli.wait()
        assert cli.returncode == 0, err.decode(errors="replace")
        srv.send_signal(signal.SIGTERM)
        sout, serr = srv.communicate(timeout=30)
        assert srv.returncode == 0, serr.decode(errors="replace")
        return {"client": _last_json(out), "server": _last_json(sout)}
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()


def settled_map(env: SpliceEnv, timeout: float = 10.0) -> int:
    """Sockets left in the SOCKHASH once the programs are gone (0 within ``timeout``)."""
    deadline = time.monotonic() + timeout
    while (n := env.datapath.spliced_sockets()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return n


@pytest.mark.kernel
@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_real_program_sees_no_difference_when_spliced(programs_env: SpliceEnv, program: str) -> None:
    require_binaries(program)
    env = programs_env
    want = expected(program)
    plain = run_program(env, program)
    assert plain == want, "the program failed on plain TCP"
    env.apply(splice_yaml())
    try:
        before = env.totals()["bytes_redirected"]
        spliced = run_program(env, program)
        redirected = env.totals()["bytes_redirected"] - before
    finally:
        env.delete()
    assert redirected > 0, "the spliced run was not spliced"
    assert spliced == plain
    assert settled_map(env) == 0


WRK_FAILED = """\
Running 3s test @ http://10.0.0.2:9400/16k.bin
  2 threads and 32 connections
  57868 requests in 3.10s, 17.00MB read
  Socket errors: connect 0, read 3, write 0, timeout 12
  Non-2xx or 3xx responses: 5
Requests/sec:  52632.97
BAD RESPONSES 7
"""


def test_wrk_reports_errors_in_lines_it_prints_only_when_there_are_some() -> None:
    assert programs.parse_wrk(WRK_FAILED) == {
        "completed_requests": True,
        "socket_errors": {"connect": 0, "read": 3, "write": 0, "timeout": 12},
        "non_2xx_3xx": 5,
        "bad_responses": 7,
    }
    clean = "\n".join(line for line in WRK_FAILED.splitlines() if "errors" not in line and "2xx" not in line)
    want = expected("nginx-wrk")["client"]
    assert {"exit": 0, **programs.parse_wrk(clean.replace("BAD RESPONSES 7", "BAD RESPONSES 0"))} == want
    assert programs.parse_wrk("0 requests in 2.00s, 0.00B read\n")["completed_requests"] is False


SOCKPERF_OUT = """\
sockperf: [Valid Duration] RunTime=1.550 sec; SentMessages=90181; ReceivedMessages=90181
sockperf: ====> avg-latency=8.580 (std-dev=2.406)
sockperf: # dropped messages = 0; # duplicated messages = 2; # out-of-order messages = 1
"""


def test_sockperf_counts_are_parsed_and_a_missing_summary_is_not_zero() -> None:
    trace = programs.parse_sockperf(Result(0, SOCKPERF_OUT.encode(), b""))
    assert trace == {"exit": 0, "dropped": 0, "duplicated": 2, "out_of_order": 1, "errors": 0}
    refused = Result(0, b"", b"sockperf: ERROR: Can`t connect socket (errno=111 Connection refused)\n")
    assert programs.parse_sockperf(refused) == {
        "exit": 0,
        "dropped": None,
        "duplicated": None,
        "out_of_order": None,
        "errors": 1,
    }


def test_redis_benchmark_csv_gives_the_completed_tests_only() -> None:
    csv = '"test","rps","avg_latency_ms"\n"SET","66889.63","0.221"\n"GET","75471.70","0.143"\n'
    assert programs.parse_benchmark_csv(csv) == ["GET", "SET"]


def test_iperf3_trace_keeps_no_byte_count_and_flags_a_reported_error() -> None:
    doc = {"end": {"sum_sent": {"bytes": 10}, "sum_received": {"bytes": 7}}}
    assert programs.parse_iperf3(Result(0, json.dumps(doc).encode(), b"")) == expected("iperf3")["client"]
    failed = Result(1, json.dumps({"error": "unable to connect"}).encode(), b"")
    assert programs.parse_iperf3(failed)["reported_error"] is True
    assert programs.parse_iperf3(Result("timeout", b"{", b"")) == {"exit": "timeout", "json": False}


def test_listen_addresses_per_program() -> None:
    assert programs.nginx_listen("::", 80) == "[::]:80 ipv6only=off"
    assert programs.nginx_listen("0.0.0.0", 80) == "0.0.0.0:80"
    assert programs.redis_bind("::") == ["* -::*"]
    assert programs.sockperf_address("::") == "0.0.0.0"
    with pytest.raises(programs.Unavailable):
        programs.sockperf_address("2001:db8::1")


def test_content_is_fixed_and_the_expected_curl_trace_matches_it() -> None:
    assert programs.content(100) == programs.content(100) != programs.content(101)[:100]
    rounds = expected("nginx-curl")["client"]
    sizes = [t["size"] for t in rounds["keepalive"]["transfers"]]
    assert sizes == [100, 16384, 1 << 20] * 3 + [1000]
    assert [t["connects"] for t in rounds["http1.0"]["transfers"]] == [1, 1, 1]
