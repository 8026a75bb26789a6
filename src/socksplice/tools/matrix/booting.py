"""Boot one kernel under qemu (TCG: no KVM needed) with the root image, the project disk and a
results disk; the guest powers off when its checks are done.

The root is the only NVMe disk (NVMe is built into Debian's cloud kernels, so no initramfs is
needed, and ``root=/dev/nvme0n1`` cannot name another disk); the project and results disks are
virtio, loaded by the stub init and found by serial."""

from __future__ import annotations

import logging
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from socksplice.tools.matrix.errors import MatrixError
from socksplice.tools.matrix.guest import make_project_disk, make_results_disk, read_results
from socksplice.tools.matrix.image import STUB_INIT_PATH, Image
from socksplice.tools.matrix.kernels import Kernel

log = logging.getLogger("socksplice.tools.matrix")

MEMORY_MIB = 3072
CPUS = 2


@dataclass(frozen=True)
class Boot:
    results: dict[str, Any]
    seconds: float
    console: str
    """The serial console (kernel and init logs), for the report when something failed."""


def qemu_command(vmlinuz: Path, root: Path, project: Path, results: Path, console: Path) -> list[str]:
    append = (
        f"console=ttyS0 root=/dev/nvme0n1 rootfstype=ext4 rootwait rw init={STUB_INIT_PATH} "
        "panic=-1 quiet loglevel=4"
    )
    drives = ["-drive", f"file={root},if=none,id=root,format=raw,snapshot=on"]
    drives += ["-device", "nvme,serial=root,drive=root"]
    for name, path, extra in (("project", project, ",readonly=on"), ("results", results, "")):
        drives += ["-drive", f"file={path},if=none,id={name},format=raw{extra}"]
        drives += ["-device", f"virtio-blk-pci,serial={name},drive={name}"]
    return [
        "qemu-system-x86_64",
        "-accel",
        "tcg,thread=multi",
        "-cpu",
        "max",
        "-m",
        str(MEMORY_MIB),
        "-smp",
        str(CPUS),
        "-display",
        "none",
        "-serial",
        f"file:{console}",
        "-monitor",
        "none",
        "-no-reboot",
        "-nic",
        "none",
        "-kernel",
        str(vmlinuz),
        *drives,
        "-append",
        append,
    ]


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def boot(kernel: Kernel, image: Image, project: Path, args: list[str], timeout: float) -> Boot:
    """Boot ``kernel``, run the checks with ``args``, return their JSON document.

    The serial console goes to ``console-RELEASE.log`` beside the image (kept for debugging).
    """
    with tempfile.TemporaryDirectory(prefix="socksplice-matrix-") as tmp:
        proj = make_project_disk(project, Path(tmp, "project.img"), args)
        results = make_results_disk(Path(tmp, "results.img"))
        log_path = image.path.with_name(f"console-{kernel.release}.log")
        cmd = qemu_command(image.kernels[kernel.release], image.path, proj, results, log_path)
        log.info("matrix: %s: booting %s", kernel.name, kernel.release)
        start = time.monotonic()
        try:
            done = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            tail = _read(log_path)[-3000:]
            raise MatrixError(
                f"kernel {kernel.name}: qemu did not finish in {timeout:.0f} s; console:\n{tail}"
            ) from exc
        except OSError as exc:
            raise MatrixError(f"kernel {kernel.name}: cannot run qemu: {exc}") from exc
        console = _read(log_path) + done.stderr
        seconds = time.monotonic() - start
        try:
            doc = read_results(results)
        except MatrixError as exc:
            raise MatrixError(f"kernel {kernel.name}: {exc}; console:\n{console[-3000:]}") from exc
        return Boot(doc, seconds, console)
