"""A daphne app for the bounds tests: a WebSocket handler that blocks until told, and its queues' sizes.

``/blocked`` accepts, says "ready", then waits until ``GET /bounds/release``
before echoing what it receives. ``GET /bounds/stats`` answers how many
messages wait in each open ``/blocked`` socket's receive queue.
"""

# ruff: noqa: I001  (project.asgi sets Django up: it must be imported first)
from project.asgi import django_asgi_app

import asyncio
import json
import typing

from channels.routing import ProtocolTypeRouter

from nexios_compat import WebSocket, get_application
from nexios_compat.websockets.base import Receive, Scope, Send

RELEASE = asyncio.Event()
SOCKETS: list[WebSocket] = []

app = get_application()


@app.websocket("/blocked")
async def blocked(ws: WebSocket) -> None:
    await ws.accept()
    SOCKETS.append(ws)
    try:
        await ws.send_text("ready")
        await RELEASE.wait()
        while True:
            await ws.send_text(await ws.receive_text())
    finally:
        SOCKETS.remove(ws)


async def http(scope: Scope, receive: Receive, send: Send) -> None:
    """``/bounds/stats`` and ``/bounds/release`` here, everything else to Django."""
    if scope["path"] not in ("/bounds/stats", "/bounds/release"):
        await django_asgi_app(scope, receive, send)  # type: ignore[arg-type]
        return
    while (await receive()).get("more_body"):
        pass
    if scope["path"] == "/bounds/release":
        RELEASE.set()
    queues: list[typing.Any] = [getattr(ws, "_queue", None) for ws in SOCKETS]
    body = json.dumps({"queued": [q.qsize() if q is not None else None for q in queues]}).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": body})


application = ProtocolTypeRouter({"http": http, "websocket": app})
