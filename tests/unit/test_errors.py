"""``WebSocketException`` and ``WebSocketErrorMiddleware``: what closes a socket when a handler raises."""

from __future__ import annotations

import typing

import pytest
from channels.testing import WebsocketCommunicator

from nexios_compat import NexiosApp, WebSocket
from nexios_compat.exceptions import RoomAccessDenied, WebSocketException
from nexios_compat.websockets.errors import WebSocketErrorMiddleware

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("hub_cleanup")]


async def close_of(app: typing.Any, path: str) -> dict[str, typing.Any]:
    communicator = WebsocketCommunicator(app, path)
    assert (await communicator.connect())[0]
    message = await communicator.receive_output(timeout=5)
    assert message["type"] == "websocket.close"
    return {"code": message["code"], "reason": message.get("reason", "")}


def failing_app() -> NexiosApp:
    app = NexiosApp()

    @app.ws_route("/refuse")
    async def refuse(ws: WebSocket) -> None:
        await ws.accept()
        raise WebSocketException(4000, "no thanks")

    @app.ws_route("/crash")
    async def crash(ws: WebSocket) -> None:
        await ws.accept()
        raise KeyError("bug")

    return app


async def test_a_websocket_exception_closes_with_its_code_and_nexios_reason() -> None:
    assert await close_of(failing_app(), "/refuse") == {"code": 4000, "reason": "WebSocket 4000: no thanks"}


async def test_other_errors_close_with_1011() -> None:
    assert (await close_of(failing_app(), "/crash"))["code"] == 1011


def test_exception_text_and_room_refusals() -> None:
    exc = WebSocketException(4001)
    assert (exc.code, exc.reason, str(exc), repr(exc)) == (
        4001,
        "",
        "WebSocket 4001: ",
        "WebSocketException(4001, '')",
    )
    refused = RoomAccessDenied("members only")
    assert isinstance(refused, WebSocketException)
    assert (refused.code, str(refused)) == (4403, "members only")


async def raw_app(scope: typing.Any, receive: typing.Any, send: typing.Any) -> None:
    """A plain ASGI app (not ours) that accepts, then fails as its query string says."""
    await receive()
    await send({"type": "websocket.accept"})
    if scope["query_string"] == b"exc":
        raise WebSocketException(4321, "raw")
    if scope["query_string"] == b"crash":
        raise RuntimeError("raw crash")
    await send({"type": "websocket.close", "code": 1000})


@pytest.mark.parametrize(
    ("query", "closed"),
    [
        ("exc", {"code": 4321, "reason": "WebSocket 4321: raw"}),
        ("crash", {"code": 1011, "reason": "Internal Server Error"}),
    ],
)
async def test_middleware_closes_an_accepted_socket_of_any_app(
    query: str, closed: dict[str, typing.Any]
) -> None:
    assert await close_of(WebSocketErrorMiddleware(raw_app), f"/?{query}") == closed


async def test_middleware_refuses_the_handshake_when_the_app_fails_before_accepting() -> None:
    async def early(scope: typing.Any, receive: typing.Any, send: typing.Any) -> None:
        raise WebSocketException(4500, "early")

    communicator = WebsocketCommunicator(WebSocketErrorMiddleware(early), "/")
    assert await communicator.connect() == (False, 4500)


async def test_middleware_around_a_nexios_app_and_passing_other_scopes() -> None:
    app = failing_app()
    app.wrap_asgi(WebSocketErrorMiddleware)
    assert (await close_of(app, "/refuse"))["code"] == 4000
    seen: list[str] = []

    async def lifespan(scope: typing.Any, receive: typing.Any, send: typing.Any) -> None:
        seen.append(scope["type"])

    await WebSocketErrorMiddleware(lifespan)({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan"]
