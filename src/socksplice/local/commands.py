"""``socksplice local``: manage a local cluster of netns pods and the SocketSplices applied to it.

socksplice local up [-f pods.yaml] [--dir DIR]     build the pods (detached: they stay up)
socksplice local apply -f splice.yaml [--dir DIR]  what `kubectl apply` does, for local mode
                                                   (SocketSplices and NetworkPolicies)
socksplice local delete NAME [-n NS] [--dir DIR]   remove a SocketSplice
socksplice local delete networkpolicy NAME [-n NS] remove a NetworkPolicy
socksplice local status [--dir DIR] [--json]       the node, its SocketSplices and endpoints
socksplice local exec POD [-n NS] -- CMD...        run a command inside a pod
socksplice local down [--dir DIR]                  remove the pods
socksplice local cleanup                           remove leftovers of crashed runs
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from socksplice.api.manifests import load_manifests
from socksplice.api.nodestatus import MAX_ENDPOINTS, EndpointStatus, NodeStatus
from socksplice.api.socketsplice import Mode, SocketSplice
from socksplice.errors import PermanentError
from socksplice.local import netpolicies, state
from socksplice.local.podsfile import default_cluster, load_local_pods
from socksplice.local.topology import LocalTopology

DEFAULT_DIR = state.default_dir("demo")  # the embedded cluster's name


def _up(args: argparse.Namespace) -> int:
    cluster = load_local_pods(args.file) if args.file else default_cluster()
    directory = args.dir or state.default_dir(cluster.name)
    topo = LocalTopology(cluster, state_dir=directory, detached=True).up()
    print(f"local cluster {cluster.name}: up in {directory} (run {topo.run_id})")
    for pod in topo.pods:
        print(f"  pod {pod.namespace}/{pod.name}: {pod.ipv4} {pod.ipv6} labels={pod.labels}")
    print(f"next: socksplice agent --local {directory}")
    print(f"      socksplice local apply -f SPLICE.yaml --dir {directory}")
    return 0


def _down(args: argparse.Namespace) -> int:
    directory = args.dir or DEFAULT_DIR
    state.load(directory).down()
    print(f"local cluster in {directory}: down")
    return 0


def _apply(args: argparse.Namespace) -> int:
    directory = args.dir or DEFAULT_DIR
    text = Path(args.file).read_text() if args.file != "-" else sys.stdin.read()
    source = str(args.file)
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError:
        docs = []  # load_manifests below reports the syntax error with its line
    policies = [d for d in docs if netpolicies.is_network_policy(d)]
    # (file to write, its text, its SocketSplices), all validated before anything is written
    writes: list[tuple[Path, str, list[SocketSplice]]] = []
    manifests = directory / state.MANIFESTS_DIR
    if policies:
        for doc in (d for d in docs if not netpolicies.is_network_policy(d)):
            doc_text = yaml.safe_dump(doc, sort_keys=False)
            splices = load_manifests(doc_text, source)
            if splices:
                first = splices[0]
                writes.append((manifests / f"{first.namespace}_{first.name}.yaml", doc_text, splices))
        for np in netpolicies.write(directory, policies, source):
            print(f"networkpolicy.networking.k8s.io/{np.name} configured (namespace {np.namespace})")
    else:
        splices = load_manifests(text, source)
        writes = [(manifests / f"{s.namespace}_{s.name}.yaml", text, [s]) for s in splices]
    manifests.mkdir(parents=True, exist_ok=True)
    for target, target_text, splices in writes:
        target.write_text(target_text)
        for s in splices:
            mode = s.spec.mode
            print(f"socketsplice.socksplice.io/{s.name} configured (namespace {s.namespace}, mode {mode})")
            print(f"  {s.name}: {MODE_HINTS[s.spec.mode]}", file=sys.stderr)
    return 0


MODE_HINTS: Mapping[Mode, str] = {
    Mode.AUTO: (
        "Auto watches each endpoint and splices it once its evidence window is full and its "
        "receive patterns are ones tcp_bpf serves as TCP does; `socksplice local status` shows the "
        "verdicts (docs/auto.md)"
    ),
    Mode.DRY_RUN: (
        "DryRun only audits: it reports the verdicts Auto would take and splices nothing; set "
        f"spec.mode: {Mode.AUTO} (the default) to splice what qualifies (docs/socketsplice.md#mode)"
    ),
    Mode.SPLICE: (
        f"{Mode.SPLICE} splices every connection, even receive patterns tcp_bpf serves differently "
        f"from TCP; {Mode.AUTO} (the default) splices only the endpoints seen to be compatible "
        "(docs/socketsplice.md#mode)"
    ),
}
"""What ``local apply`` says about a SocketSplice's mode (on stderr)."""


def _delete(args: argparse.Namespace) -> int:
    directory = args.dir or DEFAULT_DIR
    if len(args.what) == 2 and args.what[0].lower() in NETWORK_POLICY_NAMES:
        netpolicies.delete(directory, args.namespace, args.what[1])
        print(f"networkpolicy.networking.k8s.io/{args.what[1]} deleted")
        return 0
    if len(args.what) != 1:
        raise PermanentError(f"delete: expected NAME or networkpolicy NAME, got {' '.join(args.what)}")
    name = args.what[0]
    target = directory / state.MANIFESTS_DIR / f"{args.namespace}_{name}.yaml"
    if not target.exists():
        raise PermanentError(f"socketsplice {args.namespace}/{name}: not found in {target.parent}")
    target.unlink()
    print(f"socketsplice.socksplice.io/{name} deleted")
    return 0


