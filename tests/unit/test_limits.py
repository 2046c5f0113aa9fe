"""Limits and authorization: each refusal has its documented close code and loses nothing."""

from __future__ import annotations

import typing

import pytest
from channels.auth import AuthMiddlewareStack
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Permission, User

from nexios_compat import WebSocket, get_application
from nexios_compat.exceptions import PayloadTooLarge
from nexios_compat.websockets import _limits as limits
from nexios_compat.websockets.channels import ChannelBox
from nexios_compat.websockets.consumers import WebSocketEndpoint
from tests.support.helpers import until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("hub_cleanup")]


class Room(WebSocketEndpoint):
    encoding = "json"

    async def on_connect(self, ws: WebSocket) -> None:
        await ws.accept()
        for room in ws.query_params.getlist("room") or ["r"]:
            await self.join_group(room)
        await ws.send_json({"ready": True})

    async def on_receive(self, ws: WebSocket, data: typing.Any) -> None:
        await self.broadcast(data, "r", save_history=True)


class MembersOnly(Room):
    login_required = True


class Moderators(Room):
    permission_required = "nexios_compat.delete_message"


def app_for(endpoint: type[WebSocketEndpoint]) -> typing.Any:
    app = get_application()
    app.add_ws_route(endpoint.as_route("/r"))
    return app


async def ready(app: typing.Any, query: str = "") -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(app, f"/r{query}")
    # Bounds, not expectations: joining 150 rooms on SQLite takes seconds on a loaded machine.
    connected, _ = await communicator.connect(timeout=30)
    assert connected
    assert await communicator.receive_json_from(timeout=30) == {"ready": True}
    return communicator


async def closed_with(communicator: WebsocketCommunicator) -> int:
    while True:
        message = await communicator.receive_output(timeout=5)
        if message["type"] == "websocket.close":
            return int(message["code"])


async def test_frames_above_max_message_size_close_with_1009(settings: typing.Any) -> None:
    settings.NEXIOS_COMPAT = {"MAX_MESSAGE_SIZE": 1000}
    app = app_for(Room)
    sender = await ready(app)
    bystander = await ready(app)
    await sender.send_to(text_data='{"x": "' + "é" * 490 + '"}')  # 989 bytes: fits
    assert (await bystander.receive_json_from())["x"] == "é" * 490
    await sender.receive_json_from()
    await sender.send_to(text_data='{"x": "' + "é" * 500 + '"}')  # 1009 bytes: too big
    assert await closed_with(sender) == 1009
    await sender.wait()
    assert await bystander.receive_nothing()
    assert len(await ChannelBox.show_history("r")) == 1


async def test_a_frame_of_exactly_max_message_size_passes(settings: typing.Any) -> None:
    settings.NEXIOS_COMPAT = {"MAX_MESSAGE_SIZE": 1000}
    app = app_for(Room)
    sender = await ready(app)
    exactly = '{"x": "' + "é" * 495 + 'a"}'  # 7 + 990 + 1 + 2 = 1000 bytes of UTF-8
    assert len(exactly.encode()) == 1000
    await sender.send_to(text_data=exactly)
    assert (await sender.receive_json_from())["x"] == "é" * 495 + "a"
    await sender.send_to(text_data=exactly.replace("a", "ab"))  # 1001 bytes
    assert await closed_with(sender) == 1009
    assert len(await ChannelBox.show_history("r")) == 1


