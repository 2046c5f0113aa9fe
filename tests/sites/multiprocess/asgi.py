"""The project's ASGI application plus test-only routes under ``/mp`` for the multi-process tests.

- ``/mp/member/{room}``: a JSON channel in ``room`` that first sends
  ``{"id": <channel id>, "process": <hub process id>}``.
- ``/mp/presence/{room}?username=``: a presence endpoint member of ``room``;
  sending ``"leave"`` leaves the room with the socket open.
- ``/mp/control``: not a member of anything; answers ``{"op": ...}`` requests
  with ``{"ok": result}`` by calling ``ChannelBox`` and the hub in this process.
"""

# ruff: noqa: I001  (project.asgi sets Django up: it must be imported first)
from project.asgi import django_asgi_app

import typing

from channels.routing import ProtocolTypeRouter

from chat.sockets import app as chat_app
from nexios_compat import WebSocket, get_application
from nexios_compat.engine import get_hub
from nexios_compat.security import SecureWebSocketStack
from nexios_compat.websockets.base import WebSocketDisconnect
from nexios_compat.websockets import WebSocketEndpoint
from nexios_compat.websockets.channels import Channel, ChannelBox, PayloadTypeEnum

app = get_application()
app.mount_ws_router(chat_app)


@app.websocket("/mp/member/{room}")
async def member(ws: WebSocket, room: str) -> None:
    """Join ``room`` and say who we are; then stay until the client leaves or is closed."""
    await ws.accept()
    channel = Channel(websocket=ws, payload_type=PayloadTypeEnum.JSON)
    await ChannelBox.add_channel_to_group(channel, room)
    hub = await get_hub()
    await channel.send({"id": str(channel.id), "process": hub.process_id})
    try:
        while True:
            await ws.receive_json()
    except WebSocketDisconnect:
        pass


class PresenceMember(WebSocketEndpoint):
    """A member of the room in the path, shown in its live presence under ``?username=``."""

    encoding = "json"
    presence = True

    async def on_connect(self, ws: WebSocket) -> None:
        await ws.accept()
        assert self.channel is not None
        self.channel.metadata["username"] = ws.query_params.get("username", "")
        await self.join_group(ws.path_params["room"])

    async def on_receive(self, ws: WebSocket, data: typing.Any) -> None:
        if data == "leave":
            await self.leave_group(ws.path_params["room"])


app.add_ws_route(PresenceMember.as_route("/mp/presence/{room}"))


async def _members(room: str | None = None) -> dict[str, list[dict[str, typing.Any]]]:
    groups = await ChannelBox.show_groups()
    return {
        name: [{"id": str(member.id), "local": isinstance(member, Channel)} for member in members]
        for name, members in groups.items()
        if room is None or name == room
    }


async def _answer(request: dict[str, typing.Any]) -> typing.Any:
    op = request["op"]
    if op == "stats":
        return (await get_hub()).stats()
    if op == "groups":
        return await _members()
    if op == "group":
        members = await ChannelBox.group(request["room"])
        return [{"id": str(member.id), "local": isinstance(member, Channel)} for member in members]
    if op == "group_send":
        status = await ChannelBox.group_send(
            request["room"], request["payload"], save_history=request.get("save", False)
        )
        return status.value
    if op == "presence":
        return await ChannelBox.presence(request["room"])
    if op == "presence_count":
        return await ChannelBox.presence_count(request["room"])
    if op == "send_to":
        return await ChannelBox.send_to(request["id"], request["payload"])
    if op == "close_all":
        await ChannelBox.close_all_connections(request.get("room"), request.get("code", 1000), "bye")
        return None
    raise ValueError(f"unknown op {op!r}")


@app.websocket("/mp/control")
async def control(ws: WebSocket) -> None:
    """Answer requests about this process's view of the cluster."""
    await ws.accept()
    await get_hub()
    try:
        while True:
            request = await ws.receive_json()
            await ws.send_json({"ok": await _answer(request)})
    except WebSocketDisconnect:
        pass


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": SecureWebSocketStack(app),
    }
)
