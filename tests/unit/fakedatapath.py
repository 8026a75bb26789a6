"""An in-memory data path: the ``DatapathPort`` the reconciler drives plus the reading side of
``bpf.loader.Datapath`` the agent uses (counters, socket count, unpin). No kernel needed."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from socksplice.bpf.layout import PodDatapathConfig
from socksplice.bpf.loader import EndpointDecision
from socksplice.errors import KernelError


class FakeDatapath:
    def __init__(self) -> None:
        self.attached: set[Path] = set()
        self.pods: dict[int, PodDatapathConfig] = {}
        self.calls: list[tuple[str, object]] = []
        self.failing_detach: set[Path] = set()
        self.sockets = 0
        self.slot_counters: dict[int, dict[str, int]] = {}
        self.adopted = False
        self.load_seconds = 0.0
        self.unpinned = False
        self.on_attach: Callable[[Path], None] | None = None
        self.observation = ""
        self.endpoint_evidence: dict[tuple[int, int, int], dict[str, int]] = {}
        self.verdicts: dict[tuple[int, int, int], EndpointDecision] = {}
        self.demoted: set[int] = set()

    def attach(self, cgroup: Path) -> str:
        self.calls.append(("attach", cgroup))
        if self.on_attach is not None:
            self.on_attach(cgroup)
        outcome = "unchanged" if cgroup in self.attached else "attached"
        self.attached.add(cgroup)
        return outcome

    def detach(self, cgroup: Path) -> bool:
        self.calls.append(("detach", cgroup))
        if cgroup in self.failing_detach:
            raise KernelError(f"{cgroup}: BPF_PROG_DETACH: EBUSY")
        was = cgroup in self.attached
        self.attached.discard(cgroup)
        return was

    def set_pod(self, netns_cookie: int, config: PodDatapathConfig) -> None:
        self.calls.append(("set_pod", netns_cookie))
        self.pods[netns_cookie] = config

    def delete_pod(self, netns_cookie: int) -> bool:
        self.calls.append(("delete_pod", netns_cookie))
        return self.pods.pop(netns_cookie, None) is not None

    def counters(self) -> dict[int, dict[str, int]]:
        return {k: dict(v) for k, v in self.slot_counters.items()}

    def totals(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for values in self.slot_counters.values():
            for k, v in values.items():
                out[k] = out.get(k, 0) + v
        return out

    def spliced_sockets(self) -> int:
        return self.sockets

    def evidence(self) -> dict[tuple[int, int, int], dict[str, int]]:
        return {k: dict(v) for k, v in self.endpoint_evidence.items()}

    def set_verdicts(self, decided: Mapping[tuple[int, int, int], EndpointDecision]) -> None:
        self.verdicts = dict(decided)

    def set_demoted(self, slot: int, demoted: bool) -> None:
        (self.demoted.add if demoted else self.demoted.discard)(slot)

    def demoted_slots(self) -> set[int]:
        return set(self.demoted)

    def forget_endpoints(self, keys: list[tuple[int, int, int]]) -> None:
        for key in keys:
            self.endpoint_evidence.pop(key, None)
            self.verdicts.pop(key, None)

    def unpin(self) -> list[str]:
        self.unpinned = True
        return ["/sys/fs/bpf/socksplice/fake"]


def fake_cookie(netns: Path | None = None) -> int:
    """A stable stand-in for ``kernel.netns.cookie``: one cookie per netns path."""
    return sum(ord(c) * 31**i for i, c in enumerate(str(netns))) % (1 << 63)
