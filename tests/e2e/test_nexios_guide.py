"""Nexios's WebSocket guide pages (index, consumer, events, groups), each example ported by prefix.

Each test serves a page's code (``nexios`` -> ``nexios_compat``, fragments put
in the handler they belong to) and drives it with ``WebsocketCommunicator``.
Where the page's code fails on Nexios 3.12.3 itself (checked against the
installed package under uvicorn), the test says so, shows that it fails here
the same way, and runs what the page meant.
"""

from __future__ import annotations

import asyncio
import typing

import pytest
from channels.testing import WebsocketCommunicator

from nexios_compat import NexiosApp, get_application
from nexios_compat.routing import WebsocketRoutes, WSRouter
from nexios_compat.websockets import Channel, ChannelBox, WebSocket
from nexios_compat.websockets.base import WebSocketDisconnect
from nexios_compat.websockets.consumers import WebSocketConsumer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("hub_cleanup")]


async def connect(app: typing.Any, path: str, **kwargs: typing.Any) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(app, path, **kwargs)
    connected, code = await communicator.connect()
    assert connected, f"{path} refused with {code}"
    return communicator


async def refused(app: typing.Any, path: str) -> int:
    communicator = WebsocketCommunicator(app, path)
    connected, code = await communicator.connect()
    assert not connected
    return int(code)


