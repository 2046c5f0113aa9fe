"""A handler that is cancelled (daphne's ``application_close_timeout``) leaves its rooms.

Unit tests cancel the consumer task mid-handler, for an endpoint and a function
handler; the end-to-end test runs a daphne with a short
``--application-close-timeout`` and a handler that blocks past its client leaving.
"""

from __future__ import annotations

import asyncio
import typing
from pathlib import Path

import pytest
from channels.testing import WebsocketCommunicator

from devservers import DaphneServer
from nexios_compat import WebSocket, get_application
from nexios_compat.engine import current_hub
from nexios_compat.models import Member
from nexios_compat.websockets.channels import Channel, ChannelBox, PayloadTypeEnum
from nexios_compat.websockets.consumers import WebSocketEndpoint
from tests.support.helpers import member_count, wait_for
from tests.support.rawsocket import open_raw
from tests.support.site import SECURITY_SETTINGS, migrated_database, server_env, server_stats

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("hub_cleanup")]


async def _rows(room: str) -> int:
    from channels.db import database_sync_to_async

    return await database_sync_to_async(Member.objects.filter(room__name=room).count)()


async def _cancel_mid_handler(app: typing.Any, path: str, room: str, blocked: asyncio.Event) -> None:
    communicator = WebsocketCommunicator(app, path)
    connected, _ = await communicator.connect()
    assert connected
    await communicator.send_to(text_data="block")
    await asyncio.wait_for(blocked.wait(), 5)
    hub = current_hub()
    assert hub is not None
    assert hub.registry.rooms.get(room)
    assert await _rows(room) == 1
    # The database stalls: a row removal now would never return.
    stalled = asyncio.Event()

    async def remove(*args: typing.Any) -> None:
        await stalled.wait()

    hub.reconciler.rows.remove = remove  # type: ignore[method-assign,assignment]
    # What daphne does application_close_timeout after the client left.
    communicator.future.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(communicator.future, 5)
    del hub.reconciler.rows.remove
    assert room not in hub.registry.rooms, "a cancelled handler left a live registry entry"
    assert not hub.registry.members
    assert not hub.tracker.clients.get(room), "a ghost presence entry"
    assert hub.ordering.next_seq(room) is None
    # The row is owed to the reconciler, which must now delete it, not re-add it.
    await hub.reconciler.reconcile()
    assert await _rows(room) == 0
    members = await ChannelBox.group(room)
    assert members == []


async def test_cancelled_endpoint_leaves_its_rooms() -> None:
    blocked = asyncio.Event()

    class Blocking(WebSocketEndpoint):
        encoding = "text"
        presence = True

        async def on_connect(self, websocket: WebSocket) -> None:
            await websocket.accept()
            await self.join_group("cancel-endpoint")

        async def on_receive(self, websocket: WebSocket, data: typing.Any) -> None:
            blocked.set()
            await asyncio.Event().wait()  # a save or a query that never returns

    app = get_application()
    app.add_ws_route(Blocking.as_route("/blocking"))
    await _cancel_mid_handler(app, "/blocking", "cancel-endpoint", blocked)


async def test_cancelled_function_handler_leaves_its_rooms() -> None:
    blocked = asyncio.Event()
    app = get_application()

    @app.websocket("/blocking")
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        channel = Channel(websocket=ws, payload_type=PayloadTypeEnum.JSON.value)
        await ChannelBox.track_presence(channel, "someone")
        await ChannelBox.add_channel_to_group(channel, "cancel-function")
        await ws.receive_text()
        blocked.set()
        await asyncio.Event().wait()

    await _cancel_mid_handler(app, "/blocking", "cancel-function", blocked)


# A real daphne cancels the application application_close_timeout after the client left.


@pytest.mark.parametrize("kind", ["function", "endpoint"])
def test_daphne_cancelling_a_stuck_handler_empties_its_room(tmp_path: Path, kind: str) -> None:
    db = migrated_database(tmp_path)
    server = DaphneServer(
        server_env(db, SECURITY_SETTINGS),
        app="tests.sites.order.asgi:application",
        extra_args=["--application-close-timeout", "1"],
    ).start()
    try:
        room = f"stuck-{kind}"
        ws = open_raw(server, f"/order/{kind}/{room}")
        assert ws.read_message(10).text == "joined"
        assert member_count(db, room) == 1
        ws.sock.close()  # the client leaves; the handler never reads again
        wait_for(
            lambda: member_count(db, room) == 0 and server_stats(server)["channels"] == 0,
            f"the {kind}'s room to empty after daphne cancelled it",
            timeout=15,
        )
        assert server_stats(server)["groups"] == 0
    finally:
        server.stop()
        server.close()


async def test_an_endpoint_cancelled_in_on_disconnect_leaves_its_rooms_without_waiting() -> None:
    in_disconnect = asyncio.Event()

    class SlowGoodbye(WebSocketEndpoint):
        encoding = "text"

        async def on_connect(self, websocket: WebSocket) -> None:
            await websocket.accept()
            await self.join_group("cancel-goodbye-1")
            await self.join_group("cancel-goodbye-2")

        async def on_disconnect(self, websocket: WebSocket, close_code: int) -> None:
            in_disconnect.set()
            await asyncio.Event().wait()  # a goodbye saved to a stalled database

    app = get_application()
    app.add_ws_route(SlowGoodbye.as_route("/goodbye"))
    communicator = WebsocketCommunicator(app, "/goodbye")
    assert (await communicator.connect())[0]
    hub = current_hub()
    assert hub is not None
    stalled = asyncio.Event()

    async def remove(*args: typing.Any) -> None:
        await stalled.wait()

    hub.reconciler.rows.remove = remove  # type: ignore[method-assign,assignment]
    await communicator.send_input({"type": "websocket.disconnect", "code": 1000})
    await asyncio.wait_for(in_disconnect.wait(), 5)
    communicator.future.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(communicator.future, 5)
    del hub.reconciler.rows.remove
    assert not hub.registry.rooms and not hub.registry.members
