"""The chat example's WebSocket routes: one room endpoint, plus the seed documents' examples."""

import time
import typing

from nexios_compat import WebSocket, get_application
from nexios_compat.websockets import WebSocketEndpoint

from . import seeds_channels, seeds_websockets

app = get_application()


def chat_message(name: str, data: typing.Any) -> dict[str, typing.Any] | None:
    """The broadcast for a client's ``{"type": "message", "content"}`` (socket or POST), else None."""
    if not isinstance(data, dict) or data.get("type") != "message":
        return None
    content = str(data.get("content", ""))[:2000]
    return {"type": "chat", "user": name, "message": content, "timestamp": time.time()}


class RoomEndpoint(WebSocketEndpoint):
    """A chat room: join notices, messages saved to history, live presence ("who is here").

    Presence keys are the user's pk when logged in, else the chosen name (so two
    tabs are one person with two metas); each meta carries ``username``.
    Who may enter which room is the site's room policy (chat/policy.py), not this
    class: ``members-*`` rooms refuse anonymous visitors with 4403 before any
    history is sent, on this route and every other.
    """

    encoding = "json"
    presence = True

    async def on_connect(self, ws: WebSocket) -> None:
        await ws.accept()
        self.room = ws.path_params["room"]
        user = ws.user
        if user is not None and user.is_authenticated:
            self.name = user.get_username()
        else:
            self.name = (ws.query_params.get("username") or "anonymous")[:50]
        # Set before joining: a presence meta is taken from the metadata when the channel joins.
        assert self.channel is not None  # made before on_connect runs
        self.channel.metadata["username"] = self.name
        await self.join_group(self.room)
        await self.announce(f"{self.name} joined", offset=0)

    async def on_receive(self, ws: WebSocket, data: typing.Any) -> None:
        payload = chat_message(self.name, data)
        if payload is None:
            await ws.send_json({"type": "error", "message": 'Send {"type": "message", "content": "..."}'})
            return
        # rooms.js gives each message an id and resends it until acked: stored once however often.
        client_id = data.get("id")
        if not (isinstance(client_id, str) and 0 < len(client_id) <= 64):
            client_id = None
        await self.broadcast(payload, self.room, save_history=True, client_id=client_id)

    async def on_disconnect(self, ws: WebSocket, close_code: int) -> None:
        if self.channel is not None and getattr(self, "room", None) in self.channel.groups:
            await self.announce(f"{self.name} left", offset=-1)

    async def announce(self, text: str, offset: int) -> None:
        users = len(await self.group(self.room)) + offset
        payload = {"type": "system", "message": text, "users": users, "timestamp": time.time()}
        await self.broadcast(payload, self.room, save_history=True)


app.add_ws_route(RoomEndpoint.as_route("/ws/chat/{room}/"))
app.mount_ws_router(seeds_websockets.app, prefix="/seeds")
app.mount_ws_router(seeds_channels.app, prefix="/seeds/channels")
