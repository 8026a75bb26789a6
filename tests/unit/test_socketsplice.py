"""SocketSplice parsing (objects as the API returns them) and manifest loading (local mode)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from socksplice.api import Mode, Operator, Requirement, load_manifest_dir, load_manifests, parse_socketsplice
from socksplice.api.socketsplice import AutoSpec, EvidenceWindow
from socksplice.errors import InvalidSpec, PermanentError

# A SocketSplice as `kubectl get ssp web -n shop -o json` returns it (defaults applied).
API_OBJECT: dict[str, Any] = {
    "apiVersion": "socksplice.io/v1alpha1",
    "kind": "SocketSplice",
    "metadata": {
        "creationTimestamp": "2025-05-02T09:14:07Z",
        "generation": 3,
        "name": "web",
        "namespace": "shop",
        "resourceVersion": "184467",
        "uid": "5f0c7a1e-1d2b-4d83-9a0e-3f6c2b7d9e10",
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
    },
    "spec": {
        "mode": "SpliceRelaxedReceive",
        "podSelector": {
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["frontend", "edge"]}],
        },
        "ports": [8443, 80],
    },
    "status": {
        "observedGeneration": 2,
        "matchedPods": 4,
        "acceleratedPods": 4,
        "nodeCount": 2,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Attached",
                "message": "4/4 pods attached",
                "lastTransitionTime": "2025-05-02T09:15:00Z",
                "observedGeneration": 2,
            }
        ],
    },
}


def _obj(**spec: Any) -> dict[str, Any]:
    obj = copy.deepcopy(API_OBJECT)
    obj["spec"] = spec
    return obj


def test_parse_api_object() -> None:
    ssp = parse_socketsplice(API_OBJECT)
    assert ssp.key == "shop/web"
    assert (ssp.name, ssp.namespace, ssp.uid, ssp.generation) == (
        "web",
        "shop",
        "5f0c7a1e-1d2b-4d83-9a0e-3f6c2b7d9e10",
        3,
    )
    assert ssp.spec.ports == (80, 8443)  # sorted
    assert ssp.spec.mode is Mode.SPLICE
    assert ssp.spec.pod_selector.match_labels == (("app", "web"),)
    assert ssp.spec.pod_selector.match_expressions == (
        Requirement("tier", Operator.IN, ("edge", "frontend")),
    )
    assert ssp.spec.pod_selector.matches({"app": "web", "tier": "edge"})
    hash(ssp)


def test_defaults() -> None:
    ssp = parse_socketsplice(
        {
            "apiVersion": "socksplice.io/v1alpha1",
            "kind": "SocketSplice",
            "metadata": {"name": "a"},
            "spec": {},
        }
        | {"spec": {"podSelector": {}}}
    )
    assert ssp.namespace == "default"
    assert ssp.uid == ""
    assert ssp.generation == 0
    assert ssp.spec.ports == ()
    assert ssp.spec.mode is Mode.AUTO  # splices only endpoints that showed nothing tcp_bpf serves differently
    assert ssp.spec.auto == AutoSpec(EvidenceWindow(20, 60), 4)
    assert ssp.spec.pod_selector.is_empty


def test_nulls_count_as_absent() -> None:
    ssp = parse_socketsplice(_obj(podSelector={"matchLabels": None}, ports=None, mode=None, auto=None))
    assert ssp.spec.ports == ()
    assert ssp.spec.mode is Mode.AUTO
    assert ssp.spec.auto == AutoSpec()


def test_auto_explicit_and_partial() -> None:
    ssp = parse_socketsplice(
        _obj(
            podSelector={},
            mode="Auto",
            auto={"evidenceWindow": {"connections": 100, "seconds": None}, "minMessagesPerConnection": 0},
        )
    )
    assert ssp.spec.mode is Mode.AUTO
    assert ssp.spec.auto == AutoSpec(EvidenceWindow(connections=100, seconds=60), 0)
    edges = {"evidenceWindow": {"connections": 100000, "seconds": 86400}, "minMessagesPerConnection": 1000000}
    assert parse_socketsplice(_obj(podSelector={}, auto=edges)).spec.auto == AutoSpec(
        EvidenceWindow(100000, 86400), 1000000
    )
    lows = {"evidenceWindow": {"connections": 1, "seconds": 1}}
    assert parse_socketsplice(_obj(podSelector={}, auto=lows)).spec.auto.evidence_window == EvidenceWindow(
        1, 1
    )


def test_auto_is_kept_for_dry_run() -> None:
    """DryRun reports the verdicts Auto would take, with the same settings."""
    ssp = parse_socketsplice(_obj(podSelector={}, mode="DryRun", auto={"evidenceWindow": {"seconds": 5}}))
    assert (ssp.spec.mode, ssp.spec.auto.evidence_window.seconds) == (Mode.DRY_RUN, 5)


def test_auto_error_message_names_the_field() -> None:
    with pytest.raises(InvalidSpec) as info:
        parse_socketsplice(_spec_with(auto={"evidenceWindow": {"seconds": 0}}))
    assert (
        str(info.value)
        == "spec.auto.evidenceWindow.seconds: must be an integer from 1 to 86400, got 0 (integer)"
    )


def test_dry_run() -> None:
    assert parse_socketsplice(_obj(podSelector={}, mode="DryRun")).spec.mode is Mode.DRY_RUN


def _spec_with(**changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"podSelector": {"matchLabels": {"app": "web"}}}
    spec.update(changes)
    return _obj(**spec)


def _top_with(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    obj = copy.deepcopy(API_OBJECT)
    target: dict[str, Any] = obj
    for part in path[:-1]:
        target = target[part]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return obj


_DELETE = object()

# (object, field path the error must name, fragment of the message)
INVALID: list[tuple[dict[str, Any], str, str]] = [
    (_top_with(("apiVersion",), "socksplice.io/v1"), "apiVersion", "must be 'socksplice.io/v1alpha1'"),
    (_top_with(("apiVersion",), _DELETE), "apiVersion", "got None (null)"),
    (_top_with(("kind",), "SocketSplices"), "kind", "must be 'SocketSplice', got 'SocketSplices'"),
    (
        _top_with(("specs",), {}),
        "specs",
        "unknown field 'specs'; known fields are apiVersion, kind, metadata",
    ),
    (_top_with(("metadata",), _DELETE), "metadata", "required"),
    (_top_with(("metadata",), "web"), "metadata", "must be a mapping"),
    (_top_with(("metadata", "name"), _DELETE), "metadata.name", "required"),
    (_top_with(("metadata", "name"), "Web"), "metadata.name", "DNS-1123 subdomain"),
    (_top_with(("metadata", "name"), "a" * 254), "metadata.name", "at most 253"),
    (_top_with(("metadata", "name"), 7), "metadata.name", "got 7 (integer)"),
    (_top_with(("metadata", "namespace"), "Shop"), "metadata.namespace", "DNS-1123 label"),
    (_top_with(("metadata", "namespace"), "a.b"), "metadata.namespace", "DNS-1123 label"),
    (_top_with(("metadata", "uid"), 5), "metadata.uid", "must be a string"),
    (_top_with(("metadata", "generation"), -1), "metadata.generation", "non-negative integer"),
    (_top_with(("metadata", "generation"), "3"), "metadata.generation", "non-negative integer"),
    (_top_with(("spec",), _DELETE), "spec", "required"),
    (_top_with(("spec",), None), "spec", "required"),
    (_top_with(("spec",), [1]), "spec", "must be a mapping"),
    (_obj(), "spec.podSelector", "required: set a label selector; {} selects every pod"),
    (_obj(podSelector=None), "spec.podSelector", "required"),
    (_obj(podSelector="app=web"), "spec.podSelector", "must be a mapping"),
    (
        _spec_with(port=[80]),
        "spec.port",
        "unknown field 'port'; known fields are auto, mode, podSelector, ports",
    ),
    (_spec_with(Mode="DryRun"), "spec.Mode", "unknown field 'Mode'"),
    (_spec_with(ports=80), "spec.ports", "must be a list of port numbers, got 80 (integer)"),
    (_spec_with(ports=[]), "spec.ports", "omit ports to accelerate every port"),
    (_spec_with(ports=list(range(1, 18))), "spec.ports", "at most 16 ports allowed, got 17"),
    (_spec_with(ports=[0]), "spec.ports[0]", "must be an integer from 1 to 65535, got 0"),
    (_spec_with(ports=[80, 65536]), "spec.ports[1]", "got 65536"),
    (_spec_with(ports=[-1]), "spec.ports[0]", "got -1"),
    (_spec_with(ports=["80"]), "spec.ports[0]", "got '80' (string)"),
    (_spec_with(ports=["http"]), "spec.ports[0]", "got 'http' (string)"),
    (_spec_with(ports=[80.0]), "spec.ports[0]", "got 80.0 (number)"),
    (_spec_with(ports=[True]), "spec.ports[0]", "got True (boolean)"),
    (_spec_with(ports=[None]), "spec.ports[0]", "got None (null)"),
    (_spec_with(ports=[80, 443, 80]), "spec.ports[2]", "duplicate port 80 (also at spec.ports[0])"),
    (
        _spec_with(mode="enforce"),
        "spec.mode",
        "must be one of Auto, DryRun, SpliceRelaxedReceive (case-sensitive), got 'enforce'",
    ),
    (_spec_with(mode="Audit"), "spec.mode", "must be one of Auto, DryRun, SpliceRelaxedReceive"),
    (_spec_with(mode=True), "spec.mode", "got True (boolean)"),
    (_spec_with(mode="auto"), "spec.mode", "must be one of Auto, DryRun, SpliceRelaxedReceive"),
    (_spec_with(auto=[]), "spec.auto", "must be a mapping, got [] (list)"),
    (
        _spec_with(auto={"window": {}}),
        "spec.auto.window",
        "unknown field 'window'; known fields are evidenceWindow, minMessagesPerConnection",
    ),
    (_spec_with(auto={"evidenceWindow": 20}), "spec.auto.evidenceWindow", "must be a mapping"),
    (
        _spec_with(auto={"evidenceWindow": {"second": 60}}),
        "spec.auto.evidenceWindow.second",
        "unknown field 'second'; known fields are connections, seconds",
    ),
    (
        _spec_with(auto={"evidenceWindow": {"seconds": 0}}),
        "spec.auto.evidenceWindow.seconds",
        "must be an integer from 1 to 86400, got 0 (integer)",
    ),
    (
        _spec_with(auto={"evidenceWindow": {"seconds": 86401}}),
        "spec.auto.evidenceWindow.seconds",
        "must be an integer from 1 to 86400, got 86401 (integer)",
    ),
    (
        _spec_with(auto={"evidenceWindow": {"seconds": "60s"}}),
        "spec.auto.evidenceWindow.seconds",
        "got '60s' (string)",
    ),
    (
        _spec_with(auto={"evidenceWindow": {"connections": 0}}),
        "spec.auto.evidenceWindow.connections",
        "must be an integer from 1 to 100000, got 0 (integer)",
    ),
    (
        _spec_with(auto={"evidenceWindow": {"connections": 100001}}),
        "spec.auto.evidenceWindow.connections",
        "must be an integer from 1 to 100000",
    ),
    (
        _spec_with(auto={"evidenceWindow": {"connections": 20.0}}),
        "spec.auto.evidenceWindow.connections",
        "got 20.0 (number)",
    ),
    (
        _spec_with(auto={"evidenceWindow": {"connections": True}}),
        "spec.auto.evidenceWindow.connections",
        "got True (boolean)",
    ),
    (
        _spec_with(auto={"minMessagesPerConnection": -1}),
        "spec.auto.minMessagesPerConnection",
        "must be an integer from 0 to 1000000, got -1 (integer)",
    ),
    (
        _spec_with(auto={"minMessagesPerConnection": 1000001}),
        "spec.auto.minMessagesPerConnection",
        "must be an integer from 0 to 1000000",
    ),
    (
        _spec_with(podSelector={"matchLabels": {"app": "a b"}}),
        "spec.podSelector.matchLabels[app]",
        "label value",
    ),
    (
        _spec_with(podSelector={"matchExpressions": [{"key": "a", "operator": "In"}]}),
        "spec.podSelector.matchExpressions[0].values",
        "must be non-empty",
    ),
]


@pytest.mark.parametrize(("obj", "field", "fragment"), INVALID)
def test_invalid_socketsplice(obj: dict[str, Any], field: str, fragment: str) -> None:
    with pytest.raises(InvalidSpec) as info:
        parse_socketsplice(obj, source="shop/web.yaml")
    assert info.value.field == field
    assert fragment in info.value.reason
    assert str(info.value) == f"shop/web.yaml: {field}: {info.value.reason}"


def test_not_a_mapping() -> None:
    with pytest.raises(InvalidSpec, match="must be a mapping"):
        parse_socketsplice(["not", "an", "object"])  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Manifests

TWO_DOCS = """\
# a comment before the first separator is not a document; the empty one between --- lines is
---
apiVersion: socksplice.io/v1alpha1
kind: SocketSplice
metadata: {name: web, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ports: [80]
---
---
apiVersion: socksplice.io/v1alpha1
kind: SocketSplice
metadata: {name: db, namespace: shop}
spec:
  podSelector: {}
  mode: DryRun
"""


def test_load_manifests_multi_document() -> None:
    splices = load_manifests(TWO_DOCS, "shop.yaml")
    assert [s.key for s in splices] == ["shop/web", "shop/db"]
    assert splices[1].spec.mode is Mode.DRY_RUN


def test_load_manifests_empty_text() -> None:
    assert load_manifests("", "empty.yaml") == []
    assert load_manifests("---\n# nothing\n---\n", "empty.yaml") == []


def test_load_manifests_list_kind() -> None:
    doc = {"apiVersion": "v1", "kind": "List", "items": [API_OBJECT, _top_with(("metadata", "name"), "web2")]}
    splices = load_manifests(json.dumps(doc), "list.json")
    assert [s.key for s in splices] == ["shop/web", "shop/web2"]


def test_load_manifests_list_item_error_names_item() -> None:
    doc = {"apiVersion": "v1", "kind": "List", "items": [API_OBJECT, _spec_with(ports=[0])]}
    with pytest.raises(InvalidSpec) as info:
        load_manifests(json.dumps(doc), "list.yaml")
    assert info.value.source == "list.yaml items[1]"
    assert info.value.field == "spec.ports[0]"


def test_error_names_document_when_several() -> None:
    text = TWO_DOCS.replace("mode: DryRun", "mode: dryrun")
    with pytest.raises(InvalidSpec) as info:
        load_manifests(text, "shop.yaml")
    assert str(info.value).startswith(
        "shop.yaml document 3: spec.mode: must be one of Auto, DryRun, SpliceRelaxedReceive"
    )


def test_yaml_syntax_error_has_line_and_column() -> None:
    text = "apiVersion: socksplice.io/v1alpha1\nkind: SocketSplice\nspec:\n  ports: [80\n"
    with pytest.raises(InvalidSpec) as info:
        load_manifests(text, "bad.yaml")
    assert info.value.field == "(yaml)"
    assert "line 5, column 1" in info.value.reason


def test_yaml_duplicate_key_is_an_error() -> None:
    text = "\n".join(
        [
            "apiVersion: socksplice.io/v1alpha1",
            "kind: SocketSplice",
            "metadata: {name: a}",
            "spec: {podSelector: {}}",
            "spec: {podSelector: {matchLabels: {app: x}}}",
        ]
    )
    with pytest.raises(InvalidSpec) as info:
        load_manifests(text, "dup.yaml")
    assert "duplicate key 'spec'" in info.value.reason
    assert "line 5, column 1" in info.value.reason


def test_document_not_a_mapping() -> None:
    with pytest.raises(InvalidSpec) as info:
        load_manifests("- a\n- b\n", "list.yaml")
    assert info.value.field == "(document)"


def test_duplicate_in_one_text() -> None:
    text = TWO_DOCS.replace("name: db", "name: web")
    with pytest.raises(
        InvalidSpec,
        match=r"document 3: metadata.name: duplicate SocketSplice shop/web "
        r"\(first defined in shop.yaml document 1\)",
    ):
        load_manifests(text, "shop.yaml")


def test_other_kinds() -> None:
    text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\n" + TWO_DOCS
    with pytest.raises(InvalidSpec, match="kind: must be 'SocketSplice', got 'Namespace'"):
        load_manifests(text, "all.yaml")
    assert len(load_manifests(text, "all.yaml", skip_other_kinds=True)) == 2


def test_load_manifest_dir(tmp_path: Path) -> None:
    (tmp_path / "10-shop.yaml").write_text(TWO_DOCS)
    (tmp_path / "20-bad.yml").write_text(TWO_DOCS.replace("[80]", "[0]").replace("name: web", "name: other"))
    (tmp_path / "30-dup.json").write_text(json.dumps(API_OBJECT))  # shop/web again
    (tmp_path / "40-cache.json").write_text(json.dumps(_top_with(("metadata", "namespace"), "cache")))
    (tmp_path / "50-syntax.yaml").write_text("spec: [\n")
    (tmp_path / "60-badjson.json").write_text("{\n  'single': 'quotes'\n}\n")
    (tmp_path / "README.md").write_text("not a manifest")
    (tmp_path / ".hidden.yaml").write_text("garbage: [")
    (tmp_path / "sub.yaml").mkdir()
    (tmp_path / "sub.yaml" / "x.yaml").write_text(TWO_DOCS)

    splices, errors = load_manifest_dir(tmp_path)

    assert [s.key for s in splices] == ["shop/web", "shop/db", "cache/web"]
    by_file = {Path(e.source.split(" ")[0]).name: e for e in errors}
    assert sorted(by_file) == ["20-bad.yml", "30-dup.json", "50-syntax.yaml", "60-badjson.json"]
    assert by_file["20-bad.yml"].field == "spec.ports[0]"
    assert by_file["20-bad.yml"].source.endswith("20-bad.yml document 1")
    assert by_file["30-dup.json"].reason.startswith("duplicate SocketSplice shop/web (already defined in ")
    assert by_file["30-dup.json"].reason.endswith("10-shop.yaml)")
    assert by_file["50-syntax.yaml"].field == "(yaml)"
    assert by_file["60-badjson.json"].field == "(json)"
    assert "line 2, column 3" in by_file["60-badjson.json"].reason


def test_load_manifest_dir_file_is_all_or_nothing(tmp_path: Path) -> None:
    # The second document is broken, so the valid first one is not loaded either.
    (tmp_path / "a.yaml").write_text(TWO_DOCS.replace("mode: DryRun", "mode: Off"))
    splices, errors = load_manifest_dir(tmp_path)
    assert splices == []
    assert len(errors) == 1
    assert errors[0].field == "spec.mode"


def test_load_manifest_dir_missing(tmp_path: Path) -> None:
    with pytest.raises(PermanentError, match="does not exist"):
        load_manifest_dir(tmp_path / "nope")


def test_load_manifest_dir_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "latin1.yaml").write_bytes("metadata: {name: caf\xe9}\n".encode("latin-1"))
    splices, errors = load_manifest_dir(tmp_path)
    assert splices == []
    assert errors[0].field == "(file)"
    assert "not UTF-8" in errors[0].reason
