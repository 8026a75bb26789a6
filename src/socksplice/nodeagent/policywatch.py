"""Hand spliced connections back to TCP when a NetworkPolicy that could affect their pods changes.

Each step the agent gives the pods it has attached; this module works out each pod's view (the
NetworkPolicies that could affect it, ``api.netpolicy``) and, when any attached pod's view changed
since the previous step, bumps the data path's policy epoch: every connection established before
then sends through TCP from its next message on (sk_msg.c), where the CNI enforces policy per
packet. New connections are admitted by their handshake, through the CNI, as always
(docs/networkpolicy.md). The views are kept in the agent's state directory, so the first step
after a restart compares with what the agent last saw and hands back for a change made while it
was down. With no views on record (a first start) the first step only records them; with views on
record that cannot be read, it hands back every located pod's connections (it cannot check).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from socksplice.api.netpolicy import (
    NetworkPolicy,
    PolicyView,
    changed_views,
    policy_view,
)
from socksplice.api.pods import PodRef
from socksplice.errors import InvalidSpec
from socksplice.local import netpolicies

log = logging.getLogger(__name__)

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


@dataclass(frozen=True)
class PolicySnapshot:
    policies: tuple[NetworkPolicy, ...] = ()
    namespaces: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Each namespace's labels; a namespace not listed is given only its name label."""
    errors: tuple[InvalidSpec, ...] = ()


class PolicySource(Protocol):
    def policies(self) -> PolicySnapshot: ...


class EpochPort(Protocol):
    def bump_policy_epoch(self) -> int: ...


class ChangeWatch(Protocol):
    def changed(self, directory: Path) -> bool: ...


class LocalPolicies:
    """Local mode: NetworkPolicies from ``<dir>/networkpolicies/``; namespaces carry only their
    ``kubernetes.io/metadata.name`` label (there are no Namespace objects locally). The directory
    is parsed again only when ``watch`` (``localsource.watch_local``, inotify) saw it change;
    without a watch, on every call."""

    def __init__(self, directory: Path, watch: ChangeWatch | None = None) -> None:
        self.directory = directory / netpolicies.NETWORK_POLICIES_DIR
        self.watch = watch
        self._snapshot: PolicySnapshot | None = None

    def policies(self) -> PolicySnapshot:
        changed = self.watch is None or self.watch.changed(self.directory)
        if changed or self._snapshot is None:
            policies, errors = netpolicies.load_dir(self.directory)
            self._snapshot = PolicySnapshot(tuple(policies), {}, tuple(errors))
        return self._snapshot


@dataclass(frozen=True)
class Handback:
    """One bump of the epoch: when (agent clock), and the pods with the reason."""

    at: float
    pods: Mapping[str, str]


VIEWS_FORMAT = 1
CARRY_SECONDS = 300.0
"""How long views on record are kept for pods not located since the start (a pod located later
is compared with them); after that a pod not seen is gone from this node."""
UNREADABLE_VIEWS = "the NetworkPolicies last seen before a restart could not be read"


class _Unreadable(Exception):
    pass


def _load_views(path: Path) -> dict[str, PolicyView] | None:
    """The views on record; None when there are none; raises _Unreadable when they cannot be read."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise _Unreadable(str(e)) from e
    try:
        data = json.loads(text)
        if data["version"] != VIEWS_FORMAT:
            raise ValueError(f"format {data['version']}")
        return {str(k): frozenset((str(a), str(b)) for a, b in v) for k, v in data["views"].items()}
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise _Unreadable(f"{type(e).__name__}: {e}") from e


def _save_views(path: Path, views: Mapping[str, PolicyView]) -> None:
    data = {"version": VIEWS_FORMAT, "views": {k: sorted(v) for k, v in sorted(views.items())}}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, sort_keys=True))
    os.replace(tmp, path)


class PolicyWatch:
    """``state_file``: where the views are kept across restarts (None: in memory only, so the
    first step after a start only records them)."""

    def __init__(self, source: PolicySource, datapath: EpochPort, state_file: Path | None = None) -> None:
        self.source = source
        self.datapath = datapath
        self.state_file = state_file
        self.views: dict[str, PolicyView] | None = None
        self._carried: dict[str, PolicyView] = {}
        self._carry_until: float | None = None
        self._unreadable = ""
        if state_file is not None:
            try:
                self.views = _load_views(state_file)
                self._carried = dict(self.views or {})
            except _Unreadable as e:
                log.warning(
                    "networkpolicy: views %s unreadable (%s): handing back at the first look", state_file, e
                )
                self._unreadable = str(e)
        self._saved: dict[str, PolicyView] | None = dict(self.views) if self.views is not None else None
        self.handbacks = 0
        self.last: Handback | None = None
        self.errors: tuple[InvalidSpec, ...] = ()

    def step(self, pods: list[PodRef], now: float) -> Handback | None:
        snap = self.source.policies()
        if snap.errors != self.errors:
            for err in snap.errors:
                log.error("networkpolicy: not read (treated as absent): %s", err)
        self.errors = snap.errors
        namespaces = {
            p.namespace: {NAMESPACE_NAME_LABEL: p.namespace, **snap.namespaces.get(p.namespace, {})}
            for p in pods
        }
        views = {p.key: policy_view(p, snap.policies, namespaces) for p in pods}
        if self._carry_until is None:
            self._carry_until = now + CARRY_SECONDS
        before = self.views
        if before is not None and self._carried:
            # views on record for pods not located since the start: compare when they appear
            before = {**self._carried, **before}
        for key in views:
            self._carried.pop(key, None)
        if now >= self._carry_until:
            self._carried = {}
        self.views = views
        handback = self._hand_back(before, views, pods, now)
        kept = {**self._carried, **views}
        if self.state_file is not None and kept != self._saved:
            _save_views(self.state_file, kept)  # after the bump: a failed write loses no handback
            self._saved = kept
        return handback

    def _hand_back(
        self,
        before: Mapping[str, PolicyView] | None,
        views: Mapping[str, PolicyView],
        pods: list[PodRef],
        now: float,
    ) -> Handback | None:
        if self._unreadable:
            self._unreadable = ""
            changed = {p.key: UNREADABLE_VIEWS for p in pods}
        elif before is None:
            return None
        else:
            changed = changed_views(before, views)
        if not changed:
            return None
        epoch = self.datapath.bump_policy_epoch()
        self.handbacks += 1
        self.last = Handback(now, changed)
        for key, reason in sorted(changed.items()):
            log.warning("pod %s: spliced connections handed back to TCP (epoch %d): %s", key, epoch, reason)
        return self.last
