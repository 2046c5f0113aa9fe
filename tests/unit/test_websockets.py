"""Unit tests of the Nexios API with channels.testing.WebsocketCommunicator."""

from __future__ import annotations

import asyncio
import json
import typing
import uuid

import pytest
from channels.auth import AuthMiddlewareStack
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from nexios_compat import WebSocket, get_application
from nexios_compat.routing import WSRouter
from nexios_compat.websockets import WebSocketDisconnect
from nexios_compat.websockets.channels import (
    Channel,
    ChannelAddStatusEnum,
    ChannelBox,
    ChannelRemoveStatusEnum,
    GroupSendStatusEnum,
    PayloadTypeEnum,
)
from nexios_compat.websockets.consumers import WebSocketConsumer, WebSocketEndpoint
from tests.support.helpers import until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("hub_cleanup")]

COUNTING_LAYER = {
    "default": {"BACKEND": "tests.support.layers.CountingInMemoryLayer", "CONFIG": {"capacity": 10000}}
}


async def connect(app: typing.Any, path: str, **kwargs: typing.Any) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(app, path, **kwargs)
    connected, _ = await communicator.connect()
    assert connected, f"handshake to {path} refused"
    return communicator


def room_app() -> typing.Any:
    """The documents' function-based room: join on connect, broadcast what arrives."""
    app = get_application()

    @app.websocket("/room/{room_name}")
    async def room_handler(ws: WebSocket, room_name: str) -> None:
        await ws.accept()
        channel = Channel(websocket=ws, payload_type=PayloadTypeEnum.JSON.value, metadata={"n": 1})
        await ChannelBox.add_channel_to_group(channel, room_name)
        try:
            while True:
                data = await ws.receive_json()
                await ChannelBox.group_send(room_name, data, save_history=bool(data.get("save")))
        except WebSocketDisconnect:
            pass
        finally:
            await ChannelBox.remove_channel_from_group(channel, room_name)

    return app


# WebSocket -------------------------------------------------------------------


