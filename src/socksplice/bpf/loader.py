"""Load, pin and attach socksplice's BPF programs; read and write their maps.

Lifecycle (docs/architecture.md, safety rule 5): maps are pinned under ``<pin_root>/<name>/v<layout>``; a new
loader adopts existing pins instead of creating maps, so an agent restart or upgrade keeps every
spliced socket and its state. Programs are replaced, never the maps. The sk_msg program is
attached to the SOCKHASH (the map holds it); the sockops program is attached per pod cgroup
with flags 0, so a cgroup holds at most one socksplice program and re-attaching replaces it.
Programs attached this way outlive the loading process: ``detach`` is explicit.

bcc compiles and loads in a short-lived child (:mod:`socksplice.bpf.compiling`), which hands the
loaded programs back as fds and exits; this process opens the maps at their pins and does
everything else with bpf(2) itself, so it never holds the compiler (docs/architecture.md, "A lean
agent").
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

from socksplice.bpf.compiling import Reply, settings_to_json
from socksplice.bpf.layout import (
    COUNTERS,
    ENDPOINT_SLOTS,
    EVIDENCE,
    LAYOUT_VERSION,
    NR_COUNTERS,
    V_SPLICE,
    EndpointKeyStruct,
    EvidenceStruct,
    PodConfigStruct,
    PodDatapathConfig,
    VerdictStruct,
)
from socksplice.bpf.programs import PINNED_MAPS
from socksplice.bpf.programs import DatapathSettings as DatapathSettings
from socksplice.errors import KernelError, KernelUnsupported
from socksplice.kernel import bpffs, bpfsys
from socksplice.kernel.bpfmaps import BpfMap

log = logging.getLogger(__name__)

EndpointTuple = tuple[int, int, int]
"""(server netns cookie, client netns cookie, server port): an endpoint as the data path keys it."""

AttachOutcome = Literal["attached", "replaced", "unchanged"]

COMPILE_TIMEOUT_S = 300.0
"""How long the compiler child may take (a cold compile on a slow emulated CPU takes a minute)."""
MAX_FDS = 64


def _discard_failed(settings: DatapathSettings, adopted: bool) -> None:
    """After a failed load: remove what it pinned, unless it was adopting an existing data path
    (whose pins hold live sockets). Without a SOCKHASH pin nothing was ever attached to these maps."""
    if not adopted:
        for pin in settings.pin_dir.glob("*"):
            pin.unlink(missing_ok=True)
    for d in (settings.pin_dir, settings.pin_base):
        try:
            d.rmdir()
        except OSError:
            return  # not empty (another version's pins) or already gone


class EndpointDecision(NamedTuple):
    """A ``verdicts`` entry: ``V_*`` flags, and the demotion slot of a spliced endpoint."""

    flags: int
    slot: int = 0


def _endpoint_struct(key: EndpointTuple) -> EndpointKeyStruct:
    return EndpointKeyStruct(server_netns=key[0], client_netns=key[1], port=key[2])


def _endpoint_tuple(raw_key: bytes) -> EndpointTuple:
    """A key of the ``verdicts`` or ``evidence`` map as the tuple the agent uses."""
    k = EndpointKeyStruct.from_buffer_copy(raw_key)
    return int(k.server_netns), int(k.client_netns), int(k.port)


def _u32(n: int) -> bytes:
    return n.to_bytes(4, "little")


def _u64(n: int) -> bytes:
    return n.to_bytes(8, "little")


@contextmanager
def _cgroup_fd(cgroup: Path) -> Iterator[int]:
    try:
        fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise KernelError(f"cgroup {cgroup}: cannot open: {exc.strerror}", exc.errno) from exc
    try:
        yield fd
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Loaded:
    """What the compiler child handed back: program fds by name, tracepoint attachments."""

    programs: dict[str, int]
    attachments: list[int]
    observation: str
    headers: str
    peak_rss_kb: int = 0
    """The compiler's peak resident memory (the largest of this process's children so far)."""


def _run_compiler(settings: DatapathSettings) -> Loaded:
    """Compile and load in a child process; receive its programs as fds."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", "socksplice.bpf.compiling", str(theirs.fileno())],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(theirs.fileno(),),
        )
        theirs.close()
        try:
            _, stderr = child.communicate(settings_to_json(settings).encode(), timeout=COMPILE_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            child.kill()
            child.wait()
            raise KernelError(f"datapath: the compiler did not finish in {COMPILE_TIMEOUT_S:.0f} s") from exc
        ours.setblocking(False)
        try:
            raw, fds, _, _ = socket.recv_fds(ours, 1 << 16, MAX_FDS)
        except BlockingIOError:
            raw, fds = b"", []
    finally:
        ours.close()
        theirs.close()
    for line in stderr.decode(errors="replace").splitlines():
        if line.strip():
            log.debug("datapath: compiler: %s", line)
    if not raw:
        last = stderr.decode(errors="replace").strip().splitlines()[-1:] or [
            f"exit status {child.returncode}"
        ]
        raise KernelError(f"datapath: the compiler exited without loading: {last[0]}")
    reply = Reply.from_json(raw)
    if not reply.ok:
        for fd in fds:
            os.close(fd)
        if reply.unsupported:
            raise KernelUnsupported(reply.error)
        errors = [line.strip() for line in stderr.decode(errors="replace").splitlines() if "error:" in line]
        detail = f" ({'; '.join(errors[:3])})" if errors else ""
        raise KernelError(f"datapath: load failed: {reply.error}{detail}")
    n = len(reply.programs)
    if len(fds) != n + len(reply.tracepoints):
        for fd in fds:
            os.close(fd)
        raise KernelError(
            f"datapath: the compiler sent {len(fds)} fds for {n} programs "
            f"and {len(reply.tracepoints)} tracepoints"
        )
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return Loaded(
        dict(zip(reply.programs, fds[:n], strict=True)), fds[n:], reply.observation, reply.headers, peak
    )


class Datapath:
    """The loaded programs and their pinned maps. Create with :meth:`load`."""

    def __init__(
        self, loaded: Loaded, settings: DatapathSettings, adopted: bool, load_seconds: float
    ) -> None:
        self._programs = loaded.programs
        self._attachments = loaded.attachments
        self._maps: dict[str, BpfMap] = {}
        self.observation = loaded.observation
        """Empty when the observation programs run; else why not (Auto then behaves as DryRun)."""
        self.settings = settings
        self.adopted = adopted
        self.load_seconds = load_seconds
        self.compiler_peak_kb = loaded.peak_rss_kb
        self.mounted_bpffs = False  # True when load() mounted the bpffs at pin_root itself
        try:
            self._sockops_fd = loaded.programs["ss_sockops"]
            self._sk_msg_fd = loaded.programs["ss_sk_msg"]
        except KeyError as exc:
            self.close()
            raise KernelError(f"datapath: the compiler did not load {exc}") from exc
        self.sockops_id = bpfsys.obj_id(self._sockops_fd)
        self.sk_msg_id = bpfsys.obj_id(self._sk_msg_fd)
        if not (settings.pin_dir / "sock_hash").exists():
            self.close()
            raise KernelError(
                f"layout: the maps are not pinned in {settings.pin_dir}: SS_LAYOUT_VERSION in "
                f"bpf/socksplice.h differs from LAYOUT_VERSION {LAYOUT_VERSION} in bpf/layout.py"
            )
        try:
            for name in (
                "sock_hash",
                "pod_config",
                "counters",
                "verdicts",
                "evidence",
                "demoted",
                "policy_epoch",
            ):
                self._maps[name] = BpfMap.pinned(str(settings.pin_dir / name), name)
            bpfsys.prog_attach(self._maps["sock_hash"].fd, self._sk_msg_fd, bpfsys.BPF_SK_MSG_VERDICT)
        except KernelError:
            self.close()
            raise
        self._pods = self._maps["pod_config"]
        self._counters = self._maps["counters"]
        self._verdicts = self._maps["verdicts"]
        self._evidence = self._maps["evidence"]
        self._demoted = self._maps["demoted"]
        self._policy_epoch = self._maps["policy_epoch"]
        if self._pods.value_size != ctypes.sizeof(PodConfigStruct):
            self.close()
            raise KernelError(
                "layout: struct ss_pod_config differs between bpf/socksplice.h and bpf/layout.py"
            )

    @classmethod
    def load(cls, settings: DatapathSettings | None = None) -> Datapath:
        """Compile and load; adopt pinned maps when present. Raises KernelUnsupported/KernelError."""
        settings = settings or DatapathSettings()
        if os.geteuid() != 0:
            raise KernelUnsupported(
                "BPF: loading programs needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN)"
            )
        settings.pin_root.mkdir(parents=True, exist_ok=True)
        mounted = bpffs.ensure(settings.pin_root)
        settings.pin_dir.mkdir(parents=True, exist_ok=True)
        adopted = (settings.pin_dir / "sock_hash").exists()
        start = time.monotonic()
        try:
            loaded = _run_compiler(settings)
            log.info("datapath: headers: %s", loaded.headers)
            if loaded.observation:
                log.warning(
                    "datapath: observation: unavailable: %s (Auto behaves as DryRun)", loaded.observation
                )
            dp = cls(loaded, settings, adopted, 0.0)
        except (KernelError, KernelUnsupported):
            _discard_failed(settings, adopted)
            raise
        dp.load_seconds = time.monotonic() - start
        dp.mounted_bpffs = mounted
        log.info(
            "datapath: %s pins at %s in %.2fs (sockops id %d, sk_msg id %d; compiled in a child, peak %d MB)",
            "adopted" if adopted else "created",
            settings.pin_dir,
            dp.load_seconds,
            dp.sockops_id,
            dp.sk_msg_id,
            dp.compiler_peak_kb // 1024,
        )
        return dp

    def program_fds(self) -> dict[str, int]:
        """The fds of every loaded program by function name (sockops, sk_msg, the observation
        programs), e.g. to read the kernel's run-time statistics of each."""
        return dict(self._programs)

    # --- cgroups -------------------------------------------------------------------------

    def attached(self, cgroup: Path) -> list[int]:
        """Ids of the sockops programs attached to ``cgroup`` itself."""
        with _cgroup_fd(cgroup) as fd:
            return bpfsys.prog_query(fd, bpfsys.BPF_CGROUP_SOCK_OPS)

    def attach(self, cgroup: Path) -> AttachOutcome:
        """Ensure our sockops program is the one attached to ``cgroup``. Idempotent."""
        with _cgroup_fd(cgroup) as fd:
            current = bpfsys.prog_query(fd, bpfsys.BPF_CGROUP_SOCK_OPS)
            if current == [self.sockops_id]:
                return "unchanged"
            try:
                bpfsys.prog_attach(fd, self._sockops_fd, bpfsys.BPF_CGROUP_SOCK_OPS, 0)
            except KernelError as exc:
                raise KernelError(f"cgroup {cgroup}: attach sockops: {exc}", exc.errno) from exc
        return "replaced" if current else "attached"

    def detach(self, cgroup: Path) -> bool:
        """Detach whatever sockops program is attached to ``cgroup``. False if none was (or it is gone)."""
        try:
            with _cgroup_fd(cgroup) as fd:
                if not bpfsys.prog_query(fd, bpfsys.BPF_CGROUP_SOCK_OPS):
                    return False
                bpfsys.prog_detach(fd, bpfsys.BPF_CGROUP_SOCK_OPS)
        except KernelError as exc:
            if exc.errno in (errno.ENOENT, errno.ENODEV):
                return False
            raise
        return True

    # --- pod configuration ---------------------------------------------------------------

    def set_pod(self, netns_cookie: int, config: PodDatapathConfig) -> None:
        self._pods.update(_u64(netns_cookie), bytes(config.to_struct()))

    def delete_pod(self, netns_cookie: int) -> bool:
        return self._pods.delete(_u64(netns_cookie))

    def pods(self) -> dict[int, PodDatapathConfig]:
        out = {}
        for k, v in self._pods.items():
            out[int.from_bytes(k, "little")] = PodDatapathConfig.from_struct(
                PodConfigStruct.from_buffer_copy(v)
            )
        return out

    # --- Auto: evidence and verdicts ------------------------------------------------------

    def evidence(self) -> dict[EndpointTuple, dict[str, int]]:
        """Per endpoint, what the observation programs counted (docs/auto.md)."""
        out: dict[EndpointTuple, dict[str, int]] = {}
        for k, per_cpu in self._evidence.items_percpu():  # one value per CPU, summed
            sums = [0] * len(EVIDENCE)
            for leaf in per_cpu:
                counts = EvidenceStruct.from_buffer_copy(leaf)
                for i in range(len(EVIDENCE)):
                    sums[i] += int(counts.n[i])
            out[_endpoint_tuple(k)] = dict(zip(EVIDENCE, sums, strict=True))
        return out

    def forget_endpoints(self, keys: list[EndpointTuple]) -> None:
        """Drop evidence and verdicts of endpoints whose pods are gone."""
        for key in keys:
            raw = bytes(_endpoint_struct(key))
            for table in (self._evidence, self._verdicts):
                table.delete(raw)

    def set_verdicts(self, decided: Mapping[EndpointTuple, EndpointDecision]) -> None:
        """Make ``verdicts`` hold exactly ``decided``: per endpoint, what its new connections get
        (``V_SPLICE`` with a demotion slot, ``V_UNWATCHED``, ``V_SAMPLED``); an endpoint without
        an entry has every new connection watched on TCP."""
        current: dict[EndpointTuple, EndpointDecision] = {}
        for k, v in self._verdicts.items():
            raw = VerdictStruct.from_buffer_copy(v)
            current[_endpoint_tuple(k)] = EndpointDecision(int(raw.flags), int(raw.slot))
        for key in current.keys() - decided.keys():
            self._verdicts.delete(bytes(_endpoint_struct(key)))
        for key, decision in decided.items():
            if current.get(key) == decision:
                continue
            if decision.flags & V_SPLICE and not 0 < decision.slot < ENDPOINT_SLOTS:
                raise ValueError(f"endpoint slot {decision.slot} is outside 1..{ENDPOINT_SLOTS - 1}")
            raw = VerdictStruct(flags=decision.flags, slot=decision.slot)
            self._verdicts.update(bytes(_endpoint_struct(key)), bytes(raw))

    def demoted_slots(self) -> set[int]:
        """Slots whose demotion flag is set (by the observation programs, or :meth:`set_demoted`)."""
        return {slot for slot, flag in enumerate(self._demoted.array_u32_values()) if flag}

    def set_demoted(self, slot: int, demoted: bool) -> None:
        """Set or clear a slot's demotion flag (cleared when the slot is given to a new endpoint)."""
        self._demoted.update(_u32(slot), _u32(1 if demoted else 0))

    # --- observation ---------------------------------------------------------------------

    def policy_epoch(self) -> int:
        """The node's NetworkPolicy epoch: connections established under another one send via TCP."""
        return int.from_bytes(self._policy_epoch.lookup(_u32(0)) or bytes(4), "little")

    def bump_policy_epoch(self) -> int:
        """Hand every spliced connection established until now back to TCP at its next send
        (sk_msg.c compares the epoch each socket recorded at establishment); returns the new epoch."""
        epoch = (self.policy_epoch() + 1) & 0xFFFFFFFF
        self._policy_epoch.update(_u32(0), _u32(epoch))
        return epoch

    def counters(self, slots: range | list[int] | None = None) -> dict[int, dict[str, int]]:
        """Counter sums over CPUs, per policy slot (default: every slot with a non-zero counter)."""
        wanted = range(self.settings.max_policies) if slots is None else slots
        sums = self._counters.array_percpu_sums()
        out: dict[int, dict[str, int]] = {}
        for slot in wanted:
            base = slot * NR_COUNTERS
            values = dict(zip(COUNTERS, sums[base : base + NR_COUNTERS], strict=True))
            if slots is not None or any(values.values()):
                out[slot] = values
        return out

    def totals(self) -> dict[str, int]:
        """Counters summed over every policy slot."""
        total = dict.fromkeys(COUNTERS, 0)
        for values in self.counters().values():
            for name, n in values.items():
                total[name] += n
        return total

    def spliced_sockets(self) -> int:
        """Sockets currently in the SOCKHASH (the kernel removes them itself on close)."""
        return len(self._maps["sock_hash"].keys())

    # --- teardown ------------------------------------------------------------------------

    def close(self) -> None:
        """Release our fds (the observation programs' tracepoint attachments go with them).
        Pins, cgroup attachments and spliced sockets stay."""
        for m in self._maps.values():
            m.close()
        self._maps.clear()
        for fd in [*self._programs.values(), *self._attachments]:
            os.close(fd)
        self._programs = {}
        self._attachments = []

    def unpin(self) -> list[str]:
        """Remove the pins (after a drain). Returns the names removed."""
        removed = []
        for name in PINNED_MAPS:
            path = self.settings.pin_dir / name
            try:
                path.unlink()
                removed.append(name)
            except FileNotFoundError:
                continue
        for d in (self.settings.pin_dir, self.settings.pin_dir.parent):
            try:
                d.rmdir()
            except OSError:
                break
        return removed

    def release_bpffs(self) -> bool:
        """Unmount the bpffs that load() mounted, if nothing else is pinned there. True if unmounted."""
        root = self.settings.pin_root
        kernel_entries = {"maps.debug", "progs.debug"}  # iterators every bpffs shows (BPF_PRELOAD)
        if not self.mounted_bpffs or any(p.name not in kernel_entries for p in root.iterdir()):
            return False
        bpffs.unmount(root)
        self.mounted_bpffs = False
        return True
