"""The framing tests' application: ``/sec/stats`` and ``/metrics`` (the security site's HTTP) and one room.

``/frame/{room}?type=json|text|bytes`` joins the room with a ``Channel`` of that payload
type (``&envelope=1``: JSON broadcasts in their envelope) and answers ``joined`` once it is
in the room. Then, for each text frame:

- ``say <text>`` broadcasts ``<text>`` (as a string) to the room;
- ``echo <n>`` answers ``before <n>`` through the socket's own ASGI ``send``, broadcasts
  ``{"n": <n>}``, and answers ``after <n>``: a member's direct replies and the broadcasts
  written to it must reach it in that order.
"""

# ruff: noqa: I001  (tests.sites.security.asgi imports project.asgi, which sets Django up: it must come first)
from tests.sites.security.asgi import http

from channels.routing import ProtocolTypeRouter

from nexios_compat import WebSocket, get_application
from nexios_compat.security import SecureWebSocketStack
from nexios_compat.websockets import Channel, ChannelBox, WebSocketDisconnect

rooms = get_application()


@rooms.websocket("/frame/{room}")
async def frame_room(ws: WebSocket, room: str) -> None:
    """Join, answer ``joined``, then act on ``say`` and ``echo`` frames."""
    await ws.accept()
    channel = Channel(websocket=ws, payload_type=ws.query_params.get("type", "json"))
    await ChannelBox.add_channel_to_group(channel, group_name=room)
    await ws.send_text("joined")
    try:
        while True:
            command, _, rest = (await ws.receive_text()).partition(" ")
            if command == "say":
                await ChannelBox.group_send(group_name=room, payload=rest)
            elif command == "echo":
                await ws.send_text(f"before {rest}")
                await ChannelBox.group_send(group_name=room, payload={"n": int(rest)})
                await ws.send_text(f"after {rest}")
    except WebSocketDisconnect:
        pass
    finally:
        await ChannelBox.remove_channel_from_group(channel, group_name=room)


application = ProtocolTypeRouter({"http": http, "websocket": SecureWebSocketStack(rooms)})
