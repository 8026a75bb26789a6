"""What the node agent acts on: a selected pod located on this node's kernel."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from socksplice.api.planning import PodPlan


@dataclass(frozen=True)
class PodLocation:
    """Where a pod lives in the kernel: its pod-level cgroup2 directory and network namespace."""

    cgroup: Path
    netns: Path  # /run/netns/NAME or /proc/PID/ns/net


@dataclass(frozen=True)
class PodTarget:
    key: str  # namespace/name
    location: PodLocation
    plan: PodPlan
