"""Auto mode's turn in the agent loop: the data path's evidence in, verdicts out.

Each loop turn reads what the observation programs counted per endpoint (a server pod's port and
one client pod), names the pods by the network namespace cookies the reconciler applied, lets the
endpoint table decide (``verdicts``), and writes the decisions back: the promoted endpoints into
the data path's ``verdicts`` map (their new connections are spliced; Demoted endpoints' are not
watched, sampled ones' one in ``SAMPLE_EVERY``), a fresh demotion flag for a
slot given to a new endpoint, the flag set for every demoted endpoint that holds one (its live
connections move to TCP at their next send; the observation programs set it themselves at once
when a spliced connection shows a difference). See docs/auto.md.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Protocol

from socksplice.api.nodestatus import EndpointStatus
from socksplice.api.planning import PodPlan
from socksplice.api.socketsplice import AutoSpec, Mode
from socksplice.bpf.loader import EndpointDecision, EndpointTuple
from socksplice.nodeagent.endpoints import Change, EndpointTable
from socksplice.nodeagent.verdicts import EndpointKey, EndpointRecord, did_differ, transition, would_differ

log = logging.getLogger(__name__)

_ORDER = {Mode.DRY_RUN: 1, Mode.AUTO: 2, Mode.SPLICE: 3}


class DecidingPort(Protocol):
    """The part of ``bpf.loader.Datapath`` Auto uses."""

    observation: str

    def evidence(self) -> dict[EndpointTuple, dict[str, int]]: ...
    def set_verdicts(self, decided: Mapping[EndpointTuple, EndpointDecision]) -> None: ...
    def set_demoted(self, slot: int, demoted: bool) -> None: ...
    def demoted_slots(self) -> set[int]: ...
    def forget_endpoints(self, keys: list[EndpointTuple]) -> None: ...


def connection_mode(server: PodPlan, client: PodPlan, port: int) -> Mode | None:
    """The mode of a connection to ``port``: the lesser of its two ends' (as sockops takes it)."""
    modes = [server.mode_for_port(port), client.mode_for_port(port)]
    if None in modes:
        return None
    return min((m for m in modes if m is not None), key=_ORDER.__getitem__)


class Deciding:
    """Owned by the loop thread; :attr:`endpoints` is replaced whole, so other threads may read it."""

    def __init__(self, datapath: DecidingPort, table: EndpointTable) -> None:
        self._dp = datapath
        self.table = table
        self.endpoints: tuple[EndpointStatus, ...] = ()

    def step(self, pods: Mapping[int, str], plans: Mapping[str, PodPlan], now: float) -> list[Change]:
        """One turn. ``pods``: netns cookie -> pod key of the applied pods; ``plans`` by pod key."""
        raw = self._dp.evidence()
        evidence = {EndpointKey(*k): v for k, v in raw.items()}

        def policy_for(key: EndpointKey) -> tuple[str, Mode, AutoSpec] | None:
            server, client = pods.get(key.server_netns), pods.get(key.client_netns)
            if server is None or client is None or server not in plans or client not in plans:
                return None
            mode = connection_mode(plans[server], plans[client], key.port)
            if mode is None:
                return None
            return plans[server].primary_policy, mode, plans[server].auto

        observation = self._dp.observation
        changes = self.table.update(evidence, policy_for=policy_for, observation=observation, now=now)
        for c in changes:
            if c.new is not None and c.new.slot and (c.old is None or c.old.slot != c.new.slot):
                self._dp.set_demoted(c.new.slot, False)  # a slot given anew starts undemoted
        flagged = self._dp.demoted_slots()
        for slot in self.table.demoted_slots() - flagged:
            self._dp.set_demoted(slot, True)
        decided = self.table.datapath_verdicts()
        self._dp.set_verdicts({(k.server_netns, k.client_netns, k.port): d for k, d in decided.items()})
        gone = [k for k in raw if self.table.get(EndpointKey(*k)) is None]
        if gone:
            self._dp.forget_endpoints(gone)
        for c in changes:
            what = transition(c.old, c.new)
            if what is not None and c.new is not None:
                log.info("endpoint %s: %s: %s", self._name(c.new, pods), what, c.new.reason)
        self.endpoints = tuple(self._status(r, pods) for r in self.table.records())
        return changes

    @staticmethod
    def _name(r: EndpointRecord, pods: Mapping[int, str]) -> str:
        server = pods.get(r.key.server_netns, f"netns:{r.key.server_netns}")
        client = pods.get(r.key.client_netns, f"netns:{r.key.client_netns}")
        return f"{client} -> {server}:{r.key.port}"

    @staticmethod
    def _status(r: EndpointRecord, pods: Mapping[int, str]) -> EndpointStatus:
        counts = r.last_counts
        return EndpointStatus(
            server=pods.get(r.key.server_netns, ""),
            client=pods.get(r.key.client_netns, ""),
            port=r.key.port,
            policy=r.policy,
            mode=r.mode.value,
            verdict=r.verdict.value,
            reason=r.reason,
            since=datetime.fromtimestamp(r.since, UTC),
            connections=counts.get("connections", 0) + counts.get("unwatched_connections", 0),
            spliced_connections=counts.get("spliced_connections", 0),
            messages=counts.get("receives", 0),
            bytes=counts.get("bytes", 0),
            would_differ=would_differ(counts),
            did_differ=did_differ(counts),
        )
