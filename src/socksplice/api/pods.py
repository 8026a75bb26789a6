"""``PodRef``: the few fields of a Kubernetes Pod that planning and the agent need.

Read from the Pod object exactly as the API returns it (camelCase dict), so the operator, the
agent (which lists with the Kubernetes client and calls ``to_dict``/raw JSON) and local mode share
one conversion. Only fields socksplice uses are read; everything else is ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from socksplice.api.selectors import describe, mapping_at
from socksplice.errors import InvalidSpec

FINISHED_PHASES = frozenset({"Succeeded", "Failed"})


@dataclass(frozen=True)
class PodRef:
    """A pod. ``labels`` is sorted by key; ``pod_ips`` keeps the API's order (primary first)."""

    namespace: str
    name: str
    uid: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    node_name: str = ""
    phase: str = "Pending"
    host_network: bool = False
    pod_ips: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def finished(self) -> bool:
        """Succeeded or Failed: its containers will not run again."""
        return self.phase in FINISHED_PHASES

    def labels_dict(self) -> dict[str, str]:
        return dict(self.labels)


def _or_empty(value: object) -> object:
    return {} if value is None else value


def _string(value: object, field: str, source: str, default: str = "") -> str:
    if value is None:
        return default
    if not isinstance(value, str):
        raise InvalidSpec(field, f"must be a string, got {describe(value)}", source)
    return value


def pod_ref_from_api(obj: Mapping[str, Any]) -> PodRef:
    """Build a PodRef from a Pod object dict; raise InvalidSpec if it is not a usable Pod.

    Missing optional parts default as the API would: namespace ``default``, phase ``Pending``
    (a pod without status has not been acted on yet), ``hostNetwork`` false. IPs come from
    ``status.podIPs[].ip``, falling back to ``status.podIP``; duplicates are dropped.
    """
    meta = mapping_at(obj.get("metadata"), "metadata", "Pod")
    name = _string(meta.get("name"), "metadata.name", "Pod")
    if not name:
        raise InvalidSpec("metadata.name", "required", "Pod")
    namespace = _string(meta.get("namespace"), "metadata.namespace", f"Pod {name}") or "default"
    source = f"Pod {namespace}/{name}"
    raw_labels = _or_empty(meta.get("labels"))
    labels = mapping_at(raw_labels, "metadata.labels", source)
    pairs = []
    for k in sorted(labels, key=str):
        pairs.append(
            (_string(k, "metadata.labels", source), _string(labels[k], f"metadata.labels[{k}]", source))
        )

    spec = mapping_at(_or_empty(obj.get("spec")), "spec", source)
    status = mapping_at(_or_empty(obj.get("status")), "status", source)
    host_network = spec.get("hostNetwork", False)
    if host_network is None:
        host_network = False
    if not isinstance(host_network, bool):
        raise InvalidSpec("spec.hostNetwork", f"must be a boolean, got {describe(host_network)}", source)

    ips: list[str] = []
    raw_ips = status.get("podIPs")
    if raw_ips is None:
        raw_ips = []
    if not isinstance(raw_ips, list):
        raise InvalidSpec("status.podIPs", f"must be a list, got {describe(raw_ips)}", source)
    for i, entry in enumerate(raw_ips):
        ip = _string(
            mapping_at(entry, f"status.podIPs[{i}]", source).get("ip"), f"status.podIPs[{i}].ip", source
        )
        if ip and ip not in ips:
            ips.append(ip)
    if not ips:
        single = _string(status.get("podIP"), "status.podIP", source)
        if single:
            ips.append(single)

    return PodRef(
        namespace=namespace,
        name=name,
        uid=_string(meta.get("uid"), "metadata.uid", source),
        labels=tuple(pairs),
        node_name=_string(spec.get("nodeName"), "spec.nodeName", source),
        phase=_string(status.get("phase"), "status.phase", source, default="Pending") or "Pending",
        host_network=host_network,
        pod_ips=tuple(ips),
    )
