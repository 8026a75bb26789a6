"""Wiring of cluster mode: credentials, the watches, the locator and the SpliceNode sink."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from socksplice import kubeapi
from socksplice.api.nodestatus import CheckResult, Hazard
from socksplice.kernel import cgroup2
from socksplice.nodeagent.agent import Agent
from socksplice.nodeagent.cluster.drainrequest import DrainRequests, kube_fns
from socksplice.nodeagent.cluster.locating import Locator
from socksplice.nodeagent.cluster.policies import ClusterPolicies
from socksplice.nodeagent.cluster.sink import SpliceNodeSink
from socksplice.nodeagent.cluster.source import ClusterSource
from socksplice.nodeagent.snapshots import Source


def doctor_results() -> tuple[tuple[CheckResult, ...], tuple[Hazard, ...]]:
    """The failed preflight checks and the present hazards, as a SpliceNode carries them."""
    from socksplice.doctor.checks import hazards, preflight

    failed = tuple(CheckResult.from_dict(dataclasses.asdict(c)) for c in preflight() if not c.ok)
    return failed, tuple(Hazard.from_dict(h) for h in hazards() if h.get("present"))


def cluster_front_door(
    node: str, cgroup_root: Path | None, proc: Path
) -> tuple[ClusterSource, SpliceNodeSink]:
    kubeapi.load()
    root = cgroup_root if cgroup_root is not None else cgroup2.find_root()
    source = ClusterSource(node, Locator(root, proc), drains=DrainRequests(node, *kube_fns(node)))
    source.start()
    checks, found = doctor_results()
    return source, SpliceNodeSink(node, checks, found)


def cluster_policies() -> ClusterPolicies:
    """NetworkPolicies and Namespaces, watched (after ``cluster_front_door`` loaded credentials)."""
    policies = ClusterPolicies()
    policies.start()
    return policies


def bind_agent(source: Source, agent: Agent) -> None:
    """Drain requests on this node's SpliceNode go to the running agent's loop."""
    if isinstance(source, ClusterSource) and source.drains is not None:
        agent.drains = source.drains
