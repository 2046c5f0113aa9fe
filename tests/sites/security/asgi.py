"""The project's application plus one test-only HTTP route, ``GET /sec/stats``.

Served by daphne in the security, fuzz and leak tests. ``/sec/stats``
answers JSON about the server process, measured in its event loop: the
hub's local groups and channels, the in-memory layer's groups and channels,
the number of asyncio tasks (with their names), RSS in bytes and, with
``?gc=1``, after a garbage collection, the number of live daphne WebSocket
protocols and of daphne connections without an application (upgrade
requests not reaped yet), and each socket's send backlog.
"""

# ruff: noqa: I001  (project.asgi sets Django up: it must be imported first)
from project.asgi import application as project_application, django_asgi_app

import asyncio
import collections
import gc
import json
import typing

import psutil
from channels.routing import ProtocolTypeRouter

from nexios_compat.engine import current_hub
from nexios_compat.websockets.base import Receive, Scope, Send


def _task_name(task: asyncio.Task[typing.Any]) -> str:
    coro = task.get_coro()
    return getattr(coro, "__qualname__", None) or task.get_name()


def stats(collect: bool) -> dict[str, typing.Any]:
    """What the leak tests compare before and after."""
    hub = current_hub()
    tasks = asyncio.all_tasks()
    result: dict[str, typing.Any] = {
        "hub": hub is not None,
        "groups": len(hub.registry.rooms) if hub is not None else 0,
        "channels": len(hub.registry.members) if hub is not None else 0,
        # The in-memory layer's groups (the hub's control group is one) and channel queues.
        "layer_groups": len(getattr(hub.layer, "groups", {})) if hub is not None else 0,
        "layer_channels": len(getattr(hub.layer, "channels", {})) if hub is not None else 0,
        "tasks": len(tasks),
        "task_names": dict(collections.Counter(_task_name(task) for task in tasks)),
        # Bytes waiting in daphne's buffers for each open socket's client to read them.
        # The engine holds sockets as its Connection protocol, which does not name the API's backlog().
        "send_backlogs": sorted(typing.cast(typing.Any, ws).backlog() for ws in hub.shutdown.sockets)
        if hub is not None
        else [],
    }
    if collect:
        gc.collect()
        objects = gc.get_objects()
        result["ws_protocols"] = sum(1 for obj in objects if type(obj).__name__ == "WebSocketProtocol")
        # daphne keeps each WebSocket's upgrade request in its connections, with no
        # application, until its once-a-second reaper runs; a SIGTERM meanwhile makes its
        # kill_all_applications raise KeyError and cancel nothing.
        servers = [
            obj for obj in objects if type(obj).__module__ == "daphne.server" and hasattr(obj, "connections")
        ]
        result["connections_without_application"] = sum(
            1
            for server in servers
            for details in list(server.connections.values())
            if "application_instance" not in details
        )
    result["rss"] = psutil.Process().memory_info().rss
    return result


async def http(scope: Scope, receive: Receive, send: Send) -> None:
    """``/sec/stats`` here, everything else to Django."""
    if scope["path"] != "/sec/stats":
        await django_asgi_app(scope, receive, send)  # type: ignore[arg-type]
        return
    while (await receive()).get("more_body"):
        pass
    body = json.dumps(stats(b"gc=1" in scope.get("query_string", b""))).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


application = ProtocolTypeRouter(
    {"http": http, "websocket": project_application.application_mapping["websocket"]}
)
