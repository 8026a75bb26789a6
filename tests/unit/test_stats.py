"""Pure statistics helpers and result parsing of the workloads package."""

from __future__ import annotations

import json
import math

import pytest

from socksplice.tools.workloads.results import (
    CheckResult,
    LatencyResult,
    RateResult,
    ResultFormatError,
    ServerResult,
    StreamResult,
)
from socksplice.tools.workloads.stats import Summary, median, percentile, ratio, summarize


class TestMedian:
    def test_odd(self) -> None:
        assert median([3.0, 1.0, 2.0]) == 2.0

    def test_even_is_mean_of_middle_pair(self) -> None:
        assert median([4.0, 1.0, 3.0, 2.0]) == 2.5

    def test_single(self) -> None:
        assert median([7]) == 7.0

    def test_does_not_mutate(self) -> None:
        values = [3.0, 1.0, 2.0]
        median(values)
        assert values == [3.0, 1.0, 2.0]

    def test_empty_raises(self) -> None:
        with pytest.raises(ValueError, match="empty"):
            median([])

    def test_nan_raises(self) -> None:
        with pytest.raises(ValueError, match="NaN"):
            median([1.0, math.nan])


class TestPercentile:
    values = tuple(float(v) for v in range(1, 101))  # 1..100

    @pytest.mark.parametrize(
        ("q", "expected"),
        [(0, 1.0), (1, 1.0), (50, 50.0), (50.5, 51.0), (90, 90.0), (99, 99.0), (99.9, 100.0), (100, 100.0)],
    )
    def test_nearest_rank(self, q: float, expected: float) -> None:
        assert percentile(self.values, q) == expected

    def test_p999_of_1000_is_rank_999_not_float_noise(self) -> None:
        values = [float(v) for v in range(1, 1001)]
        assert percentile(values, 99.9) == 999.0
        assert percentile(values, 99.0) == 990.0

    def test_small_samples(self) -> None:
        assert percentile([5.0], 99) == 5.0
        assert percentile([1.0, 2.0], 50) == 1.0
        assert percentile([1.0, 2.0], 51) == 2.0

    @pytest.mark.parametrize("q", [-0.1, 100.1, math.nan])
    def test_bad_q(self, q: float) -> None:
        with pytest.raises(ValueError):
            percentile([1.0], q)

    def test_empty(self) -> None:
        with pytest.raises(ValueError):
            percentile([], 50)


class TestRatio:
    def test_plain(self) -> None:
        assert ratio(7.7, 22.6) == pytest.approx(0.3407, abs=1e-4)

    @pytest.mark.parametrize(("a", "b"), [(None, 1.0), (1.0, None), (None, None), (1.0, 0.0), (0.0, 0)])
    def test_none_safe(self, a: float | None, b: float | None) -> None:
        assert ratio(a, b) is None

    def test_zero_numerator(self) -> None:
        assert ratio(0.0, 2.0) == 0.0


class TestSummarize:
    def test_five(self) -> None:
        assert summarize([5.0, 1.0, 4.0, 2.0, 3.0]) == Summary(median=3.0, min=1.0, max=5.0, iqr=2.0)

    def test_three_interpolates_quartiles(self) -> None:
        s = summarize([1, 2, 3])
        assert (s.median, s.min, s.max, s.iqr) == (2.0, 1.0, 3.0, 1.0)

    def test_single(self) -> None:
        assert summarize([4.2]) == Summary(median=4.2, min=4.2, max=4.2, iqr=0.0)

    def test_empty(self) -> None:
        with pytest.raises(ValueError):
            summarize([])


ECHO_JSON = {
    "workload": "echo",
    "size": 16384,
    "count": 200,
    "warmup": 10,
    "method": "blocking",
    "mismatched_blocks": 0,
    "p50_us": 36.6,
    "p90_us": 41.6,
    "p99_us": 67.5,
    "p999_us": 114.4,
    "max_us": 114.4,
    "min_us": 33.1,
    "mean_us": 38.6,
    "stalls_over_10ms": 0,
    "cpu_user_s": 0.004,
    "cpu_sys_s": 0.0,
    "elapsed_s": 0.008,
    "spurious_eagain": 0,
}


class TestResults:
    def test_latency_from_text_and_mapping(self) -> None:
        a = LatencyResult.from_json(json.dumps(ECHO_JSON))
        b = LatencyResult.from_json(ECHO_JSON)
        assert a == b
        assert a.workload == "echo" and a.size == 16384 and a.count == 200
        assert a.p50_us == 36.6 and a.stalls == 0 and a.resp_size is None and a.samples_us == ()

    def test_latency_rr_and_samples(self) -> None:
        data = dict(ECHO_JSON, workload="rr", size=64, req=64, resp=128, samples_us=[1, 2.5])
        r = LatencyResult.from_json(data)
        assert r.resp_size == 128 and r.samples_us == (1.0, 2.5)

    def test_missing_field(self) -> None:
        data = {k: v for k, v in ECHO_JSON.items() if k != "p99_us"}
        with pytest.raises(ResultFormatError, match="p99_us"):
            LatencyResult.from_json(data)

    def test_wrong_type(self) -> None:
        with pytest.raises(ResultFormatError, match="count"):
            LatencyResult.from_json(dict(ECHO_JSON, count="200"))

    def test_not_json(self) -> None:
        with pytest.raises(ResultFormatError):
            LatencyResult.from_json("READY 1234")
        with pytest.raises(ResultFormatError):
            LatencyResult.from_json("[1, 2]")

    def test_stream(self) -> None:
        s = StreamResult.from_json(
            '{"workload":"stream","write_size":16384,"writes":10,"bytes":163840,"elapsed_s":1.0,'
            '"send_elapsed_s":0.9,"gbit_per_s":0.0013,"cpu_user_s":0.1,"cpu_sys_s":0.8,'
            '"unexpected_bytes_in":0,"spurious_eagain":2}'
        )
        assert s == StreamResult(16384, 163840, 1.0, 0.0013, 0.1, 0.8, writes=10, spurious_eagain=2)

    def test_rate(self) -> None:
        data = dict(
            ECHO_JSON, workload="crr", size=64, close="server", connections=8000, connections_per_s=8e3
        )
        r = RateResult.from_json(data)
        assert r.connections == 8000 and r.connections_per_s == 8000.0 and r.close == "server"

    def test_check_ok_and_mismatch(self) -> None:
        good = CheckResult.from_json(
            '{"workload":"check","bytes":100,"seed":1,"bytes_received":100,"extra_bytes":0,'
            '"mismatches":0,"first_mismatch_offset":null,"writes":3,"reads":4,"elapsed_s":0.1,'
            '"spurious_eagain":0}'
        )
        assert good.ok and good.first_mismatch_offset is None
        bad = CheckResult.from_json(
            {"bytes": 100, "bytes_received": 100, "mismatches": 3, "first_mismatch_offset": 17}
        )
        assert not bad.ok and bad.first_mismatch_offset == 17
        short = CheckResult.from_json(
            {"bytes": 100, "bytes_received": 90, "mismatches": 0, "first_mismatch_offset": None}
        )
        assert not short.ok

    def test_server(self) -> None:
        s = ServerResult.from_json(
            '{"mode":"rr","port":4000,"connections":3,"active":0,"bytes_in":10,"bytes_out":20,'
            '"errors":0,"spurious_eagain":0}'
        )
        assert s.connections == 3 and s.bytes_out == 20
