"""A site whose ``app.events`` is shared across processes, for ``test_events_processes.py``.

- ``/events/listen``: receives every ``"note"`` event this process's listener gets, as
  ``{"n": ..., "pid": ...}``, once the process is subscribed (``{"ready": pid}`` first).
- ``/events/emit``: each JSON number received is emitted as ``"note"``; ``"flush"`` answers
  ``"flushed"`` once everything emitted so far is on the channel layer.
"""

# ruff: noqa: I001  (project.asgi sets Django up: it must be imported first)
from project.asgi import django_asgi_app

import os
import typing

from channels.routing import ProtocolTypeRouter

from nexios_compat import WebSocket, get_application
from nexios_compat.events import EventEmitter
from nexios_compat.websockets.base import WebSocketDisconnect

app = get_application()
app.events = EventEmitter(across_processes=True, name="events-test")
listeners: set[WebSocket] = set()


@app.events.on("note")
async def note(n: typing.Any) -> None:
    for ws in list(listeners):
        await ws.send_json({"n": n, "pid": os.getpid()})


@app.websocket("/events/listen")
async def listen(ws: WebSocket) -> None:
    await ws.accept()
    listeners.add(ws)
    await ws.send_json({"ready": os.getpid()})
    try:
        async for _ in ws.iter_text():
            pass
    finally:
        listeners.discard(ws)


@app.websocket("/events/emit")
async def emit(ws: WebSocket) -> None:
    await ws.accept()
    try:
        while True:
            data = await ws.receive_json()
            if data == "flush":
                await app.events.flush()
                await ws.send_json("flushed")
            else:
                app.events.emit("note", data)
    except WebSocketDisconnect:
        pass


application = ProtocolTypeRouter({"http": django_asgi_app, "websocket": app})
