"""Local mode's sources, root-free: ``LocalSource`` and ``LocalPolicies`` parse their files again
only after inotify saw them change, never for the status file the agent writes next to them."""

from __future__ import annotations

from pathlib import Path

import pytest

from socksplice.api import manifests
from socksplice.api.nodestatus import NodeStatus
from socksplice.local import LocalTopology, default_cluster, state
from socksplice.nodeagent import localsource
from socksplice.nodeagent.localsource import LocalSource, StatusFile, watch_local
from socksplice.nodeagent.policywatch import LocalPolicies

SPLICE = """apiVersion: socksplice.io/v1alpha1
kind: SocketSplice
metadata: {name: bench, namespace: demo}
spec:
  podSelector: {matchLabels: {role: bench}}
"""
POLICY = """apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: demo}
spec:
  podSelector: {}
  policyTypes: [Ingress]
"""


def up(directory: Path) -> None:
    """A ``topology.json`` as ``local up`` writes it (no kernel objects: the agent only reads it)."""
    topology = LocalTopology(
        default_cluster(),
        state_dir=directory,
        registry_dir=directory / "runs",
        cgroup_root=directory / "cgroup",
    )
    state.save(topology, directory)


class Counting:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.topologies = self.manifests = 0
        load, load_dir = state.load, manifests.load_manifest_dir

        def counting_load(directory: Path) -> LocalTopology:
            self.topologies += 1
            return load(directory)

        def counting_load_dir(path: Path) -> object:
            self.manifests += 1
            return load_dir(path)

        monkeypatch.setattr(state, "load", counting_load)
        monkeypatch.setattr(localsource, "load_manifest_dir", counting_load_dir)

    @property
    def reads(self) -> tuple[int, int]:
        return self.topologies, self.manifests


def test_the_snapshot_is_read_again_only_after_a_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    up(tmp_path)
    reads = Counting(monkeypatch)
    source = LocalSource(tmp_path, "local")
    first = source.snapshot()
    assert [p.key for p in first.pods] == ["demo/client", "demo/server"] and first.splices == ()
    assert reads.reads == (1, 1)
    assert source.snapshot() is first and source.snapshot() is first
    assert reads.reads == (1, 1)
    (tmp_path / "manifests" / "bench.yaml").write_text(SPLICE)
    second = source.snapshot()
    assert [s.key for s in second.splices] == ["demo/bench"] and reads.reads == (1, 2)
    assert source.snapshot() is second
    up(tmp_path)  # a new run: new netns and cgroups
    third = source.snapshot()
    assert reads.reads == (2, 2) and third.locations != second.locations
    assert source.snapshot() is third and reads.reads == (2, 2)


def test_the_agents_own_status_file_is_not_a_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    up(tmp_path)
    reads = Counting(monkeypatch)
    with watch_local(tmp_path) as watch:
        source, policies = LocalSource(tmp_path, "local", watch), LocalPolicies(tmp_path, watch)
        first = source.snapshot()
        policies.policies()  # the loop's turn asks both
        StatusFile(tmp_path).publish(NodeStatus(node_name="local"))
        assert not watch.wait(0.2)  # the loop sleeps on
        assert source.snapshot() is first and reads.reads == (1, 1)


def test_a_missing_topology_is_an_error_until_it_appears(tmp_path: Path) -> None:
    source = LocalSource(tmp_path, "local")
    with pytest.raises(Exception, match="no local topology"):
        source.snapshot()
    with pytest.raises(Exception, match="no local topology"):
        source.snapshot()  # a failed read is not cached as a success
    up(tmp_path)
    assert len(source.snapshot().pods) == 2


def test_policies_are_read_again_only_after_a_change(tmp_path: Path) -> None:
    with watch_local(tmp_path) as watch:
        policies = LocalPolicies(tmp_path, watch)
        first = policies.policies()
        assert first.policies == () and policies.policies() is first
        (tmp_path / "networkpolicies").mkdir()  # appears after the start: watched from then on
        (tmp_path / "networkpolicies" / "deny.yaml").write_text(POLICY)
        assert watch.wait(5.0)
        second = policies.policies()
        assert [p.name for p in second.policies] == ["deny"] and policies.policies() is second
        (tmp_path / "networkpolicies" / "deny.yaml").unlink()
        assert policies.policies().policies == ()
