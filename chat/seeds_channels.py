"""The examples of the Nexios "Channels" document, ported by changing ``nexios`` to ``nexios_compat``."""

from datetime import datetime

from nexios_compat import WebSocket, get_application
from nexios_compat.websockets.base import WebSocketDisconnect
from nexios_compat.websockets.channels import Channel, PayloadTypeEnum

app = get_application()


@app.websocket("/chat")
async def chat_handler(ws: WebSocket):
    # Accept the WebSocket connection
    await ws.accept()
    # Create a channel with JSON payload and 30-minute expiration
    channel = Channel(
        websocket=ws,
        payload_type=PayloadTypeEnum.JSON,  # Can be JSON, TEXT, or BINARY
        expires=1800,  # 30 minutes (optional)
        metadata={"username": "anonymous"},  # Optional metadata
    )
    try:
        while True:
            # Receive and process messages
            data = await channel.receive()  # Automatically deserializes based on payload_type
            # Send a response (automatically serializes based on payload_type)
            await channel.send({"response": data, "timestamp": datetime.utcnow().isoformat()})
            # Update channel metadata if needed
            if "username" in data:
                channel.metadata["username"] = data["username"]
    except WebSocketDisconnect:
        print(f"Client disconnected: {channel.id}")
    except Exception as e:
        print(f"Error in chat handler: {e}")
    finally:
        # Clean up resources
        await channel.close()


@app.websocket("/chat-with-heartbeat")
async def chat_handler(ws: WebSocket):  # noqa: F811  (the document reuses the name)
    await ws.accept()
    # Channel with 5-minute expiration
    channel = Channel(
        websocket=ws,
        payload_type=PayloadTypeEnum.JSON,
        expires=300,  # 5 minutes
    )
    try:
        while True:
            data = await channel.receive()
            # Handle heartbeat messages
            if data.get("type") == "heartbeat":
                # Reset the expiration timer
                channel.touch()
                await channel.send({"type": "heartbeat_ack"})
                continue
            # Process other messages...
    except WebSocketDisconnect:
        print("Client disconnected")
    finally:
        await channel.close()
