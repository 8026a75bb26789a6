"""``socksplice drain``: drain socksplice from every node of the cluster (the pre-delete hook).

Cluster form of ``socksplice agent-drain``. It annotates each SpliceNode with
``socksplice.io/drain-requested: <RFC 3339>`` and ``socksplice.io/drain-timeout-seconds`` (a
merge patch), then polls the SpliceNodes until each agent reports ``status.drain`` finished for
this request or the wait ends (the drain timeout plus ``REPORT_GRACE`` seconds). Each agent
stops attaching, detaches everywhere, waits up to the timeout for its SOCKHASH to empty, unpins
and reports ``Drained``, ``TimedOut`` (spliced sockets were left) or ``Failed``.

Exit 0 when every node drained, 3 when any node left sockets, failed or did not report in time,
1 on errors (API, credentials, unknown ``--node``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from socksplice import kubeapi
from socksplice.api.drain import DEFAULT_TIMEOUT, DrainPhase, DrainRequest, DrainStatus
from socksplice.api.status import timestamp
from socksplice.errors import SockspliceError

PENDING = "Pending"
"""No report for this request yet (the agent has not seen it, or has not started)."""
NO_REPORT = "NoReport"
"""The wait ended before the agent reported the drain finished."""
REPORT_GRACE = 30.0
"""Seconds past the drain timeout to wait for the agents' reports (they poll every 5 s)."""
POLL_SECONDS = 2.0
LEFT_OVER_EXIT = 3
ERROR_EXIT = 1
FINISHED_PHASES = frozenset(str(p) for p in DrainPhase if p.finished)


def drain_patch(requested: datetime, timeout: float) -> dict[str, Any]:
    """The merge patch that asks a SpliceNode's agent to drain."""
    return DrainRequest(requested, timeout).patch()


@dataclass(frozen=True)
class NodeDrain:
    node: str
    phase: str
    """A ``DrainPhase`` (``Draining``, ``Drained``, ``TimedOut``, ``Failed``) the agent reported,
    or ``Pending`` / ``NoReport`` (this command's own view: no report yet / none in time)."""
    sockets_left: int | None = None
    finished_at: str = ""
    message: str = ""

    @property
    def finished(self) -> bool:
        return self.phase in FINISHED_PHASES


def node_drain(splicenode: Mapping[str, Any], requested: datetime) -> NodeDrain:
    """What a SpliceNode reports about the drain requested at ``requested`` (or later)."""
    name = str((splicenode.get("metadata") or {}).get("name", ""))
    drain = DrainStatus.of(splicenode)
    if drain is None or drain.requested_at < requested:
        return NodeDrain(name, PENDING)
    return NodeDrain(
        name,
        str(drain.phase),
        drain.sockets_left,
        timestamp(drain.finished_at) if drain.finished_at else "",
        drain.message,
    )


def unanswered(drains: Iterable[NodeDrain], waited: float) -> list[NodeDrain]:
    """At the end of the wait: nodes that did not finish become ``NoReport``."""
    return [
        d
        if d.finished
        else NodeDrain(
            d.node,
            NO_REPORT,
            d.sockets_left,
            message=f"no finished drain after {waited:.0f}s (last: {d.phase})",
        )
        for d in drains
    ]


def exit_code(drains: Sequence[NodeDrain]) -> int:
    """0 when every node drained, 3 otherwise (sockets left, failed, or no report)."""
    return 0 if all(d.phase == DrainPhase.DRAINED for d in drains) else LEFT_OVER_EXIT


def summary(drains: Sequence[NodeDrain], requested: datetime, waited: float) -> dict[str, Any]:
    return {
        "requestedAt": timestamp(requested),
        "waitedSeconds": round(waited, 1),
        "drained": all(d.phase == DrainPhase.DRAINED for d in drains),
        "nodes": [asdict(d) for d in drains],
    }


def render_line(d: NodeDrain) -> str:
    left = "" if d.sockets_left is None else f"  {d.sockets_left} sockets left"
    return f"{d.node}  {d.phase}{left}{'  ' + d.message if d.message else ''}"


class Api:
    """SpliceNodes through ``kubeapi.Kube``: list (raw JSON dicts) and merge-patch."""

    def __init__(self) -> None:
        self.kube = kubeapi.Kube()

    def splicenodes(self) -> list[dict[str, Any]]:
        return list(self.kube.list_splicenodes().get("items") or [])

    def patch(self, name: str, body: dict[str, Any]) -> None:
        self.kube.patch_splicenode(name, body)


def select(objects: Iterable[Mapping[str, Any]], names: Sequence[str]) -> list[Mapping[str, Any]]:
    """The SpliceNodes named (all when ``names`` is empty); ValueError names the missing ones."""
    by_name = {str((o.get("metadata") or {}).get("name")): o for o in objects}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ValueError(f"no SpliceNode for: {', '.join(missing)}")
    return [by_name[n] for n in sorted(set(names) if names else by_name)]


def run(
    api: Any,
    names: Sequence[str],
    timeout: float,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[list[NodeDrain], datetime, float]:
    """Request the drain on the selected SpliceNodes and wait for their reports."""
    requested = now().replace(microsecond=0)
    chosen = [str(o["metadata"]["name"]) for o in select(api.splicenodes(), names)]
    for name in chosen:
        api.patch(name, drain_patch(requested, timeout))
    start = clock()
    deadline = start + timeout + REPORT_GRACE
    while True:
        objs = {str(o["metadata"]["name"]): o for o in api.splicenodes()}
        drains = [
            node_drain(objs[n], requested)
            if n in objs
            else NodeDrain(n, DrainPhase.FAILED, message="SpliceNode deleted")
            for n in chosen
        ]
        if all(d.finished for d in drains) or clock() >= deadline:
            break
        sleep(POLL_SECONDS)
    waited = clock() - start
    return unanswered(drains, waited), requested, waited


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="socksplice drain", description=__doc__)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--all-nodes", action="store_true", help="every SpliceNode")
    which.add_argument("--node", action="append", default=[], metavar="NAME", help="this node (repeatable)")
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help="seconds each agent waits for spliced sockets to close (default: %(default)s)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON summary")
    a = p.parse_args(argv)
    if a.timeout < 0:
        p.error("--timeout must be >= 0")
    return _main(a)


def _main(a: argparse.Namespace) -> int:
    try:
        kubeapi.load()
        drains, requested, waited = run(Api(), a.node, a.timeout)
    except (SockspliceError, OSError, ValueError) as exc:
        print(f"socksplice drain: {exc}", file=sys.stderr)
        return ERROR_EXIT
    if a.json:
        print(json.dumps(summary(drains, requested, waited), indent=2))
    else:
        if not drains:
            print("no SpliceNodes: nothing to drain")
        for d in drains:
            print(render_line(d))
    return exit_code(drains)


if __name__ == "__main__":
    sys.exit(main())
