"""The ``LocalPods`` document: which netns "pods" and services a local topology has.

Parsing is pure: it validates every field, fills defaults and assigns addresses, so that
``topology.py`` only realizes what this module returns. Errors are ``InvalidSpec`` naming the
field path (``pods[1].ipv4``). See docs/local-mode.md for the format.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path
from typing import Any

import yaml

from socksplice.errors import InvalidSpec

API_VERSION = "socksplice.io/v1alpha1"
KIND = "LocalPods"

POD_NET4 = IPv4Network("198.18.0.0/24")
POD_NET6 = IPv6Network("2001:2::/64")
GATEWAY4 = IPv4Address("198.18.0.1")
GATEWAY6 = IPv6Address("2001:2::1")
SERVICE_NET4 = IPv4Network("198.18.0.0/15")
FIRST_AUTO_HOST = 10

DEFAULT_LOCAL_PODS_YAML = """\
apiVersion: socksplice.io/v1alpha1
kind: LocalPods
metadata:
  name: demo
pods:
  - name: client
    namespace: demo
    labels: {app: client, role: bench}
  - name: server
    namespace: demo
    labels: {app: server, role: bench}
services:
  - name: server
    namespace: demo
    ipv4: 198.18.1.1
    port: 80
    targetPod: server
    targetPort: 9400
"""

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")


@dataclass(frozen=True)
class PodSpec:
    """One netns "pod"; addresses are always set after parsing."""

    name: str
    namespace: str
    labels: dict[str, str] = field(hash=False)
    ipv4: IPv4Address
    ipv6: IPv6Address


@dataclass(frozen=True)
class ServiceSpec:
    """A ClusterIP-like virtual IPv4 address and TCP port DNAT'ed to one pod."""

    name: str
    namespace: str
    ipv4: IPv4Address
    port: int
    target_pod: str
    target_port: int


@dataclass(frozen=True)
class LocalCluster:
    name: str
    pods: tuple[PodSpec, ...]
    services: tuple[ServiceSpec, ...] = ()

    def pod(self, name: str, namespace: str = "default") -> PodSpec:
        for pod in self.pods:
            if pod.name == name and pod.namespace == namespace:
                return pod
        raise KeyError(f"{namespace}/{name}")


