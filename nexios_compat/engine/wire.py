"""Every message hubs exchange through the channel layer: one place builds and parses them.

Types live in the ``nexios.`` namespace (Channels maps ``"nexios.fanout"`` to a
handler name the same way it maps ``"chat.message"``). Keys are short on
purpose: a fan-out message crosses Redis once per process per batch.
"""

from __future__ import annotations

import dataclasses
import typing
import uuid

from ..encoding import FrameCache, pack

FANOUT = "nexios.fanout"
SEND_TO = "nexios.send_to"
CLOSE = "nexios.close"
FLUSH_GROUPS = "nexios.flush_groups"
# A hub's message to itself through its own probe group: proves its subscriptions still exist.
PROBE = "nexios.probe"
# "Catch up from history": sent by a hub that saved messages it could not publish.
RESYNC = "nexios.resync"

LayerMessage = dict[str, typing.Any]
# One broadcast inside a fan-out batch: kind, text, data, seq (None when not saved),
# then the room's epoch when there is one: unsaved broadcasts cost nothing more.
Item = (
    tuple[str, str | None, bytes | None, int | None] | tuple[str, str | None, bytes | None, int | None, str]
)


def item(cache: FrameCache) -> Item:
    """Return the wire form of one broadcast."""
    if cache.epoch is None:
        return (cache.kind, cache.text, cache.data, cache.seq)
    return (cache.kind, cache.text, cache.data, cache.seq, cache.epoch)


def fanout(room: str, items: list[Item], origin: str) -> LayerMessage:
    """Build the one layer message that carries a room's broadcasts (one or a batch)."""
    return {"type": FANOUT, "room": room, "origin": origin, "items": [list(entry) for entry in items]}


def send_to(channel_id: uuid.UUID, payload: typing.Any) -> LayerMessage:
    """Build a message for the hub that holds ``channel_id``."""
    kind, text, data = pack(payload)
    return {"type": SEND_TO, "channel": str(channel_id), "k": kind, "t": text, "b": data}


def close(room: str | None, code: int, reason: str, origin: str) -> LayerMessage:
    """Build "close every connection (of ``room``)" for every hub."""
    return {"type": CLOSE, "room": room, "code": code, "reason": reason, "origin": origin}


def flush_groups(origin: str) -> LayerMessage:
    """Build "take every channel out of every group" for every hub."""
    return {"type": FLUSH_GROUPS, "origin": origin}


def probe(number: int) -> LayerMessage:
    """Build a hub's probe of its own subscriptions."""
    return {"type": PROBE, "n": number}


def resync(origin: str) -> LayerMessage:
    """Build "catch up from history" for every hub."""
    return {"type": RESYNC, "origin": origin}


@dataclasses.dataclass(frozen=True)
class Fanout:
    """Broadcasts to a room, published by the hub ``origin``."""

    room: str
    origin: str
    frames: list[FrameCache]


@dataclasses.dataclass(frozen=True)
class SendTo:
    """A payload for one local channel."""

    channel_id: uuid.UUID
    frame: FrameCache


@dataclasses.dataclass(frozen=True)
class Close:
    """Close every local connection, or those of one room."""

    room: str | None
    code: int
    reason: str
    origin: str


@dataclasses.dataclass(frozen=True)
class FlushGroups:
    """Take every local channel out of every group."""

    origin: str


@dataclasses.dataclass(frozen=True)
class Probe:
    """A hub's own probe came back."""

    number: int


@dataclasses.dataclass(frozen=True)
class Resync:
    """Catch up every room from history."""

    origin: str


Parsed = Fanout | SendTo | Close | FlushGroups | Probe | Resync


def parse(message: LayerMessage) -> Parsed | None:
    """Return the typed form of a layer message, or ``None`` for a type no hub sends."""
    kind = message.get("type")
    if kind == FANOUT:
        room = message["room"]
        frames = [FrameCache(room, *entry) for entry in message["items"]]
        return Fanout(room, message.get("origin", ""), frames)
    if kind == SEND_TO:
        frame = FrameCache("", message["k"], message["t"], message["b"], None)
        return SendTo(uuid.UUID(message["channel"]), frame)
    if kind == CLOSE:
        return Close(
            message.get("room"),
            int(message.get("code", 1000)),
            message.get("reason", ""),
            message.get("origin", ""),
        )
    if kind == FLUSH_GROUPS:
        return FlushGroups(message.get("origin", ""))
    if kind == PROBE:
        return Probe(int(message.get("n", 0)))
    if kind == RESYNC:
        return Resync(message.get("origin", ""))
    return None
