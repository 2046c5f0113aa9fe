"""The per-process machinery behind the rooms API; it never imports the API.

``runtime`` is the entry point: ``get_hub``/``current_hub``/``stop_hub`` and the
cluster-wide sends. See docs/architecture.md for the parts and their arrows.
"""

from .hub import Hub
from .layer import get_layer
from .protocols import Connection, LocalMember
from .runtime import (
    close_all,
    current_hub,
    flush_groups,
    flush_writes,
    get_hub,
    live_hub,
    publish,
    publish_remote,
    room_has_members,
    send_to,
    stop_hub,
)

__all__ = [
    "Connection",
    "Hub",
    "LocalMember",
    "close_all",
    "current_hub",
    "flush_groups",
    "flush_writes",
    "get_hub",
    "get_layer",
    "live_hub",
    "publish",
    "publish_remote",
    "room_has_members",
    "send_to",
    "stop_hub",
]
