"""Kernel headers for bcc: the running kernel's own, or packaged ones as a fallback.

bcc compiles at run time against ``/lib/modules/$(uname -r)/build`` (and ``source``). Hosts and
container images often lack them. Debian's ``linux-headers-*`` packages of another version split
the tree into an arch part and a ``-common`` part; bcc's ``BCC_KERNEL_SOURCE`` takes one
directory, so the fallback builds a merged tree of symlinks in a writable runtime directory
(``/lib/modules`` may be a read-only hostPath in a pod) and points bcc at it. The layouts the
programs use (``bpf_sock_ops``, ``sk_msg_md``) are UAPI and stable across versions.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from socksplice.errors import KernelUnsupported

log = logging.getLogger(__name__)

RUNTIME_DIR = Path("/run/socksplice/kernel-headers")


@dataclass(frozen=True)
class Headers:
    path: Path
    packaged: bool  # True when the fallback is in use
    description: str


def _own(release: str) -> Path | None:
    build = Path("/lib/modules") / release / "build"
    if (build / "include").is_dir() or (Path("/lib/modules") / release / "source" / "include").is_dir():
        return build
    return None


# Where packaged headers may be: Debian's place, and the container image's copy (a pod mounts
# the node's /usr/src over the image's, hiding the headers the image installed there).
PACKAGED_ROOTS = (Path("/usr/src"), Path("/opt/socksplice/kernel-headers"))


def _packaged_candidates(roots: tuple[Path, ...] = PACKAGED_ROOTS) -> list[tuple[Path, Path]]:
    """(arch dir, common dir) pairs of Debian header packages, newest first."""
    pairs = []
    for src_root in roots:
        for arch in sorted(glob.glob(str(src_root / "linux-headers-*-amd64")), reverse=True) + sorted(
            glob.glob(str(src_root / "linux-headers-*-arm64")), reverse=True
        ):
            common = Path(arch.rsplit("-", 1)[0] + "-common")
            if common.is_dir():
                pairs.append((Path(arch), common))
    return pairs


def _merge(arch: Path, common: Path, target: Path) -> None:
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for src in (common, arch):  # arch-specific files (generated headers, .config) win
        subprocess.run(["cp", "-rsf", f"{src}/.", f"{tmp}/"], check=True)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)


def ensure(release: str | None = None, runtime_dir: Path = RUNTIME_DIR) -> Headers:
    """Find headers for bcc; set BCC_KERNEL_SOURCE when falling back. Raises KernelUnsupported."""
    release = release or os.uname().release
    if os.environ.get("BCC_KERNEL_SOURCE"):
        path = Path(os.environ["BCC_KERNEL_SOURCE"])
        return Headers(path, packaged=True, description=f"BCC_KERNEL_SOURCE={path} (set by the environment)")
    own = _own(release)
    if own is not None:
        return Headers(own, packaged=False, description=f"kernel's own headers at {own}")
    candidates = _packaged_candidates()
    if not candidates:
        raise KernelUnsupported(
            f"kernel headers: none for {release} under /lib/modules and no packaged headers under /usr/src; "
            "install linux-headers-$(uname -r) or Debian's linux-headers-amd64 (scripts/install.sh does)"
        )
    arch, common = candidates[0]
    target = runtime_dir / arch.name
    if not (target / "include").is_dir():
        _merge(arch, common, target)
    os.environ["BCC_KERNEL_SOURCE"] = str(target)
    log.warning(
        "headers: no kernel headers for %s: using packaged %s (merged at %s)", release, arch.name, target
    )
    return Headers(target, packaged=True, description=f"packaged {arch.name} for kernel {release}")
