"""Which ``networking.k8s.io/v1`` NetworkPolicies could affect a pod, and whether that changed.

A spliced connection's bytes never pass the network stack, so a CNI that enforces NetworkPolicy
per packet never sees them. The node agent therefore hands a pod's spliced connections back to TCP
whenever the set of NetworkPolicies that *could* affect the pod changes (docs/networkpolicy.md).

"Could affect" is deliberately conservative, never a policy evaluation: a policy could affect a pod
when its ``podSelector`` selects the pod in the policy's namespace (the pod is a target), or when
any of its ingress or egress peers could select the pod (``podSelector`` in the policy's namespace,
``namespaceSelector`` with an optional ``podSelector`` matched against the pod's namespace labels,
and any ``ipBlock``, which may cover the pod's address). A pod's **view** is the set of such
policies with their specs; a policy added, edited or deleted, a pod relabelled, or a namespace
relabelled so that a ``namespaceSelector`` selects it differently all change the view.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from socksplice.api.pods import PodRef
from socksplice.api.selectors import LabelSelector, mapping_at, parse_label_selector
from socksplice.errors import InvalidSpec

API_VERSION = "networking.k8s.io/v1"
KIND = "NetworkPolicy"


@dataclass(frozen=True)
class Peer:
    """One ``from``/``to`` entry. ``ip_block``: it names addresses, which may be the pod's."""

    pod_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    ip_block: bool = False


@dataclass(frozen=True)
class NetworkPolicy:
    namespace: str
    name: str
    pod_selector: LabelSelector
    peers: tuple[Peer, ...]
    spec_text: str
    """The spec as canonical JSON: two versions with equal text are the same policy."""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def digest(self) -> str:
        """A short digest of ``spec_text``: what a pod's view keeps (and the agent persists)."""
        return hashlib.sha256(self.spec_text.encode()).hexdigest()[:16]


def _selector(obj: Mapping[str, Any], field: str, path: str, source: str) -> LabelSelector | None:
    if field not in obj or obj[field] is None:
        return None
    return parse_label_selector(obj[field], f"{path}.{field}", source)


def _peers(spec: Mapping[str, Any], source: str) -> list[Peer]:
    peers: list[Peer] = []
    for direction, side in (("ingress", "from"), ("egress", "to")):
        rules = spec.get(direction) or []
        if not isinstance(rules, list):
            raise InvalidSpec(f"spec.{direction}", "must be a list", source)
        for i, rule in enumerate(rules):
            rule_map = mapping_at(rule, f"spec.{direction}[{i}]", source)
            entries = rule_map.get(side) or []
            if not isinstance(entries, list):
                raise InvalidSpec(f"spec.{direction}[{i}].{side}", "must be a list", source)
            for j, entry in enumerate(entries):
                path = f"spec.{direction}[{i}].{side}[{j}]"
                e = mapping_at(entry, path, source)
                peers.append(
                    Peer(
                        pod_selector=_selector(e, "podSelector", path, source),
                        namespace_selector=_selector(e, "namespaceSelector", path, source),
                        ip_block="ipBlock" in e,
                    )
                )
    return peers


def parse_network_policy(obj: Mapping[str, Any], source: str = "") -> NetworkPolicy:
    """A NetworkPolicy API object (a dict as the API server or a manifest has it)."""
    if (obj.get("apiVersion"), obj.get("kind")) != (API_VERSION, KIND):
        raise InvalidSpec("kind", f"expected {API_VERSION} {KIND}", source)
    meta = mapping_at(obj.get("metadata"), "metadata", source)
    name, namespace = meta.get("name"), meta.get("namespace") or "default"
    if not isinstance(name, str) or not name:
        raise InvalidSpec("metadata.name", "required", source)
    spec = mapping_at(obj.get("spec", {}), "spec", source)
    pod_selector = _selector(spec, "podSelector", "spec", source) or LabelSelector()
    return NetworkPolicy(
        namespace=str(namespace),
        name=name,
        pod_selector=pod_selector,
        peers=tuple(_peers(spec, source)),
        spec_text=json.dumps(spec, sort_keys=True, separators=(",", ":")),
    )


def _peer_could_select(
    peer: Peer, policy_namespace: str, pod: PodRef, namespace_labels: Mapping[str, str]
) -> bool:
    if peer.ip_block:
        return True
    labels = dict(pod.labels)
    if peer.namespace_selector is None:
        if pod.namespace != policy_namespace:
            return False
    elif not peer.namespace_selector.matches(namespace_labels):
        return False
    return peer.pod_selector is None or peer.pod_selector.matches(labels)


def could_affect(policy: NetworkPolicy, pod: PodRef, namespaces: Mapping[str, Mapping[str, str]]) -> bool:
    """True when ``policy`` selects ``pod`` as a target or could select it as a peer.
    ``namespaces``: each namespace's labels (a namespace not listed has none)."""
    if pod.namespace == policy.namespace and policy.pod_selector.matches(dict(pod.labels)):
        return True
    ns_labels = namespaces.get(pod.namespace, {})
    return any(_peer_could_select(p, policy.namespace, pod, ns_labels) for p in policy.peers)


PolicyView = frozenset[tuple[str, str]]
"""(policy key, spec digest) of every policy that could affect one pod."""


def policy_view(
    pod: PodRef, policies: Iterable[NetworkPolicy], namespaces: Mapping[str, Mapping[str, str]]
) -> PolicyView:
    return frozenset((p.key, p.digest) for p in policies if could_affect(p, pod, namespaces))


def changed_views(old: Mapping[str, PolicyView], new: Mapping[str, PolicyView]) -> dict[str, str]:
    """Pods (keys present in both) whose view changed, each with a reason naming the policies."""
    out: dict[str, str] = {}
    for key, view in new.items():
        before = old.get(key)
        if before is None or before == view:
            continue
        names = sorted({k for k, _ in before ^ view})
        out[key] = "NetworkPolicy changed: " + ", ".join(names)
    return out
