"""``--busy``: the spinners' duty cycle, and that they run and stop."""

from __future__ import annotations

import os

import pytest

from socksplice.tools.bench.busy import busy_cpus, phases


def test_phases_split_the_period() -> None:
    assert phases(0.5, 0.01) == (0.005, 0.005)
    assert phases(1.0, 0.01) == (0.01, 0.0)
    with pytest.raises(ValueError):
        phases(0.0, 0.01)


def test_spinners_run_one_per_cpu_and_stop() -> None:
    with busy_cpus(0.1, 0.01) as pids:
        assert len(pids) == len(os.sched_getaffinity(0))
        assert all(os.path.exists(f"/proc/{pid}") for pid in pids)
    assert not any(os.path.exists(f"/proc/{pid}/stat") and _alive(pid) for pid in pids)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False
