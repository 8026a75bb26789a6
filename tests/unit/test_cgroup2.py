from __future__ import annotations

from pathlib import Path

import pytest

from socksplice.errors import KernelUnsupported
from socksplice.kernel import cgroup2


def test_finds_the_hybrid_cgroup2_mount(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text(
        "tmpfs /sys/fs/cgroup tmpfs rw 0 0\n"
        "cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n"
        "cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n"
    )
    assert cgroup2.find_root(mounts) == Path("/sys/fs/cgroup/unified")


def test_no_cgroup2_is_a_clear_error(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text("cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n")
    with pytest.raises(KernelUnsupported, match="no cgroup v2 hierarchy is mounted"):
        cgroup2.find_root(mounts)
