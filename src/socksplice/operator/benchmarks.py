"""SpliceBenchmark: the objects a run creates, the client's output, the result table. Pure.

A run is one sslg server Pod and two client Jobs pinned to ``spec.nodeName``: the *plain* Job
runs while nothing selects the benchmark's pods; then the operator creates a SocketSplice that
selects them (label ``socksplice.io/benchmark``) and, once it is Ready, the *spliced* Job runs the
same workloads. Each workload gets its own server port (``BASE_PORT + index``) in the server Pod
(one container per workload, ``sslg server --mode rr|sink``). The client prints one line per
workload, ``RESULT <name> <sslg JSON>``, which ``parse_client_log`` reads back. ``advance`` is
the state machine the kopf handler drives (``operator/handlers.py``). A run on a node that does
not exist fails at once; one whose server Pod does not run, or whose SocketSplice does not become
Ready, within ``startTimeoutSeconds`` fails with what it waited for.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from socksplice.api.socketsplice import API_VERSION, GROUP
from socksplice.errors import InvalidSpec

KIND = "SpliceBenchmark"
PLURAL = "splicebenchmarks"
LABEL = f"{GROUP}/benchmark"
ROLE_LABEL = f"{GROUP}/benchmark-role"
BASE_PORT = 9400
RESULT_PREFIX = "RESULT"
START_TIMEOUT_SECONDS = 300


class Phase(StrEnum):
    PENDING = "Pending"
    RUNNING_PLAIN = "RunningPlain"
    SPLICING = "Splicing"
    RUNNING_SPLICED = "RunningSpliced"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@dataclass(frozen=True)
class Workload:
    name: str
    type: str  # rr | stream
    size: int
    rounds: int = 20000


@dataclass(frozen=True)
class Benchmark:
    name: str
    namespace: str
    uid: str
    node: str
    image: str
    duration: int = 10
    settle: int = 5
    start_timeout: int = START_TIMEOUT_SECONDS
    workloads: tuple[Workload, ...] = ()

    def object_name(self, role: str) -> str:
        """Name of an object this run owns (``<benchmark>-server``, ``-plain``, ``-spliced``, ``-splice``)."""
        return f"{self.name[: 63 - len(role) - 1]}-{role}"


def parse_benchmark(body: Mapping[str, Any]) -> Benchmark:
    """The spec as the API server stores it (defaults applied). Raises InvalidSpec."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    source = f"SpliceBenchmark {meta.get('namespace')}/{meta.get('name')}"
    for required in ("nodeName", "image"):
        if not spec.get(required):
            raise InvalidSpec(f"spec.{required}", "required", source)
    workloads = []
    for i, w in enumerate(spec.get("workloads") or []):
        if w.get("type") not in ("rr", "stream"):
            raise InvalidSpec(f"spec.workloads[{i}].type", "must be rr or stream", source)
        workloads.append(
            Workload(str(w["name"]), str(w["type"]), int(w["size"]), int(w.get("rounds", 20000)))
        )
    if not workloads:
        raise InvalidSpec("spec.workloads", "list at least one workload", source)
    return Benchmark(
        name=str(meta["name"]),
        namespace=str(meta.get("namespace") or "default"),
        uid=str(meta.get("uid", "")),
        node=str(spec["nodeName"]),
        image=str(spec["image"]),
        duration=int(spec.get("durationSeconds", 10)),
        settle=int(spec.get("settleSeconds", 5)),
        start_timeout=int(spec.get("startTimeoutSeconds", START_TIMEOUT_SECONDS)),
        workloads=tuple(workloads),
    )


# ---------------------------------------------------------------------------------------------
# Objects


def _owner(b: Benchmark) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": b.name,
            "uid": b.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def _meta(b: Benchmark, role: str) -> dict[str, Any]:
    return {
        "name": b.object_name(role),
        "namespace": b.namespace,
        "labels": {LABEL: b.name, ROLE_LABEL: role, "app.kubernetes.io/part-of": "socksplice"},
        "ownerReferences": _owner(b),
    }


