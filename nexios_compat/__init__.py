"""The Nexios WebSocket room API for Django, on Channels and daphne.

Code written against the Nexios documents or Nexios 3.x runs with ``nexios``
replaced by ``nexios_compat`` in its imports.
"""

from .exceptions import HistoryUnavailable
from .routing import NexiosApp, Router, WSRouter, get_application
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
    "HistoryUnavailable",
    "NexiosApp",
    "PayloadTypeEnum",
    "Router",
    "WSRouter",
    "WebSocket",
    "WebSocketConsumer",
    "WebSocketDisconnect",
    "WebSocketEndpoint",
    "get_application",
]
