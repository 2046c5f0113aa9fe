"""The project's ASGI application plus a few test-only routes under ``/e2e``.

Served by daphne in ``tests/e2e/test_seeds.py``. The extra routes cover what
the seed documents show only as fragments (text, bytes and JSON on one socket;
the ``Channel`` methods and payload types) and an expiring channel with a
TTL short enough to watch.
"""

# ruff: noqa: I001  (project.asgi sets Django up: it must be imported first)
from project.asgi import application  # the site exactly as deployed (origin check, auth, routes)

from chat.sockets import app
from nexios_compat import WebSocket
from nexios_compat.websockets.base import WebSocketDisconnect
from nexios_compat.websockets.channels import Channel, PayloadTypeEnum

__all__ = ["application"]

# Routes are resolved per connection, so adding them to the mounted app here
# serves them through the project's own ASGI stack.


@app.websocket("/e2e/fragments")
async def fragments(ws: WebSocket) -> None:
    """The document's "Handling Different Message Types" fragments, in turn."""
    await ws.accept()
    text_data = await ws.receive_text()
    await ws.send_text("Response message")
    binary_data = await ws.receive_bytes()
    await ws.send_bytes(b"Response bytes")
    json_data = await ws.receive_json()
    await ws.send_json({"response": "data", "status": "success"})
    await ws.send_json({"text": text_data, "bytes": binary_data.hex(), "json": json_data})
    await ws.close()


@app.websocket("/e2e/info/{room_id}")
async def info_websocket(ws: WebSocket) -> None:
    """The document's "/info" on a route with the ``{room_id}`` its comment mentions, plus the port."""
    await ws.accept()
    await ws.send_json(
        {
            "ip": ws.client.host,
            "port": ws.client.port,
            "room_id": ws.scope["path_params"].get("room_id"),
            "query": ws.scope["query_string"].decode(),
            "username": ws.scope["query_params"].get("username"),
            "header": ws.headers.get("x-custom-header"),
        }
    )
    await ws.close()


@app.websocket("/e2e/channel")
async def channel_methods(ws: WebSocket) -> None:
    """The Channels document's "Channel Methods and Properties", in order."""
    await ws.accept()
    channel = Channel(
        websocket=ws, payload_type=PayloadTypeEnum.JSON, expires=1800, metadata={"username": "anonymous"}
    )
    await channel.send(
        {
            "id": str(channel.id),
            "is_active": channel.is_active,
            "created": channel.created,
            "expires": channel.expires,
            "metadata": channel.metadata,
        }
    )
    await channel.send({"type": "message", "content": "Hello!"})
    await channel.send_text("Hello!")
    await channel.send_bytes(b"binary_data")
    data = await channel.receive()
    text = await channel.receive_text()
    binary = await channel.receive_bytes()
    await channel.send({"data": data, "text": text, "binary": binary.hex()})
    await channel.close(code=1000, reason="User left the chat")


@app.websocket("/e2e/echo/{payload_type}")
async def channel_echo(ws: WebSocket, payload_type: str) -> None:
    """Echo through ``channel.receive()``/``channel.send()`` of one payload type."""
    await ws.accept()
    channel = Channel(websocket=ws, payload_type=payload_type)
    try:
        while True:
            await channel.send(await channel.receive())
    except WebSocketDisconnect:
        pass
    finally:
        await channel.close()


@app.websocket("/e2e/heartbeat")
async def chat_handler(ws: WebSocket) -> None:
    """The document's "/chat-with-heartbeat" with a 1-second TTL instead of 300."""
    await ws.accept()
    channel = Channel(websocket=ws, payload_type=PayloadTypeEnum.JSON, expires=1)
    try:
        while True:
            data = await channel.receive()
            if data.get("type") == "heartbeat":
                channel.touch()
                await channel.send({"type": "heartbeat_ack"})
                continue
    except WebSocketDisconnect:
        print("Client disconnected")
    finally:
        await channel.close()
