"""Which kernels the matrix boots: Debian cloud kernel lines, resolved with apt to the newest build.

A :class:`KernelLine` names a Debian package pattern (``linux-image-6.1.0-N-cloud-amd64``); apt's
package lists (``apt-cache search``) decide which build is newest, so the matrix follows Debian's
security updates without a code change. ``running`` is the kernel of this machine, checked in place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from socksplice.tools.matrix.errors import MatrixError, run

RUNNING = "running"


@dataclass(frozen=True)
class KernelLine:
    name: str
    """The column name: ``6.1``, ``6.12``."""
    image_re: str
    """Regex matching the Debian image package; group 1 is the kernel release (``uname -r``)."""


LINES: dict[str, KernelLine] = {
    "6.1": KernelLine("6.1", r"^linux-image-(6\.1\.0-(\d+)-cloud-amd64)$"),
    "6.12": KernelLine("6.12", r"^linux-image-(6\.12\.(\d+)\+deb12-cloud-amd64)$"),
}
DEFAULT_KERNELS = ("6.1", "6.12", RUNNING)


@dataclass(frozen=True)
class Kernel:
    name: str
    release: str
    """``uname -r`` inside the guest, e.g. ``6.1.0-41-cloud-amd64``."""
    packages: tuple[str, ...]
    """Debian packages to unpack into the image: image, headers, headers-common."""

    @property
    def image_package(self) -> str:
        return self.packages[0]


def newest(names: list[str], line: KernelLine) -> str:
    """The kernel release of the newest build among package ``names`` (ABI number decides)."""
    pattern = re.compile(line.image_re)
    found = [(int(m.group(2)), m.group(1)) for n in names if (m := pattern.match(n.strip()))]
    if not found:
        raise MatrixError(f"kernel {line.name}: no package matches {line.image_re} (run apt-get update)")
    return max(found)[1]


def header_packages(release: str) -> tuple[str, ...]:
    """``linux-headers-RELEASE`` and the ``linux-headers-*`` packages it depends on (``-common``)."""
    main = f"linux-headers-{release}"
    out = run(["apt-cache", "depends", "--no-recommends", "--no-suggests", main], f"apt-cache depends {main}")
    deps = [m.group(1) for m in re.finditer(r"Depends: (linux-headers-\S+)", out)]
    return (main, *sorted(set(deps)))


def resolve(name: str) -> Kernel:
    """Resolve a kernel line name (``6.1``, ``6.12``) to its newest build in apt's lists."""
    if name not in LINES:
        raise MatrixError(f"unknown kernel {name!r}: choose from {', '.join([*LINES, RUNNING])}")
    line = LINES[name]
    out = run(
        ["apt-cache", "search", "--names-only", line.image_re.replace(r"(\d+)", r"[0-9]+")], "apt-cache"
    )
    release = newest([row.split(" - ")[0] for row in out.splitlines()], line)
    return Kernel(name, release, (f"linux-image-{release}", *header_packages(release)))


def parse_kernels(text: str) -> list[str]:
    """``6.1,6.12,running`` → names, validated, order kept, duplicates dropped."""
    names = list(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    unknown = [n for n in names if n not in LINES and n != RUNNING]
    if unknown or not names:
        raise MatrixError(
            f"--kernels: unknown {unknown or text!r}; choose from {', '.join([*LINES, RUNNING])}"
        )
    return names
