"""The application of the send-backlog tests: ``GET /sec/stats`` (``tests.sites.security.asgi``) and one room.

``/bp/{room}?username=...`` is the chat example's room without history: every
text frame received is broadcast to the room as it is, so the room runs as fast
as the hub delivers; joins and leaves are announced as JSON notices.
"""

# ruff: noqa: I001  (tests.sites.security.asgi imports project.asgi, which sets Django up: it must come first)
from tests.sites.security.asgi import http

import json
import typing

from channels.routing import ProtocolTypeRouter

from nexios_compat import WebSocket, get_application
from nexios_compat.security import SecureWebSocketStack
from nexios_compat.websockets import WebSocketEndpoint


class FastRoom(WebSocketEndpoint):
    encoding = "text"

    async def on_connect(self, ws: WebSocket) -> None:
        await ws.accept()
        self.room = ws.path_params["room"]
        self.name = ws.query_params.get("username", "anonymous")
        await self.join_group(self.room)
        await self.notice(f"{self.name} joined")

    async def on_receive(self, ws: WebSocket, data: typing.Any) -> None:
        await self.broadcast(data, self.room)

    async def on_disconnect(self, ws: WebSocket, close_code: int) -> None:
        if hasattr(self, "room"):
            await self.notice(f"{self.name} left")

    async def notice(self, text: str) -> None:
        await self.broadcast(json.dumps({"type": "system", "message": text}), self.room)


rooms = get_application()
rooms.add_ws_route(FastRoom.as_route("/bp/{room}"))

application = ProtocolTypeRouter({"http": http, "websocket": SecureWebSocketStack(rooms)})
