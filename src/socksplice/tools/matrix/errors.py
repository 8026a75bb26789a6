"""The matrix's one error: a host-side step (apt, debootstrap, mkfs, qemu) failed."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from socksplice.errors import PermanentError


class MatrixError(PermanentError):
    """Building the image or booting a kernel failed; the message names the step and its output."""


def run(cmd: Sequence[str | Path], what: str, timeout: float = 1800, cwd: Path | None = None) -> str:
    """Run ``cmd``; return stdout; raise :class:`MatrixError` naming ``what`` with stderr's tail."""
    try:
        done = subprocess.run(
            [str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, cwd=cwd, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MatrixError(f"{what}: {exc}") from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-15:]
        raise MatrixError(f"{what}: exit {done.returncode}: " + "\n".join(tail))
    return done.stdout
