"""What the guest gets per run: a read-only project disk with the init script, and a results disk.

The project disk is a copy of this tree's ``src/``, ``tests/``, ``pyproject.toml`` and built load
generators, packed with ``mkfs.ext4 -d`` (a few MB, a second to build), so the guest always runs
exactly the code of the host's tree. The image's stub init mounts it and runs
``matrix-init.sh`` (:data:`INIT_SCRIPT`), which prepares the guest like a node (cgroup2 at
``/sys/fs/cgroup``, bpffs at ``/sys/fs/bpf``, modules), runs :mod:`socksplice.tools.matrix.checks`, and
writes ``checks.json`` as a tar stream onto the raw results disk, which the host reads back with
:func:`read_results`. The serial console carries only logs.
"""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

from socksplice.tools.matrix.errors import MatrixError, run
from socksplice.tools.matrix.image import PROJECT_MOUNT, SITE_DIR

PROJECT_PARTS = ("src", "tests", "pyproject.toml", "loadgen/bin")
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".mypy_cache", ".ruff_cache")
RESULTS_MIB = 16
MODULES = (
    "veth bridge br_netfilter nf_tables nft_chain_nat nft_compat nf_nat nf_conntrack "
    "xt_nat xt_conntrack xt_MASQUERADE iptable_nat iptable_filter ip6table_nat ip6table_filter"
)

INIT_SCRIPT = f"""#!/bin/sh
# socksplice kernel matrix guest init (run by the image's stub init as PID 1).
export PATH={PROJECT_MOUNT}/loadgen/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
export PYTHONPATH={PROJECT_MOUNT}/src:{SITE_DIR} PYTHONDONTWRITEBYTECODE=1 CI=true
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mkdir -p /run/netns /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t bpf bpf /sys/fs/bpf
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
for m in {MODULES}; do modprobe -q $m 2>/dev/null; done
ip link set lo up
hostname socksplice-matrix
echo "socksplice-matrix: kernel $(uname -r): running checks"
mkdir -p /tmp/results
cd {PROJECT_MOUNT}
python3 -m socksplice.tools.matrix.checks --out /tmp/results/checks.json $(cat {PROJECT_MOUNT}/matrix-args)
echo "socksplice-matrix: checks exit $?"
for dev in /sys/block/vd*; do
  if [ "$(cat "$dev/serial")" = results ]; then
    tar -C /tmp/results -cf "/dev/${{dev##*/}}" ./checks.json && sync
  fi
done
echo "socksplice-matrix: done"
echo o > /proc/sysrq-trigger
sleep 30
"""


def make_project_disk(project: Path, disk: Path, args: list[str]) -> Path:
    """Pack the project's code and the init script into ``disk`` (ext4, mounted read-only)."""
    staging = disk.with_suffix(".d")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        for part in PROJECT_PARTS:
            src = project / part
            if src.is_dir():
                shutil.copytree(src, staging / part, ignore=IGNORE, symlinks=True)
            elif src.exists():
                (staging / part).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, staging / part)
        (staging / "matrix-init.sh").write_text(INIT_SCRIPT)
        (staging / "matrix-args").write_text(" ".join(args) + "\n")
        disk.unlink(missing_ok=True)
        run(["mkfs.ext4", "-q", "-F", "-L", "project", "-d", staging, disk, "128M"], "mkfs.ext4 -d (project)")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return disk


def make_results_disk(disk: Path) -> Path:
    """A zeroed raw disk; the guest writes a tar stream onto it."""
    with disk.open("wb") as f:
        f.truncate(RESULTS_MIB << 20)
    return disk


def read_results(disk: Path) -> dict[str, Any]:
    """``checks.json`` from the tar stream the guest wrote; MatrixError when there is none."""
    try:
        with tarfile.open(disk, "r:") as tar:
            member = tar.extractfile("./checks.json")
            if member is None:
                raise MatrixError(f"{disk}: checks.json is not a file")
            doc: dict[str, Any] = json.loads(member.read())
            return doc
    except (tarfile.TarError, KeyError, ValueError) as exc:
        raise MatrixError(f"{disk}: the guest wrote no results ({exc})") from exc
