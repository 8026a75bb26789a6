"""Kubernetes label selectors: parse, validate and match, with ``metav1.LabelSelector`` semantics.

The operator and the node agent must agree exactly on which pods a ``SocketSplice`` selects, so
both use this module. Rules follow Kubernetes: ``matchLabels`` and ``matchExpressions`` are
ANDed, an empty selector ``{}`` matches every pod, ``In``/``NotIn`` need at least one value and
``Exists``/``DoesNotExist`` take none; ``NotIn`` and ``DoesNotExist`` match pods that lack the
key. Keys and values are checked as the API server checks pod labels. The CRD
(``crds/socketsplice.yaml``) encodes the same rules; ``tests/unit/test_crd_socketsplice.py``
keeps the two in step. Also home of the small field-checking helpers the other api modules share.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from socksplice.errors import InvalidSpec

# Limits the CRD also declares (maxProperties / maxItems), so that CEL cost stays bounded.
MAX_MATCH_LABELS = 64
MAX_MATCH_EXPRESSIONS = 32
MAX_REQUIREMENT_VALUES = 64

LABEL_NAME_MAX = 63
LABEL_VALUE_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
DNS1123_LABEL_MAX = 63

_LABEL_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


class Operator(StrEnum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


_OPERATORS = ", ".join(op.value for op in Operator)


# ---------------------------------------------------------------------------------------------
# Shared field helpers


def describe(value: object) -> str:
    """``'80' (string)``: a value and its YAML type, for error messages."""
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "mapping"}
    kind = "null" if value is None else names.get(type(value), type(value).__name__)
    shown = repr(value)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return f"{shown} ({kind})"


def mapping_at(value: object, field: str, source: str = "") -> Mapping[str, Any]:
    """Return ``value`` as a mapping or raise InvalidSpec naming ``field``."""
    if not isinstance(value, Mapping):
        raise InvalidSpec(field, f"must be a mapping, got {describe(value)}", source)
    return value


def reject_unknown_fields(obj: Mapping[str, Any], known: Iterable[str], field: str, source: str = "") -> None:
    """Raise InvalidSpec for the first key of ``obj`` (in sorted order) that is not ``known``."""
    allowed = sorted(known)
    for name in sorted(obj, key=str):
        if name not in allowed:
            where = f"{field}.{name}" if field else str(name)
            raise InvalidSpec(where, f"unknown field {name!r}; known fields are {', '.join(allowed)}", source)


def is_dns1123_label(name: str) -> bool:
    """Lowercase alphanumerics and '-', at most 63, alphanumeric at both ends (namespaces)."""
    return len(name) <= DNS1123_LABEL_MAX and _DNS1123_LABEL.fullmatch(name) is not None


def is_dns1123_subdomain(name: str) -> bool:
    """Dot-separated DNS-1123 labels, at most 253 characters (object names, label prefixes)."""
    return len(name) <= DNS1123_SUBDOMAIN_MAX and _DNS1123_SUBDOMAIN.fullmatch(name) is not None


# ---------------------------------------------------------------------------------------------
# Label keys and values


def check_label_key(key: object, field: str, source: str = "") -> str:
    """Return ``key`` if it is a qualified name (``[prefix/]name``), else raise InvalidSpec."""
    if not isinstance(key, str):
        raise InvalidSpec(field, f"label key must be a string, got {describe(key)}", source)
    if not key:
        raise InvalidSpec(field, "label key must not be empty", source)
    prefix, slash, name = key.rpartition("/")
    if slash and "/" in prefix:
        raise InvalidSpec(field, f"label key {key!r} may contain at most one '/' (prefix/name)", source)
    if slash and not is_dns1123_subdomain(prefix):
        raise InvalidSpec(
            field,
            f"label key prefix {prefix!r} must be a lowercase DNS subdomain of at most "
            f"{DNS1123_SUBDOMAIN_MAX} characters (e.g. 'example.com/')",
            source,
        )
    if not name:
        raise InvalidSpec(field, f"label key {key!r} has an empty name after the '/'", source)
    if len(name) > LABEL_NAME_MAX:
        raise InvalidSpec(
            field,
            f"label key name {name[:20]!r}... must be at most {LABEL_NAME_MAX} characters, got {len(name)}",
            source,
        )
    if _LABEL_NAME.fullmatch(name) is None:
        raise InvalidSpec(
            field,
            f"label key {key!r} is not a qualified name: the name must consist of alphanumerics, "
            "'-', '_' or '.', and start and end with an alphanumeric (e.g. 'app', 'app.kubernetes.io/name')",
            source,
        )
    return key


def check_label_value(value: object, field: str, source: str = "") -> str:
    """Return ``value`` if it is a valid label value (may be empty), else raise InvalidSpec."""
    if not isinstance(value, str):
        raise InvalidSpec(
            field, f'label value must be a string, got {describe(value)}; quote it in YAML (e.g. "1")', source
        )
    if len(value) > LABEL_VALUE_MAX:
        raise InvalidSpec(
            field, f"label value must be at most {LABEL_VALUE_MAX} characters, got {len(value)}", source
        )
    if value and _LABEL_NAME.fullmatch(value) is None:
        raise InvalidSpec(
            field,
            f"label value {value!r} is invalid: use alphanumerics, '-', '_' or '.', starting and ending "
            "with an alphanumeric (or the empty string)",
            source,
        )
    return value


# ---------------------------------------------------------------------------------------------
# Selectors


@dataclass(frozen=True)
class Requirement:
    """One ``matchExpressions`` entry. ``values`` is sorted and free of duplicates."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator is Operator.IN:
            return present and labels[self.key] in self.values
        if self.operator is Operator.NOT_IN:
            return not present or labels[self.key] not in self.values
        if self.operator is Operator.EXISTS:
            return present
        return not present