def _mapping(value: object, path: str, source: str, allowed: set[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidSpec(path or ".", "must be a mapping", source)
    for key in value:
        if key not in allowed:
            where = f"{path}.{key}" if path else str(key)
            raise InvalidSpec(where, f"unknown field (allowed: {', '.join(sorted(allowed))})", source)
    return value


def _dns_label(value: object, path: str, source: str) -> str:
    if not isinstance(value, str) or len(value) > 63 or not _DNS_LABEL.match(value):
        raise InvalidSpec(
            path, f"must be a DNS-1123 label (a-z, 0-9, '-', at most 63), got {value!r}", source
        )
    return value


def _labels(value: object, path: str, source: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidSpec(path, "must be a mapping of label keys to values", source)
    labels: dict[str, str] = {}
    for key, val in value.items():
        where = f"{path}.{key}"
        if not isinstance(key, str):
            raise InvalidSpec(where, "label key must be a string", source)
        prefix, _, name = key.rpartition("/")
        if "/" in key and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
            raise InvalidSpec(where, "label key prefix must be a DNS subdomain", source)
        if len(name) > 63 or not _LABEL_NAME.match(name):
            raise InvalidSpec(
                where, "invalid label key: name part must be 1-63 alphanumerics, '-', '_', '.'", source
            )
        if not isinstance(val, str):
            raise InvalidSpec(where, f"label value must be a string, got {type(val).__name__}", source)
        if val and (len(val) > 63 or not _LABEL_NAME.match(val)):
            raise InvalidSpec(where, f"invalid label value {val!r}", source)
        labels[key] = val
    return labels


def _port(value: object, path: str, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise InvalidSpec(path, f"must be a port number 1-65535, got {value!r}", source)
    return value


def _ipv4(value: object, path: str, source: str, net: IPv4Network) -> IPv4Address:
    try:
        addr = ipaddress.IPv4Address(str(value))
    except ValueError as exc:
        raise InvalidSpec(path, f"not an IPv4 address: {value!r}", source) from exc
    if addr not in net:
        raise InvalidSpec(path, f"{addr} is outside the allowed range {net}", source)
    return addr


def _pod_ipv4(value: object, path: str, source: str) -> IPv4Address:
    addr = _ipv4(value, path, source, POD_NET4)
    if addr in (POD_NET4.network_address, POD_NET4.broadcast_address, GATEWAY4):
        raise InvalidSpec(path, f"{addr} is reserved (network, broadcast or gateway)", source)
    return addr


def _pod_ipv6(value: object, path: str, source: str) -> IPv6Address:
    try:
        addr = ipaddress.IPv6Address(str(value))
    except ValueError as exc:
        raise InvalidSpec(path, f"not an IPv6 address: {value!r}", source) from exc
    if addr not in POD_NET6:
        raise InvalidSpec(path, f"{addr} is outside the allowed range {POD_NET6}", source)
    if addr in (POD_NET6.network_address, GATEWAY6):
        raise InvalidSpec(path, f"{addr} is reserved (subnet-router anycast or gateway)", source)
    return addr


def _unique(addr: object, seen: dict[object, str], path: str, source: str) -> None:
    if addr in seen:
        raise InvalidSpec(path, f"{addr} is already used by {seen[addr]}", source)
    seen[addr] = path


def _parse_pods(value: object, source: str) -> tuple[PodSpec, ...]:
    if not isinstance(value, list) or not value:
        raise InvalidSpec("pods", "must be a non-empty list", source)
    raw: list[tuple[str, str, dict[str, str], IPv4Address | None, IPv6Address | None]] = []
    names: set[tuple[str, str]] = set()
    seen: dict[object, str] = {}
    for i, item in enumerate(value):
        path = f"pods[{i}]"
        pod = _mapping(item, path, source, {"name", "namespace", "labels", "ipv4", "ipv6"})
        name = _dns_label(pod.get("name"), f"{path}.name", source)
        namespace = _dns_label(pod.get("namespace", "default"), f"{path}.namespace", source)
        if (namespace, name) in names:
            raise InvalidSpec(f"{path}.name", f"duplicate pod {namespace}/{name}", source)
        names.add((namespace, name))
        labels = _labels(pod.get("labels"), f"{path}.labels", source)
        v4 = _pod_ipv4(pod["ipv4"], f"{path}.ipv4", source) if pod.get("ipv4") is not None else None
        v6 = _pod_ipv6(pod["ipv6"], f"{path}.ipv6", source) if pod.get("ipv6") is not None else None
        for addr, family in ((v4, "ipv4"), (v6, "ipv6")):
            if addr is not None:
                _unique(addr, seen, f"{path}.{family}", source)
        raw.append((name, namespace, labels, v4, v6))
    return tuple(_assign(raw, seen, source))


def _assign(
    raw: list[tuple[str, str, dict[str, str], IPv4Address | None, IPv6Address | None]],
    seen: dict[object, str],
    source: str,
) -> list[PodSpec]:
    """Fill missing addresses: IPv4 198.18.0.10 upwards, IPv6 2001:2::<same digits> upwards."""
    next4 = next6 = FIRST_AUTO_HOST
    pods = []
    for i, (name, namespace, labels, v4, v6) in enumerate(raw):
        while v4 is None:
            if next4 > 254:
                raise InvalidSpec(f"pods[{i}].ipv4", f"no free address left in {POD_NET4}", source)
            candidate4 = POD_NET4.network_address + next4
            next4 += 1
            if candidate4 not in seen:
                v4 = candidate4
                seen[v4] = f"pods[{i}].ipv4"
        while v6 is None:
            candidate6 = IPv6Address(f"{POD_NET6.network_address}{next6}")
            next6 += 1
            if candidate6 not in seen:
                v6 = candidate6
                seen[v6] = f"pods[{i}].ipv6"
        pods.append(PodSpec(name=name, namespace=namespace, labels=labels, ipv4=v4, ipv6=v6))
    return pods


def _parse_services(value: object, pods: tuple[PodSpec, ...], source: str) -> tuple[ServiceSpec, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidSpec("services", "must be a list", source)
    allowed = {"name", "namespace", "ipv4", "port", "targetPod", "targetPort"}
    pod_names = {(p.namespace, p.name) for p in pods}
    pod_addrs = {p.ipv4 for p in pods}
    services: list[ServiceSpec] = []
    for i, item in enumerate(value):
        path = f"services[{i}]"
        svc = _mapping(item, path, source, allowed)
        name = _dns_label(svc.get("name"), f"{path}.name", source)
        namespace = _dns_label(svc.get("namespace", "default"), f"{path}.namespace", source)
        vip = _ipv4(svc.get("ipv4"), f"{path}.ipv4", source, SERVICE_NET4)
        if vip in POD_NET4 or vip in pod_addrs:
            raise InvalidSpec(f"{path}.ipv4", f"{vip} is inside the pod network {POD_NET4}", source)
        port = _port(svc.get("port"), f"{path}.port", source)
        target = _dns_label(svc.get("targetPod"), f"{path}.targetPod", source)
        if (namespace, target) not in pod_names:
            raise InvalidSpec(f"{path}.targetPod", f"no pod {namespace}/{target} in this document", source)
        target_port = _port(svc.get("targetPort", port), f"{path}.targetPort", source)
        for other in services:
            if (other.namespace, other.name) == (namespace, name):
                raise InvalidSpec(f"{path}.name", f"duplicate service {namespace}/{name}", source)
            if (other.ipv4, other.port) == (vip, port):
                raise InvalidSpec(f"{path}.port", f"{vip}:{port} is already used by {other.name}", source)
        services.append(ServiceSpec(name, namespace, vip, port, target, target_port))
    return tuple(services)


def parse_local_pods(obj: object, source: str = "") -> LocalCluster:
    """Validate a LocalPods document (already YAML-decoded) and assign missing addresses."""
    doc = _mapping(obj, "", source, {"apiVersion", "kind", "metadata", "pods", "services"})
    if doc.get("apiVersion") != API_VERSION:
        raise InvalidSpec("apiVersion", f"must be {API_VERSION}, got {doc.get('apiVersion')!r}", source)
    if doc.get("kind") != KIND:
        raise InvalidSpec("kind", f"must be {KIND}, got {doc.get('kind')!r}", source)
    meta = _mapping(doc.get("metadata") or {}, "metadata", source, {"name"})
    name = _dns_label(meta.get("name", "default"), "metadata.name", source)
    pods = _parse_pods(doc.get("pods"), source)
    return LocalCluster(name=name, pods=pods, services=_parse_services(doc.get("services"), pods, source))


def load_local_pods(path: Path) -> LocalCluster:
    """Read and parse a LocalPods YAML file."""
    try:
        obj = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise InvalidSpec(".", f"cannot read: {exc.strerror}", str(path)) from exc
    except yaml.YAMLError as exc:
        raise InvalidSpec(".", f"not valid YAML: {exc}", str(path)) from exc
    return parse_local_pods(obj, str(path))


def default_cluster() -> LocalCluster:
    """The embedded default: demo/client and demo/server plus the service demo/server."""
    return parse_local_pods(yaml.safe_load(DEFAULT_LOCAL_PODS_YAML), "<embedded default>")


def cluster_to_document(cluster: LocalCluster) -> dict[str, Any]:
    """The LocalPods document for ``cluster`` with every address explicit (round-trips)."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": cluster.name},
        "pods": [
            {
                "name": p.name,
                "namespace": p.namespace,
                "labels": dict(p.labels),
                "ipv4": str(p.ipv4),
                "ipv6": str(p.ipv6),
            }
            for p in cluster.pods
        ],
        "services": [
            {
                "name": s.name,
                "namespace": s.namespace,
                "ipv4": str(s.ipv4),
                "port": s.port,
                "targetPod": s.target_pod,
                "targetPort": s.target_port,
            }
            for s in cluster.services
        ],
    }
