"""Label selectors: Kubernetes metav1.LabelSelector semantics and validation messages."""

from __future__ import annotations

from typing import Any

import pytest

from socksplice.api.selectors import (
    LabelSelector,
    Operator,
    Requirement,
    check_label_key,
    check_label_value,
    parse_label_selector,
)
from socksplice.errors import InvalidSpec

WEB = {"app": "web", "tier": "frontend", "app.kubernetes.io/version": "1.2"}
DB = {"app": "db", "tier": "backend"}
BARE: dict[str, str] = {}

# (selector as written in YAML, labels, expected match) — mirrors what kube-apiserver selects.
SEMANTICS: list[tuple[dict[str, Any], dict[str, str], bool]] = [
    ({}, WEB, True),
    ({}, BARE, True),
    ({"matchLabels": None, "matchExpressions": None}, BARE, True),
    ({"matchLabels": {"app": "web"}}, WEB, True),
    ({"matchLabels": {"app": "web"}}, DB, False),
    ({"matchLabels": {"app": "web"}}, BARE, False),
    ({"matchLabels": {"app": "web", "tier": "frontend"}}, WEB, True),
    ({"matchLabels": {"app": "web", "tier": "backend"}}, WEB, False),
    ({"matchLabels": {"app.kubernetes.io/version": "1.2"}}, WEB, True),
    ({"matchLabels": {"canary": ""}}, {"canary": ""}, True),
    ({"matchLabels": {"canary": ""}}, BARE, False),
    ({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "api"]}]}, WEB, True),
    ({"matchExpressions": [{"key": "app", "operator": "In", "values": ["api"]}]}, WEB, False),
    ({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]}, BARE, False),
    ({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["db"]}]}, WEB, True),
    ({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["db"]}]}, DB, False),
    # NotIn matches pods that lack the key entirely.
    ({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["db"]}]}, BARE, True),
    ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, DB, True),
    ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, BARE, False),
    ({"matchExpressions": [{"key": "tier", "operator": "Exists", "values": None}]}, DB, True),
    ({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, DB, False),
    ({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, BARE, True),
    # matchLabels AND matchExpressions.
    (
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["x"]}],
        },
        WEB,
        False,
    ),
    (
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["frontend"]},
                {"key": "legacy", "operator": "DoesNotExist"},
            ],
        },
        WEB,
        True,
    ),
    # Values are compared exactly (case-sensitive).
    ({"matchLabels": {"app": "Web"}}, WEB, False),
]


@pytest.mark.parametrize(("selector", "labels", "expected"), SEMANTICS)
def test_selector_semantics(selector: dict[str, Any], labels: dict[str, str], expected: bool) -> None:
    assert parse_label_selector(selector, "spec.podSelector").matches(labels) is expected


def test_parsed_selector_is_normalised_and_round_trips() -> None:
    sel = parse_label_selector(
        {
            "matchLabels": {"tier": "frontend", "app": "web"},
            "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev", "prod"]}],
        },
        "spec.podSelector",
    )
    assert sel.match_labels == (("app", "web"), ("tier", "frontend"))
    assert sel.match_expressions == (Requirement("env", Operator.IN, ("dev", "prod")),)
    assert parse_label_selector(sel.to_api(), "x") == sel
    assert LabelSelector().is_empty
    assert parse_label_selector({}, "x").is_empty
    assert not sel.is_empty
    hash(sel)  # frozen, usable as a dict key


