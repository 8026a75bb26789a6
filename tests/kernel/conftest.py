from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from socksplice.local.topology import LocalTopology
from tests.kernel.splicing import SpliceEnv, private_bpffs, splice_env


@pytest.fixture
def pin_root(tmp_path: Path) -> Iterator[Path]:
    """A private bpffs for this test's pins (unmounted afterwards)."""
    with private_bpffs(tmp_path / "bpffs") as root:
        yield root


@pytest.fixture
def env(topology: LocalTopology, pin_root: Path, tmp_path: Path) -> Iterator[SpliceEnv]:
    """The default local cluster with the real agent and data path; no SocketSplice applied yet."""
    with splice_env(topology, pin_root, tmp_path / "agent") as e:
        yield e
