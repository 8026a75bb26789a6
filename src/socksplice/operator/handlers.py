"""kopf handlers: thin over ``following`` (SocketSplice status) and ``benchmarks`` (SpliceBenchmark runs).

Importing this module registers the handlers with kopf's default registry. kopf watches Pods,
SpliceNodes and SocketSplices once each and keeps them in three indexes; a watch event of a Pod
or SpliceNode recomputes only the SocketSplices it can affect (``following``), a SocketSplice's
create, resume or spec update recomputes that one. Nothing is listed again per SocketSplice.
A slow timer (``RESYNC_SECONDS``) recomputes each SocketSplice from the indexes without any API
read: an agent that stops is noticed only by time (its SpliceNode's heartbeat gets old, no event
says so). Condition transitions become Events on the SocketSplice (``configuring``), and so does
each endpoint a SpliceNode newly reports demoted (``demoting``: a Warning ``EndpointDemoted``), and
each NetworkPolicy handback it reports (``handingback``: a Normal ``HandedBackToTCP``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

import kopf

from socksplice.api.pods import PodRef, pod_ref_from_api
from socksplice.api.socketsplice import GROUP, PLURAL, VERSION
from socksplice.api.status import READY, SPLICENODE_PLURAL, timestamp
from socksplice.errors import InvalidSpec, SockspliceError
from socksplice.kubeapi import Kube
from socksplice.operator import benchmarks
from socksplice.operator.configuring import configure
from socksplice.operator.demoting import REASON as DEMOTED_REASON
from socksplice.operator.demoting import Demotions, Notice
from socksplice.operator.following import Body, Statuses, find_splice, splice_key
from socksplice.operator.handingback import REASON as HANDBACK_REASON
from socksplice.operator.handingback import Handbacks
from socksplice.operator.metrics import OperatorMetrics

log = logging.getLogger(__name__)

METRICS = OperatorMetrics()
RESYNC_SECONDS = 30.0
"""Seconds between recomputations of a SocketSplice from the indexes (no API reads): how late a
silent agent (heartbeat older than ``stale_after``, 120 s) is reported at most."""
BENCHMARK_POLL_SECONDS = 3.0
_kube: Kube | None = None


def kube() -> Kube:
    global _kube
    if _kube is None:
        _kube = Kube()
    return _kube


async def _write_status(namespace: str, name: str, status: Mapping[str, Any]) -> None:
    await asyncio.to_thread(kube().patch_socketsplice_status, namespace, name, status)


def _post(body: Body, line: str, bad: bool) -> None:
    (kopf.warn if bad else kopf.info)(kopf.Body(cast(Any, plain(body))), reason="Status", message=line)
    (log.warning if bad else log.info)("SocketSplice %s: %s", splice_key(body), line)


STATUSES = Statuses(_write_status, _post, METRICS)
DEMOTIONS = Demotions(started=datetime.now(UTC))
HANDBACKS = Handbacks(started=datetime.now(UTC))


def _post_notices(notices: list[Notice], splices: Mapping[str, Any], reason: str, warning: bool) -> None:
    """An Event ``reason`` (Warning or Normal) on each notice's SocketSplice (one no longer indexed
    is skipped): ``EndpointDemoted`` for demotions, ``HandedBackToTCP`` for policy handbacks."""
    for notice in notices:
        body = find_splice(splices, notice.policy)
        if body is None:
            continue
        (kopf.warn if warning else kopf.info)(
            kopf.Body(cast(Any, plain(body))), reason=reason, message=notice.message
        )
        (log.warning if warning else log.info)("SocketSplice %s: %s", notice.policy, notice.message)


@kopf.on.startup()
def _startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    configure(settings)


# --- indexes -----------------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """A kopf body view as plain dicts and lists (what the pure functions and the tests take)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


@kopf.index("", "v1", "pods")
def pods_by_namespace(body: kopf.Body, namespace: str | None, **_: Any) -> dict[str, PodRef]:
    """Every pod as ``PodRef`` under its namespace; a malformed pod is left out."""
    try:
        return {namespace or "": pod_ref_from_api(body)}
    except InvalidSpec:
        return {}


@kopf.index(GROUP, VERSION, SPLICENODE_PLURAL)
def splicenodes_by_name(name: str, status: kopf.Status, **_: Any) -> dict[str, dict[str, Any]]:
    """Each SpliceNode's status under its name (the node's)."""
    return {name: plain(status)}


@kopf.index(GROUP, VERSION, PLURAL)
def socketsplices_by_namespace(body: kopf.Body, namespace: str | None, **_: Any) -> dict[str, dict[str, Any]]:
    keep = ("apiVersion", "kind", "metadata", "spec", "status")
    return {namespace or "": {k: plain(body[k]) for k in keep if k in body}}


Indexes = Mapping[str, Any]


async def _refresh(keys: list[str], idx: Indexes) -> None:
    await asyncio.gather(
        *(
            STATUSES.refresh(
                k, idx["socketsplices_by_namespace"], idx["pods_by_namespace"], idx["splicenodes_by_name"]
            )
            for k in keys
        )
    )


def _indexes(kwargs: Mapping[str, Any]) -> Indexes:
    return {k: kwargs[k] for k in ("socketsplices_by_namespace", "pods_by_namespace", "splicenodes_by_name")}


# --- watches: what a Pod or SpliceNode change affects ------------------------------------------


@kopf.on.event("", "v1", "pods")
async def pod_event(namespace: str | None, **kwargs: Any) -> None:
    """A pod changed: the SocketSplices of its namespace (the only ones that can select it)."""
    idx = _indexes(kwargs)
    await _refresh([splice_key(b) for b in idx["socketsplices_by_namespace"].get(namespace or "", ())], idx)


