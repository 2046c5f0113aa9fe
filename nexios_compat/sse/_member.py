"""``StreamMember``: a room member whose frames a Server-Sent Events response reads from a bounded queue."""

from __future__ import annotations

import asyncio
import base64
import re
import time
import typing
import uuid

from .. import engine
from ..encoding import FrameCache
from ..engine.protocols import Frame
from ..types import PayloadTypeEnum

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# The head of an enveloped saved broadcast (encoding.FrameCache): read without parsing the payload.
_ENVELOPE_HEAD = re.compile(r'\{"room":"(?:[^"\\]|\\.)*","seq":(\d+),"epoch":"([0-9A-Za-z]+)"')


class StreamMember:
    """A member of rooms like a socket's ``Channel``; ``send_frame`` queues, the response drains.

    Past ``max_queued`` frames waiting for a client that does not read, the
    member is shut (as ``MAX_SEND_BACKLOG`` closes a socket) and its stream ends.
    """

    def __init__(
        self,
        *,
        user: typing.Any = None,
        metadata: dict[str, typing.Any] | None = None,
        envelope: int = 0,
        max_queued: int = 1000,
    ) -> None:
        self.id = uuid.uuid4()
        self.created = time.time()
        self.user = user
        self.metadata: dict[str, typing.Any] = dict(metadata or {})
        self.payload_type = PayloadTypeEnum.JSON
        self.envelope = envelope
        self.groups: set[str] = set()
        self.failed_saves = 0
        self.presence: tuple[str, dict[str, typing.Any]] | None = None
        self.max_queued = max_queued
        # Why the stream ends (None while open); two slots past the bound hold a last frame and the end.
        self.closed: str | None = None
        self._queue: asyncio.Queue[Frame | None] = asyncio.Queue(max_queued + 2)
        self._readable = asyncio.Event()
        self._readable.set()

    async def send_frame(self, frame: Frame) -> bool:
        """Queue a prepared frame; past the bound, shut the stream instead."""
        if self.closed is not None:
            return False
        if self._queue.qsize() >= self.max_queued:
            self.shut("Send backlog exceeded")
            return False
        self._queue.put_nowait(frame)
        if self._queue.qsize() * 2 >= self.max_queued:
            self._readable.clear()
        return True

    def write_prepared(self, cache: FrameCache) -> bool:
        """Never: a stream's frames are events, not WebSocket frames (``send_frame`` queues them)."""
        return False

    async def drain(self) -> None:
        """Wait while half the bound or more is queued (a long replay waits for the reader)."""
        await self._readable.wait()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Leave every room and end the stream."""
        hub = engine.current_hub()
        if hub is not None:
            await hub.discard(self)
        self.shut(reason or f"closed ({code})")

    def is_expired(self) -> bool:
        """Never: the stream's end (the client gone) is what ends it."""
        return False

    def shut(self, reason: str, last: Frame | None = None) -> None:
        """End the stream after what is queued, and ``last`` (idempotent); the response leaves the rooms."""
        if self.closed is None:
            self.closed = reason
            if last is not None:
                self._queue.put_nowait(last)
            self._queue.put_nowait(None)
            self._readable.set()

    async def next_frame(self) -> Frame | None:
        """The next queued frame, or None once the stream is shut."""
        frame = await self._queue.get()
        if self._queue.qsize() * 2 < self.max_queued:
            self._readable.set()
        return frame

    def __repr__(self) -> str:
        return f"<StreamMember {self.id} groups={sorted(self.groups)}>"


def event(frame: Frame) -> bytes:
    """One frame as a Server-Sent Event: enveloped saved broadcasts carry ``id: <epoch>:<seq>``.

    Binary frames travel base64-encoded as ``event: bytes`` (SSE carries text only).
    """
    text = frame.get("text")
    lines = []
    if text is None:
        lines.append("event: bytes")
        text = base64.b64encode(frame.get("bytes") or b"").decode("ascii")
    elif head := _ENVELOPE_HEAD.match(text):
        lines.append(f"id: {head[2]}:{head[1]}")
    lines.extend(f"data: {line}" for line in _LINE_BREAK.split(text))
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def parse_event_id(raw: str | None) -> tuple[int, str] | None:
    """``(seq, epoch)`` from a ``Last-Event-ID`` of ``<epoch>:<seq>``, or None when it is not one."""
    if not raw or ":" not in raw:
        return None
    epoch, _, seq = raw.rpartition(":")
    if not (seq.isascii() and seq.isdigit()) or len(seq) > 18 or len(epoch) > 32:
        return None
    return int(seq), epoch