class FakeClock:
    """Stands in for the ``time`` module of ``nexios_compat.websockets._limits``: time moves when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def test_token_bucket_refills_at_its_rate_up_to_its_burst(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(limits, "time", clock)
    bucket = limits.TokenBucket(rate=2.0, burst=3.0)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    clock.now += 0.5  # one token at 2 per second
    assert [bucket.take() for _ in range(2)] == [True, False]
    clock.now += 60  # saved up, but never more than the burst
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


async def test_a_rate_limited_sender_is_let_through_again_once_tokens_refill(settings: typing.Any) -> None:
    settings.NEXIOS_COMPAT = {"RATE_LIMIT_MESSAGES": 20, "RATE_LIMIT_BURST": 2, "RATE_LIMIT_POLICY": "drop"}
    app = app_for(Room)
    sender = await ready(app)
    for n in range(3):
        await sender.send_json_to({"n": n})
    replies = [await sender.receive_json_from() for _ in range(3)]
    assert replies.count({"type": "error", "error": "rate_limited"}) == 1
    attempts = 0

    async def let_through() -> bool:
        nonlocal attempts
        attempts += 1
        await sender.send_json_to({"n": "later"})
        return await sender.receive_json_from() == {"n": "later"}

    await until(let_through, "a token to refill (20 per second)", timeout=5)
    saved = [m.payload["n"] for m in await ChannelBox.show_history("r")]
    assert saved[-1] == "later" and len(saved) == 3, (saved, attempts)
    await sender.disconnect()


async def test_rate_limit_closes_with_1008_and_history_gets_only_what_it_allows(settings: typing.Any) -> None:
    settings.NEXIOS_COMPAT = {"RATE_LIMIT_MESSAGES": 1, "RATE_LIMIT_BURST": 5}
    app = app_for(Room)
    flooder = await ready(app)
    bystander = await ready(app)
    for n in range(50):
        await flooder.send_json_to({"n": n})
    assert await closed_with(flooder) == 1008
    received = [await bystander.receive_json_from() for _ in range(5)]
    assert [m["n"] for m in received] == [0, 1, 2, 3, 4]
    history = await ChannelBox.show_history("r")
    assert [m.payload["n"] for m in history] == [0, 1, 2, 3, 4]
    await bystander.send_json_to({"n": "still here"})
    assert await bystander.receive_json_from() == {"n": "still here"}


async def test_rate_limit_drop_policy_answers_with_an_error_frame(settings: typing.Any) -> None:
    settings.NEXIOS_COMPAT = {"RATE_LIMIT_MESSAGES": 1, "RATE_LIMIT_BURST": 2, "RATE_LIMIT_POLICY": "drop"}
    app = app_for(Room)
    sender = await ready(app)
    for n in range(4):
        await sender.send_json_to({"n": n})
    replies = [await sender.receive_json_from() for _ in range(4)]
    assert {"n": 0} in replies and {"n": 1} in replies
    assert replies.count({"type": "error", "error": "rate_limited"}) == 2
    assert [m.payload["n"] for m in await ChannelBox.show_history("r")] == [0, 1]


async def test_defaults_never_close_what_nexios_keeps_open(settings: typing.Any) -> None:
    """No NEXIOS_COMPAT: a burst far over the example site's limits and a 1 MiB frame both pass."""
    settings.NEXIOS_COMPAT = {}  # as if unset (get_config merges it over the defaults)

    class Echo(WebSocketEndpoint):
        encoding = "text"

        async def on_receive(self, ws: WebSocket, data: typing.Any) -> None:
            await ws.send_text(str(len(data)))

    app = app_for(Echo)
    communicator = WebsocketCommunicator(app, "/r")
    assert (await communicator.connect())[0]
    for _ in range(500):  # 25 times the burst the example site allows
        await communicator.send_to(text_data="x")
    assert [await communicator.receive_from() for _ in range(500)] == ["1"] * 500
    await communicator.send_to(text_data="y" * (1024 * 1024))  # daphne's own limit, exactly
    assert await communicator.receive_from() == str(1024 * 1024)
    await communicator.send_to(text_data="z" * (1024 * 1024 + 1))
    assert await closed_with(communicator) == 1009


async def test_defaults_save_what_one_frame_carries_and_bound_no_rooms(settings: typing.Any) -> None:
    settings.NEXIOS_COMPAT = {}
    await ChannelBox.group_send("big", {"x": "a" * (512 * 1024)}, save_history=True)
    assert len(await ChannelBox.show_history("big")) == 1
    communicator = await ready(app_for(Room), "?" + "&".join(f"room=r{n}" for n in range(150)))
    await communicator.disconnect()


async def test_room_full_closes_with_4409(settings: typing.Any) -> None:
    settings.NEXIOS_COMPAT = {"MAX_MEMBERS_PER_ROOM": 2}
    app = app_for(Room)
    # Kept referenced: a communicator that is garbage-collected cancels its handler,
    # which now leaves the room (it used to leave a ghost row that filled the room).
    members = [await ready(app), await ready(app)]
    third = WebsocketCommunicator(app, "/r")
    await third.connect()
    assert await closed_with(third) == 4409
    assert len(await ChannelBox.group("r")) == len(members) == 2


async def test_too_many_rooms_closes_with_4413(settings: typing.Any) -> None:
    settings.NEXIOS_COMPAT = {"MAX_ROOMS_PER_CONNECTION": 2}
    app = app_for(Room)
    await ready(app, "?room=a&room=b")
    greedy = WebsocketCommunicator(app, "/r?room=a&room=b&room=c")
    await greedy.connect()
    assert await closed_with(greedy) == 4413


async def test_history_payload_limit_raises_and_saves_nothing(settings: typing.Any) -> None:
    settings.NEXIOS_COMPAT = {"MAX_HISTORY_PAYLOAD": 10}
    with pytest.raises(PayloadTooLarge):
        await ChannelBox.group_send("r", "x" * 11, save_history=True)
    await ChannelBox.group_send("r", "x" * 10, save_history=True)
    assert [m.payload for m in await ChannelBox.show_history("r")] == ["x" * 10]


async def test_login_required_refuses_anonymous_with_4403_before_any_history() -> None:
    await ChannelBox.group_send("r", {"secret": 1}, save_history=True)
    communicator = WebsocketCommunicator(AuthMiddlewareStack(app_for(MembersOnly)), "/r?since=0")
    connected, _ = await communicator.connect()
    assert connected  # accepted, then refused at join
    message = await communicator.receive_output(timeout=5)
    assert message["type"] == "websocket.close" and message["code"] == 4403


async def test_permission_required_uses_django_permissions() -> None:
    from asgiref.sync import sync_to_async

    def make_users() -> tuple[User, User]:
        plain = User.objects.create_user("plain", password="x")
        moderator = User.objects.create_user("mod", password="x")
        moderator.user_permissions.add(Permission.objects.get(codename="delete_message"))
        return User.objects.get(pk=plain.pk), User.objects.get(pk=moderator.pk)

    plain, moderator = await sync_to_async(make_users)()
    app = app_for(Moderators)

    refused = WebsocketCommunicator(app, "/r")
    refused.scope["user"] = plain
    await refused.connect()
    assert await closed_with(refused) == 4403

    allowed = WebsocketCommunicator(app, "/r")
    allowed.scope["user"] = moderator
    await allowed.connect()
    assert await allowed.receive_json_from() == {"ready": True}
    await allowed.disconnect()
