"""Mirrors ``nexios.websockets``: sockets, channels, rooms and endpoints."""

from .base import Message, Receive, Scope, Send, WebSocket, WebSocketDisconnect, WebSocketState
from .channels import Channel, ChannelBox, PayloadTypeEnum
from .consumers import WebSocketConsumer, WebSocketEndpoint
from .history import BaseHistoryManager, InMemoryHistoryManager, NoOpHistoryManager

__all__ = [
    "BaseHistoryManager",
    "Channel",
    "ChannelBox",
    "InMemoryHistoryManager",
    "Message",
    "NoOpHistoryManager",
    "PayloadTypeEnum",
    "Receive",
    "Scope",
    "Send",
    "WebSocket",
    "WebSocketConsumer",
    "WebSocketDisconnect",
    "WebSocketEndpoint",
    "WebSocketState",
]
