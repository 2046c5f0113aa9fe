"""The room policy on every path into a room: matching, joins, resumes, publishes, HTTP history."""

from __future__ import annotations

import typing

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser, User
from django.test import Client

from chat.sockets import app as chat_app
from nexios_compat import WebSocket, get_application
from nexios_compat.policy import RoomPolicy, RoomRule, deny, get_policy, is_authenticated, load_policy
from nexios_compat.websockets import WebSocketEndpoint
from nexios_compat.websockets.channels import Channel, ChannelBox

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("hub_cleanup")]

MEMBERS = RoomPolicy([RoomRule(prefix="members-", join=is_authenticated)])


# Matching (no I/O) ------------------------------------------------------------------


def test_the_first_matching_rule_decides_and_the_default_takes_the_rest() -> None:
    exact = RoomRule(name="members-lobby")
    members = RoomRule(prefix="members-", join=is_authenticated)
    odd = RoomRule(match=lambda room: room.endswith("!"), join=deny)
    closed = RoomRule(join=deny)
    policy = RoomPolicy([exact, members, odd], default=closed)
    assert policy.rule_for("members-lobby") is exact
    assert policy.rule_for("members-staff") is members
    assert policy.rule_for("shout!") is odd
    assert policy.rule_for("lobby") is closed


def test_publish_and_read_default_to_join_and_one_matcher_per_rule() -> None:
    rule = RoomRule(prefix="p-", join=is_authenticated)
    assert rule.predicate("publish") is is_authenticated and rule.predicate("read") is is_authenticated
    with pytest.raises(ValueError):
        RoomRule(name="a", prefix="a")


def test_the_setting_may_name_a_policy_a_list_or_nothing(settings: typing.Any) -> None:
    assert load_policy(None).rule_for("anything").join(None) is True  # type: ignore[arg-type]
    assert load_policy("chat.policy.rooms").rule_for("members-x").join is is_authenticated
    assert load_policy([RoomRule(prefix="x")]).rule_for("xy").prefix == "x"
    with pytest.raises(TypeError):
        load_policy(42)
    settings.NEXIOS_COMPAT = {}
    assert get_policy().rules == ()  # no setting: every room open, as in Nexios


async def test_rules_decide_for_users_and_may_be_async() -> None:
    async def only_ann(access: typing.Any) -> bool:
        return bool(getattr(access.user, "username", "") == "ann")

    policy = RoomPolicy([RoomRule(prefix="a-", join=only_ann)])
    ann = User(username="ann")
    assert await policy.allows("join", "a-1", user=ann)
    assert not await policy.allows("join", "a-1", user=AnonymousUser())
    assert await policy.allows("join", "b-1", user=AnonymousUser())


# Joins -------------------------------------------------------------------------------


def anonymous(application: typing.Any, path: str) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, path)
    communicator.scope["user"] = AnonymousUser()
    return communicator


async def closed_with(communicator: WebsocketCommunicator) -> int:
    """Connect and return the close code, failing on any data frame sent before it."""
    connected, code = await communicator.connect()
    if not connected:
        return int(code or 0)
    first = await communicator.receive_output(timeout=5)
    assert first["type"] == "websocket.close", first
    return int(first["code"])


@pytest.mark.parametrize(
    "path",
    [
        "/seeds/room/members-staff?envelope=1&since=0",
        "/seeds/endpoint/members-staff?since=0",
        "/seeds/chatroom/members-staff?since=0&username=eve",
        "/ws/chat/members-staff/?since=0&envelope=1&epoch=",
    ],
)
async def test_every_route_of_the_example_refuses_anonymous_joins_of_members_rooms(path: str) -> None:
    await ChannelBox.group_send("members-staff", {"message": "secret"}, save_history=True)
    assert await closed_with(anonymous(chat_app, path)) == 4403
    # Nothing was said in the room on the visitor's behalf.
    assert [m.payload for m in await ChannelBox.show_history("members-staff")] == [{"message": "secret"}]


async def test_a_member_joins_through_a_function_handler_with_history() -> None:
    await ChannelBox.group_send("members-staff", {"message": "secret"}, save_history=True)
    user = await sync_to_async(User.objects.create_user)("ada", password="x")
    member = WebsocketCommunicator(chat_app, "/seeds/room/members-staff?since=0&envelope=1")
    member.scope["user"] = user
    assert (await member.connect())[0]
    frame = await member.receive_json_from(timeout=5)
    assert frame["payload"] == {"message": "secret"} and frame["room"] == "members-staff"
    await member.disconnect()


async def test_per_room_max_members_closes_with_4409(settings: typing.Any) -> None:
    settings.NEXIOS_COMPAT = {"ROOM_POLICY": [RoomRule(name="duo", max_members=1)]}
    first = anonymous(chat_app, "/seeds/room/duo")
    assert (await first.connect())[0]
    await first.send_json_to({"user": "a", "message": "in"})
    assert (await first.receive_json_from(timeout=5))["message"] == "in"  # joined before the second tries
    assert await closed_with(anonymous(chat_app, "/seeds/room/duo")) == 4409
    await first.disconnect()


# Resume ------------------------------------------------------------------------------


async def test_a_join_that_may_not_read_gets_no_replay(settings: typing.Any) -> None:
    settings.NEXIOS_COMPAT = {"ROOM_POLICY": [RoomRule(prefix="live-", read=deny)]}
    await ChannelBox.group_send("live-1", {"message": "past"}, save_history=True)
    visitor = anonymous(chat_app, "/seeds/room/live-1?since=0&envelope=1")
    assert (await visitor.connect())[0]
    await visitor.send_json_to({"user": "v", "message": "now"})
    assert (await visitor.receive_json_from(timeout=5))["payload"]["message"] == "now"  # not "past"
    await visitor.disconnect()


