"""Uninstall a node: stop new splicing, let spliced connections finish, then remove the pins.

Order (docs/architecture.md, safety rule 5; rule 4 forbids deleting live sockets from the SOCKHASH):
1. detach the sockops program from every cgroup the agent attached (and any given), and forget
   those pods' configuration: no new socket enters the map;
2. wait until the SOCKHASH is empty (the kernel removes each socket when it closes) or the
   bounded timeout passes;
3. remove the pins and report what was left. Connections still spliced at that point keep
   working: their psocks hold the sk_msg program, which holds the map, until they close.

``main(argv)`` is ``socksplice agent-drain``; it prints the report as JSON and exits 0 when
nothing was left, 3 when spliced sockets were still open at the timeout.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from socksplice.api.drain import DrainReport
from socksplice.bpf.loader import Datapath, DatapathSettings
from socksplice.errors import SockspliceError
from socksplice.nodeagent.reconciling import Reconciler
from socksplice.nodeagent.settings import AgentSettings
from socksplice.nodeagent.slots import SlotTable

log = logging.getLogger(__name__)

LEFT_OVER_EXIT = 3


@dataclass(frozen=True)
class DrainSettings:
    timeout: float = 300.0
    """Seconds to wait for spliced sockets to close before unpinning anyway."""
    interval: float = 0.5
    """Seconds between looks at the SOCKHASH."""


class DrainPort(Protocol):
    """The part of ``bpf.loader.Datapath`` a drain uses."""

    def detach(self, cgroup: Path) -> bool: ...
    def spliced_sockets(self) -> int: ...
    def unpin(self) -> list[str]: ...


class Drain:
    """One drain, advanced by its owner: detaching happens on construction, each ``step`` looks
    at the SOCKHASH once and, when it is empty or the timeout passed, unpins and returns the
    report. The agent's loop steps it between heartbeats; ``drain`` steps it with sleeps."""

    def __init__(
        self,
        datapath: DrainPort,
        reconciler: Reconciler,
        extra_cgroups: Iterable[Path] = (),
        settings: DrainSettings = DrainSettings(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._dp = datapath
        self._settings = settings
        self._clock = clock
        self.detached: list[str] = []
        self.errors: list[str] = []
        try:
            report = reconciler.detach_all()
            self.detached += report.detached
            self.errors += [f"pod {key}: {error}" for key, error in sorted(report.errors.items())]
        except SockspliceError as exc:
            self.errors.append(f"detach: {exc}")
        for cgroup in extra_cgroups:
            try:
                if datapath.detach(cgroup):
                    self.detached.append(str(cgroup))
            except SockspliceError as exc:
                self.errors.append(f"cgroup {cgroup}: detach: {exc}")
        self._start = clock()
        self.spliced_at_start = datapath.spliced_sockets()

    def step(self) -> DrainReport | None:
        """None while spliced sockets remain and the timeout has not passed; else the report."""
        left = self._dp.spliced_sockets()
        waited = self._clock() - self._start
        if left and waited < self._settings.timeout:
            return None
        if left:
            log.warning("drain: %d spliced sockets still open after %.0fs", left, self._settings.timeout)
        return DrainReport(
            detached=tuple(self.detached),
            spliced_at_start=self.spliced_at_start,
            spliced_left=left,
            waited_seconds=round(waited, 3),
            unpinned=tuple(self._dp.unpin()),
            errors=tuple(self.errors),
        )


def drain(
    datapath: DrainPort,
    reconciler: Reconciler,
    extra_cgroups: Iterable[Path] = (),
    settings: DrainSettings = DrainSettings(),
) -> DrainReport:
    """Drain now, waiting (bounded) in this thread."""
    running = Drain(datapath, reconciler, extra_cgroups, settings)
    while (report := running.step()) is None:
        time.sleep(settings.interval)
    return report


def drain_node(
    agent: AgentSettings, extra_cgroups: Iterable[Path] = (), settings: DrainSettings = DrainSettings()
) -> DrainReport:
    """Adopt the node's pinned data path and the agent's record of what it attached, then drain."""
    datapath = Datapath.load(agent.datapath)
    try:
        slots = SlotTable(agent.state_dir / "slots.json", agent.datapath.max_policies)
        reconciler = Reconciler(datapath, slots, agent.state_dir / "applied.json")
        return drain(datapath, reconciler, extra_cgroups, settings)
    finally:
        datapath.close()
        datapath.release_bpffs()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="socksplice agent-drain", description=__doc__)
    p.add_argument("--state-dir", type=Path, default=AgentSettings.state_dir, help="agent state")
    p.add_argument(
        "--bpffs", type=Path, default=DatapathSettings.pin_root, help="bpffs directory of the pins"
    )
    p.add_argument("--pin-name", default=DatapathSettings.name, help="pin subdirectory")
    p.add_argument("--cgroup", type=Path, action="append", default=[], help="also detach here (repeatable)")
    p.add_argument(
        "--timeout", type=float, default=DrainSettings.timeout, help="seconds (default: %(default)s)"
    )
    a = p.parse_args(argv)
    agent = AgentSettings(state_dir=a.state_dir, datapath=DatapathSettings(pin_root=a.bpffs, name=a.pin_name))
    try:
        report = drain_node(agent, a.cgroup, DrainSettings(timeout=a.timeout))
    except SockspliceError as exc:
        print(f"agent-drain: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report.to_dict(), indent=2))
    return 0 if report.complete else LEFT_OVER_EXIT


if __name__ == "__main__":
    sys.exit(main())
