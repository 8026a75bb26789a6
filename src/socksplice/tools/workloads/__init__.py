"""Workloads: the sslg load generator's Python wrappers, its typed results and statistics."""

from socksplice.tools.workloads.loadgen import (
    HostRunner,
    LoadgenError,
    LoadgenMissing,
    PodRunner,
    Server,
    loadgen_path,
    run_check,
    run_conc,
    run_crr,
    run_echo,
    run_rr,
    run_stream,
)
from socksplice.tools.workloads.results import (
    CheckResult,
    ConcResult,
    LatencyResult,
    RateResult,
    ResultFormatError,
    ServerResult,
    StreamResult,
)
from socksplice.tools.workloads.stats import Summary, median, percentile, ratio, summarize

__all__ = [
    "CheckResult",
    "ConcResult",
    "HostRunner",
    "LatencyResult",
    "LoadgenError",
    "LoadgenMissing",
    "PodRunner",
    "RateResult",
    "ResultFormatError",
    "Server",
    "ServerResult",
    "StreamResult",
    "Summary",
    "loadgen_path",
    "median",
    "percentile",
    "ratio",
    "run_check",
    "run_conc",
    "run_crr",
    "run_echo",
    "run_rr",
    "run_stream",
    "summarize",
]
