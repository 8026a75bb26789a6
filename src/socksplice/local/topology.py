"""Realize a LocalCluster as network namespaces + cgroup2 directories: pods on one "node".

Per run (``run_id``, 4 hex digits, so parallel runs never collide):

- node netns ``ss-<id>-node`` holding the bridge ``ssbr-<id>`` (198.18.0.1/24, 2001:2::1/64),
  the host ends of the veths and the service DNAT rules (services.py). Keeping the node side
  in its own netns rather than the root netns lets two runs use the same addresses without
  ambiguous routes, and leaves the host's routes, firewall and br_netfilter settings alone.
- per pod: netns ``ss-<id>-<namespace>_<name>`` with ``eth0`` (IPv4 /32 routed via
  198.18.0.1, so pod-to-pod IPv4 crosses the node's conntrack like Calico; IPv6 /64 on-link)
  and cgroup ``<cgroup2>/socksplice-local/<id>/<namespace>_<name>``.

Every step is ``ensure``-style; ``down()`` removes exactly the objects named after the run.
pyroute2's NetlinkError is converted to KernelError here, errno kept.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from types import TracebackType
from typing import Any

from pyroute2 import IPRoute, netns
from pyroute2.netlink.exceptions import NetlinkError

from socksplice.errors import KernelError
from socksplice.kernel import cgroup2
from socksplice.local import services, state
from socksplice.local.podsfile import (
    GATEWAY4,
    GATEWAY6,
    POD_NET4,
    POD_NET6,
    LocalCluster,
    cluster_to_document,
    parse_local_pods,
)

NETNS_DIR = Path("/run/netns")
BR_NETFILTER = Path("/proc/sys/net/bridge")  # present when br_netfilter is loaded or built in
CGROUP_DIR = "socksplice-local"
UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://socksplice.io/local-pods")
IFA_F_NODAD = 0x02
RT_SCOPE_LINK = 253


def netns_prefix(run_id: str) -> str:
    return f"ss-{run_id}-"


def pod_key(namespace: str, name: str) -> str:
    """``<namespace>_<name>``: unambiguous, as '_' is not allowed in either part."""
    return f"{namespace}_{name}"


@contextmanager
def _netlink(what: str) -> Iterator[None]:
    try:
        yield
    except NetlinkError as exc:
        raise KernelError(f"{what}: {exc}", exc.code) from exc
    except OSError as exc:
        raise KernelError(f"{what}: {exc.strerror or exc}", exc.errno) from exc


def _sysctl(netns_path: Path, settings: Mapping[str, str]) -> None:
    argv = ["nsenter", f"--net={netns_path}", "--", "sysctl", "-qw"]
    argv += [f"{k}={v}" for k, v in settings.items()]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if proc.returncode != 0:
        raise KernelError(f"sysctl in {netns_path}: {proc.stderr.strip()}")


def _create_netns(name: str) -> None:
    if (NETNS_DIR / name).exists():
        return
    with _netlink(f"netns {name}: create"):
        netns.create(name)


def _remove_netns(name: str) -> None:
    try:
        netns.remove(name)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise KernelError(f"netns {name}: remove: {exc.strerror}", exc.errno) from exc


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class LocalPod:
    """A realized pod: addresses, netns, cgroup, and how to run processes inside it."""

    name: str
    namespace: str
    labels: dict[str, str] = field(hash=False)
    ipv4: IPv4Address
    ipv6: IPv6Address
    netns: str
    netns_path: Path
    cgroup: Path
    uid: str
    created_at: str

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        """Start ``argv`` in this pod: the child joins the pod's cgroup, then nsenter joins its netns."""
        cgroup = self.cgroup
        user_preexec: Callable[[], object] | None = kwargs.pop("preexec_fn", None)

        def enter() -> None:
            cgroup2.move_self(cgroup)
            if user_preexec is not None:
                user_preexec()

        full = ["nsenter", f"--net={self.netns_path}", "--", *argv]
        proc: subprocess.Popen[bytes] = subprocess.Popen(full, preexec_fn=enter, **kwargs)
        return proc

    def run(
        self, argv: Sequence[str], timeout: float = 30.0, check: bool = True, input: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        """Run ``argv`` in this pod to completion, capturing stdout and stderr."""
        stdin = subprocess.PIPE if input is not None else subprocess.DEVNULL
        proc = self.popen(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
        done = subprocess.CompletedProcess(list(argv), proc.returncode, out, err)
        if check:
            done.check_returncode()
        return done

    def as_pod_object(self, node_name: str) -> dict[str, Any]:
        """This pod as the Kubernetes API would return it, so the agent's cluster code path applies."""
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "uid": self.uid,
                "labels": dict(self.labels),
                "creationTimestamp": self.created_at,
                "annotations": {
                    "socksplice.io/local-netns": str(self.netns_path),
                    "socksplice.io/local-cgroup": str(self.cgroup),
                },
            },
            "spec": {
                "nodeName": node_name,
                "hostNetwork": False,
                "containers": [{"name": self.name, "image": "socksplice.io/local-pod"}],
            },
            "status": {
                "phase": "Running",
                "podIP": str(self.ipv4),
                "podIPs": [{"ip": str(self.ipv4)}, {"ip": str(self.ipv6)}],
            },
        }


