"""Pure statistics helpers for comparing plain-TCP and spliced runs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    """Median, range and interquartile range of repeated measurements."""

    median: float
    min: float
    max: float
    iqr: float


def _checked(values: Sequence[float], what: str) -> None:
    if len(values) == 0:
        raise ValueError(f"{what} of an empty sequence")
    if any(math.isnan(v) for v in values):
        raise ValueError(f"{what}: NaN in values")


def median(values: Sequence[float]) -> float:
    """The median (mean of the two middle values for an even count). Raises on empty input."""
    _checked(values, "median")
    s = sorted(values)
    n = len(s)
    mid = n // 2
    if n % 2:
        return float(s[mid])
    return (s[mid - 1] + s[mid]) / 2.0


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (the method sslg uses): the smallest value with at least q % of
    the values at or below it. ``sorted_values`` must be sorted ascending; q in [0, 100]."""
    _checked(sorted_values, "percentile")
    if not 0.0 <= q <= 100.0 or math.isnan(q):
        raise ValueError(f"percentile: q must be within 0..100, got {q}")
    n = len(sorted_values)
    # Round q*n/100 to 9 decimals first so 99.9 % of 1000 is rank 999, not 1000 (float noise).
    rank = math.ceil(round(q * n / 100.0, 9))
    rank = min(max(rank, 1), n)
    return float(sorted_values[rank - 1])


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing or b is zero (e.g. spliced / plain)."""
    if a is None or b is None or b == 0:
        return None
    return a / b


def _quantile_linear(sorted_values: Sequence[float], q: float) -> float:
    # Linear interpolation between closest ranks (numpy's default, statistics' "inclusive").
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarize(values: Sequence[float]) -> Summary:
    """Median, min, max and IQR (Q3 - Q1, linearly interpolated: with the handful of repeats a
    benchmark makes, nearest-rank quartiles would collapse onto min and max)."""
    _checked(values, "summarize")
    s = sorted(float(v) for v in values)
    return Summary(
        median=median(s),
        min=s[0],
        max=s[-1],
        iqr=_quantile_linear(s, 0.75) - _quantile_linear(s, 0.25),
    )
