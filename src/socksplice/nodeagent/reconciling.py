"""Converge the kernel to the desired set of pod targets. Idempotent, ``ensure`` style.

Order matters for safety (docs/architecture.md, safety rules 4 and 6):
- to add a pod, write its configuration first, then attach the sockops program to its cgroup;
- to remove a pod, detach first (no new sockets enter), then delete its configuration. Sockets
  already spliced stay in the SOCKHASH and finish spliced; the kernel removes them on close.
Nothing here ever deletes a socket from the SOCKHASH.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from socksplice.api.planning import PodPlan
from socksplice.bpf.layout import PodDatapathConfig
from socksplice.errors import KernelError, SockspliceError
from socksplice.kernel import netns
from socksplice.nodeagent.slots import SlotTable
from socksplice.nodeagent.targets import PodLocation, PodTarget

log = logging.getLogger(__name__)


class DatapathPort(Protocol):
    """The part of bpf.loader.Datapath the reconciler uses."""

    def attach(self, cgroup: Path) -> str: ...
    def detach(self, cgroup: Path) -> bool: ...
    def set_pod(self, netns_cookie: int, config: PodDatapathConfig) -> None: ...
    def delete_pod(self, netns_cookie: int) -> bool: ...


@dataclass
class Applied:
    """What the reconciler last applied for one pod."""

    location: PodLocation
    cookie: int
    config: PodDatapathConfig


@dataclass
class ReconcileReport:
    attached: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    detached: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    attach_results: dict[str, int] = field(default_factory=dict)

    def count(self, result: str) -> None:
        self.attach_results[result] = self.attach_results.get(result, 0) + 1


def datapath_config(plan: PodPlan, slots: SlotTable) -> PodDatapathConfig:
    return PodDatapathConfig(
        policy_slot=slots.slot(plan.primary_policy),
        splice_all=plan.splice_all,
        splice_ports=tuple(sorted(plan.splice_ports)),
        dryrun_all=plan.dryrun_all,
        dryrun_ports=tuple(sorted(plan.dryrun_ports)),
        auto_all=plan.auto_all,
        auto_ports=tuple(sorted(plan.auto_ports)),
    )


_RENAMED_CONFIG_KEYS = {"enforce_all": "splice_all", "enforce_ports": "splice_ports"}


def _load_applied(path: Path | None) -> dict[str, Applied]:
    if path is None or not path.exists():
        return {}
    out = {}
    for key, raw in json.loads(path.read_text()).items():
        cfg = dict(raw["config"])
        for old, new in _RENAMED_CONFIG_KEYS.items():  # state written by agents before 0.2
            if old in cfg:
                cfg[new] = cfg.pop(old)
        cfg["splice_ports"] = tuple(cfg["splice_ports"])
        cfg["dryrun_ports"] = tuple(cfg["dryrun_ports"])
        cfg["auto_ports"] = tuple(cfg.get("auto_ports", ()))
        location = PodLocation(Path(raw["cgroup"]), Path(raw["netns"]))
        out[key] = Applied(location, int(raw["cookie"]), PodDatapathConfig(**cfg))
    return out


class Reconciler:
    """Applies pod targets; remembers what it applied in ``state_path`` so that a restarted agent
    detaches pods that stopped being selected while it was away."""

    def __init__(self, datapath: DatapathPort, slots: SlotTable, state_path: Path | None = None) -> None:
        self._dp = datapath
        self._slots = slots
        self._state_path = state_path
        self.applied: dict[str, Applied] = _load_applied(state_path)

    def _save(self) -> None:
        if self._state_path is None:
            return
        data = {
            key: {
                "cgroup": str(a.location.cgroup),
                "netns": str(a.location.netns),
                "cookie": a.cookie,
                "config": asdict(a.config),
            }
            for key, a in self.applied.items()
        }
        self._state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, sort_keys=True))
        os.replace(tmp, self._state_path)

    def reconcile(self, targets: Iterable[PodTarget]) -> ReconcileReport:
        report = ReconcileReport()
        desired = {t.key: t for t in targets}
        self._slots.release_except({p for t in desired.values() for p in t.plan.policies})
        for key in sorted(set(self.applied) - set(desired)):
            self._remove(key, report)
        for key, target in sorted(desired.items()):
            try:
                self._ensure(target, report)
            except SockspliceError as exc:
                report.errors[key] = str(exc)
                report.count("error")
                log.error("pod %s: attach failed: %s", key, exc)
        self._save()
        return report

    def _ensure(self, target: PodTarget, report: ReconcileReport) -> None:
        config = datapath_config(target.plan, self._slots)
        before = self.applied.get(target.key)
        if before is not None and before.location != target.location:
            # the pod was recreated under the same name: let go of the old one first
            if not self._remove(target.key, report):
                raise KernelError(f"the previous {before.location.cgroup} is still attached; retrying later")
            before = None
        cookie = before.cookie if before is not None else netns.cookie(target.location.netns)
        if before is None or before.config != config:
            self._dp.set_pod(cookie, config)
        outcome = self._dp.attach(target.location.cgroup)
        report.count(outcome)
        if before is None:
            report.attached.append(target.key)
            log.info("pod %s: attached: %s (netns cookie %d)", target.key, outcome, cookie)
        elif before.config != config:
            report.updated.append(target.key)
            log.info("pod %s: configuration updated", target.key)
        self.applied[target.key] = Applied(target.location, cookie, config)

    def _remove(self, key: str, report: ReconcileReport) -> bool:
        """Detach, then forget the configuration and the record. On a failed detach the record
        (and the configuration) stay, so later reconciles and the drain try again."""
        applied = self.applied[key]
        try:
            if applied.location.cgroup.exists():
                self._dp.detach(applied.location.cgroup)
        except KernelError as exc:
            report.errors[key] = f"detach failed: {exc}"
            report.count("error")
            log.error("pod %s: detach failed: %s; retrying on the next reconcile", key, exc)
            return False
        self._dp.delete_pod(applied.cookie)
        del self.applied[key]
        report.detached.append(key)
        report.count("detached")
        log.info("pod %s: detached: no new connections will be spliced; existing ones finish spliced", key)
        return True

    def detach_all(self) -> ReconcileReport:
        """Detach from every pod (drain and uninstall); pods whose detach failed are in ``errors``."""
        report = ReconcileReport()
        for key in sorted(self.applied):
            self._remove(key, report)
        self._save()
        return report
