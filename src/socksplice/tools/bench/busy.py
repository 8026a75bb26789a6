"""``--busy``: other work on the vCPUs while the matrix runs.

One spinner process per CPU, pinned to it, spins for ``duty`` of every ``period_s`` and sleeps the
rest (nice 0, the scheduler's default class), so every path competes for the CPUs alike. The
spinners are stopped when the run ends, also when it fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

DUTY = 0.5
PERIOD_S = 0.01

_SPIN = """
import os, sys, time
os.sched_setaffinity(0, {int(sys.argv[1])})
spin, rest = float(sys.argv[2]), float(sys.argv[3])
while True:
    end = time.perf_counter() + spin
    while time.perf_counter() < end:
        pass
    if rest > 0:
        time.sleep(rest)
"""


def phases(duty: float, period_s: float) -> tuple[float, float]:
    """Spin and sleep seconds of one period for a duty cycle in (0, 1]."""
    if not 0 < duty <= 1 or period_s <= 0:
        raise ValueError(f"duty must be in (0, 1] and the period positive, not {duty}, {period_s}")
    return duty * period_s, period_s - duty * period_s


def describe(duty: float = DUTY, period_s: float = PERIOD_S) -> dict[str, object]:
    return {"spinners": len(os.sched_getaffinity(0)), "duty": duty, "period_ms": period_s * 1000}


@contextmanager
def busy_cpus(duty: float = DUTY, period_s: float = PERIOD_S) -> Iterator[list[int]]:
    """Run one spinner per CPU this process may use; yields their pids."""
    spin, rest = phases(duty, period_s)
    procs = [
        subprocess.Popen([sys.executable, "-c", _SPIN, str(cpu), str(spin), str(rest)])
        for cpu in sorted(os.sched_getaffinity(0))
    ]
    try:
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()
