"""The guest root filesystem image: built from Debian packages, cached, rebuilt only when its inputs change.

Layers, each cached under the cache directory (default ``/var/cache/socksplice/matrix``) and keyed
by a hash of what went into it, so a re-run with the same inputs does nothing:

- ``base-KEY/``: ``debootstrap --variant=minbase`` of Debian bookworm with :data:`BASE_PACKAGES`;
- ``debs/``: each kernel's image and header packages (``apt-get download``), unpacked with
  ``dpkg-deb -x`` (modules under ``/lib/modules/RELEASE``, headers with their ``build`` link);
- ``site-KEY/``: the project's Python dependencies (``pip install --target`` from PyPI wheels for
  CPython 3.11, the guest's Python), used by the guest through ``PYTHONPATH``;
- ``image-KEY.img``: all of the above plus :data:`STUB_INIT`, packed with ``mkfs.ext4 -d`` (no
  loop mount) as a raw disk; ``vmlinuz-RELEASE`` beside it.

The project itself is not in the image: it goes on a small read-only disk per run (:mod:`.guest`),
so code changes never rebuild the image.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from socksplice.tools.matrix.errors import MatrixError, run
from socksplice.tools.matrix.kernels import Kernel

log = logging.getLogger("socksplice.tools.matrix")

DEFAULT_CACHE = Path("/var/cache/socksplice/matrix")
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = (
    "python3",
    "python3-bpfcc",  # bcc and libbcc, the data path's loader
    "iproute2",
    "iptables",  # DNAT services of local mode
    "kmod",  # modprobe: veth, bridge and netfilter are modules on Debian's cloud kernels
    "procps",  # sysctl
    "util-linux",  # nsenter, setpriv, mount
    "bpftool",
)
EXTRA_PYTHON = ("pytest>=8",)
"""Python packages the guest needs beyond the project's runtime dependencies (the test runner)."""
SKIP_PYTHON = frozenset({"kubernetes", "kopf"})
"""Runtime dependencies nothing run in the guest imports (the Kubernetes-facing roles)."""

WHEEL_TARGET = (
    "--only-binary=:all:",
    *("--python-version", "3.11", "--implementation", "cp"),
    *("--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64", "--platform", "any"),
)
"""pip options selecting wheels for the guest's Python (Debian 12: CPython 3.11, x86-64)."""
STUB_INIT_PATH = "/sbin/socksplice-init"
PROJECT_MOUNT = "/opt/socksplice/project"
SITE_DIR = "/opt/socksplice/site"
STUB_INIT = f"""#!/bin/sh
# socksplice kernel matrix: mount the project disk (virtio, serial "project") read-only, run its init.
# The root is the only NVMe disk, so root=/dev/nvme0n1 is always it; virtio is a module here.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
modprobe -q virtio_pci; modprobe -q virtio_blk
mkdir -p {PROJECT_MOUNT}
for try in 1 2 3 4 5 6 7 8 9 10; do
  for dev in /sys/block/vd*; do
    [ "$(cat "$dev/serial" 2>/dev/null)" = project ] && mount -o ro "/dev/${{dev##*/}}" {PROJECT_MOUNT}
  done
  [ -f {PROJECT_MOUNT}/matrix-init.sh ] && exec /bin/sh {PROJECT_MOUNT}/matrix-init.sh
  sleep 0.5
done
echo "socksplice-matrix: no project disk"
echo o > /proc/sysrq-trigger
"""


@dataclass(frozen=True)
class Image:
    path: Path
    """The raw ext4 root disk."""
    kernels: dict[str, Path]
    """kernel release → its vmlinuz."""


def _key(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:12]


