"""``socksplice local``: manage a local cluster of netns pods and the SocketSplices applied to it.

socksplice local up [-f pods.yaml] [--dir DIR]     build the pods (detached: they stay up)
socksplice local apply -f splice.yaml [--dir DIR]  what `kubectl apply` does, for local mode
socksplice local delete NAME [-n NS] [--dir DIR]   remove a SocketSplice
socksplice local status [--dir DIR]                pods, manifests and the agent's status.json
socksplice local exec POD [-n NS] -- CMD...        run a command inside a pod
socksplice local down [--dir DIR]                  remove the pods
socksplice local cleanup                           remove leftovers of crashed runs
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from socksplice.api.manifests import load_manifests
from socksplice.api.socketsplice import Mode
from socksplice.errors import PermanentError
from socksplice.local import state
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
    splices = load_manifests(text, str(args.file))  # validate before anything is written
    manifests = directory / state.MANIFESTS_DIR
    manifests.mkdir(parents=True, exist_ok=True)
    for s in splices:
        target = manifests / f"{s.namespace}_{s.name}.yaml"
        if args.file == "-":
            target.write_text(text)
        else:
            shutil.copyfile(args.file, target) if len(splices) == 1 else target.write_text(text)
        print(f"socketsplice.socksplice.io/{s.name} configured (namespace {s.namespace}, mode {s.spec.mode})")
        if s.spec.mode is Mode.DRY_RUN:
            print(
                f"  {s.name}: DryRun counts what would be spliced and changes nothing; set "
                f"spec.mode: {Mode.SPLICE} to splice (docs/socketsplice.md#mode)",
                file=sys.stderr,
            )
    return 0


def _delete(args: argparse.Namespace) -> int:
    target = (args.dir or DEFAULT_DIR) / state.MANIFESTS_DIR / f"{args.namespace}_{args.name}.yaml"
    if not target.exists():
        raise PermanentError(f"socketsplice {args.namespace}/{args.name}: not found in {target.parent}")
    target.unlink()
    print(f"socketsplice.socksplice.io/{args.name} deleted")
    return 0


def _status(args: argparse.Namespace) -> int:
    directory = args.dir or DEFAULT_DIR
    status = directory / "status.json"
    print(
        status.read_text()
        if status.exists()
        else json.dumps({"agent": "no status.json yet: is the agent running?"})
    )
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
        if name in ("delete", "exec"):
            sp.add_argument("-n", "--namespace", default="default")
        if name == "delete":
            sp.add_argument("name")
        if name == "exec":
            sp.add_argument("pod")
            sp.add_argument("cmd", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    return int(args.func(args))
