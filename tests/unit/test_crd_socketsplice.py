"""The SocketSplice CRD and the Python parser must accept and reject the same objects.

There is no API server here, so these tests use a small model of what kube-apiserver does with
a custom resource on create (``tests/unit/crdcheck.py``: apiVersion/kind/name, null pruning,
defaults, the structural schema, and the CEL rules with cel-python when it is installed). The
examples in docs/socketsplice.md run through both.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from socksplice.api import selectors, socketsplice
from socksplice.api.manifests import load_manifests
from socksplice.errors import InvalidSpec
from tests.unit.crdcheck import HAVE_CEL, api_errors_for, schema_errors, walk

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "crds" / "socketsplice.yaml"
DOC_PATH = ROOT / "docs" / "socketsplice.md"

CRD: dict[str, Any] = yaml.safe_load(CRD_PATH.read_text())
VERSION: dict[str, Any] = CRD["spec"]["versions"][0]
SCHEMA: dict[str, Any] = VERSION["schema"]["openAPIV3Schema"]
SPEC_SCHEMA: dict[str, Any] = SCHEMA["properties"]["spec"]
SELECTOR_SCHEMA: dict[str, Any] = SPEC_SCHEMA["properties"]["podSelector"]


# ---------------------------------------------------------------------------------------------
# A model of the API server's checks


def _walk(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    return walk(schema, path)


def api_errors(obj: dict[str, Any], cel: bool = HAVE_CEL) -> list[str]:
    """What the API server would say when this object is created (empty = accepted)."""
    return api_errors_for(CRD, obj, cel)


def parser_error(obj: dict[str, Any]) -> InvalidSpec | None:
    try:
        socketsplice.parse_socketsplice(obj)
    except InvalidSpec as exc:
        return exc
    return None


# ---------------------------------------------------------------------------------------------
# The CRD itself


def test_names_and_version() -> None:
    assert CRD["apiVersion"] == "apiextensions.k8s.io/v1"
    assert CRD["kind"] == "CustomResourceDefinition"
    assert CRD["metadata"]["name"] == "socketsplices.socksplice.io"
    spec = CRD["spec"]
    assert spec["group"] == socketsplice.GROUP
    assert spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "kind": "SocketSplice",
        "listKind": "SocketSpliceList",
        "plural": socketsplice.PLURAL,
        "singular": "socketsplice",
        "shortNames": ["ssp"],
        "categories": ["socksplice"],
    }
    assert [(v["name"], v["served"], v["storage"]) for v in spec["versions"]] == [
        (socketsplice.VERSION, True, True)
    ]
    assert VERSION["subresources"] == {"status": {}}


def test_printer_columns() -> None:
    columns = {c["name"].upper(): (c["type"], c["jsonPath"]) for c in VERSION["additionalPrinterColumns"]}
    assert columns["MODE"] == ("string", ".spec.mode")
    assert columns["READY"] == ("string", '.status.conditions[?(@.type=="Ready")].status')
    assert columns["PODS"] == ("integer", ".status.acceleratedPods")
    assert columns["NODES"] == ("integer", ".status.nodeCount")
    assert columns["AGE"] == ("date", ".metadata.creationTimestamp")
    status = SCHEMA["properties"]["status"]["properties"]
    for _type, path in columns.values():
        parts = path.split(".")
        if parts[1] == "status":
            assert parts[2].split("[")[0] in status, path
        elif parts[1] == "spec":
            assert parts[2] in SPEC_SCHEMA["properties"], path


def test_schema_is_structural() -> None:
    for path, node in _walk(SCHEMA):
        escaped = node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields")
        assert "type" in node or escaped, f"{path or '<root>'}: no type"
        assert node.get("additionalProperties") is not False, (
            f"{path}: additionalProperties: false is not structural"
        )
        assert not ("properties" in node and "additionalProperties" in node), (
            f"{path}: both kinds of properties"
        )
        for forbidden in ("$ref", "oneOf", "anyOf", "allOf", "not"):
            assert forbidden not in node, f"{path}: {forbidden} is not used here"
        if node.get("type") == "array":
            assert isinstance(node.get("items"), dict), f"{path}: array without items"
        if node.get("x-kubernetes-list-type") == "map":
            keys = node["x-kubernetes-list-map-keys"]
            assert set(keys) <= set(node["items"].get("required", [])), f"{path}: map keys must be required"
        for rule in node.get("x-kubernetes-validations", []):
            assert rule["message"], f"{path}: CEL rule without a message"
            field_path = rule.get("fieldPath")
            if field_path:
                assert field_path.lstrip(".") in node["properties"], (
                    f"{path}: fieldPath {field_path} not in schema"
                )
        for name in node.get("required", []):
            assert name in node.get("properties", {}), f"{path}: required {name} is not a property"
    assert SCHEMA["properties"]["metadata"] == {"type": "object"}


def test_defaults_are_valid() -> None:
    found = 0
    for path, node in _walk(SCHEMA):
        if "default" in node:
            found += 1
            assert schema_errors(node["default"], node, path) == []
    assert found >= 1
    assert SPEC_SCHEMA["properties"]["mode"]["default"] == socketsplice.Mode.AUTO.value
    assert socketsplice.DEFAULT_MODE is socketsplice.Mode.AUTO


def test_auto_defaults_are_the_parsers() -> None:
    """An object without spec.auto, as the API server stores it, parses to the parser's defaults."""
    from tests.unit.crdcheck import prune_nulls_and_default

    stored = prune_nulls_and_default({**BASE, "spec": {"podSelector": {}}}, SCHEMA)
    assert stored["spec"]["mode"] == "Auto"
    assert stored["spec"]["auto"] == {
        "evidenceWindow": {"connections": 20, "seconds": 60},
        "minMessagesPerConnection": 4,
    }
    assert (
        socketsplice.parse_socketsplice(stored).spec
        == socketsplice.parse_socketsplice({**BASE, "spec": {"podSelector": {}}}).spec
    )
    partial = prune_nulls_and_default(
        {**BASE, "spec": {"podSelector": {}, "auto": {"evidenceWindow": {"seconds": 5}}}}, SCHEMA
    )
    assert partial["spec"]["auto"]["evidenceWindow"] == {"connections": 20, "seconds": 5}