async def test_text_bytes_and_json_round_trip() -> None:
    app = get_application()

    @app.websocket("/echo")
    async def echo(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_text("you said " + await ws.receive_text())
        await ws.send_bytes((await ws.receive_bytes())[::-1])
        await ws.send_json({"got": await ws.receive_json()})
        await ws.close()

    communicator = await connect(app, "/echo")
    await communicator.send_to(text_data="hi")
    assert await communicator.receive_from() == "you said hi"
    await communicator.send_to(bytes_data=b"\x01\x02")
    assert await communicator.receive_from() == b"\x02\x01"
    await communicator.send_json_to({"a": [1, "é"]})
    assert await communicator.receive_json_from() == {"got": {"a": [1, "é"]}}
    assert (await communicator.receive_output())["type"] == "websocket.close"


async def test_invalid_json_raises_decode_error_and_keeps_the_socket_open() -> None:
    app = get_application()

    @app.websocket("/safe")
    async def safe(ws: WebSocket) -> None:
        await ws.accept()
        while True:
            try:
                data = await ws.receive_json()
                await ws.send_json({"status": "success", "data": data})
            except json.JSONDecodeError:
                await ws.send_json({"status": "error", "message": "Invalid JSON"})

    communicator = await connect(app, "/safe")
    await communicator.send_to(text_data="{not json")
    assert await communicator.receive_json_from() == {"status": "error", "message": "Invalid JSON"}
    await communicator.send_to(text_data='{"ok": true}')
    assert await communicator.receive_json_from() == {"status": "success", "data": {"ok": True}}
    await communicator.disconnect()


async def test_connection_details_reach_the_handler() -> None:
    app = get_application()

    @app.websocket("/info/{room_id}")
    async def info(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_json(
            {
                "ip": ws.client.host,
                "port": ws.client.port,
                "headers": {k.decode(): v.decode() for k, v in ws.scope["headers"]},
                "query": ws.scope["query_string"].decode(),
                "username": ws.scope["query_params"].get("username"),
                "room_id": ws.scope["path_params"].get("room_id"),
                "same": ws.path_params == ws.scope["path_params"] and ws.headers["x-test"] == "1",
                "user": str(ws.user),
            }
        )

    communicator = await connect(
        AuthMiddlewareStack(app), "/info/r1?username=ann", headers=[(b"x-test", b"1")]
    )
    data = await communicator.receive_json_from()
    # WebsocketCommunicator sets no client address; the daphne tests check it.
    assert isinstance(data["ip"], str) and isinstance(data["port"], int)
    assert data["headers"]["x-test"] == "1"
    assert data["query"] == "username=ann" and data["username"] == "ann"
    assert data["room_id"] == "r1" and data["same"] is True
    assert data["user"] == "AnonymousUser"
    await communicator.disconnect()


async def test_receive_after_disconnect_raises_with_code_and_reason() -> None:
    app = get_application()
    seen: asyncio.Queue[tuple[int, str]] = asyncio.Queue()

    @app.websocket("/bye")
    async def bye(ws: WebSocket) -> None:
        await ws.accept()
        try:
            await ws.receive_text()
        except WebSocketDisconnect as exc:
            await seen.put((exc.code, exc.reason))

    communicator = await connect(app, "/bye")
    await communicator.send_input({"type": "websocket.disconnect", "code": 4001, "reason": "done"})
    assert await asyncio.wait_for(seen.get(), 5) == (4001, "done")


async def test_handler_error_closes_only_that_socket_with_1011(caplog: pytest.LogCaptureFixture) -> None:
    app = get_application()

    @app.websocket("/boom")
    async def boom(ws: WebSocket) -> None:
        await ws.accept()
        if (await ws.receive_text()) == "boom":
            raise RuntimeError("kaboom")
        await ws.send_text("fine")

    victim = await connect(app, "/boom")
    bystander = await connect(app, "/boom")
    await victim.send_to(text_data="boom")
    closed = await victim.receive_output()
    assert closed["type"] == "websocket.close" and closed["code"] == 1011
    await bystander.send_to(text_data="hello")
    assert await bystander.receive_from() == "fine"
    assert "kaboom" in caplog.text


async def test_unknown_path_is_rejected_at_handshake() -> None:
    communicator = WebsocketCommunicator(get_application(), "/nowhere")
    connected, _ = await communicator.connect()
    assert connected is False


# Routing ---------------------------------------------------------------------


async def test_router_prefix_converters_and_routes_added_after_mounting() -> None:
    app = get_application()
    router = WSRouter(prefix="/api")
    app.mount_ws_router(router)

    @router.ws_route("/item/{item_id:int}")
    async def item(ws: WebSocket, item_id: int) -> None:
        await ws.accept()
        await ws.send_json({"item_id": item_id, "type": type(item_id).__name__})
        await ws.close()

    communicator = await connect(app, "/api/item/42")
    assert await communicator.receive_json_from() == {"item_id": 42, "type": "int"}


async def test_routes_combine_with_a_sites_own_urlrouter() -> None:
    from channels.generic.websocket import AsyncWebsocketConsumer
    from django.urls import path

    class Existing(AsyncWebsocketConsumer):
        async def connect(self) -> None:
            await self.accept()
            await self.send(text_data="existing")

    app = get_application()

    class Hello(WebSocketEndpoint):
        async def on_connect(self, ws: WebSocket) -> None:
            await ws.accept()
            await ws.send_text(f"hello {ws.path_params['name']}")

    app.add_ws_route(Hello.as_route("/hello/{name}"))
    site = URLRouter([path("old/", Existing.as_asgi()), *app.urlpatterns])
    old = await connect(site, "/old/")
    assert await old.receive_from() == "existing"
    new = await connect(site, "/hello/bob")
    assert await new.receive_from() == "hello bob"
    await old.disconnect()
    await new.disconnect()


# Endpoints -------------------------------------------------------------------


class JsonEcho(WebSocketEndpoint):
    encoding = "json"

    async def on_receive(self, ws: WebSocket, data: typing.Any) -> None:
        await ws.send_json({"echo": data})


@pytest.mark.parametrize(
    ("encoding", "frame"),
    [
        ("json", {"text_data": "{broken"}),
        ("json", {"bytes_data": b"{}"}),
        ("text", {"bytes_data": b"x"}),
        ("bytes", {"text_data": "x"}),
    ],
)
async def test_frames_that_do_not_fit_the_encoding_close_with_1003(
    encoding: str, frame: dict[str, typing.Any]
) -> None:
    endpoint = typing.cast(type[JsonEcho], type("Strict", (JsonEcho,), {"encoding": encoding}))
    communicator = await connect(endpoint.as_asgi(), "/")
    await communicator.send_to(**frame)
    closed = await communicator.receive_output()
    assert closed["type"] == "websocket.close" and closed["code"] == 1003


async def test_encoding_none_passes_text_and_bytes_through() -> None:
    class Raw(WebSocketEndpoint):
        async def on_receive(self, ws: WebSocket, data: typing.Any) -> None:
            await ws.send_text(f"{type(data).__name__}:{data!r}")

    communicator = await connect(Raw.as_asgi(), "/")
    await communicator.send_to(text_data="t")
    assert await communicator.receive_from() == "str:'t'"
    await communicator.send_to(bytes_data=b"b")
    assert await communicator.receive_from() == "bytes:b'b'"
    await communicator.disconnect()


async def test_endpoint_state_persists_and_subclass_init_is_allowed() -> None:
    events: list[tuple[str, typing.Any]] = []

    class Stateful(WebSocketConsumer):
        encoding = "json"

        def __init__(self, *args: typing.Any, **kwargs: typing.Any) -> None:
            super().__init__(*args, **kwargs)
            self.count = 0

        async def on_connect(self, ws: WebSocket) -> None:
            await ws.accept()
            self.user = ws.query_params.get("u")

        async def on_receive(self, ws: WebSocket, data: typing.Any) -> None:
            self.count += 1
            assert self.channel is not None
            await ws.send_json({"user": self.user, "count": self.count, "channel": str(self.channel.id)})

        async def on_disconnect(self, ws: WebSocket, close_code: int) -> None:
            events.append(("disconnect", close_code))

    communicator = await connect(Stateful.as_asgi(), "/?u=zoe")
    await communicator.send_json_to({})
    first = await communicator.receive_json_from()
    await communicator.send_json_to({})
    second = await communicator.receive_json_from()
    assert (first["user"], first["count"], second["count"]) == ("zoe", 1, 2)
    assert first["channel"] == second["channel"]
    await communicator.disconnect(code=4002)
    assert events == [("disconnect", 4002)]


class Room(WebSocketEndpoint):
    encoding = "json"

    async def on_connect(self, ws: WebSocket) -> None:
        await ws.accept()
        self.room = ws.path_params["room"]
        await self.join_group(self.room)
        assert self.channel is not None
        await ws.send_json({"joined": str(self.channel.id)})

    async def on_receive(self, ws: WebSocket, data: typing.Any) -> None:
        if data.get("to"):
            await self.send_to(data["to"], {"private": data["text"]})
        elif data.get("count"):
            await ws.send_json({"count": len(await self.group(self.room))})
        else:
            await self.broadcast(data, self.room, save_history=bool(data.get("save")))


def endpoint_app() -> typing.Any:
    app = get_application()
    app.add_ws_route(Room.as_route("/r/{room}"))
    return app


async def join(app: typing.Any, room: str) -> tuple[WebsocketCommunicator, str]:
    communicator = await connect(app, f"/r/{room}")
    return communicator, (await communicator.receive_json_from())["joined"]


async def test_broadcast_reaches_every_member_once_and_members_leave_on_disconnect() -> None:
    app = endpoint_app()
    a, _ = await join(app, "lobby")
    b, _ = await join(app, "lobby")
    other, _ = await join(app, "elsewhere")
    await a.send_json_to({"text": "hi"})
    assert await a.receive_json_from() == {"text": "hi"}
    assert await b.receive_json_from() == {"text": "hi"}
    assert await other.receive_nothing()
    assert len((await ChannelBox.show_groups())["lobby"]) == 2
    await b.disconnect()
    assert len(await ChannelBox.show_groups().get("lobby", {})) == 1
    await a.send_json_to({"count": True})
    assert await a.receive_json_from() == {"count": 1}
    await a.disconnect()
    await other.disconnect()
    assert await ChannelBox.show_groups().get("lobby", {}) == {}


async def test_function_handler_receives_broadcasts_while_waiting_in_receive() -> None:
    app = room_app()
    listener = await connect(app, "/room/r")
    speaker = await connect(app, "/room/r")
    # The listener's handler is blocked in ws.receive_json() the whole time.
    await speaker.send_json_to({"n": 1})
    await speaker.send_json_to({"n": 2})
    assert [await listener.receive_json_from() for _ in range(2)] == [{"n": 1}, {"n": 2}]
    await listener.disconnect()
    await speaker.disconnect()


@pytest.mark.parametrize("name", ["salle de réunion ☕", "x" * 300, "a/b:c?d", "UPPER.lower-_"])
async def test_any_group_name_works(name: str) -> None:
    app = get_application()

    @app.websocket("/any")
    async def anyroom(ws: WebSocket) -> None:
        await ws.accept()
        channel = Channel(ws, "json")
        await ChannelBox.add_channel_to_group(channel, ws.query_params["room"])
        await ws.receive_text()

    from urllib.parse import quote

    communicator = await connect(app, f"/any?room={quote(name)}")

    async def joined() -> bool:  # the handler joins after accepting
        return name in await ChannelBox.show_groups()

    await until(joined, f"the handler to join {name!r}")
    assert await ChannelBox.group_send(name, {"x": 1}) is GroupSendStatusEnum.GROUP_SEND
    assert await communicator.receive_json_from() == {"x": 1}
    await communicator.disconnect()


async def test_bad_group_names_raise_value_error() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        await ChannelBox.group_send("", {"x": 1})
    with pytest.raises(ValueError, match="limit"):
        await ChannelBox.group_send("x" * 501, {"x": 1})


async def test_group_send_status_and_channel_statuses() -> None:
    assert await ChannelBox.group_send("nobody", {"x": 1}) is GroupSendStatusEnum.NO_SUCH_GROUP
    app = get_application()
    statuses: asyncio.Queue[typing.Any] = asyncio.Queue()

    @app.websocket("/s")
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        channel = Channel(ws, PayloadTypeEnum.JSON)
        await statuses.put(await ChannelBox.add_channel_to_group(channel, "g"))
        await statuses.put(await ChannelBox.add_channel_to_group(channel, "g"))
        await statuses.put(await ChannelBox.group_send("g", {"x": 1}))
        await statuses.put(await ChannelBox.remove_channel_from_group(channel, "g"))
        await statuses.put(await ChannelBox.remove_channel_from_group(channel, "g"))
        await ws.close()

    communicator = await connect(app, "/s")
    got = [await asyncio.wait_for(statuses.get(), 5) for _ in range(5)]
    assert got == [
        ChannelAddStatusEnum.CHANNEL_ADDED,
        ChannelAddStatusEnum.CHANNEL_EXIST,
        GroupSendStatusEnum.GROUP_SEND,
        ChannelRemoveStatusEnum.GROUP_REMOVED,
        ChannelRemoveStatusEnum.GROUP_DOES_NOT_EXIST,
    ]
    assert await communicator.receive_json_from() == {"x": 1}


async def test_send_to_reaches_one_channel_by_uuid_or_str() -> None:
    app = endpoint_app()
    a, a_id = await join(app, "dm")
    b, b_id = await join(app, "dm")
    await a.send_json_to({"to": b_id, "text": "psst"})
    assert await b.receive_json_from() == {"private": "psst"}
    assert await a.receive_nothing()
    assert await ChannelBox.send_to(uuid.UUID(a_id), {"private": "direct"}) is True
    assert await a.receive_json_from() == {"private": "direct"}
    assert await ChannelBox.send_to(uuid.uuid4(), {"x": 1}) is False
    await a.disconnect()
    await b.disconnect()


async def test_close_all_connections_and_flush_groups() -> None:
    app = endpoint_app()
    a, _ = await join(app, "one")
    b, _ = await join(app, "two")
    await ChannelBox.flush_groups()
    assert await ChannelBox.show_groups() == {}
    assert await ChannelBox.group_send("one", {"x": 1}) is GroupSendStatusEnum.NO_SUCH_GROUP
    await ChannelBox.close_all_connections()
    assert (await a.receive_output())["type"] == "websocket.close"
    assert (await b.receive_output())["type"] == "websocket.close"


@pytest.mark.parametrize("layers", [COUNTING_LAYER])
async def test_one_layer_group_send_per_broadcast_and_one_subscription_per_group(
    settings: typing.Any, layers: dict[str, typing.Any]
) -> None:
    settings.CHANNEL_LAYERS = layers
    app = endpoint_app()
    members = [(await join(app, "big"))[0] for _ in range(5)]
    layer = get_channel_layer()
    sends_before = len(layer.group_sends)
    await members[0].send_json_to({"text": "one"})
    for member in members:
        assert await member.receive_json_from() == {"text": "one"}
    fanouts = [m for _, m in layer.group_sends[sends_before:] if m["type"] == "nexios.fanout"]
    assert len(fanouts) == 1
    room_adds = [g for g, _ in layer.group_adds if g.endswith(".g.big")]
    assert len(room_adds) == 1
    for member in members:
        await member.disconnect()


# Channel ---------------------------------------------------------------------


async def test_channel_properties_payload_types_and_close_code_reason() -> None:
    app = get_application()
    report: asyncio.Queue[dict[str, typing.Any]] = asyncio.Queue()

    @app.websocket("/ch/{kind}")
    async def handler(ws: WebSocket, kind: str) -> None:
        await ws.accept()
        channel = Channel(websocket=ws, payload_type=kind, expires=60, metadata={"username": "anon"})
        data = await channel.receive()
        await channel.send(data)
        await channel.send_text("t")
        await channel.send_bytes(b"b")
        await channel.send_json({"j": 1})
        await report.put(
            {
                "id": channel.id,
                "uuid": channel.uuid,
                "created": channel.created,
                "expires": channel.expires,
                "active": channel.is_active,
                "metadata": channel.metadata,
            }
        )
        await channel.close(code=4000, reason="User left the chat")
        await report.put({"active_after": channel.is_active})

    communicator = await connect(app, "/ch/json")
    await communicator.send_json_to({"hello": "world"})
    assert await communicator.receive_json_from() == {"hello": "world"}
    assert await communicator.receive_from() == "t"
    assert await communicator.receive_from() == b"b"
    assert await communicator.receive_json_from() == {"j": 1}
    info = await asyncio.wait_for(report.get(), 5)
    assert info["id"] == info["uuid"] and isinstance(info["id"], uuid.UUID)
    assert info["expires"] == 60 and info["active"] is True and info["metadata"] == {"username": "anon"}
    closed = await communicator.receive_output()
    assert (closed["code"], closed["reason"]) == (4000, "User left the chat")
    assert (await asyncio.wait_for(report.get(), 5)) == {"active_after": False}

    text = await connect(app, "/ch/text")
    await text.send_to(text_data="plain")
    assert await text.receive_from() == "plain"
    binary = await connect(app, "/ch/binary")
    await binary.send_to(bytes_data=b"\x00\xff")
    assert await binary.receive_from() == b"\x00\xff"


def test_payload_type_enum_accepts_members_values_and_binary_alias() -> None:
    assert PayloadTypeEnum.BINARY is PayloadTypeEnum.BYTES
    assert PayloadTypeEnum.coerce("binary") is PayloadTypeEnum.BYTES
    assert PayloadTypeEnum.coerce(PayloadTypeEnum.JSON.value) is PayloadTypeEnum.JSON
    with pytest.raises(ValueError, match="Unknown payload type"):
        PayloadTypeEnum.coerce("xml")


async def test_idle_channel_expires_and_is_closed_but_touch_keeps_it(settings: typing.Any) -> None:
    settings.NEXIOS_COMPAT = {"EXPIRE_SWEEP_INTERVAL": 0.1}
    app = get_application()

    @app.websocket("/hb")
    async def heartbeat(ws: WebSocket) -> None:
        await ws.accept()
        channel = Channel(websocket=ws, payload_type=PayloadTypeEnum.JSON, expires=1)
        await ChannelBox.add_channel_to_group(channel, "hb")
        try:
            while True:
                data = await channel.receive()
                if data.get("type") == "heartbeat":
                    channel.touch()
                    await channel.send({"type": "heartbeat_ack"})
        except WebSocketDisconnect:
            pass
        finally:
            await channel.close()

    communicator = await connect(app, "/hb")
    loop = asyncio.get_running_loop()
    started = loop.time()
    # Heartbeats every 0.4 s keep a 1 s channel alive well past its TTL.
    while loop.time() - started < 2.0:
        await communicator.send_json_to({"type": "heartbeat"})
        assert await communicator.receive_json_from() == {"type": "heartbeat_ack"}
        assert await communicator.receive_nothing(timeout=0.4)
    # Then silence: the sweep closes it and it leaves its group.
    closed = await communicator.receive_output(timeout=5)
    assert closed["type"] == "websocket.close" and closed["code"] == 1001
    assert await ChannelBox.show_groups().get("hb", {}) == {}
