"""The parsers of the conformance programs' output (``socksplice.tools.conformance.programs``)
and the traces a correct run gives: no kernel, no programs installed. The programs themselves run
between two local pods in tests/kernel/test_programs.py."""

from __future__ import annotations

import json

import pytest

from socksplice.tools.conformance import programs
from socksplice.tools.conformance.programs import Result, expected

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
