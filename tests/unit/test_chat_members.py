"""The chat example's members-only rooms: anonymous visitors are refused before any history."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser, User

from chat.sockets import app
from nexios_compat.websockets.channels import ChannelBox

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("hub_cleanup")]


async def test_members_only_room_refuses_anonymous_with_4403_and_sends_no_history() -> None:
    await ChannelBox.group_send("members-club", {"type": "chat", "message": "secret"}, save_history=True)
    anonymous = WebsocketCommunicator(app, "/ws/chat/members-club/?since=0&username=eve")
    anonymous.scope["user"] = AnonymousUser()
    connected, _ = await anonymous.connect()
    assert connected
    first = await anonymous.receive_output(timeout=5)
    assert first["type"] == "websocket.close" and first["code"] == 4403
    # Nobody was told eve joined or left.
    assert [m.payload["message"] for m in await ChannelBox.show_history("members-club")] == ["secret"]


async def test_members_only_room_admits_a_logged_in_user_with_history() -> None:
    await ChannelBox.group_send("members-club", {"type": "chat", "message": "secret"}, save_history=True)
    user = await sync_to_async(User.objects.create_user)("ada", password="x")
    member = WebsocketCommunicator(app, "/ws/chat/members-club/?since=0")
    member.scope["user"] = user
    connected, _ = await member.connect()
    assert connected
    assert (await member.receive_json_from())["message"] == "secret"
    present = await member.receive_json_from()  # the room has presence on: keyed by the user's pk
    assert present["type"] == "presence_state" and list(present["state"]) == [str(user.pk)]
    assert present["state"][str(user.pk)]["metas"][0]["username"] == "ada"
    joined = await member.receive_json_from()
    assert joined["type"] == "system" and joined["message"] == "ada joined"
    await member.disconnect()


async def test_ordinary_rooms_stay_open_to_anonymous_visitors() -> None:
    visitor = WebsocketCommunicator(app, "/ws/chat/lobby/?username=eve")
    visitor.scope["user"] = AnonymousUser()
    connected, _ = await visitor.connect()
    assert connected
    assert list((await visitor.receive_json_from())["state"]) == ["eve"]  # presence_state, keyed by name
    assert (await visitor.receive_json_from())["message"] == "eve joined"
    await visitor.disconnect()