def test_limits_match_the_parser() -> None:
    ports = SPEC_SCHEMA["properties"]["ports"]
    assert ports["maxItems"] == socketsplice.MAX_PORTS  # at least one: a CEL rule with a hint
    assert [r["rule"] for r in ports["x-kubernetes-validations"]] == ["size(self) >= 1"]
    assert (ports["items"]["minimum"], ports["items"]["maximum"]) == (1, 65535)
    assert ports["x-kubernetes-list-type"] == "set"
    assert SPEC_SCHEMA["properties"]["mode"]["enum"] == [m.value for m in socketsplice.Mode]
    assert set(SPEC_SCHEMA["properties"]) == set(socketsplice.SPEC_FIELDS)
    auto = SPEC_SCHEMA["properties"]["auto"]["properties"]
    assert set(auto) == set(socketsplice.AUTO_FIELDS)
    window = auto["evidenceWindow"]["properties"]
    assert set(window) == set(socketsplice.WINDOW_FIELDS)
    for node, (low, high), default in [
        (window["connections"], socketsplice.WINDOW_CONNECTIONS, 20),
        (window["seconds"], socketsplice.WINDOW_SECONDS, 60),
        (auto["minMessagesPerConnection"], socketsplice.MIN_MESSAGES, 4),
    ]:
        assert node["type"] == "integer" and node["default"] == default
        assert [r["rule"] for r in node["x-kubernetes-validations"]] == [f"self >= {low} && self <= {high}"]
        assert node["x-kubernetes-validations"][0]["message"].startswith(
            f"must be an integer from {low} to {high}"
        )
    assert SPEC_SCHEMA["required"] == ["podSelector"]
    sel = SELECTOR_SCHEMA["properties"]
    assert sel["matchLabels"]["maxProperties"] == selectors.MAX_MATCH_LABELS
    assert sel["matchExpressions"]["maxItems"] == selectors.MAX_MATCH_EXPRESSIONS
    expr = sel["matchExpressions"]["items"]["properties"]
    assert expr["values"]["maxItems"] == selectors.MAX_REQUIREMENT_VALUES
    assert expr["operator"]["enum"] == [op.value for op in selectors.Operator]


