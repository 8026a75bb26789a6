"""Python mirror of the ABI part of bpf/socksplice.h: what the agent reads and writes in the maps.

Every upper-case integer here is the header's ``SS_<NAME>`` (a define or a member of
``enum ss_counter``); ``COUNTERS`` lists ``enum ss_counter`` in order (``SS_C_<NAME>``); each
``ctypes.Structure`` names the C struct it mirrors in ``C_STRUCT``. tests/unit/test_bpf_abi.py
compiles the header and checks all of it, both ways: a change on one side only fails there.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import ClassVar

LAYOUT_VERSION = 7
"""Names the pin directory (``<pin_root>/<name>/v<LAYOUT_VERSION>``); bumped with every ABI change."""
MAX_PORTS = 16

POD_SPLICE_ALL = 0x1
POD_DRYRUN_ALL = 0x2
POD_AUTO_ALL = 0x4
ENDPOINT_SLOTS = 4096
V_SPLICE = 0x1
V_UNWATCHED = 0x2
V_SAMPLED = 0x4
SAMPLE_EVERY = 16

COUNTERS: tuple[str, ...] = (
    "sockets_added",
    "pairs_spliced",
    "pairs_dryrun",
    "pairs_audit",
    "pairs_port_skipped",
    "pairs_peer_unknown",
    "conns_unpaired",
    "msgs_redirected",
    "bytes_redirected",
    "msgs_fallback",
    "bytes_fallback",
    "fallback_unpaired",
    "fallback_ratchet",
    "fallback_redirect_error",
    "fallback_no_state",
    "fallback_backpressure",
    "backpressure_entered",
    "backpressure_resumed",
    "fallback_demoted",
    "policy_handbacks",
    "err_sockhash_update",
    "err_storage",
    "err_pairs_update",
    "no_pod_config",
    "err_watch",
)
"""``enum ss_counter`` in order, each ``SS_C_<NAME>`` in lower case."""
NR_COUNTERS = len(COUNTERS)

WOULD_KINDS: tuple[str, ...] = (
    "blocking_receive",
    "waitall",
    "rcvlowat",
    "splice",
    "close_unread",
    "fionread",
)
"""Receive patterns that tcp_bpf serves differently from TCP, seen on any watched socket."""
DID_KINDS: tuple[str, ...] = (
    "blocking_eagain",
    "waitall_short",
    "rcvlowat_short",
    "splice",
    "close_unread",
    "fionread",
)
"""Results an application got on a spliced socket that TCP would not have given."""
EVIDENCE: tuple[str, ...] = (
    "connections",
    "spliced_connections",
    "unwatched_connections",
    "receives",
    "bytes",
    *(f"would_{k}" for k in WOULD_KINDS),
    *(f"did_{k}" for k in DID_KINDS),
)
"""``enum ss_evidence`` in order, each ``SS_E_<NAME>`` in lower case: per-endpoint counts."""
NR_EVIDENCE = len(EVIDENCE)


class PodConfigStruct(ctypes.Structure):
    """struct ss_pod_config."""

    C_STRUCT: ClassVar[str] = "ss_pod_config"
    _fields_ = (
        ("flags", ctypes.c_uint32),
        ("policy_slot", ctypes.c_uint32),
        ("splice_ports", ctypes.c_uint16 * MAX_PORTS),
        ("dryrun_ports", ctypes.c_uint16 * MAX_PORTS),
        ("auto_ports", ctypes.c_uint16 * MAX_PORTS),
    )


class EndpointKeyStruct(ctypes.Structure):
    """struct ss_endpoint_key."""

    C_STRUCT: ClassVar[str] = "ss_endpoint_key"
    _fields_ = (
        ("server_netns", ctypes.c_uint64),
        ("client_netns", ctypes.c_uint64),
        ("port", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
    )


class VerdictStruct(ctypes.Structure):
    """struct ss_verdict."""

    C_STRUCT: ClassVar[str] = "ss_verdict"
    _fields_ = (("flags", ctypes.c_uint32), ("slot", ctypes.c_uint32))


class EvidenceStruct(ctypes.Structure):
    """struct ss_evidence_counts."""

    C_STRUCT: ClassVar[str] = "ss_evidence_counts"
    _fields_ = (("n", ctypes.c_uint64 * NR_EVIDENCE),)


@dataclass(frozen=True)
class PodDatapathConfig:
    """What the data path needs to know about one pod (its network namespace)."""

    policy_slot: int
    splice_all: bool = False
    splice_ports: tuple[int, ...] = ()
    dryrun_all: bool = False
    dryrun_ports: tuple[int, ...] = ()
    auto_all: bool = False
    auto_ports: tuple[int, ...] = ()

    def to_struct(self) -> PodConfigStruct:
        if max(len(self.splice_ports), len(self.dryrun_ports), len(self.auto_ports)) > MAX_PORTS:
            raise ValueError(f"at most {MAX_PORTS} ports per mode and pod")
        s = PodConfigStruct()
        s.flags = (
            (POD_SPLICE_ALL if self.splice_all else 0)
            | (POD_DRYRUN_ALL if self.dryrun_all else 0)
            | (POD_AUTO_ALL if self.auto_all else 0)
        )
        s.policy_slot = self.policy_slot
        for i, p in enumerate(sorted(self.splice_ports)):
            s.splice_ports[i] = p
        for i, p in enumerate(sorted(self.dryrun_ports)):
            s.dryrun_ports[i] = p
        for i, p in enumerate(sorted(self.auto_ports)):
            s.auto_ports[i] = p
        return s

    @classmethod
    def from_struct(cls, s: PodConfigStruct) -> PodDatapathConfig:
        return cls(
            policy_slot=int(s.policy_slot),
            splice_all=bool(s.flags & POD_SPLICE_ALL),
            splice_ports=tuple(int(p) for p in s.splice_ports if p),
            dryrun_all=bool(s.flags & POD_DRYRUN_ALL),
            dryrun_ports=tuple(int(p) for p in s.dryrun_ports if p),
            auto_all=bool(s.flags & POD_AUTO_ALL),
            auto_ports=tuple(int(p) for p in s.auto_ports if p),
        )
