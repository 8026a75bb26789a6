"""kopf settings under socksplice.io, operator metrics, the handlers kopf registers, the CLI."""

from __future__ import annotations

import kopf
from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry

from socksplice.operator import configuring, handlers
from socksplice.operator.main import build_parser
from socksplice.operator.metrics import OperatorMetrics


def test_persistence_uses_the_projects_prefix() -> None:
    settings = kopf.OperatorSettings()
    configuring.configure(settings)
    assert settings.persistence.finalizer == "socksplice.io/finalizer"
    progress = settings.persistence.progress_storage
    assert isinstance(progress, kopf.AnnotationsProgressStorage)
    assert progress.prefix == "socksplice.io"
    diffbase = settings.persistence.diffbase_storage
    assert isinstance(diffbase, kopf.AnnotationsDiffBaseStorage)
    assert diffbase.prefix == "socksplice.io"
    assert diffbase.key == "last-handled-configuration"


def test_progress_annotations_are_ours() -> None:
    settings = kopf.OperatorSettings()
    configuring.configure(settings)
    patch = kopf.Patch()
    body = kopf.Body({"metadata": {"name": "s", "namespace": "n"}})
    record = {"started": "2025-05-02T09:00:00", "retries": 1, "success": False, "failure": False}
    settings.persistence.progress_storage.store(
        key=kopf.HandlerId("splice_changed"), record=record, body=body, patch=patch
    )
    annotations = patch["metadata"]["annotations"]
    assert annotations and all(k.startswith("socksplice.io/") for k in annotations), annotations


def test_handlers_are_registered_for_our_resources() -> None:
    registry = kopf.get_default_registry()
    changing = {(h.id, h.selector.any_name) for h in registry._changing.get_all_handlers() if h.selector}
    assert changing >= {
        ("splice_changed", "socketsplices"),
        ("splice_changed/spec", "socketsplices"),
        ("splice_deleted", "socketsplices"),
    }
    timers = {(h.id, h.selector.any_name) for h in registry._spawning.get_all_handlers() if h.selector}
    assert timers >= {("splice_resync", "socketsplices"), ("benchmark_step", "splicebenchmarks")}
    assert handlers.RESYNC_SECONDS >= 30
    indexes = {(h.id, h.selector.any_name) for h in registry._indexing.get_all_handlers() if h.selector}
    assert indexes >= {
        ("pods_by_namespace", "pods"),
        ("splicenodes_by_name", "splicenodes"),
        ("socketsplices_by_namespace", "socketsplices"),
    }
    watches = {(h.id, h.selector.any_name) for h in registry._watching.get_all_handlers() if h.selector}
    assert watches >= {("pod_event", "pods"), ("splicenode_event", "splicenodes")}


def test_reconcile_metrics() -> None:
    metrics = OperatorMetrics(CollectorRegistry())
    metrics.count("SocketSplice", "ok")
    metrics.count("SocketSplice", "ok")
    metrics.count("SocketSplice", "invalid")
    text = generate_latest(metrics.registry).decode()
    assert 'socksplice_operator_reconciles_total{kind="SocketSplice",result="ok"} 2.0' in text
    assert 'socksplice_operator_reconciles_total{kind="SocketSplice",result="invalid"} 1.0' in text


def test_cli_defaults() -> None:
    args = build_parser().parse_args([])
    assert (args.namespace, args.liveness_port, args.metrics_port) == ([], 8080, 9751)
    assert build_parser().parse_args(["--namespace", "a", "--namespace", "b"]).namespace == ["a", "b"]