def server_pod(b: Benchmark) -> dict[str, Any]:
    """One container per workload: ``sslg server`` in rr or sink mode on its own port."""
    containers = [
        {
            "name": w.name,
            "image": b.image,
            "command": ["sslg", "server", "--port", str(BASE_PORT + i), "--mode", _server_mode(w)],
            "ports": [{"containerPort": BASE_PORT + i, "protocol": "TCP"}],
        }
        for i, w in enumerate(b.workloads)
    ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _meta(b, "server"),
        "spec": {"nodeName": b.node, "restartPolicy": "Never", "containers": containers},
    }


def _server_mode(w: Workload) -> str:
    return "rr" if w.type == "rr" else "sink"


def client_command(b: Benchmark, host: str, wait: int) -> str:
    """The client's shell script: every workload once, one ``RESULT`` line each."""
    lines = ["set -e"]
    if wait:
        lines.append(f"sleep {wait}")
    h = shlex.quote(host)
    for i, w in enumerate(b.workloads):
        port = BASE_PORT + i
        if w.type == "rr":
            args = f"rr --host {h} --port {port} --req {w.size} --resp {w.size} --count {w.rounds}"
        else:
            args = f"stream --host {h} --port {port} --write {w.size} --seconds {b.duration}"
        lines.append(f'out=$(sslg {args} | tail -n 1); echo "{RESULT_PREFIX} {w.name} $out"')
    return "\n".join(lines)


def client_job(b: Benchmark, run: str, server_ip: str) -> dict[str, Any]:
    """The client Job of ``run`` (``plain`` or ``spliced``), pinned to the benchmark's node."""
    wait = b.settle if run == "spliced" else 0
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(b, run),
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": {LABEL: b.name, ROLE_LABEL: run}},
                "spec": {
                    "nodeName": b.node,
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "client",
                            "image": b.image,
                            "command": ["sh", "-c", client_command(b, server_ip, wait)],
                        }
                    ],
                },
            },
        },
    }


def benchmark_splice(b: Benchmark) -> dict[str, Any]:
    """The SocketSplice that selects this run's pods (server and the spliced client)."""
    return {
        "apiVersion": API_VERSION,
        "kind": "SocketSplice",
        "metadata": _meta(b, "splice"),
        "spec": {"podSelector": {"matchLabels": {LABEL: b.name}}, "mode": "SpliceRelaxedReceive"},
    }


# ---------------------------------------------------------------------------------------------
# Results


def parse_client_log(text: str, workloads: Sequence[Workload]) -> dict[str, dict[str, Any]]:
    """sslg's JSON for each workload from the client's log. Raises InvalidSpec on a missing line."""
    found: dict[str, dict[str, Any]] = {}
    for line in text.splitlines():
        parts = line.strip().split(" ", 2)
        if len(parts) == 3 and parts[0] == RESULT_PREFIX:
            try:
                value = json.loads(parts[2])
            except ValueError:
                continue
            if isinstance(value, dict):
                found[parts[1]] = value
    missing = [w.name for w in workloads if w.name not in found]
    if missing:
        raise InvalidSpec("(log)", f"no result for {', '.join(missing)}", "benchmark client")
    return {w.name: found[w.name] for w in workloads}


METRICS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "rr": (("p50_us", "us", "lower"), ("p99_us", "us", "lower")),
    "stream": (("gbit_per_s", "Gbit/s", "higher"),),
}