# Publishes ---------------------------------------------------------------------------


def handlers() -> typing.Any:
    """A function handler and an endpoint that join ``room`` and publish what they receive."""
    application = get_application()

    @application.websocket("/fn/{room}")
    async def fn(ws: WebSocket, room: str) -> None:
        await ws.accept()
        channel = Channel(websocket=ws, payload_type="json")
        await ChannelBox.add_channel_to_group(channel, room)
        while True:
            data = await ws.receive_json()
            await ChannelBox.group_send(room, data, save_history=True)
            await ws.send_json({"sent": data})

    class Speaker(WebSocketEndpoint):
        encoding = "json"

        async def on_connect(self, ws: WebSocket) -> None:
            await ws.accept()
            await self.join_group(ws.path_params["room"])

        async def on_receive(self, ws: WebSocket, data: typing.Any) -> None:
            await self.broadcast(data, ws.path_params["room"], save_history=True)
            await ws.send_json({"sent": data})

    application.add_ws_route(Speaker.as_route("/ep/{room}"))
    return application


@pytest.mark.parametrize("route", ["/fn", "/ep"])
async def test_a_refused_publish_gets_an_error_frame_and_nothing_is_sent_or_saved(
    settings: typing.Any, route: str
) -> None:
    settings.NEXIOS_COMPAT = {"ROOM_POLICY": [RoomRule(prefix="ro-", publish=is_authenticated)]}
    application = handlers()
    listener = anonymous(application, f"{route}/ro-news")
    speaker = anonymous(application, f"{route}/ro-news")
    assert (await listener.connect())[0] and (await speaker.connect())[0]
    await speaker.send_json_to({"message": "spam"})
    assert await speaker.receive_json_from(timeout=5) == {
        "type": "error",
        "error": "forbidden",
        "room": "ro-news",
    }
    assert (await speaker.receive_json_from(timeout=5)) == {
        "sent": {"message": "spam"}
    }  # the handler went on
    assert await listener.receive_nothing(timeout=0.2)
    assert await ChannelBox.show_history("ro-news") == []
    # The server's own sends (a view, the admin, a command) are trusted.
    await ChannelBox.group_send("ro-news", {"message": "news"}, save_history=True)
    assert (await listener.receive_json_from(timeout=5)) == {"message": "news"}
    await listener.disconnect()
    await speaker.disconnect()


async def test_a_room_that_keeps_no_history_delivers_unsaved(settings: typing.Any) -> None:
    settings.NEXIOS_COMPAT = {"ROOM_POLICY": [RoomRule(prefix="eph-", history=False)]}
    listener = anonymous(handlers(), "/fn/eph-1")
    assert (await listener.connect())[0]
    await listener.send_json_to({"message": "hi"})  # the handler saves it, the rule says not to
    assert (await listener.receive_json_from(timeout=5)) == {"message": "hi"}
    assert (await listener.receive_json_from(timeout=5)) == {"sent": {"message": "hi"}}
    await ChannelBox.group_send("eph-1", {"message": "gone"}, save_history=True)
    assert (await listener.receive_json_from(timeout=5)) == {"message": "gone"}
    assert await ChannelBox.show_history("eph-1") == []
    await listener.disconnect()


# HTTP history ------------------------------------------------------------------------


@pytest.mark.urls("tests.sites.views.urls")
def test_history_view_applies_the_policy_with_or_without_an_endpoint(settings: typing.Any) -> None:
    settings.NEXIOS_COMPAT = {"ROOM_POLICY": MEMBERS}
    client = Client()
    assert client.get("/unset/members-a/").status_code == 403
    assert client.get("/open/members-a/").status_code == 403  # an endpoint with no rules cannot open it
    assert client.get("/open/lobby/").status_code == 200
    client.force_login(User.objects.create_user("ann", password="pw"))
    assert client.get("/unset/members-a/").status_code == 200
    settings.NEXIOS_COMPAT = {"ROOM_POLICY": [RoomRule(prefix="eph-", history=False)]}
    assert client.get("/unset/eph-1/").status_code == 404


def test_the_example_history_view_refuses_anonymous_readers_of_members_rooms() -> None:
    assert Client().get("/room/members-staff/history/").status_code == 403


async def test_every_rooms_history_read_from_a_socket_lists_only_rooms_its_client_may_read(
    settings: typing.Any,
) -> None:
    settings.NEXIOS_COMPAT = {"ROOM_POLICY": "chat.policy.rooms"}
    await ChannelBox.group_send("members-staff", {"message": "secret"}, save_history=True)
    await ChannelBox.group_send("lobby", {"message": "hello"}, save_history=True)
    app = get_application()

    @app.ws_route("/all")
    async def everything(websocket: WebSocket) -> None:
        await websocket.accept()
        rooms = await ChannelBox.show_history()
        assert isinstance(rooms, dict)
        await websocket.send_json(sorted(rooms))
        await websocket.receive_text()

    visitor = anonymous(app, "/all")
    assert (await visitor.connect())[0]
    assert await visitor.receive_json_from(timeout=5) == ["lobby"]
    await visitor.disconnect()
    # Server code (a view, a command) is trusted and sees every room.
    assert sorted(typing.cast(dict[str, typing.Any], await ChannelBox.show_history())) == [
        "lobby",
        "members-staff",
    ]
