"""Cluster mode's NetworkPolicies and Namespaces, kept current by two list+watch loops.

The agent needs every NetworkPolicy (a policy in any namespace may name this node's pods as
peers) and every Namespace's labels (``namespaceSelector`` peers); it reads nothing else of them.
The loops are ``source.run_watch``'s; ``policies`` refuses until both listed once, so the first
view the agent records is complete (``policywatch``). A policy the agent cannot read is reported
and left out.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from socksplice.api.netpolicy import NetworkPolicy, parse_network_policy
from socksplice.errors import InvalidSpec, TemporaryError
from socksplice.nodeagent.cluster.source import ListFn, WatchFn, run_watch
from socksplice.nodeagent.cluster.watching import WatchState
from socksplice.nodeagent.policywatch import PolicySnapshot


def _kube_fns() -> tuple[ListFn, WatchFn, ListFn, WatchFn]:
    from socksplice.kubeapi import Kube

    kube = Kube()
    return kube.list_networkpolicies, kube.watch_networkpolicies, kube.list_namespaces, kube.watch_namespaces


def parse_policies(objects: list[Mapping[str, Any]], namespaces: list[Mapping[str, Any]]) -> PolicySnapshot:
    """The watched objects as the policy watch takes them."""
    policies: list[NetworkPolicy] = []
    errors: list[InvalidSpec] = []
    for obj in objects:
        meta = obj.get("metadata") or {}
        try:
            policies.append(
                parse_network_policy(
                    {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", **obj},
                    f"networkpolicy {meta.get('namespace')}/{meta.get('name')}",
                )
            )
        except InvalidSpec as exc:
            errors.append(exc)
    labels = {
        str((ns.get("metadata") or {}).get("name")): {
            str(k): str(v) for k, v in ((ns.get("metadata") or {}).get("labels") or {}).items()
        }
        for ns in namespaces
    }
    return PolicySnapshot(tuple(policies), labels, tuple(errors))


class ClusterPolicies:
    def __init__(self, fns: tuple[ListFn, WatchFn, ListFn, WatchFn] | None = None) -> None:
        self.netpols = WatchState()
        self.namespaces = WatchState()
        self.stop = threading.Event()
        self._fns = fns
        self._parsed: tuple[tuple[int, int], PolicySnapshot] | None = None

    def start(self) -> None:
        list_np, watch_np, list_ns, watch_ns = self._fns or _kube_fns()
        for name, lf, wf, state in (
            ("networkpolicies", list_np, watch_np, self.netpols),
            ("namespaces", list_ns, watch_ns, self.namespaces),
        ):
            threading.Thread(
                target=run_watch, args=(name, lf, wf, state, self.stop), name=f"watch-{name}", daemon=True
            ).start()

    def close(self) -> None:
        self.stop.set()

    def policies(self) -> PolicySnapshot:
        if not (self.netpols.synced and self.namespaces.synced):
            raise TemporaryError("cluster: waiting for the first list of NetworkPolicies and Namespaces")
        version = (self.netpols.generation, self.namespaces.generation)
        if self._parsed is None or self._parsed[0] != version:
            snap = parse_policies(list(self.netpols.objects.values()), list(self.namespaces.objects.values()))
            self._parsed = (version, snap)
        return self._parsed[1]