class LocalTopology:
    """Netns pods on one bridge for a LocalCluster; ``with LocalTopology(c) as t:`` brings it up and down."""

    def __init__(
        self,
        cluster: LocalCluster,
        *,
        run_id: str | None = None,
        state_dir: Path | None = None,
        detached: bool = False,
        cgroup_root: Path | None = None,
        registry_dir: Path = state.REGISTRY_DIR,
        created_at: str | None = None,
        owner: tuple[int, int | None] | None = None,
        cgroup_parent: Path | None = None,
    ) -> None:
        self.cluster = cluster
        self.registry_dir = registry_dir
        self.state_dir = state_dir
        fresh = run_id is None
        self.run_id = run_id or self._new_run_id()
        self.created_at = created_at or _now()
        if owner is not None:
            self.owner_pid: int | None = owner[0]
            self.owner_start = owner[1]
        elif detached:
            self.owner_pid, self.owner_start = None, None
        else:
            self.owner_pid = os.getpid()
            self.owner_start = state.process_start(self.owner_pid)
        self.cgroup_parent = cgroup_parent or (cgroup_root or cgroup2.find_root()) / CGROUP_DIR / self.run_id
        self.node_netns = f"{netns_prefix(self.run_id)}node"
        self.node_netns_path = NETNS_DIR / self.node_netns
        self.bridge = f"ssbr-{self.run_id}"
        self.pods = tuple(self._local_pod(p.name, p.namespace) for p in cluster.pods)
        self.services = tuple(
            services.ServiceRule(
                s.name,
                s.namespace,
                s.ipv4,
                s.port,
                cluster.pod(s.target_pod, s.namespace).ipv4,
                s.target_port,
            )
            for s in cluster.services
        )
        if fresh:  # the claimed registry entry becomes a full record at once
            state.register(self.record(), self.registry_dir)

    def _new_run_id(self) -> str:
        while True:
            candidate = secrets.token_hex(2)
            taken = any(NETNS_DIR.glob(f"{netns_prefix(candidate)}*"))
            if not taken and state.claim(candidate, self.registry_dir):
                return candidate

    def _local_pod(self, name: str, namespace: str) -> LocalPod:
        spec = self.cluster.pod(name, namespace)
        ns_name = f"{netns_prefix(self.run_id)}{pod_key(namespace, name)}"
        return LocalPod(
            name=name,
            namespace=namespace,
            labels=dict(spec.labels),
            ipv4=spec.ipv4,
            ipv6=spec.ipv6,
            netns=ns_name,
            netns_path=NETNS_DIR / ns_name,
            cgroup=self.cgroup_parent / pod_key(namespace, name),
            uid=str(uuid.uuid5(UID_NAMESPACE, f"{self.run_id}/{namespace}/{name}")),
            created_at=self.created_at,
        )

    @classmethod
    def from_record(
        cls, record: state.TopologyRecord, registry_dir: Path = state.REGISTRY_DIR
    ) -> LocalTopology:
        """Reconnect to a realized run (nothing is created)."""
        cluster = parse_local_pods(record.cluster, f"run {record.run_id}")
        return cls(
            cluster,
            run_id=record.run_id,
            state_dir=Path(record.state_dir) if record.state_dir else None,
            registry_dir=registry_dir,
            created_at=record.created_at,
            owner=(record.owner_pid, record.owner_start) if record.owner_pid is not None else None,
            detached=record.owner_pid is None,
            cgroup_parent=Path(record.cgroup_parent),
        )

    def record(self, state_dir: Path | None = None) -> state.TopologyRecord:
        target = state_dir or self.state_dir
        return state.TopologyRecord(
            run_id=self.run_id,
            cluster=cluster_to_document(self.cluster),
            created_at=self.created_at,
            owner_pid=self.owner_pid,
            owner_start=self.owner_start,
            node_netns=self.node_netns,
            bridge=self.bridge,
            cgroup_parent=str(self.cgroup_parent),
            pods=tuple(
                state.PodRecord(
                    p.name,
                    p.namespace,
                    dict(p.labels),
                    str(p.ipv4),
                    str(p.ipv6),
                    p.netns,
                    str(p.netns_path),
                    str(p.cgroup),
                )
                for p in self.pods
            ),
            state_dir=str(target) if target else None,
        )

    @property
    def is_up(self) -> bool:
        return self.node_netns_path.exists()

    def pod(self, name: str, namespace: str = "default") -> LocalPod:
        for pod in self.pods:
            if pod.name == name and pod.namespace == namespace:
                return pod
        raise KeyError(f"local pod {namespace}/{name} not in run {self.run_id}")

    # --- lifecycle -------------------------------------------------------------------------

    def up(self) -> LocalTopology:
        """Create everything; a no-op when the run is already up. On failure, undo and re-raise."""
        if self.is_up:
            return self
        state.register(self.record(), self.registry_dir)  # before any kernel object exists
        try:
            self._up_node()
            for index, pod in enumerate(self.pods):
                self._up_pod(index, pod)
            services.ensure_services(self.node_netns_path, self.bridge, self.run_id, self.services)
            if self.state_dir is not None:
                state.save(self, self.state_dir)
                state.register(self.record(), self.registry_dir)
        except BaseException:
            self.down()
            raise
        return self

    def _up_node(self) -> None:
        _create_netns(self.node_netns)
        with (
            _netlink(f"{self.node_netns}: bridge {self.bridge}"),
            IPRoute(netns=self.node_netns, flags=0) as ipr,
        ):
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
            if not ipr.link_lookup(ifname=self.bridge):
                ipr.link("add", ifname=self.bridge, kind="bridge", br_forward_delay=0, br_stp_state=0)
            br = ipr.link_lookup(ifname=self.bridge)[0]
            _ensure_addr(ipr, br, str(GATEWAY4), POD_NET4.prefixlen)
            _ensure_addr(ipr, br, str(GATEWAY6), POD_NET6.prefixlen, flags=IFA_F_NODAD)
            ipr.link("set", index=br, state="up")
        # Forward only on the bridge (pod-to-pod IPv4 and service traffic are routed here);
        # no redirects, or pods would learn to bypass the DNAT; no DAD for the veths.
        settings = {
            f"net.ipv4.conf.{self.bridge}.forwarding": "1",
            "net.ipv4.conf.all.send_redirects": "0",
            f"net.ipv4.conf.{self.bridge}.send_redirects": "0",
            "net.ipv6.conf.all.accept_dad": "0",
            "net.ipv6.conf.default.accept_dad": "0",
        }
        if BR_NETFILTER.exists():
            # With br_netfilter a DNAT'ed frame whose new destination sits on the same bridge is
            # bridged, not routed: a hairpin connection is then dropped, and behaviour would
            # depend on the host. Pods route via the gateway anyway; keep it pure L3 here.
            settings |= {
                "net.bridge.bridge-nf-call-iptables": "0",
                "net.bridge.bridge-nf-call-ip6tables": "0",
            }
        _sysctl(self.node_netns_path, settings)
        cgroup2.ensure_dir(self.cgroup_parent)

    def _up_pod(self, index: int, pod: LocalPod) -> None:
        _create_netns(pod.netns)
        _sysctl(
            pod.netns_path, {"net.ipv6.conf.all.accept_dad": "0", "net.ipv6.conf.default.accept_dad": "0"}
        )
        host = f"ssv-{index}"
        with (
            _netlink(f"{self.node_netns}: veth {host} for {pod.netns}"),
            IPRoute(netns=self.node_netns, flags=0) as ipr,
        ):
            if not ipr.link_lookup(ifname=host):
                ipr.link("add", ifname=host, kind="veth", peer={"ifname": "eth0", "net_ns_fd": pod.netns})
            idx = ipr.link_lookup(ifname=host)[0]
            ipr.link("set", index=idx, master=ipr.link_lookup(ifname=self.bridge)[0], state="up")
        with _netlink(f"{pod.netns}: eth0"), IPRoute(netns=pod.netns, flags=0) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
            eth0 = ipr.link_lookup(ifname="eth0")[0]
            _ensure_addr(ipr, eth0, str(pod.ipv4), 32)
            _ensure_addr(ipr, eth0, str(pod.ipv6), POD_NET6.prefixlen, flags=IFA_F_NODAD)
            ipr.link("set", index=eth0, state="up")
            _ensure_route(ipr, dst=f"{GATEWAY4}/32", oif=eth0, scope=RT_SCOPE_LINK)
            _ensure_route(ipr, dst="0.0.0.0/0", gateway=str(GATEWAY4), oif=eth0)
            _ensure_route(ipr, dst="::/0", gateway=str(GATEWAY6), oif=eth0, family=socket.AF_INET6)
        cgroup2.ensure_dir(pod.cgroup)

    def down(self) -> None:
        """Remove every object of this run; what is already gone is fine. Kills pod processes."""
        services.remove_services(self.node_netns_path, self.bridge, self.run_id)
        prefix = netns_prefix(self.run_id)
        names = {p.netns for p in self.pods} | {self.node_netns}
        names |= {n for n in netns.listnetns() if n.startswith(prefix)}
        for name in sorted(names):
            _remove_netns(name)
        _kill_cgroup(self.cgroup_parent)
        cgroup2.remove_tree(self.cgroup_parent)
        with contextlib.suppress(OSError):
            self.cgroup_parent.parent.rmdir()  # socksplice-local/, when no other run uses it
        if self.state_dir is not None:
            state.forget(self.state_dir, self.run_id)
        state.unregister(self.run_id, self.registry_dir)

    def __enter__(self) -> LocalTopology:
        return self.up()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.down()


def _ensure_addr(ipr: Any, index: int, address: str, prefixlen: int, flags: int = 0) -> None:
    try:
        ipr.addr("add", index=index, address=address, prefixlen=prefixlen, flags=flags)
    except NetlinkError as exc:
        if exc.code != 17:  # EEXIST: already there
            raise


def _ensure_route(ipr: Any, **kwargs: Any) -> None:
    try:
        ipr.route("add", **kwargs)
    except NetlinkError as exc:
        if exc.code != 17:
            raise


def _kill_cgroup(parent: Path, timeout: float = 5.0) -> None:
    """Kill every process left in the run's cgroups (cgroup.kill) and wait until they are gone."""
    if not parent.exists():
        return
    for path in [parent, *(p for p in parent.rglob("*") if p.is_dir())]:
        kill = path / "cgroup.kill"
        try:
            kill.write_text("1\n")
        except OSError:
            continue
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if "populated 0" in (parent / "cgroup.events").read_text():
                return
        except OSError:
            return
        time.sleep(0.02)