def ensure_base(cache: Path) -> Path:
    """The debootstrap root filesystem, built once per package list."""
    base = cache / f"base-{_key(SUITE, MIRROR, BASE_PACKAGES)}"
    if (base / ".socksplice-complete").exists():
        return base
    partial = base.with_name(base.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    log.info("matrix: image: debootstrap %s into %s (a few minutes, once)", SUITE, base)
    run(
        ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", SUITE, partial, MIRROR],
        "debootstrap",
        timeout=3600,
    )
    (partial / ".socksplice-complete").write_text("ok\n")
    shutil.rmtree(base, ignore_errors=True)
    partial.rename(base)
    return base


def ensure_debs(cache: Path, packages: Sequence[str]) -> list[Path]:
    """``apt-get download`` each package once into ``cache/debs``; return the .deb files."""
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    found: list[Path] = []
    for pkg in packages:
        have = sorted(debs.glob(f"{pkg}_*.deb"))
        if not have:
            log.info("matrix: image: apt-get download %s", pkg)
            run(["apt-get", "download", pkg], f"apt-get download {pkg}", cwd=debs)
            have = sorted(debs.glob(f"{pkg}_*.deb"))
        if not have:
            raise MatrixError(f"apt-get download {pkg}: no .deb appeared in {debs}")
        found.append(have[-1])
    return found


def python_requirements(pyproject: Path) -> list[str]:
    """The project's runtime dependencies the guest needs, plus :data:`EXTRA_PYTHON`."""
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    keep = [d for d in deps if re.split(r"[<>=!~\[ ;]", d, maxsplit=1)[0].lower() not in SKIP_PYTHON]
    return [*keep, *EXTRA_PYTHON]


def ensure_site(cache: Path, requirements: Sequence[str]) -> Path:
    """Wheels for CPython 3.11 installed into ``site-KEY`` (pip's cache makes re-downloads free)."""
    site = cache / f"site-{_key(tuple(requirements))}"
    if (site / ".socksplice-complete").exists():
        return site
    shutil.rmtree(site, ignore_errors=True)
    log.info("matrix: image: pip install --target %s %s", site, " ".join(requirements))
    run(
        [sys.executable, "-m", "pip", "install", "-q", "--target", site, *WHEEL_TARGET, *requirements],
        "pip install (guest python packages)",
    )
    (site / ".socksplice-complete").write_text("ok\n")
    return site


MERGED_USR = ("bin", "sbin", "lib", "lib32", "lib64")
"""Top-level directories that are links into ``/usr`` on Debian 12 (merged /usr)."""


def unpack(deb: Path, root: Path) -> None:
    """``dpkg-deb -x`` into ``root`` without replacing merged-/usr links with directories.

    Kernel packages ship ``/lib/modules``; extracting them straight into the root would turn the
    ``lib -> usr/lib`` link into a directory and the guest could no longer find its loader.
    """
    tmp = root.with_name(root.name + ".deb")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        run(["dpkg-deb", "-x", deb, tmp], f"dpkg-deb -x {deb.name}")
        for top in MERGED_USR:
            if (tmp / top).is_dir() and not (tmp / top).is_symlink():
                shutil.copytree(tmp / top, tmp / "usr" / top, symlinks=True, dirs_exist_ok=True)
                shutil.rmtree(tmp / top)
        run(["cp", "-a", f"{tmp}/.", root], f"merge {deb.name}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _size_mib(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = Path(dirpath, f)
            if not p.is_symlink():
                total += p.stat().st_size
    return int(total / (1 << 20) * 1.25) + 512


def ensure_image(cache: Path, kernels: Sequence[Kernel], pyproject: Path) -> Image:
    """The root disk for ``kernels``: base + their packages + Python packages + the stub init."""
    cache.mkdir(parents=True, exist_ok=True)
    base = ensure_base(cache)
    debs = [deb for k in kernels for deb in ensure_debs(cache, k.packages)]
    site = ensure_site(cache, python_requirements(pyproject))
    key = _key(base.name, site.name, tuple(d.name for d in debs), STUB_INIT)
    image = cache / f"image-{key}.img"
    vmlinuz = {k.release: cache / f"vmlinuz-{k.release}" for k in kernels}
    if image.exists() and all(p.exists() for p in vmlinuz.values()):
        return Image(image, vmlinuz)
    staging = cache / f"staging-{key}"
    shutil.rmtree(staging, ignore_errors=True)
    log.info("matrix: image: assembling %s", image.name)
    run(["cp", "-a", "--reflink=auto", base, staging], "copy base root filesystem")
    try:
        for deb in debs:
            unpack(deb, staging)
        for k in kernels:
            build = staging / "lib/modules" / k.release / "build"
            if not build.is_symlink() and not build.exists():
                build.symlink_to(f"/usr/src/linux-headers-{k.release}")
            run(["depmod", "-b", staging, k.release], f"depmod {k.release}")
            shutil.copyfile(staging / "boot" / f"vmlinuz-{k.release}", vmlinuz[k.release])
        shutil.copytree(site, staging / SITE_DIR.lstrip("/"), symlinks=True)
        init = staging / STUB_INIT_PATH.lstrip("/")
        init.write_text(STUB_INIT)
        init.chmod(0o755)
        (staging / PROJECT_MOUNT.lstrip("/")).mkdir(parents=True, exist_ok=True)
        partial = image.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        run(
            ["mkfs.ext4", "-q", "-F", "-L", "root", "-d", staging, partial, f"{_size_mib(staging)}M"],
            "mkfs.ext4 -d (root image)",
        )
        partial.rename(image)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for old in cache.glob("image-*.img"):
        if old != image:
            old.unlink()
    return Image(image, vmlinuz)
