"""Nexios room broadcast peer, the API nexios_compat reproduces on Django Channels.

Served by uvicorn (``uvicorn bench.peers.nexios_peer.app:app``) and by daphne
(``daphne bench.peers.nexios_peer.app:app``). Each socket of ``/ws/bench/{room}/`` is
wrapped in a ``nexios.websockets.Channel`` and joins the ``ChannelBox`` group named after
the room; every JSON message received is fanned out with ``ChannelBox.group_send``.
``/ws/bench-saved/{room}/`` does the same with ``save_history=True``.

nexios 3.12 has no ``WSRouter`` class any more (a ``Router`` carries WebSocket routes) and no
``get_application``: this module's ``get_application()`` builds the ``NexiosApp``.
"""

from __future__ import annotations

import logging

from nexios import NexiosApp
from nexios.routing import Router, WebsocketRoute
from nexios.websockets import Channel, ChannelBox, WebSocket, WebSocketDisconnect

from devservers import raise_nofile_limit

ROUTE = "/ws/bench/{room}/"
SAVED_ROUTE = "/ws/bench-saved/{room}/"


async def room_socket(websocket: WebSocket, save_history: bool = False) -> None:
    """Join the room's group and fan every JSON message out to it."""
    room = str(websocket.path_params["room"])
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


async def saved_room_socket(websocket: WebSocket) -> None:
    """``room_socket`` with ``save_history=True`` (Nexios keeps history in process memory)."""
    await room_socket(websocket, save_history=True)


def _quiet_logging() -> None:
    # NexiosApp installs a DEBUG-level "nexios" logger; per-connection/message INFO lines
    # would cost more than the broadcast itself.
    for name in ("nexios", "nexios.websockets"):
        logging.getLogger(name).setLevel(logging.WARNING)


def get_application() -> NexiosApp:
    raise_nofile_limit()
    application = NexiosApp(title="nexios bench peer", debug=False)
    router = Router()
    router.add_ws_route(WebsocketRoute(ROUTE, room_socket))
    router.add_ws_route(WebsocketRoute(SAVED_ROUTE, saved_room_socket))
    application.mount_router(router)
    _quiet_logging()
    return application


app = get_application()