def results_table(
    workloads: Sequence[Workload],
    plain: Mapping[str, Mapping[str, Any]],
    spliced: Mapping[str, Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """One row per workload and metric: plain, spliced and spliced/plain."""
    rows = []
    for w in workloads:
        for metric, unit, better in METRICS[w.type]:
            a, b = float(plain[w.name][metric]), float(spliced[w.name][metric])
            row: dict[str, Any] = {
                "workload": w.name,
                "metric": metric,
                "unit": unit,
                "better": better,
                "plain": a,
                "spliced": b,
            }
            if a > 0:
                row["ratio"] = round(b / a, 3)
            rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------
# The state machine


@dataclass(frozen=True)
class Facts:
    """What the handler observed of the run's objects (``None``: the object does not exist)."""

    server_phase: str | None = None
    server_ip: str = ""
    plain_job: str | None = None  # Active | Succeeded | Failed
    spliced_job: str | None = None
    splice_ready: bool | None = None
    plain_log: str = ""
    spliced_log: str = ""
    node_exists: bool | None = None  # None: not looked up (only while Pending)
    waited: float = 0.0
    """Seconds the run has been in its current phase."""
    server_waiting: str = ""
    """Why the server Pod is not running yet (``pod_waiting``), when it is not."""


def pod_waiting(status: Mapping[str, Any]) -> str:
    """Why a Pod is not running, from its status: a waiting container's reason and message, or
    an unmet condition's (``""`` when the status says nothing)."""
    for c in status.get("containerStatuses") or []:
        waiting = (c.get("state") or {}).get("waiting")
        if waiting:
            return ": ".join(str(v) for v in (waiting.get("reason"), waiting.get("message")) if v)
    for cond in status.get("conditions") or []:
        if cond.get("status") == "False" and (cond.get("reason") or cond.get("message")):
            return ": ".join(str(v) for v in (cond.get("reason"), cond.get("message")) if v)
    return ""


@dataclass
class Step:
    """What to do now: objects to create, roles to delete, and the status patch."""

    status: dict[str, Any]
    create: list[dict[str, Any]] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)


OWNED_ROLES = ("server", "plain", "spliced", "splice")


def _fail(message: str) -> Step:
    return Step({"phase": Phase.FAILED.value, "message": message}, delete=list(OWNED_ROLES))


def advance(b: Benchmark, status: Mapping[str, Any], facts: Facts) -> Step:
    """The next step of a run from its status and the observed facts. Idempotent."""
    phase = Phase(status.get("phase") or Phase.PENDING.value)
    if phase in (Phase.SUCCEEDED, Phase.FAILED):
        return Step({})
    if facts.server_phase in ("Failed", "Succeeded"):
        return _fail(f"server pod {facts.server_phase.lower()}")
    timed_out = facts.waited >= b.start_timeout
    if phase is Phase.PENDING:
        if facts.node_exists is False:
            return _fail(f"node {b.node} does not exist (spec.nodeName)")
        if timed_out and facts.server_phase != "Running":
            why = f": {facts.server_waiting}" if facts.server_waiting else ""
            return _fail(f"server pod {b.object_name('server')} not running after {b.start_timeout}s{why}")
        if facts.server_phase is None:
            return Step({"phase": Phase.PENDING.value, "message": "starting the server"}, [server_pod(b)])
        if facts.server_phase == "Running" and facts.server_ip:
            return Step(
                {"phase": Phase.RUNNING_PLAIN.value, "message": "plain TCP run"},
                [client_job(b, "plain", facts.server_ip)],
            )
        return Step({})
    if phase is Phase.RUNNING_PLAIN:
        if facts.plain_job == "Failed":
            return _fail("plain client job failed")
        if facts.plain_job != "Succeeded":
            return Step({})
        try:
            plain = parse_client_log(facts.plain_log, b.workloads)
        except InvalidSpec as exc:
            return _fail(f"plain run: {exc}")
        return Step(
            {"phase": Phase.SPLICING.value, "message": "waiting for the agent to attach", "plain": plain},
            [benchmark_splice(b)],
        )
    if phase is Phase.SPLICING:
        if facts.splice_ready:
            return Step(
                {"phase": Phase.RUNNING_SPLICED.value, "message": "spliced run"},
                [client_job(b, "spliced", facts.server_ip)],
            )
        if timed_out:
            return _fail(
                f"SocketSplice {b.object_name('splice')} not Ready after {b.start_timeout}s: "
                f"is the socksplice agent running on {b.node}?"
            )
        return Step({})
    # RUNNING_SPLICED
    if facts.spliced_job == "Failed":
        return _fail("spliced client job failed")
    if facts.spliced_job != "Succeeded":
        return Step({})
    try:
        spliced = parse_client_log(facts.spliced_log, b.workloads)
        rows = results_table(b.workloads, status.get("plain") or {}, spliced)
    except (InvalidSpec, KeyError, TypeError, ValueError) as exc:
        return _fail(f"spliced run: {exc}")
    return Step(
        {"phase": Phase.SUCCEEDED.value, "message": f"{len(rows)} results", "results": rows},
        delete=list(OWNED_ROLES),
    )
