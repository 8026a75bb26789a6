"""kopf handlers: thin over ``rolling`` (SocketSplice status) and ``benchmarks`` (SpliceBenchmark runs).

Importing this module registers the handlers with kopf's default registry. SocketSplice status is
recomputed on create, resume and spec update, and by a timer (pods and SpliceNodes change without
the SocketSplice changing). Object logs at INFO and above become Events (``configuring``).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from socksplice.api.socketsplice import GROUP, PLURAL, VERSION
from socksplice.api.status import READY, timestamp
from socksplice.errors import InvalidSpec
from socksplice.operator import benchmarks
from socksplice.operator.configuring import configure
from socksplice.operator.kube import Kube
from socksplice.operator.metrics import OperatorMetrics
from socksplice.operator.rolling import is_bad, splice_status

METRICS = OperatorMetrics()
RESYNC_SECONDS = 10.0
BENCHMARK_POLL_SECONDS = 3.0
_kube: Kube | None = None


def kube() -> Kube:
    global _kube
    if _kube is None:
        _kube = Kube()
    return _kube


@kopf.on.startup()
def _startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    configure(settings)


# --- SocketSplice ------------------------------------------------------------------------------


def reconcile_splice(body: kopf.Body, patch: kopf.Patch, logger: logging.Logger | Any) -> None:
    raw = {k: body.get(k) for k in ("apiVersion", "kind", "metadata", "spec", "status")}
    raw = {k: v for k, v in raw.items() if v is not None}
    namespace = body["metadata"]["namespace"]
    try:
        outcome = splice_status(raw, kube().pods(namespace), kube().splicenodes(), datetime.now(UTC))
    except ApiException as exc:
        METRICS.count("SocketSplice", "error")
        raise kopf.TemporaryError(f"api: {exc.status} {exc.reason}", delay=10) from exc
    METRICS.count("SocketSplice", outcome.result)
    for line in outcome.events:
        (logger.warning if is_bad(line) else logger.info)(line)
    current = dict(body.get("status") or {})
    if any(current.get(k) != v for k, v in outcome.status.items()):
        patch.status.update(outcome.status)


@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def splice_changed(body: kopf.Body, patch: kopf.Patch, logger: Any, **_: Any) -> None:
    reconcile_splice(body, patch, logger)


@kopf.timer(GROUP, VERSION, PLURAL, interval=RESYNC_SECONDS, initial_delay=RESYNC_SECONDS)
def splice_resync(body: kopf.Body, patch: kopf.Patch, logger: Any, **_: Any) -> None:
    reconcile_splice(body, patch, logger)


@kopf.on.delete(GROUP, VERSION, PLURAL)
def splice_deleted(body: kopf.Body, logger: Any, **_: Any) -> None:
    logger.info("deleted: agents detach the programs; live connections finish spliced")
    METRICS.count("SocketSplice", "deleted")


# --- SpliceBenchmark ---------------------------------------------------------------------------


def observe(k: Kube, b: benchmarks.Benchmark, status: dict[str, Any]) -> benchmarks.Facts:
    server = k.pods(b.namespace, f"{benchmarks.LABEL}={b.name},{benchmarks.ROLE_LABEL}=server")
    s_status = (server[0].get("status") or {}) if server else {}
    plain = k.job_state(b.namespace, b.object_name("plain"))
    spliced = k.job_state(b.namespace, b.object_name("spliced"))
    splice = k.socketsplice(b.namespace, b.object_name("splice"))
    ready = None
    if splice is not None:
        st = splice.get("status") or {}
        conds = {c.get("type"): c.get("status") for c in st.get("conditions") or []}
        ready = conds.get(READY) == "True" and int(st.get("acceleratedPods") or 0) >= 1
    phase = status.get("phase")
    return benchmarks.Facts(
        server_phase=str(s_status.get("phase", "Pending")) if server else None,
        server_ip=str(s_status.get("podIP") or ""),
        plain_job=plain,
        spliced_job=spliced,
        splice_ready=ready,
        plain_log=k.job_log(b.namespace, b.object_name("plain"))
        if plain == "Succeeded" and phase == benchmarks.Phase.RUNNING_PLAIN
        else "",
        spliced_log=k.job_log(b.namespace, b.object_name("spliced")) if spliced == "Succeeded" else "",
    )


_KIND_OF_ROLE = {"server": "Pod", "plain": "Job", "spliced": "Job", "splice": "SocketSplice"}


@kopf.timer(GROUP, VERSION, benchmarks.PLURAL, interval=BENCHMARK_POLL_SECONDS)
def benchmark_step(body: kopf.Body, patch: kopf.Patch, logger: Any, **_: Any) -> None:
    status = dict(body.get("status") or {})
    if status.get("phase") in (benchmarks.Phase.SUCCEEDED, benchmarks.Phase.FAILED):
        return
    try:
        b = benchmarks.parse_benchmark(body)
    except InvalidSpec as exc:
        METRICS.count(benchmarks.KIND, "invalid")
        patch.status.update({"phase": benchmarks.Phase.FAILED.value, "message": str(exc)})
        logger.error(f"invalid: {exc}")
        return
    k = kube()
    try:
        step = benchmarks.advance(b, status, observe(k, b, status))
        for obj in step.create:
            k.create(obj)
        for role in step.delete:
            k.delete(_KIND_OF_ROLE[role], b.namespace, b.object_name(role))
    except ApiException as exc:
        METRICS.count(benchmarks.KIND, "error")
        raise kopf.TemporaryError(f"api: {exc.status} {exc.reason}", delay=10) from exc
    METRICS.count(benchmarks.KIND, "ok")
    if not step.status:
        return
    now = timestamp(datetime.now(UTC))
    update = dict(step.status)
    if not status.get("startTime"):
        update["startTime"] = now
    if update.get("phase") in (benchmarks.Phase.SUCCEEDED, benchmarks.Phase.FAILED):
        update["completionTime"] = now
    if update.get("phase") != status.get("phase"):
        log = logger.warning if update.get("phase") == benchmarks.Phase.FAILED else logger.info
        log(f"{update.get('phase')}: {update.get('message', '')}")
    patch.status.update(update)
