"""Through a real hub: an unsaved broadcast or a reply never overtakes a saved one held behind a gap."""

from __future__ import annotations

import json
import typing

import pytest
from channels.testing import WebsocketCommunicator

from nexios_compat import WebSocket, get_application
from nexios_compat.stores.history import PendingMessage
from nexios_compat.stores.services import HistoryService
from nexios_compat.websockets.channels import Channel, ChannelBox, PayloadTypeEnum

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("hub_cleanup")]


async def test_a_reply_waits_for_its_saved_broadcast_held_behind_another_process_gap(
    settings: typing.Any,
) -> None:
    settings.NEXIOS_COMPAT = {"REORDER_TIMEOUT": 0.2}
    app = get_application()

    @app.websocket("/room")
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        channel = Channel(websocket=ws, payload_type=PayloadTypeEnum.JSON.value)
        await ChannelBox.add_channel_to_group(channel, "gap")
        await ws.send_json({"joined": True})
        await ws.receive_text()
        # Another process saved seq 1 and has not published it yet (or the layer lost it).
        await HistoryService().append([PendingMessage("gap", "json", json.dumps({"other": 1}), None)])
        await ChannelBox.group_send("gap", {"mine": 2}, save_history=True)
        await ChannelBox.group_send("gap", {"unsaved": "after 2"})
        await ws.send_json({"reply": "after my broadcast"})
        await ws.receive_text()

    communicator = WebsocketCommunicator(app, "/room")
    assert (await communicator.connect())[0]
    assert await communicator.receive_json_from() == {"joined": True}
    await communicator.send_to(text_data="go")
    frames = [await communicator.receive_json_from(timeout=5) for _ in range(4)]
    assert frames == [{"other": 1}, {"mine": 2}, {"unsaved": "after 2"}, {"reply": "after my broadcast"}]
    await communicator.disconnect()