async def hello(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_text(ws.path)


# index.md --------------------------------------------------------------------


async def test_index_a_wsrouter_built_from_a_list_of_routes() -> None:
    # The page: WSRouter([WebsocketRoutes("/ws", ws_handler), WebsocketRoutes("/ws2", ws_handler2)]).
    # Nexios 3.x takes the list for the prefix and fails ('list' object has no attribute ...).
    app = NexiosApp()
    router = WSRouter([WebsocketRoutes("/ws", hello), WebsocketRoutes("/ws2", hello)])
    app.mount_ws_router(router)
    for path in ("/ws", "/ws2"):
        communicator = await connect(app, path)
        assert await communicator.receive_from() == path
        await communicator.disconnect()


async def test_index_a_mount_prefix_overrides_the_routers_own() -> None:
    # The page: WSRouter(prefix="/ws") mounted with "/ws-overide" ("this will override /ws").
    # Nexios's mount_ws_router takes no prefix (TypeError there); here it replaces the router's.
    app = NexiosApp()
    router = WSRouter(prefix="/ws")
    router.add_ws_route("/ws", hello)
    router.add_ws_route("/ws2", hello)
    app.mount_ws_router(router, "/ws-overide")
    for path in ("/ws-overide/ws", "/ws-overide/ws2"):
        communicator = await connect(app, path)
        assert await communicator.receive_from() == path
        await communicator.disconnect()
    assert await refused(app, "/ws-overide/ws/ws") == 4404
    other = NexiosApp()
    other.mount_router(router, prefix="/elsewhere")  # mount_router takes the override too
    communicator = await connect(other, "/elsewhere/ws")
    assert await communicator.receive_from() == "/elsewhere/ws"
    await communicator.disconnect()


async def test_index_accept_sends_nexioss_exact_message() -> None:
    sent: list[typing.MutableMapping[str, typing.Any]] = []
    messages: list[typing.MutableMapping[str, typing.Any]] = [{"type": "websocket.connect"}]

    async def receive() -> typing.MutableMapping[str, typing.Any]:
        return messages.pop(0)

    async def send(message: typing.MutableMapping[str, typing.Any]) -> None:
        sent.append(message)

    ws = WebSocket({"type": "websocket", "path": "/ws", "headers": []}, receive, send)
    await ws.accept()
    assert sent == [{"type": "websocket.accept", "subprotocol": None, "headers": []}]


async def test_index_sending_receiving_and_the_three_formats() -> None:
    app = get_application()
    printed: list[typing.Any] = []

    @app.ws_route("/ws")
    async def ws_handler(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_text("Hello World")
        message = await ws.receive_text()
        printed.append(message)
        text_data = await ws.receive_text()
        await ws.send_text(f"Received: {text_data}")
        binary_data = await ws.receive_bytes()
        await ws.send_bytes(binary_data)
        json_data = await ws.receive_json()
        await ws.send_json({"status": "success", "data": json_data})

    communicator = await connect(app, "/ws")
    assert await communicator.receive_from() == "Hello World"
    await communicator.send_to("printed")
    await communicator.send_to("t")
    assert await communicator.receive_from() == "Received: t"
    await communicator.send_to(bytes_data=b"\x00b")
    assert await communicator.receive_from() == b"\x00b"
    await communicator.send_json_to({"a": 1})
    assert await communicator.receive_json_from() == {"status": "success", "data": {"a": 1}}
    assert printed == ["printed"]
    await communicator.disconnect()


async def test_index_the_lifecycle_example_as_written_and_as_meant() -> None:
    # The page's fragments put together: raw ``receive()`` in the loop. ``receive()`` returns the
    # disconnect message rather than raising, so the next call raises RuntimeError, on Nexios
    # 3.12.3 as here (under uvicorn Nexios logs "Cannot call "receive" once a disconnect message
    # has been received." and never prints its line). What the page meant: ``receive_text()``.
    app = get_application()
    printed: list[str] = []
    errors: list[BaseException] = []

    @app.ws_route("/as-written")
    async def as_written(ws: WebSocket) -> None:
        await ws.accept()
        try:
            while True:
                data = await ws.receive()  # noqa: F841 (process data)
        except WebSocketDisconnect:
            printed.append("Client disconnected")
        except RuntimeError as exc:
            errors.append(exc)
        finally:
            await ws.close()

    @app.ws_route("/as-meant")
    async def as_meant(ws: WebSocket) -> None:
        await ws.accept()
        try:
            while True:
                await ws.receive_text()
        except WebSocketDisconnect:
            printed.append("Client disconnected")
        finally:
            await ws.close()

    for path in ("/as-written", "/as-meant"):
        communicator = await connect(app, path)
        await communicator.send_to("x")
        await communicator.disconnect()
    assert [str(e) for e in errors] == ['Cannot call "receive" once a disconnect message has been received.']
    assert printed == ["Client disconnected"]


# consumer.md -----------------------------------------------------------------


async def test_consumer_channel_id_and_expiry_can_be_read() -> None:
    # The page prints ``self.channel.created + self.channel.expires``. Nexios's consumers give
    # their channel a fixed 3600 s; here a channel without ``expires`` never expires, which
    # reads as math.inf rather than None (``float + None`` was a TypeError).
    printed: list[str] = []

    class InfoConsumer(WebSocketConsumer):
        encoding = "json"

        async def on_connect(self, ws: WebSocket) -> None:
            await ws.accept()
            assert self.channel is not None
            printed.append(f"New channel ID: {self.channel.uuid}")
            printed.append(f"Expires at: {self.channel.created + self.channel.expires}")
            await ws.send_json({"ok": True})

    app = get_application()
    app.add_ws_route(InfoConsumer.as_route("/info"))
    communicator = await connect(app, "/info")
    assert await communicator.receive_json_from() == {"ok": True}
    assert printed[1] == "Expires at: inf"
    await communicator.disconnect()
    assert Channel.__init__.__defaults__ is not None  # the plain Channel keeps expires optional


# events.md -------------------------------------------------------------------
#
# Every ``await app.events.emit(...)`` on the page is a TypeError on Nexios 3.12.3:
# ``emit`` returns a dict of statistics ("object dict can't be used in 'await' expression").
# The tests show that once, then run the page's code with ``emit`` called as Nexios has it.


async def test_events_emit_is_not_awaitable_on_nexios_nor_here() -> None:
    app = get_application()
    with pytest.raises(TypeError, match="await"):
        await app.events.emit("ws.connected", {"client": None})  # type: ignore[misc]


async def test_events_emitting_from_connections_and_reacting_by_group_send() -> None:
    app = get_application()
    seen: list[tuple[str, typing.Any]] = []
    for name in ("ws.connected", "chat.message", "ws.error"):
        app.events.on(name, lambda data, name=name: seen.append((name, data)))

    @app.ws_route("/chat")
    async def chat_handler(ws: WebSocket) -> None:
        await ws.accept()
        app.events.emit("ws.connected", {"client": ws.client})
        try:
            while True:
                message = await ws.receive_json()
                app.events.emit("chat.message", message)
        except Exception as e:
            app.events.emit("ws.error", {"error": str(e)})

    @app.events.on("notification.created")
    async def push_notification(notification: typing.Any) -> None:
        await ChannelBox.group_send(group_name="notifications", payload=notification)

    @app.ws_route("/notifications")
    async def notifications(ws: WebSocket) -> None:
        await ws.accept()
        await ChannelBox.add_channel_to_group(Channel(websocket=ws), "notifications")
        await ws.send_json({"joined": True})
        async for _ in ws.iter_text():
            pass

    chat = await connect(app, "/chat")
    await chat.send_json_to({"text": "hi"})
    listener = await connect(app, "/notifications")
    assert await listener.receive_json_from() == {"joined": True}
    app.events.emit("notification.created", {"alert": "new"})
    await app.events["notification.created"].wait_listeners()
    assert await listener.receive_json_from() == {"alert": "new"}
    await chat.disconnect()
    await listener.disconnect()
    assert [name for name, _ in seen] == ["ws.connected", "chat.message", "ws.error"]
    assert seen[1][1] == {"text": "hi"}


async def test_events_namespaced_once_and_error_events() -> None:
    app = get_application()
    printed: list[str] = []
    ws_events = app.events.namespace("websocket")

    @ws_events.on("message.received")
    async def process_message(msg: dict[str, str]) -> None:
        printed.append(f"New message: {msg['content']}")

    @app.events.once("connection.init")
    async def send_welcome(data: dict[str, typing.Any]) -> None:
        await data["ws"].send_json({"type": "welcome"})

    @app.events.on("ws.error")
    async def handle_errors(error: dict[str, str]) -> None:
        printed.append(f"WebSocket failure: {error}")

    @app.ws_route("/ws")
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        app.events.emit("connection.init", {"ws": ws})
        ws_events.emit("message.received", {"content": "Hello"})
        try:
            raise ValueError("bad frame")
        except Exception as e:
            app.events.emit("ws.error", {"error": str(e)})
        await ws.send_json({"type": "done"})
        await ws.receive_text()

    first = await connect(app, "/ws")
    # The welcome is sent by a task (Nexios schedules async listeners): it may follow "done".
    frames = [await first.receive_json_from(), await first.receive_json_from()]
    assert sorted(frame["type"] for frame in frames) == ["done", "welcome"]
    second = await connect(app, "/ws")
    assert await second.receive_json_from() == {"type": "done"}  # once: no second welcome
    for communicator in (first, second):
        await communicator.disconnect()
    assert printed[:2] == ["New message: Hello", "WebSocket failure: {'error': 'bad frame'}"]


async def test_events_the_complete_chat_application() -> None:
    # As on the page, except that ``emit`` is not awaited (see above) and the handler accepts:
    # the page's handler never calls ``ws.accept()``, so Nexios refuses the handshake too.
    app = get_application()

    @app.ws_route("/chat/{room}")
    async def chat_room(ws: WebSocket) -> None:
        await ws.accept()
        room = ws.path_params["room"]
        channel = Channel(websocket=ws)
        await ChannelBox.add_channel_to_group(channel, f"chat_{room}")
        try:
            while True:
                msg = await ws.receive_json()
                app.events.emit("room.message", {"room": room, "message": msg})
        finally:
            await ChannelBox.remove_channel_from_group(channel, f"chat_{room}")

    @app.events.on("room.message")
    async def broadcast(msg: dict[str, typing.Any]) -> None:
        await ChannelBox.group_send(group_name=f"chat_{msg['room']}", payload=msg)

    alice = await connect(app, "/chat/lobby")
    bob = await connect(app, "/chat/lobby")
    await alice.send_json_to({"text": "hello"})
    expected = {"room": "lobby", "message": {"text": "hello"}}
    assert await bob.receive_json_from() == expected
    assert await alice.receive_json_from() == expected
    await asyncio.gather(alice.disconnect(), bob.disconnect())
