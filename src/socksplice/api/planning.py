"""Which pods get which splice mode on which ports: a pure function of pods and SocketSplices.

The agent runs it for the pods on its node; the operator runs it for status counts; both get the
same answer. Rules (see ``docs/socketsplice.md``):

- a SocketSplice selects pods of its own namespace whose labels match its ``podSelector``;
- ``hostNetwork`` pods are never selected (they share the node's network namespace and cgroup
  attachment would affect host traffic), nor are finished pods (phase Succeeded or Failed);
- a pod selected by several SocketSplices gets the union; no ``ports`` means every port;
- for the same port SpliceRelaxedReceive wins over Auto, and Auto over DryRun. The plan is normalised:
  ``*_ports`` is empty when the matching ``*_all`` is true (or a stronger mode covers every port), and
  each set excludes what a stronger mode already covers, so two plans that act the same compare equal;
- ``primary_policy`` is the first key (sorted) among the SpliceRelaxedReceive policies selecting the
  pod, else among the Auto ones, else among the DryRun ones. ``auto`` is the ``spec.auto`` of the
  first Auto policy, else of the first DryRun policy (DryRun reports the verdicts Auto would take),
  else the defaults: the Auto settings of the pod are those of one policy, never a blend of several.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from socksplice.api.pods import PodRef
from socksplice.api.socketsplice import AutoSpec, Mode, SocketSplice


class Skip(StrEnum):
    """Why a pod that a selector matched is not spliced."""

    HOST_NETWORK = "HostNetwork"
    FINISHED = "PodFinished"


@dataclass(frozen=True)
class PodPlan:
    """What to do for one pod. ``policies`` are the selecting SocketSplice keys, sorted."""

    splice_all: bool = False
    splice_ports: frozenset[int] = field(default_factory=frozenset)
    dryrun_all: bool = False
    dryrun_ports: frozenset[int] = field(default_factory=frozenset)
    policies: tuple[str, ...] = ()
    primary_policy: str = ""
    auto_all: bool = False
    auto_ports: frozenset[int] = field(default_factory=frozenset)
    auto: AutoSpec = field(default_factory=AutoSpec)
    """How Auto (and DryRun's would-be verdicts) decide for this pod's endpoints (module docstring)."""

    def mode_for_port(self, port: int) -> Mode | None:
        """The mode for a connection to server ``port`` on this pod, or None (plain TCP)."""
        if self.splice_all or port in self.splice_ports:
            return Mode.SPLICE
        if self.auto_all or port in self.auto_ports:
            return Mode.AUTO
        if self.dryrun_all or port in self.dryrun_ports:
            return Mode.DRY_RUN
        return None

    @property
    def splices(self) -> bool:
        """True if some port of this pod is spliced for real."""
        return self.splice_all or bool(self.splice_ports)


def skip_reason(pod: PodRef) -> Skip | None:
    """Why ``pod`` can never be selected, or None."""
    if pod.host_network:
        return Skip.HOST_NETWORK
    if pod.finished:
        return Skip.FINISHED
    return None


def _selects(splice: SocketSplice, pod: PodRef) -> bool:
    return pod.namespace == splice.namespace and splice.spec.pod_selector.matches(pod.labels_dict())


def _cover(
    policies: list[SocketSplice], stronger_all: bool, stronger: frozenset[int]
) -> tuple[bool, frozenset[int]]:
    """(all ports, ports) these policies cover beyond what stronger modes already cover."""
    if stronger_all:
        return False, frozenset()
    if any(not s.spec.ports for s in policies):
        return True, frozenset()
    return False, frozenset(p for s in policies for p in s.spec.ports) - stronger


def _combine(selecting: list[SocketSplice]) -> PodPlan:
    by_mode = {m: sorted((s for s in selecting if s.spec.mode is m), key=lambda s: s.key) for m in Mode}
    splicing, auto, dry = by_mode[Mode.SPLICE], by_mode[Mode.AUTO], by_mode[Mode.DRY_RUN]
    splice_all, splice_ports = _cover(splicing, False, frozenset())
    auto_all, auto_ports = _cover(auto, splice_all, splice_ports)
    dryrun_all, dryrun_ports = _cover(dry, splice_all or auto_all, splice_ports | auto_ports)
    policies = tuple(sorted({s.key for s in selecting}))
    primary = next(ps[0].key for ps in (splicing, auto, dry) if ps)
    deciding = auto or dry
    return PodPlan(
        splice_all,
        splice_ports,
        dryrun_all,
        dryrun_ports,
        policies,
        primary,
        auto_all,
        auto_ports,
        deciding[0].spec.auto if deciding else AutoSpec(),
    )


def plan(pods: Iterable[PodRef], splices: Iterable[SocketSplice]) -> dict[str, PodPlan]:
    """Plans keyed by pod key (``namespace/name``); pods no SocketSplice selects are absent."""
    by_namespace: dict[str, list[SocketSplice]] = {}
    for splice in splices:
        by_namespace.setdefault(splice.namespace, []).append(splice)
    plans: dict[str, PodPlan] = {}
    for pod in pods:
        if skip_reason(pod) is not None:
            continue
        selecting = [s for s in by_namespace.get(pod.namespace, ()) if _selects(s, pod)]
        if selecting:
            plans[pod.key] = _combine(selecting)
    return plans


def explain(pods: Iterable[PodRef], splices: Iterable[SocketSplice]) -> list[tuple[str, str, Skip]]:
    """(splice key, pod key, reason) for each pod a selector matched but ``plan`` left out, sorted."""
    pod_list = list(pods)
    out: list[tuple[str, str, Skip]] = []
    for splice in splices:
        for pod in pod_list:
            reason = skip_reason(pod)
            if reason is not None and _selects(splice, pod):
                out.append((splice.key, pod.key, reason))
    return sorted(set(out))