# (selector, field path that must be named, fragment of the message)
INVALID: list[tuple[object, str, str]] = [
    ([], "spec.podSelector", "must be a mapping"),
    (
        {"matchLabel": {"app": "web"}},
        "spec.podSelector.matchLabel",
        "known fields are matchExpressions, matchLabels",
    ),
    ({"matchLabels": ["app=web"]}, "spec.podSelector.matchLabels", "must be a mapping"),
    ({"matchLabels": {"app": 1}}, "spec.podSelector.matchLabels[app]", "quote it in YAML"),
    ({"matchLabels": {"app": True}}, "spec.podSelector.matchLabels[app]", "got True (boolean)"),
    (
        {"matchLabels": {"app": "my app"}},
        "spec.podSelector.matchLabels[app]",
        "label value 'my app' is invalid",
    ),
    ({"matchLabels": {"app": "-web"}}, "spec.podSelector.matchLabels[app]", "starting and ending"),
    (
        {"matchLabels": {"app": "v" * 64}},
        "spec.podSelector.matchLabels[app]",
        "at most 63 characters, got 64",
    ),
    ({"matchLabels": {"-app": "web"}}, "spec.podSelector.matchLabels[-app]", "not a qualified name"),
    ({"matchLabels": {"": "web"}}, "spec.podSelector.matchLabels[]", "must not be empty"),
    (
        {"matchLabels": {"a" * 64: "x"}},
        "spec.podSelector.matchLabels[" + "a" * 64,
        "at most 63 characters, got 64",
    ),
    (
        {"matchLabels": {"Example.com/app": "x"}},
        "spec.podSelector.matchLabels[Example.com/app]",
        "DNS subdomain",
    ),
    ({"matchLabels": {"a/b/c": "x"}}, "spec.podSelector.matchLabels[a/b/c]", "at most one '/'"),
    ({"matchLabels": {"example.com/": "x"}}, "spec.podSelector.matchLabels[example.com/]", "empty name"),
    ({"matchLabels": {1: "x"}}, "spec.podSelector.matchLabels[1]", "label key must be a string"),
    ({"matchLabels": {f"k{i}": "v" for i in range(65)}}, "spec.podSelector.matchLabels", "at most 64 labels"),
    ({"matchExpressions": {"key": "app"}}, "spec.podSelector.matchExpressions", "must be a list"),
    ({"matchExpressions": ["app"]}, "spec.podSelector.matchExpressions[0]", "must be a mapping"),
    (
        {"matchExpressions": [{"key": "a", "operator": "Exists"}] * 33},
        "spec.podSelector.matchExpressions",
        "at most 32 expressions",
    ),
    ({"matchExpressions": [{"operator": "Exists"}]}, "spec.podSelector.matchExpressions[0].key", "required"),
    (
        {"matchExpressions": [{"key": "app"}]},
        "spec.podSelector.matchExpressions[0].operator",
        "required: one of In",
    ),
    (
        {"matchExpressions": [{"key": "app", "operator": "Equals", "values": ["x"]}]},
        "spec.podSelector.matchExpressions[0].operator",
        "must be one of In, NotIn, Exists, DoesNotExist (case-sensitive), got 'Equals'",
    ),
    (
        {"matchExpressions": [{"key": "app", "operator": "in", "values": ["x"]}]},
        "spec.podSelector.matchExpressions[0].operator",
        "case-sensitive",
    ),
    (
        {"matchExpressions": [{"key": "app", "operator": "In"}]},
        "spec.podSelector.matchExpressions[0].values",
        "must be non-empty when operator is In",
    ),
    (
        {"matchExpressions": [{"key": "app", "operator": "NotIn", "values": []}]},
        "spec.podSelector.matchExpressions[0].values",
        "must be non-empty when operator is NotIn",
    ),
    (
        {"matchExpressions": [{"key": "app", "operator": "Exists", "values": ["x"]}]},
        "spec.podSelector.matchExpressions[0].values",
        "must be empty when operator is Exists",
    ),
    (
        {"matchExpressions": [{"key": "app", "operator": "DoesNotExist", "values": ["x"]}]},
        "spec.podSelector.matchExpressions[0].values",
        "must be empty when operator is DoesNotExist",
    ),
    (
        {"matchExpressions": [{"key": "app", "operator": "In", "values": "web"}]},
        "spec.podSelector.matchExpressions[0].values",
        "must be a list of strings",
    ),
    (
        {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", 3]}]},
        "spec.podSelector.matchExpressions[0].values[1]",
        "label value must be a string",
    ),
    (
        {"matchExpressions": [{"key": "app", "operator": "In", "values": [str(i) for i in range(65)]}]},
        "spec.podSelector.matchExpressions[0].values",
        "at most 64 values",
    ),
    (
        {"matchExpressions": [{"key": "bad key", "operator": "Exists"}]},
        "spec.podSelector.matchExpressions[0].key",
        "not a qualified name",
    ),
    (
        {"matchExpressions": [{"key": "app", "operator": "Exists", "value": ["x"]}]},
        "spec.podSelector.matchExpressions[0].value",
        "unknown field 'value'; known fields are key, operator, values",
    ),
]


@pytest.mark.parametrize(("selector", "field", "fragment"), INVALID)
def test_invalid_selector_names_field_and_fix(selector: object, field: str, fragment: str) -> None:
    with pytest.raises(InvalidSpec) as info:
        parse_label_selector(selector, "spec.podSelector", source="web.yaml")
    assert info.value.field.startswith(field)
    assert fragment in info.value.reason
    assert str(info.value).startswith(f"web.yaml: {info.value.field}: ")


@pytest.mark.parametrize(
    "key",
    ["app", "a", "A1", "app.kubernetes.io/name", "example.com/x_y-z.w", "a" * 63, "x" * 253 + "/" + "n" * 63],
)
def test_valid_label_keys(key: str) -> None:
    assert check_label_key(key, "f") == key


@pytest.mark.parametrize(
    "key", ["", "-a", "a-", "a b", "a" * 64, "x" * 254 + "/n", "UPPER.com/a", "/a", "a/", "a/b/c", "é"]
)
def test_invalid_label_keys(key: str) -> None:
    with pytest.raises(InvalidSpec):
        check_label_key(key, "f")


@pytest.mark.parametrize("value", ["", "a", "web", "1.2.3", "a_b-c.d", "A" * 63])
def test_valid_label_values(value: str) -> None:
    assert check_label_value(value, "f") == value


@pytest.mark.parametrize("value", ["-a", "a-", "a b", "a/b", "A" * 64, "é"])
def test_invalid_label_values(value: str) -> None:
    with pytest.raises(InvalidSpec):
        check_label_value(value, "f")
