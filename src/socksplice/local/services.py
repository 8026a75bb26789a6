"""ClusterIP-like services for local mode: iptables DNAT in the topology's node netns.

kube-proxy (iptables mode) rewrites pod-to-ClusterIP connections in the node's PREROUTING
chain. Local mode does the same in the run's *node* netns, where the bridge lives: pods route
everything via the gateway (their IPv4 addresses are /32), so both directions of a DNAT'ed
connection pass the node's conntrack with or without br_netfilter. Rules live in chains named
after the run (``SS-<id>`` from PREROUTING, ``SS-<id>-POST`` from POSTROUTING for hairpin
masquerade), so teardown removes exactly what was added.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from socksplice.errors import KernelError


@dataclass(frozen=True)
class ServiceRule:
    """One VIP:port -> pod ip:port mapping, resolved from a ServiceSpec."""

    name: str
    namespace: str
    vip: IPv4Address
    port: int
    target_ip: IPv4Address
    target_port: int


def chain_names(run_id: str) -> tuple[str, str]:
    """(DNAT chain jumped to from PREROUTING, masquerade chain jumped to from POSTROUTING)."""
    return f"SS-{run_id}", f"SS-{run_id}-POST"


def _iptables(netns_path: Path, args: Sequence[str], check: bool = True) -> bool:
    argv = ["nsenter", f"--net={netns_path}", "--", "iptables", "-w", "5", "-t", "nat", *args]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise KernelError(f"iptables {' '.join(args)} in {netns_path}: {proc.stderr.strip()}")
    return proc.returncode == 0


def _jumps(bridge: str, run_id: str) -> list[tuple[str, list[str]]]:
    dnat, post = chain_names(run_id)
    return [("PREROUTING", ["-i", bridge, "-j", dnat]), ("POSTROUTING", ["-o", bridge, "-j", post])]


def ensure_services(netns_path: Path, bridge: str, run_id: str, rules: Sequence[ServiceRule]) -> None:
    """Create (or rewrite) the run's chains and rules; running it twice converges."""
    dnat, post = chain_names(run_id)
    for chain in (dnat, post):
        _iptables(netns_path, ["-N", chain], check=False)
        _iptables(netns_path, ["-F", chain])
    for parent, spec in _jumps(bridge, run_id):
        if not _iptables(netns_path, ["-C", parent, *spec], check=False):
            _iptables(netns_path, ["-A", parent, *spec])
    for r in rules:
        comment = ["-m", "comment", "--comment", f"{r.namespace}/{r.name}"]
        match = ["-d", f"{r.vip}/32", "-p", "tcp", "--dport", str(r.port), *comment]
        _iptables(
            netns_path,
            ["-A", dnat, *match, "-j", "DNAT", "--to-destination", f"{r.target_ip}:{r.target_port}"],
        )
        # Hairpin: a pod reaching its own service must not see its own address as the source.
        hairpin = [
            "-s",
            f"{r.target_ip}/32",
            "-d",
            f"{r.target_ip}/32",
            "-p",
            "tcp",
            "--dport",
            str(r.target_port),
        ]
        _iptables(netns_path, ["-A", post, *hairpin, *comment, "-j", "MASQUERADE"])


def remove_services(netns_path: Path, bridge: str, run_id: str) -> None:
    """Delete the jumps and the run's chains; what is already gone is fine."""
    if not netns_path.exists():
        return
    for parent, spec in _jumps(bridge, run_id):
        while _iptables(netns_path, ["-D", parent, *spec], check=False):
            pass
    for chain in chain_names(run_id):
        if _iptables(netns_path, ["-F", chain], check=False):
            _iptables(netns_path, ["-X", chain])


def list_chains(netns_path: Path) -> list[str]:
    """The nat table's user chains in ``netns_path`` (for tests and cleanup checks)."""
    argv = ["nsenter", f"--net={netns_path}", "--", "iptables", "-w", "5", "-t", "nat", "-S"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False).stdout
    return [line.split()[1] for line in out.splitlines() if line.startswith("-N ")]
