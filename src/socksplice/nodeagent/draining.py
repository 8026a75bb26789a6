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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

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


@dataclass
class DrainReport:
    detached: list[str] = field(default_factory=list)
    """Pods (namespace/name) and cgroups the program was detached from."""
    spliced_at_start: int = 0
    spliced_left: int = 0
    """Sockets still in the SOCKHASH when the pins were removed (0 after a complete drain)."""
    waited_seconds: float = 0.0
    unpinned: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.spliced_left == 0 and not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "complete": self.complete}


def wait_empty(count: Callable[[], int], settings: DrainSettings) -> tuple[int, float]:
    """Poll ``count`` until it is 0 or the timeout passes; returns (last count, seconds waited)."""
    start = time.monotonic()
    left = count()
    while left and time.monotonic() - start < settings.timeout:
        time.sleep(settings.interval)
        left = count()
    return left, time.monotonic() - start


def drain(
    datapath: Datapath,
    reconciler: Reconciler,
    extra_cgroups: Iterable[Path] = (),
    settings: DrainSettings = DrainSettings(),
) -> DrainReport:
    report = DrainReport()
    try:
        report.detached += reconciler.detach_all()
    except SockspliceError as exc:
        report.errors.append(f"detach: {exc}")
    for cgroup in extra_cgroups:
        try:
            if datapath.detach(cgroup):
                report.detached.append(str(cgroup))
        except SockspliceError as exc:
            report.errors.append(f"cgroup {cgroup}: detach: {exc}")
    report.spliced_at_start = datapath.spliced_sockets()
    report.spliced_left, report.waited_seconds = wait_empty(datapath.spliced_sockets, settings)
    report.waited_seconds = round(report.waited_seconds, 3)
    if report.spliced_left:
        log.warning("drain: %d spliced sockets still open after %.0fs", report.spliced_left, settings.timeout)
    report.unpinned = datapath.unpin()
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
