"""nexios_compat room broadcast peer: the same handler as the Nexios peer, import prefix changed.

``/ws/bench/{room}/`` broadcasts without history; ``/ws/bench-saved/{room}/`` saves
every message first (``save_history=True``). Served by daphne with the project's
HTTP app, origin check and auth stack, like a real site.
"""

# project.asgi sets Django up, so it comes first.
from project.asgi import application as project_application  # noqa: I001

from devservers import raise_nofile_limit
from chat.sockets import app
from nexios_compat.websockets import Channel, ChannelBox, WebSocket, WebSocketDisconnect

raise_nofile_limit()


async def _room(websocket: WebSocket, room: str, save_history: bool) -> None:
    await websocket.accept()
    channel = Channel(websocket=websocket, payload_type="json")
    await ChannelBox.add_channel_to_group(channel, group_name=room)
    try:
        while True:
            payload = await websocket.receive_json()
            await ChannelBox.group_send(group_name=room, payload=payload, save_history=save_history)
    except WebSocketDisconnect:
        pass
    finally:
        await ChannelBox.remove_channel_from_group(channel, group_name=room)


@app.websocket("/ws/bench/{room}/")
async def room_socket(websocket: WebSocket, room: str) -> None:
    await _room(websocket, room, save_history=False)


@app.websocket("/ws/bench-saved/{room}/")
async def saved_room_socket(websocket: WebSocket, room: str) -> None:
    await _room(websocket, room, save_history=True)


application = project_application