def test_status_schema_accepts_a_realistic_status() -> None:
    status: dict[str, Any] = {
        "observedGeneration": 3,
        "matchedPods": 4,
        "acceleratedPods": 3,
        "nodeCount": 2,
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "AgentMissing",
                "message": "node-b: no SpliceNode for 5m",
                "lastTransitionTime": "2025-05-02T09:15:00Z",
                "observedGeneration": 3,
            },
            {
                "type": "Degraded",
                "status": "True",
                "reason": "FailOpen",
                "message": "node-a: 12 messages passed to TCP (pairing timeout)",
                "lastTransitionTime": "2025-05-02T09:15:00Z",
            },
        ],
        "nodes": [
            {
                "name": "node-a",
                "matchedPods": 3,
                "attachedPods": 3,
                "splicedSockets": 412,
                "mode": "SpliceRelaxedReceive",
            },
            {
                "name": "node-b",
                "matchedPods": 1,
                "attachedPods": 0,
                "mode": "SpliceRelaxedReceive",
                "message": "agent not seen",
            },
        ],
    }
    status_schema = SCHEMA["properties"]["status"]
    assert schema_errors(status, status_schema, ".status") == []
    bad = copy.deepcopy(status)
    bad["conditions"].append(dict(bad["conditions"][0]))
    bad["nodes"][0]["mode"] = "enforce"
    bad["conditions"][1]["status"] = "Yes"
    assert sorted(schema_errors(bad, status_schema, ".status")) == [
        ".status.conditions[1].status: Unsupported value: 'Yes'",
        ".status.conditions[2]: Duplicate value",
        ".status.nodes[0].mode: Unsupported value: 'enforce'",
    ]


# ---------------------------------------------------------------------------------------------
# The documented examples


def _doc_examples() -> list[tuple[str, dict[str, str], str]]:
    text = DOC_PATH.read_text()
    out = []
    for block in re.findall(r"```yaml\n(.*?)```", text, flags=re.S):
        headers = dict(re.findall(r"^# (example|expect|api|error|api-error): (.*)$", block, flags=re.M))
        if "example" in headers:
            out.append((headers["example"], headers, block))
    return out


EXAMPLES = _doc_examples()


def test_docs_have_examples() -> None:
    names = [name for name, _h, _b in EXAMPLES]
    assert len(names) == len(set(names)), "example names must be unique"
    assert sum(h["expect"] == "valid" for _n, h, _b in EXAMPLES) >= 3
    assert sum(h["expect"] == "invalid" for _n, h, _b in EXAMPLES) >= 10


