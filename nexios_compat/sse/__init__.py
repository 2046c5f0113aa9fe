"""Server-Sent Events: a room over HTTP for networks that break WebSockets (docs/fallback.md)."""

from ._member import StreamMember
from ._views import RoomEventsView

__all__ = ["RoomEventsView", "StreamMember"]
