"""The Kubernetes adaptor over the real client and an in-memory API server: what callers see."""

from __future__ import annotations

import pytest

from socksplice.errors import PermanentError, TemporaryError
from socksplice.kubeapi import Gone
from tests.unit.fakeapi import FakeApi
from tests.unit.fixtures import recorded as apifixtures


def test_absent_objects_are_none_and_writes_are_idempotent() -> None:
    api = FakeApi()
    kube = api.kube()
    assert kube.get_splicenode("node-a") is None
    assert kube.get_socketsplice("demo", "web") is None
    assert kube.get_job("demo", "run") is None
    obj = {"apiVersion": "socksplice.io/v1alpha1", "kind": "SocketSplice"}
    obj |= {"metadata": {"name": "web", "namespace": "demo"}, "spec": {}}
    assert kube.create(obj) is True
    assert kube.create(obj) is False
    assert kube.get_socketsplice("demo", "web") == obj
    assert kube.delete("SocketSplice", "demo", "web") is True
    assert kube.delete("SocketSplice", "demo", "web") is False
    assert kube.patch_splicenode_status("node-a", {"status": {}}) is False


def test_status_patch_merges_into_the_subresource() -> None:
    api = FakeApi()
    api.add("socketsplices", {"metadata": {"name": "web", "namespace": "demo"}, "spec": {"x": 1}})
    api.kube().patch_socketsplice_status("demo", "web", {"matchedPods": 2})
    assert api.get("socketsplices", "web", "demo") == {
        "metadata": {"name": "web", "namespace": "demo"},
        "spec": {"x": 1},
        "status": {"matchedPods": 2},
    }


def test_field_selector_reaches_the_server() -> None:
    api = FakeApi()
    for name, node in (("a", "node-a"), ("b", "node-b")):
        api.add("pods", {"metadata": {"name": name, "namespace": "demo"}, "spec": {"nodeName": node}})
    items = api.kube().list_pods(fields="spec.nodeName=node-b")["items"]
    assert [p["metadata"]["name"] for p in items] == ["b"]


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (403, PermanentError),
        (422, PermanentError),
        (400, PermanentError),
        (409, TemporaryError),
        (429, TemporaryError),
        (500, TemporaryError),
        (503, TemporaryError),
        (410, Gone),
    ],
)
def test_api_errors_keep_status_and_object(status: int, error: type[Exception]) -> None:
    api = FakeApi()
    api.fail["GET", "splicenodes"] = status
    with pytest.raises(error, match=rf"^get SpliceNode node-a: {status} \w+: splicenodes refused$") as info:
        api.kube().get_splicenode("node-a")
    if error is PermanentError:
        assert not isinstance(info.value, TemporaryError)


def test_a_recorded_watch_through_the_client_ends_in_gone() -> None:
    api = FakeApi()
    api.watches["pods"] = apifixtures.load("watch-pods.jsonl")
    events = api.kube().watch_pods("1234", fields="spec.nodeName=node-a")
    seen = []
    with pytest.raises(Gone, match=r"^watch pods: 410 Expired: too old resource version"):
        for event in events:
            seen.append((event["type"], event["object"]["metadata"].get("name")))
    assert seen == [("ADDED", "web"), ("MODIFIED", "client"), ("BOOKMARK", None), ("DELETED", "server")]
    query = api.queries[-1]
    assert query["resourceVersion"] == ["1234"]
    assert query["fieldSelector"] == ["spec.nodeName=node-a"]
    assert query["allowWatchBookmarks"] == ["true"]
