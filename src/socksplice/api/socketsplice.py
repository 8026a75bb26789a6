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

SPEC_FIELDS = ("podSelector", "ports", "mode", "auto")
AUTO_FIELDS = ("evidenceWindow", "minMessagesPerConnection")
WINDOW_FIELDS = ("connections", "seconds")

# Bounds of spec.auto (the CRD carries the same numbers; tests/unit/test_crd_socketsplice.py checks).
WINDOW_CONNECTIONS = (1, 100_000)
WINDOW_SECONDS = (1, 86_400)
MIN_MESSAGES = (0, 1_000_000)
TOP_FIELDS = ("apiVersion", "kind", "metadata", "spec", "status")


class Mode(StrEnum):
    """What the data path does for selected connections (docs/socketsplice.md, docs/auto.md).

    ``Auto`` is the default: every endpoint (server pod, server port, client pod) starts on TCP
    while the data path watches how it receives; an endpoint that showed enough connections and
    messages, and no receive pattern that tcp_bpf serves differently from TCP, is spliced, and one
    that shows such a pattern is demoted to TCP for good (``spec.auto``). ``DryRun`` pairs and
    counts, never redirects, and reports the verdicts Auto would take. ``SpliceRelaxedReceive``
    redirects every connection, and the receiving socket then follows the kernel's tcp_bpf receive
    path, which differs from TCP in the ways its name warns about (blocking recv may return EAGAIN
    after a half-close, MSG_WAITALL and SO_RCVLOWAT are not honoured, splice(2) from the socket
    stalls, close with unread data sends FIN instead of RST; docs/hazards.md).
    """

    AUTO = "Auto"
    DRY_RUN = "DryRun"
    SPLICE = "SpliceRelaxedReceive"


DEFAULT_MODE = Mode.AUTO
_MODES = ", ".join(m.value for m in Mode)


@dataclass(frozen=True)
class EvidenceWindow:
    """``spec.auto.evidenceWindow``: what an endpoint must show before Auto may splice it."""

    connections: int = 20
    """Connections of the endpoint seen (1..100000)."""
    seconds: int = 60
    """Seconds since the endpoint's first connection (1..86400)."""


@dataclass(frozen=True)
class AutoSpec:
    """``spec.auto``: used by Auto, and by DryRun for the verdicts it reports."""

    evidence_window: EvidenceWindow = EvidenceWindow()
    min_messages_per_connection: int = 4
    """Receives carrying data per connection, on average over both ends (0..1000000); an endpoint
    below it stays on TCP (its connections are too short for splicing to pay)."""


@dataclass(frozen=True)
class SpliceSpec:
    """``spec``. Empty ``ports`` means every port."""

    pod_selector: LabelSelector
    ports: tuple[int, ...] = ()
    mode: Mode = DEFAULT_MODE
    auto: AutoSpec = AutoSpec()


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
        return DEFAULT_MODE
    if isinstance(raw, str) and raw in {m.value for m in Mode}:
        return Mode(raw)
    raise InvalidSpec("spec.mode", f"must be one of {_MODES} (case-sensitive), got {describe(raw)}", source)


def _bounded(raw: object, default: int, bounds: tuple[int, int], field: str, source: str) -> int:
    if raw is None:
        return default
    low, high = bounds
    if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= high:
        raise InvalidSpec(field, f"must be an integer from {low} to {high}, got {describe(raw)}", source)
    return raw


def _parse_auto(raw: object, source: str) -> AutoSpec:
    if raw is None:
        return AutoSpec()
    auto = mapping_at(raw, "spec.auto", source)
    reject_unknown_fields(auto, AUTO_FIELDS, "spec.auto", source)
    window = EvidenceWindow()
    if auto.get("evidenceWindow") is not None:
        field = "spec.auto.evidenceWindow"
        raw_window = mapping_at(auto["evidenceWindow"], field, source)
        reject_unknown_fields(raw_window, WINDOW_FIELDS, field, source)
        window = EvidenceWindow(
            _bounded(
                raw_window.get("connections"),
                window.connections,
                WINDOW_CONNECTIONS,
                f"{field}.connections",
                source,
            ),
            _bounded(raw_window.get("seconds"), window.seconds, WINDOW_SECONDS, f"{field}.seconds", source),
        )
    default = AutoSpec()
    messages = _bounded(
        auto.get("minMessagesPerConnection"),
        default.min_messages_per_connection,
        MIN_MESSAGES,
        "spec.auto.minMessagesPerConnection",
        source,
    )
    return AutoSpec(window, messages)


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
        selector,
        _parse_ports(spec.get("ports"), source),
        _parse_mode(spec.get("mode"), source),
        _parse_auto(spec.get("auto"), source),
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
