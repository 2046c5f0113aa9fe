"""The multiprocess site plus ``/probe/{room}/``, the fault-probe room of tests/faults/test_netns_faults.py.

A member of ``room`` (resuming from ``?since=``) that first sends ``{"hello":
<channel id>, "process": <hub process id>}``, then saves every frame it
receives and answers ``{"ack": n}`` once the save reached this socket (a
reply waits for the handler's own saved broadcasts), or ``{"nack": n}`` when
it failed with ``HistoryUnavailable``. ``/ids/{room}/`` is a room as ``rooms.js``
expects one: it saves what arrives with the client's ``id`` (acks, retries
stored once, the error frame naming the ids when the database is down).
"""

# ruff: noqa: I001  (tests.sites.multiprocess.asgi sets Django up: it must be imported first)
from tests.sites.multiprocess.asgi import app, application

import typing

from nexios_compat import HistoryUnavailable, WebSocket
from nexios_compat.engine import get_hub
from nexios_compat.websockets import WebSocketEndpoint

__all__ = ["application"]


class Probe(WebSocketEndpoint):
    """Save what arrives; acknowledge it."""

    encoding = "json"

    async def on_connect(self, ws: WebSocket) -> None:
        await ws.accept()
        self.room = ws.path_params["room"]
        await self.join_group(self.room)
        assert self.channel is not None
        await ws.send_json({"hello": str(self.channel.id), "process": (await get_hub()).process_id})

    async def on_receive(self, ws: WebSocket, data: typing.Any) -> None:
        try:
            await self.broadcast(data, self.room, save_history=True)
            # Raises too if the save, accepted, failed afterwards: an ack never follows a lost save.
            await ws.send_json({"ack": data["n"]})
        except HistoryUnavailable:
            await ws.send_json({"nack": data["n"]})


class IdRoom(WebSocketEndpoint):
    """Save what arrives, passing the client's ``id`` along."""

    encoding = "json"

    async def on_connect(self, ws: WebSocket) -> None:
        await ws.accept()
        self.room = ws.path_params["room"]
        await self.join_group(self.room)

    async def on_receive(self, ws: WebSocket, data: typing.Any) -> None:
        client_id = data.pop("id", None)
        await self.broadcast(data, self.room, save_history=True, client_id=client_id)


app.add_ws_route(Probe.as_route("/probe/{room}/"))
app.add_ws_route(IdRoom.as_route("/ids/{room}/"))