NETWORK_POLICY_NAMES = ("networkpolicy", "networkpolicies", "netpol")


def _kinds(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{kind} {n}" for kind, n in counts.items()) or "none"


def describe_endpoint(e: EndpointStatus) -> list[str]:
    """An endpoint in three lines: who, verdict and policy; why; what its connections did."""
    return [
        f"{e.describe()}  {e.verdict}  ({e.policy}, {e.mode})",
        f"    reason: {e.reason or '-'}",
        f"    connections {e.connections} ({e.spliced_connections} spliced), messages {e.messages}, "
        f"bytes {e.bytes}; would differ: {_kinds(e.would_differ)}; did differ: {_kinds(e.did_differ)}",
    ]


def describe_status(raw: Mapping[str, Any], manifests: list[str] | None = None) -> list[str]:
    """``socksplice local status``: the node, its SocketSplices and every endpoint listed, from
    the agent's ``status.json`` (a SpliceNode's ``status``)."""
    status = NodeStatus.from_dict(raw)
    conditions: list[Mapping[str, Any]] = raw.get("conditions") or []
    ready: Mapping[str, Any] = next((c for c in conditions if c.get("type") == "Ready"), {})
    lines = [
        f"node {status.node_name}: Ready={ready.get('status', 'Unknown')} ({ready.get('reason', '-')}: "
        f"{ready.get('message', '')}); agent {status.agent_version}, kernel {status.kernel}, "
        f"heartbeat {raw.get('heartbeatTime', 'never')}",
        f"pods attached: {', '.join(status.pods) or 'none'}",
    ]
    if manifests is not None:
        lines.append(f"manifests: {', '.join(manifests) or 'none'}")
    if status.observation:
        lines.append(
            f"observation unavailable: {status.observation}; Auto behaves as DryRun here "
            "(every endpoint stays on TCP)"
        )
    lines += [f"manifest error: {e}" for e in status.manifest_errors]
    if status.last_error:
        lines.append(f"last error: {status.last_error}")
    lines.append(f"socketsplices: {len(status.policies)}")
    for p in sorted(status.policies, key=lambda p: p.name):
        lines.append(
            f"  {p.name}  {p.mode}  pods {p.attached_pods} attached of {p.matched_pods}; endpoints "
            f"{p.endpoints_audit} Audit, {p.endpoints_spliced} Spliced, {p.endpoints_demoted} Demoted"
        )
        if p.handback_time is not None:
            lines.append(
                f"    handed back to TCP: {p.policy_handbacks or 0} directions; last at "
                f"{p.handback_time.isoformat()}: {p.handback_reason}"
            )
    lines.append(f"endpoints: {len(status.endpoints) + status.endpoints_omitted}")
    for e in status.endpoints:
        lines += ["  " + line for line in describe_endpoint(e)]
    if status.endpoints_omitted:
        lines.append(
            f"  ({status.endpoints_omitted} more not listed: status.json lists {MAX_ENDPOINTS} at most, "
            "demoted and spliced first)"
        )
    return lines


def _status(args: argparse.Namespace) -> int:
    directory = args.dir or DEFAULT_DIR
    status = directory / "status.json"
    if not status.exists():
        if args.json:
            print(json.dumps({"agent": "no status.json yet: is the agent running?"}))
        else:
            print(f"{status}: no status yet: is the agent running? (socksplice agent --local {directory})")
        return 0
    text = status.read_text()
    if args.json:
        print(text.rstrip("\n"))
        return 0
    manifests = sorted(
        p.name
        for p in (directory / state.MANIFESTS_DIR).glob("*")
        if p.suffix in (".yaml", ".yml", ".json") and not p.name.startswith(".")
    )
    try:
        lines = describe_status(json.loads(text), manifests)
    except (ValueError, TypeError, AttributeError) as exc:
        raise PermanentError(f"{status}: not a node status: {exc}") from exc
    print("\n".join(lines))
    return 0


def _exec(args: argparse.Namespace) -> int:
    topo = state.load(args.dir or DEFAULT_DIR)
    cmd = args.cmd[1:] if args.cmd and args.cmd[0] == "--" else args.cmd
    return topo.pod(args.pod, args.namespace).popen(cmd).wait()


def _cleanup(_: argparse.Namespace) -> int:
    for item in state.cleanup_stale():
        print(f"removed {item}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="socksplice local", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="action", required=True)
    for name, fn in (
        ("up", _up),
        ("down", _down),
        ("apply", _apply),
        ("delete", _delete),
        ("status", _status),
        ("exec", _exec),
        ("cleanup", _cleanup),
    ):
        sp = sub.add_parser(name)
        sp.set_defaults(func=fn)
        sp.add_argument("--dir", type=Path, help=f"local cluster directory (default: {DEFAULT_DIR})")
        if name == "up":
            sp.add_argument(
                "-f", "--file", type=Path, help="LocalPods YAML (default: the embedded two-pod cluster)"
            )
        if name == "apply":
            sp.add_argument("-f", "--file", required=True, help="SocketSplice YAML ('-' for stdin)")
        if name == "status":
            sp.add_argument("--json", action="store_true", help="print the agent's status.json as it is")
        if name in ("delete", "exec"):
            sp.add_argument("-n", "--namespace", default="default")
        if name == "delete":
            sp.add_argument("what", nargs="+", metavar="[networkpolicy] NAME")
        if name == "exec":
            sp.add_argument("pod")
            sp.add_argument("cmd", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    return int(args.func(args))
