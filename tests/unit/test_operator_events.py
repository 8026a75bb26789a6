"""Condition changes reach the API as Events, through kopf's real posting machinery.

The operator runs with its own settings (``configuring.configure``); a SpliceNode change goes
through kopf's event processing (``test_operator_following.Operator``), the Events it queues are
posted by kopf's poster (``kopf._core.engines.posting.poster``) with kopf's own API client to an
HTTP server on loopback that records each POST to ``/api/v1/namespaces/NS/events``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from aiohttp import web
from kopf._cogs.clients import auth
from kopf._cogs.structs import credentials, references
from kopf._core.engines import posting

from socksplice.operator.configuring import configure
from tests.unit.fakeapi import FakeApi
from tests.unit.test_operator_following import NODES, _fresh_nodes, _started, api  # noqa: F401

EVENTS = references.Resource("", "v1", "events", kind="Event", namespaced=True, verbs=frozenset({"create"}))


async def _events_server(posted: list[dict[str, Any]]) -> tuple[web.AppRunner, str]:
    async def create(request: web.Request) -> web.Response:
        body = json.loads(await request.text())
        posted.append({"path": request.path, **body})
        return web.json_response(body, status=201)

    app = web.Application()
    app.router.add_post("/api/v1/namespaces/{namespace}/events", create)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


def test_a_degraded_transition_is_posted_as_a_warning_event(api: FakeApi) -> None:  # noqa: F811
    async def run() -> list[dict[str, Any]]:
        posted: list[dict[str, Any]] = []
        runner, url = await _events_server(posted)
        op = await _started(api)
        configure(op.settings)
        vault = credentials.Vault({"fake": credentials.ConnectionInfo(server=url)})
        auth.vault_var.set(vault)
        backbone = references.Backbone()
        await backbone.fill(resources=[EVENTS])
        while not op.queue.empty():
            op.queue.get_nowait()
        poster = asyncio.create_task(
            posting.poster(event_queue=op.queue, backbone=backbone, settings=op.settings)
        )
        try:
            node_b = next(n for n in _fresh_nodes() if n["metadata"]["name"] == "node-b")
            node_b["status"]["lastError"] = "attach failed: EPERM"
            await op.event(NODES, "MODIFIED", node_b)
            for _ in range(100):
                if posted:
                    break
                await asyncio.sleep(0.02)
        finally:
            poster.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poster
            await vault.close()
            await runner.cleanup()
        return posted

    posted = asyncio.run(run())
    warnings = [e for e in posted if e["type"] == "Warning"]
    assert warnings, posted
    event = warnings[0]
    assert event["path"] == "/api/v1/namespaces/demo/events"
    assert event["reason"] == "Status"
    assert event["message"].startswith("Degraded=True")
    assert event["involvedObject"]["kind"] == "SocketSplice"
    assert event["involvedObject"]["name"] == "accel"
