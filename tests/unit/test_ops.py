"""The operations surface: /metrics, /health and ``manage.py rooms``."""

from __future__ import annotations

import io
import typing
import uuid

import pytest
from channels.testing import WebsocketCommunicator
from django.core.management import call_command
from django.test import AsyncClient

from nexios_compat import WebSocket, get_application
from nexios_compat.stores.membership import DatabaseMembershipStore
from nexios_compat.websockets.consumers import WebSocketEndpoint

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("hub_cleanup")]


class Echo(WebSocketEndpoint):
    encoding = "json"

    async def on_connect(self, ws: WebSocket) -> None:
        await ws.accept()
        await self.join_group("ops")

    async def on_receive(self, ws: WebSocket, data: typing.Any) -> None:
        await self.broadcast(data, "ops", save_history=True)


def sample(text: str, line_start: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(line_start))


async def test_metrics_show_connections_and_messages_and_health_reports_ok(settings: typing.Any) -> None:
    settings.ROOT_URLCONF = "project.urls"
    # /metrics answers allowed addresses only (the test client's is 127.0.0.1).
    settings.NEXIOS_COMPAT = {**settings.NEXIOS_COMPAT, "METRICS_ALLOWED_IPS": ["127.0.0.1"]}
    app = get_application()
    app.add_ws_route(Echo.as_route("/ops"))
    client = AsyncClient()
    before = (await client.get("/metrics")).content.decode()
    communicator = WebsocketCommunicator(app, "/ops")
    assert (await communicator.connect())[0]
    await communicator.send_json_to({"n": 1})
    assert await communicator.receive_json_from() == {"n": 1}
    text = (await client.get("/metrics")).content.decode()
    assert sample(text, "nexios_compat_connections ") == 1
    assert sample(text, "nexios_compat_members ") == 1
    assert (
        sample(text, 'nexios_compat_messages_in_total{kind="text"}')
        == sample(before, 'nexios_compat_messages_in_total{kind="text"}') + 1
    )
    assert (
        sample(text, "nexios_compat_history_saved_total")
        == sample(before, "nexios_compat_history_saved_total") + 1
    )
    assert sample(text, "nexios_compat_fanout_latency_seconds_count") > sample(
        before, "nexios_compat_fanout_latency_seconds_count"
    )
    health = await client.get("/health")
    assert health.status_code == 200, health.content
    assert health.json()["database"] == "ok" and health.json()["layer"] == "ok"
    await communicator.disconnect()


def test_rooms_command_lists_rooms_members_and_processes() -> None:
    store = DatabaseMembershipStore()
    store.register_process("proc-1", "layer.chan", 42)
    store.add("lobby", uuid.uuid4(), "proc-1", {"username": "ada"})
    out = io.StringIO()
    call_command("rooms", verbosity=2, stdout=out)
    text = out.getvalue()
    assert "lobby" in text and "ada" in text and "proc-1" in text and "alive" in text
