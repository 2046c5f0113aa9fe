"""Mirrors ``nexios.websockets``: sockets, channels, rooms and endpoints."""

from .base import WebSocket, WebSocketDisconnect, WebSocketState
from .channels import Channel, ChannelBox, PayloadTypeEnum
from .consumers import WebSocketConsumer, WebSocketEndpoint

__all__ = [
    "Channel",
    "ChannelBox",
    "PayloadTypeEnum",
    "WebSocket",
    "WebSocketConsumer",
    "WebSocketDisconnect",
    "WebSocketEndpoint",
    "WebSocketState",
]
