"""Hand spliced connections back to TCP when a NetworkPolicy that could affect their pods changes.

Each step the agent gives the pods it has attached; this module works out each pod's view (the
NetworkPolicies that could affect it, ``api.netpolicy``) and, when any attached pod's view changed
since the previous step, bumps the data path's policy epoch: every connection established before
then sends through TCP from its next message on (sk_msg.c), where the CNI enforces policy per
packet. New connections are admitted by their handshake, through the CNI, as always
(docs/networkpolicy.md). The first step after a start only records the views: a restarted agent
cannot tell what changed while it was away, so it hands back nothing it cannot name.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from socksplice.api.netpolicy import (
    NetworkPolicy,
    PolicyView,
    changed_views,
    policy_view,
)
from socksplice.api.pods import PodRef
from socksplice.errors import InvalidSpec
from socksplice.local import netpolicies

log = logging.getLogger(__name__)

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


@dataclass(frozen=True)
class PolicySnapshot:
    policies: tuple[NetworkPolicy, ...] = ()
    namespaces: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Each namespace's labels; a namespace not listed is given only its name label."""
    errors: tuple[InvalidSpec, ...] = ()


class PolicySource(Protocol):
    def policies(self) -> PolicySnapshot: ...


class EpochPort(Protocol):
    def bump_policy_epoch(self) -> int: ...


class LocalPolicies:
    """Local mode: NetworkPolicies from ``<dir>/networkpolicies/``; namespaces carry only their
    ``kubernetes.io/metadata.name`` label (there are no Namespace objects locally)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory / netpolicies.NETWORK_POLICIES_DIR

    def policies(self) -> PolicySnapshot:
        policies, errors = netpolicies.load_dir(self.directory)
        return PolicySnapshot(tuple(policies), {}, tuple(errors))


@dataclass(frozen=True)
class Handback:
    """One bump of the epoch: when (agent clock), and the pods with the reason."""

    at: float
    pods: Mapping[str, str]


class PolicyWatch:
    def __init__(self, source: PolicySource, datapath: EpochPort) -> None:
        self.source = source
        self.datapath = datapath
        self.views: dict[str, PolicyView] | None = None
        self.handbacks = 0
        self.last: Handback | None = None
        self.errors: tuple[InvalidSpec, ...] = ()

    def step(self, pods: list[PodRef], now: float) -> Handback | None:
        snap = self.source.policies()
        if snap.errors != self.errors:
            for err in snap.errors:
                log.error("networkpolicy: not read (treated as absent): %s", err)
        self.errors = snap.errors
        namespaces = {
            p.namespace: {NAMESPACE_NAME_LABEL: p.namespace, **snap.namespaces.get(p.namespace, {})}
            for p in pods
        }
        views = {p.key: policy_view(p, snap.policies, namespaces) for p in pods}
        before, self.views = self.views, views
        if before is None:
            return None
        changed = changed_views(before, views)
        if not changed:
            return None
        epoch = self.datapath.bump_policy_epoch()
        self.handbacks += 1
        self.last = Handback(now, changed)
        for key, reason in sorted(changed.items()):
            log.warning("pod %s: spliced connections handed back to TCP (epoch %d): %s", key, epoch, reason)
        return self.last
