"""An in-memory API server under the real ``kubernetes`` client, for ``kubeapi.Kube``.

``FakeApi`` replaces the urllib3 pool of a real ``ApiClient``: every request the client sends
arrives here as method and URL, is answered from objects kept by resource, namespace and name
(list, watch, get, create, merge-patch of the object or its ``status``, delete) with the API's status
codes (404, 409, and any ``fail`` set by a test), and is recorded in ``requests``. So the tests
run the adaptor, the client's serialisation and ``ApiException`` for real, without a cluster.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from typing import Any
from urllib.parse import parse_qs, urlsplit

import urllib3
from kubernetes import client

from socksplice.kubeapi import Kube


def _merge(into: dict[str, Any], patch: dict[str, Any]) -> None:
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        elif v is None:
            into.pop(k, None)
        else:
            into[k] = v


def _where(path: str) -> tuple[str, str, str, str]:
    """(resource, namespace, name, subresource) of an API path."""
    parts = path.strip("/").split("/")
    rest = parts[2:] if parts[0] == "api" else parts[3:]
    ns = ""
    if rest[0] == "namespaces" and len(rest) >= 3:
        ns, rest = rest[1], rest[2:]
    rest = [*rest, "", ""]
    return rest[0], ns, rest[1], rest[2]


class _Body(io.BytesIO):
    """A response body that reports itself closed at its end (as a socket's does), so urllib3's
    streaming read stops there."""

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        if not data:
            self.close()
        return data

    def read1(self, size: int | None = -1) -> bytes:
        return self.read(size)


class FakeApi:
    def __init__(self) -> None:
        self.objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
        self.requests: list[tuple[str, str]] = []
        self.fail: dict[tuple[str, str], int] = {}
        """(method, resource) → HTTP status to answer with instead."""
        self.watches: dict[str, list[dict[str, Any]]] = {}
        """resource → the events a watch of it streams (then the stream ends)."""
        self.queries: list[dict[str, list[str]]] = []

    def kube(self) -> Kube:
        api = client.ApiClient(client.Configuration(host="http://fake.invalid"))
        api.rest_client.pool_manager = self
        return Kube(api)

    def add(self, resource: str, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        self.objects.setdefault(resource, {})[meta.get("namespace", ""), meta["name"]] = obj

    def get(self, resource: str, name: str, namespace: str = "") -> dict[str, Any] | None:
        return self.objects.get(resource, {}).get((namespace, name))

    def counts(self) -> Counter[str]:
        """Requests by ``METHOD resource``."""
        return Counter(f"{m} {_where(p)[0]}" for m, p in self.requests)

    def request(self, method: str, url: str, body: str | None = None, **_: Any) -> urllib3.HTTPResponse:
        parts = urlsplit(url)
        self.requests.append((method, parts.path))
        resource, ns, name, sub = _where(parts.path)
        if (method, resource) in self.fail:
            return self._answer(self.fail[method, resource], {"message": f"{resource} refused"})
        store = self.objects.setdefault(resource, {})
        query = parse_qs(parts.query)
        self.queries.append(query)
        if method == "GET" and query.get("watch") == ["true"]:
            lines = "".join(json.dumps(e) + "\n" for e in self.watches.get(resource, []))
            return self._answer(200, None, lines.encode())
        if method == "GET" and not name:
            fields = dict(f.split("=", 1) for f in (query.get("fieldSelector") or [""])[0].split(",") if f)
            items = [
                o
                for (o_ns, _n), o in sorted(store.items())
                if (not ns or o_ns == ns)
                and all(o.get("spec", {}).get(k.split(".", 1)[1]) == v for k, v in fields.items())
            ]
            return self._answer(200, {"items": items, "metadata": {"resourceVersion": "1"}})
        obj = store.get((ns, name))
        if method == "POST":
            new = json.loads(body or "{}")
            key = (ns, new["metadata"]["name"])
            if key in store:
                return self._answer(409, {"message": "already exists"})
            store[key] = new
            return self._answer(201, new)
        if obj is None:
            return self._answer(404, {"message": f"{resource} {name!r} not found"})
        if method == "GET":
            return self._answer(200, obj)
        if method == "PATCH":
            patch = json.loads(body or "{}")
            _merge(obj, {"status": patch.get("status") or {}} if sub == "status" else patch)
            return self._answer(200, obj)
        if method == "DELETE":
            del store[ns, name]
            return self._answer(200, obj)  # as the API answers a delete: the object deleted
        return self._answer(405, {"message": method})

    @staticmethod
    def _answer(status: int, obj: Any, raw: bytes = b"") -> urllib3.HTTPResponse:
        return urllib3.HTTPResponse(
            body=_Body(raw or json.dumps(obj).encode()),
            status=status,
            reason={200: "OK", 201: "Created", 404: "Not Found", 409: "Conflict"}.get(status, "Error"),
            headers={"Content-Type": "application/json"},
            preload_content=False,
        )
