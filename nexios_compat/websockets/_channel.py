"""``Channel``: one socket with a payload type, metadata and an optional inactivity TTL."""

from __future__ import annotations

import logging
import math
import time
import typing
import uuid

from .. import engine
from ..encoding import ENVELOPE_EPOCH, ENVELOPE_NONE, ENVELOPE_SEQ, FrameCache, dumps
from .base import Message, WebSocket
from .utils import (
    PayloadTypeEnum,
)

logger = logging.getLogger("nexios_compat.websockets")


def _query_flag(websocket: WebSocket, name: str) -> bool:
    return websocket.query_params.get(name, "").lower() in {"1", "true", "yes", "on"}


def resume_point(websocket: WebSocket) -> int | None:
    """Return the ``?since=N`` sequence number the client asked to resume after, if valid."""
    raw = websocket.query_params.get("since")
    # str.isdigit() admits "²" and other digits int() refuses; a seq past 63 bits is no seq.
    if raw is None or not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        return None
    return int(raw)


def resume_epoch(websocket: WebSocket) -> str | None:
    """Return the ``?epoch=E`` the client's position belongs to (``""``: none yet), if given."""
    raw = websocket.query_params.get("epoch")
    # Epochs are short hex strings; anything longer cannot match one.
    return raw[:32] if raw is not None else None


class Channel:
    """A WebSocket with a payload type, metadata and an optional inactivity TTL."""

    def __init__(
        self,
        websocket: WebSocket,
        payload_type: PayloadTypeEnum | str = PayloadTypeEnum.JSON,
        expires: int | float | None = None,
        metadata: dict[str, typing.Any] | None = None,
    ) -> None:
        if not isinstance(websocket, WebSocket):
            raise TypeError(f"Channel needs a nexios_compat WebSocket, not {type(websocket).__name__}")
        if expires is not None and (
            isinstance(expires, bool) or not isinstance(expires, int | float) or expires <= 0
        ):
            raise ValueError(f"expires must be a positive number of seconds or None, not {expires!r}")
        self.websocket = websocket
        self.payload_type = PayloadTypeEnum.coerce(payload_type)
        # No TTL reads as an infinitely far expiry, so ``created + expires`` (Nexios's
        # consumers always had a number there) is a time rather than a TypeError.
        self.expires: float = math.inf if expires is None else expires
        self.metadata: dict[str, typing.Any] = dict(metadata or {})
        self.id = uuid.uuid4()
        self.created = time.time()
        self.last_active = time.monotonic()
        self.groups: set[str] = set()
        # Saved sends of this channel the writer gave up on after it had moved on (see base.py).
        self.failed_saves = 0
        # (key, meta) once presence is on for it (``presence = True``, ``ChannelBox.track_presence``).
        self.presence: tuple[str, dict[str, typing.Any]] | None = None
        # Opt-in: ?envelope=1 wraps JSON broadcasts as {"room", "seq", "payload"}; a
        # client that tracks epochs (sends ?epoch=, even empty) gets "epoch" in it too.
        self.envelope = ENVELOPE_NONE
        if _query_flag(websocket, "envelope"):
            epochs = resume_epoch(websocket) is not None
            self.envelope = ENVELOPE_EPOCH if epochs else ENVELOPE_SEQ
        # Groups joined since the socket opened: ``?since=N`` applies to the first join only.
        # A tuple (most channels join one room): an idle member holds no set for it.
        self._resumed: tuple[str, ...] = ()
        websocket.channels.append(self)
        hub = engine.current_hub()
        if hub is not None:
            hub.register(self)

    @property
    def uuid(self) -> uuid.UUID:
        """Alias of ``id`` (the name Nexios uses)."""
        return self.id

    @property
    def is_active(self) -> bool:
        """Whether the socket is open and the channel has not expired."""
        return self.websocket.is_connected() and not self.is_expired()

    def touch(self) -> None:
        """Reset the inactivity timer."""
        self.last_active = time.monotonic()

    def idle_seconds(self) -> float:
        """Seconds since the last send, receive or touch."""
        return time.monotonic() - max(self.last_active, self.websocket.last_receive)

    def is_expired(self) -> bool:
        """Whether the channel has been idle for longer than ``expires``."""
        return self.idle_seconds() > self.expires

    async def send(self, payload: typing.Any) -> None:
        """Send a payload, serialized by the channel's payload type."""
        self.touch()
        kind = self.payload_type
        if isinstance(payload, bytes | bytearray):
            if kind is PayloadTypeEnum.TEXT:
                await self.websocket.send_text(bytes(payload).decode("utf-8"))
            else:
                await self.websocket.send_bytes(bytes(payload))
        elif kind is PayloadTypeEnum.JSON:
            await self.websocket.send_json(payload)
        elif kind is PayloadTypeEnum.TEXT:
            await self.websocket.send_text(payload if isinstance(payload, str) else dumps(payload))
        else:
            text = payload if isinstance(payload, str) else dumps(payload)
            await self.websocket.send_bytes(text.encode("utf-8"))

    async def send_text(self, data: str) -> None:
        """Send a text frame."""
        self.touch()
        await self.websocket.send_text(data)

    async def send_bytes(self, data: bytes) -> None:
        """Send a binary frame."""
        self.touch()
        await self.websocket.send_bytes(data)

    async def send_json(self, data: typing.Any) -> None:
        """Send a JSON text frame."""
        self.touch()
        await self.websocket.send_json(data)

    async def receive(self) -> typing.Any:
        """Receive one frame, deserialized by the channel's payload type."""
        if self.payload_type is PayloadTypeEnum.JSON:
            data = await self.websocket.receive_json()
        elif self.payload_type is PayloadTypeEnum.TEXT:
            data = await self.websocket.receive_text()
        else:
            data = await self.websocket.receive_bytes()
        self.touch()
        return data

    async def receive_text(self) -> str:
        """Receive a text frame."""
        data = await self.websocket.receive_text()
        self.touch()
        return data

    async def receive_bytes(self) -> bytes:
        """Receive a binary frame."""
        data = await self.websocket.receive_bytes()
        self.touch()
        return data

    async def receive_json(self) -> typing.Any:
        """Receive a frame and parse it as JSON."""
        data = await self.websocket.receive_json()
        self.touch()
        return data

    async def send_frame(self, frame: Message) -> bool:
        """Write a prepared ``websocket.send`` message (broadcasts; not counted as activity)."""
        return await self.websocket.send_frame(frame)

    def write_prepared(self, cache: FrameCache) -> bool:
        """Under daphne, write a broadcast's frame framed once for the room; ``False``: use ``send_frame``."""
        return self.websocket.write_prepared(cache, self.payload_type, self.envelope)

    async def drain(self) -> None:
        """Wait while the client is far behind in reading."""
        await self.websocket.drain()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Leave every group and close the socket with ``code`` and ``reason``."""
        hub = engine.current_hub()
        if hub is not None:
            await hub.discard(self)
        await self.websocket.close(code=code, reason=reason)

    def __repr__(self) -> str:
        groups = sorted(self.groups)
        return f"<Channel {self.id} {self.payload_type.value} expires={self.expires} groups={groups}>"
