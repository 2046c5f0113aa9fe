"""The Nexios WebSocket room API for Django, on Channels and daphne.

Code written against the Nexios documents runs with ``nexios`` replaced by
``nexios_compat`` in its imports.
"""

from .routing import WSRouter, get_application
from .websockets import (
    Channel,
    ChannelBox,
    PayloadTypeEnum,
    WebSocket,
    WebSocketConsumer,
    WebSocketDisconnect,
    WebSocketEndpoint,
)

__all__ = [
    "Channel",
    "ChannelBox",
    "PayloadTypeEnum",
    "WSRouter",
    "WebSocket",
    "WebSocketConsumer",
    "WebSocketDisconnect",
    "WebSocketEndpoint",
    "get_application",
]
