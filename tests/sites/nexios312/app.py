"""A small, typical Nexios 3.12 app, as its users write it, with ``nexios`` -> ``nexios_compat``.

Nothing else differs from the Nexios original: tests/e2e/test_nexios312.py
checks that this very source, prefix swapped back, imports under Nexios 3.12.
Served by daphne through ``tests.sites.nexios312.asgi``.
"""

from nexios_compat import NexiosApp, status
from nexios_compat.exceptions import WebSocketException
from nexios_compat.routing import Router, WebsocketRoute
from nexios_compat.websockets import (
    Channel,
    ChannelBox,
    InMemoryHistoryManager,
    WebSocket,
    WebSocketDisconnect,
)
from nexios_compat.websockets.channels import PayloadTypeEnum
from nexios_compat.websockets.consumers import WebSocketConsumer
from nexios_compat.websockets.errors import WebSocketErrorMiddleware

app = NexiosApp(title="Rooms", version="1.0.0")
ChannelBox.set_history_manager(InMemoryHistoryManager(history_size=1_048_576))

api = Router(prefix="/api")
v1 = Router(prefix="/v1")


async def room(websocket: WebSocket) -> None:
    await websocket.accept()
    name = websocket.path_params["room"]
    user = websocket.query_params.get("user", "anonymous")
    channel = Channel(websocket=websocket, payload_type=PayloadTypeEnum.JSON.value, expires=3600)
    await ChannelBox.add_channel_to_group(channel, name)
    try:
        while True:
            data = await websocket.receive_json()
            if data.get("type") == "history":
                history = await ChannelBox.show_history(name)
                await websocket.send_json({"history": [message.payload for message in history]})
            elif data.get("type") == "cheat":
                raise WebSocketException(status.WS_1008_POLICY_VIOLATION, "no cheating")
            else:
                await ChannelBox.group_send(name, {"user": user, **data}, save_history=True)
    except WebSocketDisconnect:
        pass
    finally:
        await ChannelBox.remove_channel_from_group(channel, name)


class Echo(WebSocketConsumer):
    encoding = "json"

    async def on_receive(self, websocket: WebSocket, data: dict) -> None:
        await websocket.send_json({"echo": data, "query": dict(websocket.query_params)})


v1.add_ws_route(WebsocketRoute("/rooms/{room}", room))
v1.add_ws_route(Echo.as_route("/echo"))
api.mount_router(v1)
app.mount_router(api)


@app.ws_route("/upload")
async def upload(websocket: WebSocket) -> None:
    await websocket.accept()
    received = 0
    async for chunk in websocket.iter_bytes():
        received += len(chunk)
        await websocket.send_json({"received": received})


@app.ws_route("/ticks")
async def ticks(websocket: WebSocket) -> None:
    await websocket.accept()
    count = 0
    async for _ in websocket.iter_text():
        count += 1
        await websocket.send_text(str(count))


app.wrap_asgi(WebSocketErrorMiddleware)