@dataclass(frozen=True)
class LabelSelector:
    """A parsed ``metav1.LabelSelector``. ``match_labels`` is sorted by key."""

    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[Requirement, ...] = ()

    @property
    def is_empty(self) -> bool:
        """True for ``{}``, which selects everything."""
        return not self.match_labels and not self.match_expressions

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match_labels) and all(
            req.matches(labels) for req in self.match_expressions
        )

    def to_api(self) -> dict[str, Any]:
        """The selector as a Kubernetes API dict (the inverse of ``parse_label_selector``)."""
        out: dict[str, Any] = {}
        if self.match_labels:
            out["matchLabels"] = dict(self.match_labels)
        if self.match_expressions:
            out["matchExpressions"] = [
                {
                    "key": r.key,
                    "operator": r.operator.value,
                    **({"values": list(r.values)} if r.values else {}),
                }
                for r in self.match_expressions
            ]
        return out


def _parse_requirement(obj: object, field: str, source: str) -> Requirement:
    body = mapping_at(obj, field, source)
    reject_unknown_fields(body, ("key", "operator", "values"), field, source)
    if "key" not in body:
        raise InvalidSpec(f"{field}.key", "required: name the label key to test", source)
    key = check_label_key(body["key"], f"{field}.key", source)
    raw_op = body.get("operator")
    if raw_op is None:
        raise InvalidSpec(f"{field}.operator", f"required: one of {_OPERATORS}", source)
    if not isinstance(raw_op, str) or raw_op not in {op.value for op in Operator}:
        raise InvalidSpec(
            f"{field}.operator",
            f"must be one of {_OPERATORS} (case-sensitive), got {describe(raw_op)}",
            source,
        )
    operator = Operator(raw_op)
    raw_values = body.get("values")
    if raw_values is None:
        raw_values = []
    if not isinstance(raw_values, list):
        raise InvalidSpec(f"{field}.values", f"must be a list of strings, got {describe(raw_values)}", source)
    if len(raw_values) > MAX_REQUIREMENT_VALUES:
        raise InvalidSpec(
            f"{field}.values",
            f"at most {MAX_REQUIREMENT_VALUES} values allowed, got {len(raw_values)}",
            source,
        )
    values = [check_label_value(v, f"{field}.values[{i}]", source) for i, v in enumerate(raw_values)]
    if operator in (Operator.IN, Operator.NOT_IN) and not values:
        raise InvalidSpec(
            f"{field}.values",
            f"must be non-empty when operator is {operator.value}; list at least one value",
            source,
        )
    if operator in (Operator.EXISTS, Operator.DOES_NOT_EXIST) and values:
        raise InvalidSpec(
            f"{field}.values", f"must be empty when operator is {operator.value}; remove the values", source
        )
    return Requirement(key, operator, tuple(sorted(set(values))))


def parse_label_selector(obj: object, field: str, source: str = "") -> LabelSelector:
    """Parse a ``metav1.LabelSelector`` dict; errors name ``field`` (e.g. ``spec.podSelector``).

    ``null`` for ``matchLabels``, ``matchExpressions`` or ``values`` means empty, as in Kubernetes.
    """
    body = mapping_at(obj, field, source)
    reject_unknown_fields(body, ("matchLabels", "matchExpressions"), field, source)

    raw_labels = body.get("matchLabels")
    if raw_labels is None:
        raw_labels = {}
    labels_field = f"{field}.matchLabels"
    raw_labels = mapping_at(raw_labels, labels_field, source)
    if len(raw_labels) > MAX_MATCH_LABELS:
        raise InvalidSpec(
            labels_field, f"at most {MAX_MATCH_LABELS} labels allowed, got {len(raw_labels)}", source
        )
    labels: list[tuple[str, str]] = []
    for key in sorted(raw_labels, key=str):
        item = f"{labels_field}[{key}]"
        labels.append((check_label_key(key, item, source), check_label_value(raw_labels[key], item, source)))

    raw_exprs = body.get("matchExpressions")
    if raw_exprs is None:
        raw_exprs = []
    exprs_field = f"{field}.matchExpressions"
    if not isinstance(raw_exprs, list):
        raise InvalidSpec(exprs_field, f"must be a list, got {describe(raw_exprs)}", source)
    if len(raw_exprs) > MAX_MATCH_EXPRESSIONS:
        raise InvalidSpec(
            exprs_field, f"at most {MAX_MATCH_EXPRESSIONS} expressions allowed, got {len(raw_exprs)}", source
        )
    exprs = tuple(_parse_requirement(e, f"{exprs_field}[{i}]", source) for i, e in enumerate(raw_exprs))
    return LabelSelector(tuple(labels), exprs)
