"""A short description of the machine a run happened on, for the JSON and the docs."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return 0.0


def idle_state(sys_root: Path = Path("/sys")) -> dict[str, object]:
    """How an idle CPU waits, which sets what a cross-CPU wakeup costs (docs/round-trip.md): the
    cpuidle driver, and on a KVM guest with ``cpuidle_haltpoll`` how long an idle vCPU polls
    before it halts (``guest_halt_poll_ns``; 0: it halts at once). None where the file is absent."""

    def read(path: str) -> str | None:
        try:
            return (sys_root / path).read_text().strip()
        except OSError:
            return None

    poll = read("module/haltpoll/parameters/guest_halt_poll_ns")
    return {
        "cpuidle_driver": read("devices/system/cpu/cpuidle/current_driver"),
        "guest_halt_poll_ns": int(poll) if poll is not None and poll.isdigit() else None,
    }


def describe() -> dict[str, object]:
    return {
        "kernel": platform.release(),
        "cpu": _cpu_model(),
        "cpus": os.cpu_count() or 0,
        "memory_gib": _mem_gib(),
        "python": platform.python_version(),
        **idle_state(),
    }


# /proc/stat "cpu" line fields, in order (man 5 proc); guest time is already counted in user/nice.
_STAT_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def parse_cpu_times(stat_text: str) -> dict[str, int]:
    """The aggregate ``cpu`` line of /proc/stat as clock ticks per field."""
    for line in stat_text.splitlines():
        parts = line.split()
        if parts and parts[0] == "cpu":
            values = [int(v) for v in parts[1 : 1 + len(_STAT_FIELDS)]]
            values += [0] * (len(_STAT_FIELDS) - len(values))
            return dict(zip(_STAT_FIELDS, values, strict=True))
    raise ValueError("no aggregate cpu line in /proc/stat")


def cpu_shares(before: dict[str, int], after: dict[str, int]) -> dict[str, float]:
    """Percent of all CPU time between two snapshots that was steal, idle (incl. iowait) and busy."""
    delta = {k: after[k] - before[k] for k in _STAT_FIELDS}
    total = sum(delta.values())
    if total <= 0:
        return {"steal_pct": 0.0, "idle_pct": 0.0, "busy_pct": 0.0}
    idle = delta["idle"] + delta["iowait"]
    steal = delta["steal"]
    return {
        "steal_pct": round(100 * steal / total, 2),
        "idle_pct": round(100 * idle / total, 2),
        "busy_pct": round(100 * (total - idle - steal) / total, 2),
    }


def parse_loadavg(text: str) -> list[float]:
    """The 1, 5 and 15 minute load averages of /proc/loadavg."""
    return [float(v) for v in text.split()[:3]]


def snapshot() -> dict[str, object]:
    """CPU times and load now; pass two of these to ``during``."""
    return {
        "cpu": parse_cpu_times(Path("/proc/stat").read_text()),
        "loadavg": parse_loadavg(Path("/proc/loadavg").read_text()),
    }


def during(before: dict[str, Any], after: dict[str, Any]) -> dict[str, object]:
    """What the machine did while the run lasted: CPU shares (steal among them) and load at each end."""
    return {
        **cpu_shares(before["cpu"], after["cpu"]),
        "loadavg_start": before["loadavg"],
        "loadavg_end": after["loadavg"],
    }
