"""Python mirror of bpf/socksplice.h: the one place that knows map and key layouts.

tests/kernel/test_datapath.py checks these against what bcc compiled from the header.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

LAYOUT_VERSION = 2
MAX_PORTS = 16

POD_SPLICE_ALL = 0x1
POD_DRYRUN_ALL = 0x2

SK_IN_MAP = 0x1
SK_TX_TCP = 0x2

# enum ss_counter, in order.
COUNTERS: tuple[str, ...] = (
    "sockets_added",
    "pairs_spliced",
    "pairs_dryrun",
    "pairs_port_skipped",
    "pairs_peer_unknown",
    "msgs_redirected",
    "bytes_redirected",
    "msgs_fallback",
    "bytes_fallback",
    "fallback_unpaired",
    "fallback_ratchet",
    "fallback_redirect_error",
    "fallback_no_state",
    "err_sockhash_update",
    "err_storage",
    "err_pairs_update",
    "no_pod_config",
    "fallback_backpressure",
    "backpressure_entered",
    "backpressure_resumed",
)
NR_COUNTERS = len(COUNTERS)

# Fallback reasons as they appear in metrics, keyed by counter name.
FALLBACK_REASONS: dict[str, str] = {
    "fallback_unpaired": "unpaired",
    "fallback_ratchet": "ratchet",
    "fallback_redirect_error": "redirect_error",
    "fallback_no_state": "no_state",
    "fallback_backpressure": "backpressure",
}


class PodConfigStruct(ctypes.Structure):
    """struct ss_pod_config."""

    _fields_ = (
        ("flags", ctypes.c_uint32),
        ("policy_slot", ctypes.c_uint32),
        ("splice_ports", ctypes.c_uint16 * MAX_PORTS),
        ("dryrun_ports", ctypes.c_uint16 * MAX_PORTS),
    )


@dataclass(frozen=True)
class PodDatapathConfig:
    """What the data path needs to know about one pod (its network namespace)."""

    policy_slot: int
    splice_all: bool = False
    splice_ports: tuple[int, ...] = ()
    dryrun_all: bool = False
    dryrun_ports: tuple[int, ...] = ()

    def to_struct(self) -> PodConfigStruct:
        if len(self.splice_ports) > MAX_PORTS or len(self.dryrun_ports) > MAX_PORTS:
            raise ValueError(f"at most {MAX_PORTS} ports per mode and pod")
        s = PodConfigStruct()
        s.flags = (POD_SPLICE_ALL if self.splice_all else 0) | (POD_DRYRUN_ALL if self.dryrun_all else 0)
        s.policy_slot = self.policy_slot
        for i, p in enumerate(sorted(self.splice_ports)):
            s.splice_ports[i] = p
        for i, p in enumerate(sorted(self.dryrun_ports)):
            s.dryrun_ports[i] = p
        return s

    @classmethod
    def from_struct(cls, s: PodConfigStruct) -> PodDatapathConfig:
        return cls(
            policy_slot=int(s.policy_slot),
            splice_all=bool(s.flags & POD_SPLICE_ALL),
            splice_ports=tuple(int(p) for p in s.splice_ports if p),
            dryrun_all=bool(s.flags & POD_DRYRUN_ALL),
            dryrun_ports=tuple(int(p) for p in s.dryrun_ports if p),
        )
