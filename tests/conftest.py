"""Root conftest shared by every test folder.

- ``e2e`` tests need a real cluster and run only with ``--with-e2e``.
- ``kernel`` tests need root, cgroup2, network namespaces and iptables. Where something is
  missing they are skipped with the reason, except under ``CI=true``, where they fail naming
  the missing capability: CI must never pass by silently skipping the data path.
- ``topology`` / ``make_topology`` build local netns "pods" (socksplice.local) and always tear
  them down. Example::

      @pytest.mark.kernel
      def test_reach(topology):
          topology.pod("client", "demo").run(["true"])
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from socksplice.local import LocalCluster, LocalTopology


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--with-e2e", action="store_true", default=False, help="run e2e tests (needs KUBECONFIG)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--with-e2e"):
        return
    skip = pytest.mark.skip(reason="e2e: needs a real cluster; run with --with-e2e")
    for item in items:
        if "e2e" in item.keywords:
            item.add_marker(skip)


def missing_kernel_capabilities() -> list[str]:
    """Names of what ``kernel`` tests need and this machine lacks (empty when all is there)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (euid 0)")
    try:
        from socksplice.kernel import cgroup2

        cgroup2.find_root()
    except Exception as exc:
        missing.append(f"cgroup2 ({exc})")
    if not Path("/proc/self/ns/net").exists():
        missing.append("network namespaces (/proc/self/ns/net)")
    for tool in ("nsenter", "iptables", "sysctl"):
        if shutil.which(tool) is None:
            missing.append(f"{tool} in PATH")
    return missing


def require_kernel() -> None:
    """Skip (or, under CI=true, fail) the calling test when kernel capabilities are missing."""
    missing = missing_kernel_capabilities()
    if not missing:
        return
    message = "kernel test needs: " + ", ".join(missing)
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message} (CI=true: not skipping)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(autouse=True)
def _kernel_gate(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("kernel") is not None:
        require_kernel()


@pytest.fixture(name="require_kernel")
def require_kernel_fixture() -> None:
    require_kernel()


@pytest.fixture
def make_topology(tmp_path: Path) -> Iterator[Callable[[LocalCluster], LocalTopology]]:
    """Factory: ``make_topology(cluster)`` brings a LocalTopology up; all are torn down after."""
    from socksplice.local import LocalTopology

    require_kernel()
    made: list[LocalTopology] = []

    def make(cluster: LocalCluster) -> LocalTopology:
        topo = LocalTopology(cluster, state_dir=tmp_path / f"state-{len(made)}")
        made.append(topo)
        return topo.up()

    yield make
    for topo in reversed(made):
        topo.down()


@pytest.fixture
def topology(make_topology: Callable[[LocalCluster], LocalTopology]) -> LocalTopology:
    """The embedded default local cluster (demo/client, demo/server, service 198.18.1.1:80)."""
    from socksplice.local import default_cluster

    return make_topology(default_cluster())
