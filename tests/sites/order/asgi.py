"""The security site plus handlers that block past their client leaving (server/test_order_cancel.py).

``/order/function/<room>`` (a function handler) and ``/order/endpoint/<room>``
(a ``WebSocketEndpoint``) join the room, answer ``joined``, then wait forever
without reading, as a handler stuck on a stalled save does, until daphne
cancels them ``--application-close-timeout`` after the client left.
"""

# ruff: noqa: I001  (tests.sites.security.asgi sets Django up: it must be imported first)
from tests.sites.security.asgi import http

import asyncio

from channels.routing import ProtocolTypeRouter

from nexios_compat import WebSocket, get_application
from nexios_compat.websockets.channels import Channel, ChannelBox, PayloadTypeEnum
from nexios_compat.websockets.consumers import WebSocketEndpoint

app = get_application()


@app.websocket("/order/function/{room}")
async def blocking(ws: WebSocket, room: str) -> None:
    """Join, answer, then hang."""
    await ws.accept()
    channel = Channel(websocket=ws, payload_type=PayloadTypeEnum.TEXT.value)
    await ChannelBox.add_channel_to_group(channel, room)
    await ws.send_text("joined")
    await asyncio.Event().wait()


class Blocking(WebSocketEndpoint):
    """Join, answer, then hang in ``on_connect``."""

    encoding = "text"

    async def on_connect(self, websocket: WebSocket) -> None:
        await websocket.accept()
        await self.join_group(websocket.path_params["room"])
        await websocket.send_text("joined")
        await asyncio.Event().wait()


app.add_ws_route(Blocking.as_route("/order/endpoint/{room}"))

application = ProtocolTypeRouter({"http": http, "websocket": app})
