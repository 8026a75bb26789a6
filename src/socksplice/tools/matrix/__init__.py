"""``socksplice kernel-matrix``: run socksplice's own checks on the kernels users run.

Each configured Debian cloud kernel boots under qemu (TCG, no KVM needed) from a cached root
filesystem image built from Debian packages; a guest init script runs :mod:`.checks` (the doctor,
the agent in local mode, the data-path tests, the conformance suite when the project has one)
against a read-only copy of this project and writes the results to a scratch disk. The running
kernel is checked in place by the same module, so every column of ``docs/kernels.md`` comes from
one code path.

Modules: :mod:`.kernels` (which kernels, resolved with apt), :mod:`.image` (the cached image),
:mod:`.guest` (project disk, init script), :mod:`.booting` (qemu), :mod:`.checks` (what runs
on each kernel), :mod:`.report` (JSON, text, markdown), :mod:`.main` (the command).
"""

from socksplice.tools.matrix.errors import MatrixError

__all__ = ["MatrixError"]
