"""The ``SocketSplice`` resource: typed spec and a strict parser.

The API server checks the CRD schema and CEL rules (``crds/socketsplice.yaml``); this parser
checks the same things and a little more (label keys inside ``matchLabels``, which the CRD cannot
check cheaply), so local mode and the operator reject exactly what the API would, with the same
field paths. Field semantics are documented in ``docs/socketsplice.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from socksplice.api.selectors import (
    LabelSelector,
    describe,
    is_dns1123_label,
    is_dns1123_subdomain,
    mapping_at,
    parse_label_selector,
    reject_unknown_fields,
)
from socksplice.errors import InvalidSpec

GROUP = "socksplice.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "SocketSplice"
PLURAL = "socketsplices"

MAX_PORTS = 16
DEFAULT_NAMESPACE = "default"

SPEC_FIELDS = ("podSelector", "ports", "mode")
TOP_FIELDS = ("apiVersion", "kind", "metadata", "spec", "status")


class Mode(StrEnum):
    """What the data path does for selected connections (docs/socketsplice.md, docs/hazards.md).

    ``DryRun`` is the default because it is the only mode that applications cannot tell apart
    from TCP: it pairs and counts, never redirects. ``SpliceRelaxedReceive`` redirects, and the
    receiving socket then follows the kernel's tcp_bpf receive path, which differs from TCP in the
    ways its name warns about (blocking recv may return EAGAIN after a half-close, MSG_WAITALL and
    SO_RCVLOWAT are not honoured, splice(2) from the socket stalls, close with unread data sends
    FIN instead of RST, the receive buffer does not limit the sender).
    """

    DRY_RUN = "DryRun"
    SPLICE = "SpliceRelaxedReceive"


_MODES = ", ".join(m.value for m in Mode)


@dataclass(frozen=True)
class SpliceSpec:
    """``spec``. Empty ``ports`` means every port."""

    pod_selector: LabelSelector
    ports: tuple[int, ...] = ()
    mode: Mode = Mode.DRY_RUN


@dataclass(frozen=True)
class SocketSplice:
    """A parsed object. ``uid`` is empty and ``generation`` 0 for manifests not read from an API server."""

    name: str
    namespace: str
    uid: str
    generation: int
    spec: SpliceSpec

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def _parse_ports(raw: object, source: str) -> tuple[int, ...]:
    field = "spec.ports"
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InvalidSpec(field, f"must be a list of port numbers, got {describe(raw)}", source)
    if not raw:
        raise InvalidSpec(field, "must list at least one port; omit ports to accelerate every port", source)
    if len(raw) > MAX_PORTS:
        raise InvalidSpec(
            field,
            f"at most {MAX_PORTS} ports allowed, got {len(raw)}; omit ports to accelerate every port",
            source,
        )
    seen: dict[int, int] = {}
    for i, port in enumerate(raw):
        item = f"{field}[{i}]"
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise InvalidSpec(item, f"must be an integer from 1 to 65535, got {describe(port)}", source)
        if port in seen:
            raise InvalidSpec(
                item, f"duplicate port {port} (also at {field}[{seen[port]}]); list each port once", source
            )
        seen[port] = i
    return tuple(sorted(seen))


def _parse_mode(raw: object, source: str) -> Mode:
    if raw is None:
        return Mode.DRY_RUN
    if isinstance(raw, str) and raw in {m.value for m in Mode}:
        return Mode(raw)
    raise InvalidSpec("spec.mode", f"must be one of {_MODES} (case-sensitive), got {describe(raw)}", source)


def parse_spec(raw: object, source: str = "") -> SpliceSpec:
    """Parse ``spec``; ``null`` fields count as absent (the API server prunes them)."""
    if raw is None:
        raise InvalidSpec(
            "spec", "required: set spec.podSelector ({} selects every pod in the namespace)", source
        )
    spec = mapping_at(raw, "spec", source)
    reject_unknown_fields(spec, SPEC_FIELDS, "spec", source)
    if spec.get("podSelector") is None:
        raise InvalidSpec(
            "spec.podSelector",
            "required: set a label selector; {} selects every pod in the namespace",
            source,
        )
    selector = parse_label_selector(spec["podSelector"], "spec.podSelector", source)
    return SpliceSpec(
        selector, _parse_ports(spec.get("ports"), source), _parse_mode(spec.get("mode"), source)
    )


def _parse_metadata(raw: object, source: str) -> tuple[str, str, str, int]:
    if raw is None:
        raise InvalidSpec("metadata", "required: set metadata.name", source)
    meta = mapping_at(raw, "metadata", source)
    name = meta.get("name")
    if name is None:
        raise InvalidSpec("metadata.name", "required: name the SocketSplice", source)
    if not isinstance(name, str) or not is_dns1123_subdomain(name):
        raise InvalidSpec(
            "metadata.name",
            f"must be a DNS-1123 subdomain (lowercase alphanumerics, '-' and '.', at most 253 characters, "
            f"alphanumeric at both ends), got {describe(name)}",
            source,
        )
    namespace = meta.get("namespace")
    if namespace is None or namespace == "":
        namespace = DEFAULT_NAMESPACE
    if not isinstance(namespace, str) or not is_dns1123_label(namespace):
        raise InvalidSpec(
            "metadata.namespace",
            f"must be a DNS-1123 label (lowercase alphanumerics and '-', at most 63 characters), "
            f"got {describe(namespace)}",
            source,
        )
    uid = meta.get("uid")
    if uid is None:
        uid = ""
    if not isinstance(uid, str):
        raise InvalidSpec("metadata.uid", f"must be a string, got {describe(uid)}", source)
    generation = meta.get("generation")
    if generation is None:
        generation = 0
    if isinstance(generation, bool) or not isinstance(generation, int) or generation < 0:
        raise InvalidSpec(
            "metadata.generation", f"must be a non-negative integer, got {describe(generation)}", source
        )
    return name, namespace, uid, generation


def parse_socketsplice(obj: Mapping[str, Any], source: str = "") -> SocketSplice:
    """Parse one ``SocketSplice`` object dict (as ``kubectl apply`` takes it or the API returns it).

    Raises InvalidSpec whose ``field`` is the path of the first problem found.
    """
    body = mapping_at(obj, "(object)", source)
    kind = body.get("kind")
    if kind != KIND:
        raise InvalidSpec("kind", f"must be {KIND!r}, got {describe(kind)}", source)
    api_version = body.get("apiVersion")
    if api_version != API_VERSION:
        raise InvalidSpec("apiVersion", f"must be {API_VERSION!r}, got {describe(api_version)}", source)
    reject_unknown_fields(body, TOP_FIELDS, "", source)
    name, namespace, uid, generation = _parse_metadata(body.get("metadata"), source)
    return SocketSplice(name, namespace, uid, generation, parse_spec(body.get("spec"), source))
