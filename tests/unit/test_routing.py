"""Nexios 3.x routing: ``NexiosApp``, ``Router`` with nested prefixes, ``WebsocketRoute``, ASGI wrapping."""

from __future__ import annotations

import typing

import pytest
from channels.testing import WebsocketCommunicator

from nexios_compat import NexiosApp, Router, WebSocket, WSRouter, get_application
from nexios_compat.routing import WebsocketRoute, WebsocketRoutes
from nexios_compat.websockets.consumers import WebSocketEndpoint

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("hub_cleanup")]


async def where(ws: WebSocket) -> None:
    """Tell the client which route served it and with which parameters."""
    await ws.accept()
    await ws.send_json({"path": ws.path, "params": ws.path_params, "app": type(ws.app).__name__})
    await ws.close()


async def served(app: typing.Any, path: str) -> typing.Any:
    communicator = WebsocketCommunicator(app, path)
    connected, code = await communicator.connect()
    assert connected, f"{path} refused with {code}"
    reply = await communicator.receive_json_from()
    await communicator.wait()
    return reply


async def refused(app: typing.Any, path: str) -> int:
    communicator = WebsocketCommunicator(app, path)
    connected, code = await communicator.connect()
    assert not connected
    return int(code)


async def test_nested_routers_apply_each_prefix_where_mounted() -> None:
    app = NexiosApp(title="chat", version="1.0")
    api = Router(prefix="/api")
    v1 = Router(prefix="/v1")
    v1.add_ws_route(WebsocketRoute("/rooms/{room_id:int}", where))
    api.mount_router(v1)
    app.mount_router(api)
    api.ws_route("/late", where)  # added after mounting: still served
    assert await served(app, "/api/v1/rooms/7") == {
        "path": "/api/v1/rooms/7",
        "params": {"room_id": 7},
        "app": "NexiosApp",
    }
    assert (await served(app, "/api/late"))["path"] == "/api/late"
    assert await refused(app, "/v1/rooms/7") == 4404
    assert await refused(app, "/rooms/7") == 4404


async def test_add_ws_route_takes_every_form_nexios_and_the_documents_use() -> None:
    app = NexiosApp()
    app.add_ws_route(WebsocketRoute("/a", where))
    app.add_ws_route(path="/b", handler=where)
    app.add_ws_route("/c", where)
    app.ws_route("/d", where)

    @app.ws_route("/e/{slug:slug}")
    async def decorated(ws: WebSocket) -> None:
        await where(ws)

    for name in "abcd":
        assert (await served(app, f"/{name}"))["path"] == f"/{name}"
    assert (await served(app, "/e/a-b"))["params"] == {"slug": "a-b"}
    with pytest.raises(ValueError, match="path and handler"):
        app.add_ws_route(path="/f")


async def test_converters_include_nexios_float_and_path() -> None:
    router = Router()
    router.ws_route("/p/{price:float}/{rest:path}", where)
    reply = await served(router, "/p/2.5/x/y")  # a Router is an ASGI application too
    assert reply["params"] == {"price": 2.5, "rest": "x/y"}
    assert await refused(router, "/p/abc/x") == 4404


async def test_wsrouter_and_get_application_keep_the_documents_api() -> None:
    app = get_application()
    chat = WSRouter(prefix="/chat")
    inner = WSRouter(prefix="/inner")
    chat.mount_router(inner)
    app.mount_ws_router(chat)
    app.mount_ws_router(Router(prefix="/more"), prefix="/site")
    inner.ws_route("/{room}", where)
    assert (await served(app, "/chat/inner/lobby"))["params"] == {"room": "lobby"}
    assert isinstance(app, NexiosApp)


def test_prefixes_without_a_slash_warn_and_are_fixed_as_in_nexios() -> None:
    with pytest.warns(UserWarning, match="prefix should start with '/'"):
        router = Router(prefix="api/")
    assert router.prefix == "/api"


def test_route_details_nexios_code_reads() -> None:
    route = WebsocketRoute("/rooms/{room_id}", where, name="room")
    assert route.raw_path == "/rooms/{room_id}"
    assert route.url_path_for("room", room_id=3) == "/rooms/3"
    with pytest.raises(ValueError):
        route.url_path_for("other")
    assert WebsocketRoutes is WebsocketRoute
    with pytest.raises(TypeError):
        WebsocketRoute("/x", "not a handler")  # type: ignore[arg-type]


async def test_endpoint_classes_route_through_as_route_and_directly() -> None:
    class Echo(WebSocketEndpoint):
        encoding = "text"

        async def on_receive(self, websocket: WebSocket, data: typing.Any) -> None:
            await websocket.send_text(f"{websocket.path_params['name']}:{data}")

    app = NexiosApp()
    router = Router(prefix="/r")
    router.add_ws_route(Echo.as_route("/a/{name}"))
    router.add_ws_route(WebsocketRoute("/b/{name}", Echo))
    app.mount_router(router)
    for path in ("/r/a/x", "/r/b/x"):
        communicator = WebsocketCommunicator(app, path)
        assert (await communicator.connect())[0]
        await communicator.send_to(text_data="hi")
        assert await communicator.receive_from() == "x:hi"
        await communicator.disconnect()


async def test_wrap_asgi_runs_the_last_wrapped_first() -> None:
    calls: list[str] = []

    def tagging(tag: str) -> typing.Any:
        def middleware(app: typing.Any, **kwargs: typing.Any) -> typing.Any:
            async def wrapped(scope: typing.Any, receive: typing.Any, send: typing.Any) -> None:
                calls.append(tag + kwargs.get("suffix", ""))
                scope.setdefault("state", {})["tags"] = [*scope.get("state", {}).get("tags", []), tag]
                await app(scope, receive, send)

            return wrapped

        return middleware

    app = NexiosApp()

    @app.ws_route("/s")
    async def state(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_json(ws.state.tags)
        await ws.close()

    app.wrap_asgi(tagging("inner"), suffix="!")
    app.add_ws_middleware(tagging("outer"))
    assert await served(app, "/s") == ["outer", "inner"]
    assert calls == ["outer", "inner!"]
