"""What the engine needs from the sockets it serves: small protocols the API satisfies."""

from __future__ import annotations

import typing
import uuid

from ..encoding import FrameCache
from ..types import PayloadTypeEnum

Frame = typing.MutableMapping[str, typing.Any]


class LocalMember(typing.Protocol):
    """A member of rooms in this process (the API's ``Channel``)."""

    id: uuid.UUID
    metadata: dict[str, typing.Any]
    payload_type: PayloadTypeEnum
    # How JSON broadcasts reach it: bare (0), as {"room", "seq", "payload"} (1),
    # or with the room's "epoch" too (2); see ``encoding.ENVELOPE_*``.
    envelope: int
    # The rooms it is in; the engine keeps this up to date.
    groups: set[str]
    # Saved broadcasts it sent that the writer gave up on after its sender had moved
    # on; the API raises HistoryUnavailable at the socket's next own send, once.
    failed_saves: int
    # (key, meta) when its rooms show it in their live presence, else None.
    presence: tuple[str, dict[str, typing.Any]] | None

    async def send_frame(self, frame: Frame) -> bool:
        """Write a prepared ``websocket.send`` message; return whether the socket was open."""
        ...

    def write_prepared(self, cache: FrameCache) -> bool:
        """Write a broadcast framed once for all members to the server; ``False``: use ``send_frame``."""
        ...

    async def drain(self) -> None:
        """Wait while the client is far behind (for senders that can wait)."""
        ...

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Leave every room and close the socket."""
        ...

    def is_expired(self) -> bool:
        """Whether it has been idle for longer than its TTL."""
        ...


class Connection(typing.Protocol):
    """A socket served by this process, as a graceful shutdown sees it."""

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Send a close frame."""
        ...

    async def wait_closed(self, timeout: float) -> None:
        """Wait, at most ``timeout`` seconds, for the client to acknowledge the close."""
        ...
