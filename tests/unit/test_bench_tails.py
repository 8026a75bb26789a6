"""Tails are marked indicative when a run holds too few samples beyond the percentile."""

from __future__ import annotations

from socksplice.tools.bench.table import MIN_BEYOND, indicative


def test_p99_needs_min_beyond_samples_per_run() -> None:
    assert not indicative("p99_us", MIN_BEYOND * 100)  # 2000 rounds: 20 beyond p99
    assert indicative("p99_us", MIN_BEYOND * 100 - 1)
    assert indicative("p999_us", 2000)
    assert not indicative("p999_us", 20000)


def test_p50_and_throughput_are_never_marked_and_max_always() -> None:
    assert not indicative("p50_us", 10)
    assert not indicative("gbit_per_s", 10)
    assert not indicative("p99_us", 0)  # no samples recorded: nothing to judge
    assert indicative("max_us", 20000)