@pytest.mark.parametrize(("name", "headers", "block"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_doc_example(name: str, headers: dict[str, str], block: str) -> None:
    obj = yaml.safe_load(block)
    errors = api_errors(obj)
    if headers["expect"] == "valid":
        assert len(load_manifests(block, "")) == 1
        assert errors == []
        return
    assert headers["expect"] == "invalid"
    with pytest.raises(InvalidSpec) as info:
        load_manifests(block, "")
    assert str(info.value) == headers["error"], "docs/socketsplice.md shows a different message"
    if headers["api"] == "accepts":
        assert errors == []
        return
    assert headers["api"] == "rejects"
    if not errors and not HAVE_CEL and api_errors(obj, cel=False) == []:
        pytest.skip("rejected only by a CEL rule and cel-python is not installed")
    assert errors, f"{name}: the CRD accepts what the docs say it rejects"
    # The API names the same field (its paths start with '.'; map keys use [key] like ours).
    field = info.value.field
    if field not in ("apiVersion", "kind", "metadata.name"):
        parent, _, name = field.rpartition(".")
        unknown = f'.{parent}: unknown field "{name}"'  # kubectl: unknown field "spec.auto.x"
        assert any(e.startswith("." + field) or e.startswith(unknown) for e in errors), errors
    if "api-error" in headers:
        assert any(headers["api-error"] in e for e in errors), errors


# ---------------------------------------------------------------------------------------------
# Beyond the docs: the parser and the CRD agree on a table of specs

BASE = {
    "apiVersion": "socksplice.io/v1alpha1",
    "kind": "SocketSplice",
    "metadata": {"name": "s", "namespace": "n"},
}

SPECS: list[dict[str, Any]] = [
    {"podSelector": {}},
    {"podSelector": None},
    {"podSelector": {}, "ports": None, "mode": None},
    {"podSelector": {}, "ports": [1, 65535]},
    {"podSelector": {}, "ports": [65536]},
    {"podSelector": {}, "ports": [-5]},
    {"podSelector": {}, "ports": [80.5]},
    {"podSelector": {}, "ports": [False]},
    {"podSelector": {}, "ports": [None]},
    {"podSelector": {}, "ports": list(range(1, 17))},
    {"podSelector": {}, "ports": "80"},
    {"podSelector": {}, "mode": "DryRun"},
    {"podSelector": {}, "mode": "dryrun"},
    {"podSelector": {}, "mode": ""},
    {"podSelector": {}, "extra": 1},
    {"podSelector": {"matchLabels": {"app": ""}}},
    {"podSelector": {"matchLabels": {"app": "a" * 63}}},
    {"podSelector": {"matchLabels": {"app": "a" * 64}}},
    {"podSelector": {"matchLabels": {"app": "a_"}}},
    {"podSelector": {"matchLabels": {"app": "x"}, "matchLabel": {}}},
    {"podSelector": {"matchLabels": {f"k{i}": "v" for i in range(65)}}},
    {"podSelector": {"matchExpressions": None}},
    {"podSelector": {"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["x"]}]}},
    {"podSelector": {"matchExpressions": [{"key": "a", "operator": "NotIn", "values": []}]}},
    {"podSelector": {"matchExpressions": [{"key": "a", "operator": "DoesNotExist", "values": []}]}},
    {"podSelector": {"matchExpressions": [{"key": "a", "operator": "DoesNotExist", "values": None}]}},
    {"podSelector": {"matchExpressions": [{"key": "a", "operator": "DoesNotExist", "values": ["x"]}]}},
    {"podSelector": {"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["x"]}]}},
    {"podSelector": {"matchExpressions": [{"operator": "Exists"}]}},
    {"podSelector": {"matchExpressions": [{"key": "a"}]}},
    {"podSelector": {"matchExpressions": [{"key": "a" * 63, "operator": "Exists"}]}},
    {"podSelector": {"matchExpressions": [{"key": "a" * 64, "operator": "Exists"}]}},
    {"podSelector": {"matchExpressions": [{"key": "x" * 253 + "/a", "operator": "Exists"}]}},
    {"podSelector": {"matchExpressions": [{"key": "x" * 254 + "/a", "operator": "Exists"}]}},
    {"podSelector": {"matchExpressions": [{"key": "Ex.com/a", "operator": "Exists"}]}},
    {"podSelector": {"matchExpressions": [{"key": "a/b/c", "operator": "Exists"}]}},
    {"podSelector": {"matchExpressions": [{"key": "a", "operator": "In", "values": ["ok", "not ok"]}]}},
    {"podSelector": {"matchExpressions": [{"key": "a", "operator": "In", "values": ["x"] * 65}]}},
    {"podSelector": {"matchExpressions": [{"key": "a", "operator": "Exists"}] * 33}},
    {"podSelector": {"matchExpressions": [{"key": "a", "operator": "Exists", "vals": ["x"]}]}},
    {"podSelector": {}, "mode": "Auto"},
    {"podSelector": {}, "mode": "auto"},
    {"podSelector": {}, "mode": "Audit"},
    {"podSelector": {}, "auto": None},
    {"podSelector": {}, "auto": {}},
    {"podSelector": {}, "auto": []},
    {"podSelector": {}, "auto": {"evidenceWindow": None, "minMessagesPerConnection": None}},
    {"podSelector": {}, "auto": {"evidenceWindow": {}}},
    {"podSelector": {}, "auto": {"evidenceWindow": {"connections": 1, "seconds": 1}}},
    {"podSelector": {}, "auto": {"evidenceWindow": {"connections": 100000, "seconds": 86400}}},
    {"podSelector": {}, "auto": {"evidenceWindow": {"connections": 0}}},
    {"podSelector": {}, "auto": {"evidenceWindow": {"connections": 100001}}},
    {"podSelector": {}, "auto": {"evidenceWindow": {"connections": -1}}},
    {"podSelector": {}, "auto": {"evidenceWindow": {"connections": "20"}}},
    {"podSelector": {}, "auto": {"evidenceWindow": {"connections": 2.5}}},
    {"podSelector": {}, "auto": {"evidenceWindow": {"connections": True}}},
    {"podSelector": {}, "auto": {"evidenceWindow": {"seconds": 0}}},
    {"podSelector": {}, "auto": {"evidenceWindow": {"seconds": 86401}}},
    {"podSelector": {}, "auto": {"evidenceWindow": {"second": 60}}},
    {"podSelector": {}, "auto": {"evidenceWindow": 60}},
    {"podSelector": {}, "auto": {"minMessagesPerConnection": 0}},
    {"podSelector": {}, "auto": {"minMessagesPerConnection": 1000000}},
    {"podSelector": {}, "auto": {"minMessagesPerConnection": 1000001}},
    {"podSelector": {}, "auto": {"minMessagesPerConnection": -1}},
    {"podSelector": {}, "auto": {"minMessages": 4}},
    {"podSelector": {}, "mode": "DryRun", "auto": {"evidenceWindow": {"connections": 5}}},
    {"podSelector": {}, "mode": "SpliceRelaxedReceive", "auto": {"minMessagesPerConnection": 0}},
]


@pytest.mark.parametrize("spec", SPECS, ids=[str(i) for i in range(len(SPECS))])
def test_parser_and_crd_agree(spec: dict[str, Any]) -> None:
    obj = {**BASE, "spec": spec}
    parsed = parser_error(obj)
    errors = api_errors(obj)
    if parsed is not None and not errors and not HAVE_CEL:
        pytest.skip("cel-python is not installed; a CEL rule may be what rejects this")
    assert (parsed is None) == (errors == []), f"parser: {parsed}; api: {errors}"


def test_cel_rules_are_evaluated() -> None:
    if not HAVE_CEL:
        pytest.skip("cel-python is not installed")
    obj = {**BASE, "spec": {"podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}}
    assert api_errors(obj, cel=False) == []
    assert api_errors(obj) == [
        ".spec.podSelector.matchExpressions[0].values: Invalid value: values must be non-empty when operator "
        "is In or NotIn; list at least one value"
    ]


@pytest.mark.parametrize(
    ("spec", "path", "says"),
    [
        (
            {"podSelector": {"matchExpressions": [{"key": "bad key!", "operator": "Exists"}]}},
            ".spec.podSelector.matchExpressions[0].key",
            "a label key is [prefix/]name",
        ),
        (
            {"podSelector": {"matchLabels": {"app": "my app"}}},
            ".spec.podSelector.matchLabels[app]",
            "a label value is empty or at most 63 characters",
        ),
        (
            {"podSelector": {"matchExpressions": [{"key": "a", "operator": "In", "values": ["not ok"]}]}},
            ".spec.podSelector.matchExpressions[0].values[0]",
            "a label value is empty or at most 63 characters",
        ),
        ({"podSelector": {}, "ports": []}, ".spec.ports", "omit ports to mean every port"),
        (
            {"podSelector": {}, "auto": {"evidenceWindow": {"seconds": 0}}},
            ".spec.auto.evidenceWindow.seconds",
            "must be an integer from 1 to 86400",
        ),
        (
            {"podSelector": {}, "auto": {"evidenceWindow": {"connections": 100001}}},
            ".spec.auto.evidenceWindow.connections",
            "must be an integer from 1 to 100000",
        ),
        (
            {"podSelector": {}, "auto": {"minMessagesPerConnection": -1}},
            ".spec.auto.minMessagesPerConnection",
            "must be an integer from 0 to 1000000",
        ),
    ],
)
def test_api_messages_say_what_is_valid(spec: dict[str, Any], path: str, says: str) -> None:
    """The API's message explains the rule (a CEL message), not a raw regex or a bare count."""
    if not HAVE_CEL:
        pytest.skip("cel-python is not installed")
    errors = api_errors({**BASE, "spec": spec})
    assert errors, spec
    assert all("should match" not in e and "should have at least" not in e for e in errors), errors
    assert any(e.startswith(f"{path}: Invalid value: ") and says in e for e in errors), errors