@kopf.on.event(GROUP, VERSION, SPLICENODE_PLURAL)
async def splicenode_event(name: str, type: str | None, status: kopf.Status, **kwargs: Any) -> None:
    """A SpliceNode changed: Events for endpoints it newly reports demoted and for connections a
    NetworkPolicy change handed back to TCP, and the SocketSplices with pods on that node."""
    idx = _indexes(kwargs)
    current = None if type == "DELETED" else plain(status)
    splices = idx["socketsplices_by_namespace"]
    _post_notices(DEMOTIONS.update(name, current), splices, DEMOTED_REASON, warning=True)
    _post_notices(HANDBACKS.update(name, current), splices, HANDBACK_REASON, warning=False)
    await _refresh(STATUSES.on_node(name), idx)


# --- SocketSplice ------------------------------------------------------------------------------


@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
async def splice_changed(body: kopf.Body, **kwargs: Any) -> None:
    await _refresh([splice_key(body)], _indexes(kwargs))


@kopf.timer(GROUP, VERSION, PLURAL, interval=RESYNC_SECONDS, initial_delay=RESYNC_SECONDS)
async def splice_resync(body: kopf.Body, **kwargs: Any) -> None:
    await _refresh([splice_key(body)], _indexes(kwargs))


@kopf.on.delete(GROUP, VERSION, PLURAL)
def splice_deleted(body: kopf.Body, logger: Any, **_: Any) -> None:
    logger.info("deleted: agents detach the programs; live connections finish spliced")
    STATUSES.forget(splice_key(body))
    METRICS.count("SocketSplice", "deleted")


# --- SpliceBenchmark ---------------------------------------------------------------------------


def job_state(job: Mapping[str, Any] | None) -> str | None:
    """``Active``, ``Succeeded``, ``Failed``, or None when the Job does not exist."""
    if job is None:
        return None
    status = job.get("status") or {}
    if status.get("succeeded"):
        return "Succeeded"
    if status.get("failed"):
        return "Failed"
    return "Active"


def job_log(k: Kube, namespace: str, job: str) -> str:
    pods = k.list_pods(namespace, labels=f"job-name={job}").get("items") or []
    return k.pod_log(namespace, pods[0]["metadata"]["name"]) if pods else ""


def _seconds_since(stamp: Any, now: datetime) -> float:
    """Seconds from an RFC 3339 status time to ``now`` (0 when there is none or it is malformed)."""
    try:
        return max(0.0, (now - datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))).total_seconds())
    except (TypeError, ValueError):
        return 0.0


def observe(k: Kube, b: benchmarks.Benchmark, status: dict[str, Any], now: datetime) -> benchmarks.Facts:
    server = (
        k.list_pods(b.namespace, labels=f"{benchmarks.LABEL}={b.name},{benchmarks.ROLE_LABEL}=server").get(
            "items"
        )
        or []
    )
    s_status = (server[0].get("status") or {}) if server else {}
    plain_job = job_state(k.get_job(b.namespace, b.object_name("plain")))
    spliced = job_state(k.get_job(b.namespace, b.object_name("spliced")))
    splice = k.get_socketsplice(b.namespace, b.object_name("splice"))
    ready = None
    if splice is not None:
        st = splice.get("status") or {}
        conds = {c.get("type"): c.get("status") for c in st.get("conditions") or []}
        ready = conds.get(READY) == "True" and int(st.get("acceleratedPods") or 0) >= 1
    phase = status.get("phase")
    pending = phase in (None, benchmarks.Phase.PENDING) and s_status.get("phase") != "Running"
    return benchmarks.Facts(
        server_phase=str(s_status.get("phase", "Pending")) if server else None,
        server_ip=str(s_status.get("podIP") or ""),
        plain_job=plain_job,
        spliced_job=spliced,
        splice_ready=ready,
        plain_log=job_log(k, b.namespace, b.object_name("plain"))
        if plain_job == "Succeeded" and phase == benchmarks.Phase.RUNNING_PLAIN
        else "",
        spliced_log=job_log(k, b.namespace, b.object_name("spliced")) if spliced == "Succeeded" else "",
        node_exists=(k.get_node(b.node) is not None) if pending else None,
        waited=_seconds_since(status.get("phaseTime") or status.get("startTime"), now) if phase else 0.0,
        server_waiting=benchmarks.pod_waiting(s_status),
    )


_KIND_OF_ROLE = {"server": "Pod", "plain": "Job", "spliced": "Job", "splice": "SocketSplice"}


def benchmark_running(status: kopf.Status, **_: Any) -> bool:
    """The step timer's filter: a run that has not ended (kopf stops the timer once it has)."""
    return status.get("phase") not in (benchmarks.Phase.SUCCEEDED, benchmarks.Phase.FAILED)


@kopf.timer(GROUP, VERSION, benchmarks.PLURAL, interval=BENCHMARK_POLL_SECONDS, when=benchmark_running)
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
        step = benchmarks.advance(b, status, observe(k, b, status, datetime.now(UTC)))
        for obj in step.create:
            k.create(obj)
        for role in step.delete:
            k.delete(_KIND_OF_ROLE[role], b.namespace, b.object_name(role))
    except SockspliceError as exc:
        METRICS.count(benchmarks.KIND, "error")
        raise kopf.TemporaryError(str(exc), delay=10) from exc
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
        update["phaseTime"] = now
        failed = update.get("phase") == benchmarks.Phase.FAILED
        line = f"{update.get('phase')}: {update.get('message', '')}"
        (kopf.warn if failed else kopf.info)(body, reason="Phase", message=line)
        (logger.warning if failed else logger.info)(line)
    patch.status.update(update)
