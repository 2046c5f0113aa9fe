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
# Many rooms' broadcasts in one message to every hub; each keeps the rooms it has members in.
FANOUT_ROOMS = "nexios.fanout_rooms"
SEND_TO = "nexios.send_to"
CLOSE = "nexios.close"
FLUSH_GROUPS = "nexios.flush_groups"
# A hub's message to itself through its own probe group: proves its subscriptions still exist.
PROBE = "nexios.probe"
# "Catch up from history": sent by a hub that saved messages it could not publish.
RESYNC = "nexios.resync"
# Presence: one process's entries of a room changed (or all of them, with "full").
PRESENCE = "nexios.presence"
# "Send me your entries of this room": to one hub's own channel.
PRESENCE_WANT = "nexios.presence_want"
# "These processes are gone: forget their entries": to every hub.
PRESENCE_GONE = "nexios.presence_gone"

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


def fanout(room: str, items: list[Item], origin: str, stamp: float | None = None) -> LayerMessage:
    """Build the one layer message that carries a room's broadcasts (one or a batch).

    ``stamp`` is the publishing hub's loop time, for it to recognise the message when it
    reads it back (``Outbox.echoed``); other hubs ignore it.
    """
    message: LayerMessage = {
        "type": FANOUT,
        "room": room,
        "origin": origin,
        "items": [list(entry) for entry in items],
    }
    if stamp is not None:
        message["at"] = stamp
    return message


def fanout_rooms(rooms: list[tuple[str, list[Item]]], origin: str, stamp: float) -> LayerMessage:
    """Build one layer message, for every hub, carrying the broadcasts of many rooms."""
    return {
        "type": FANOUT_ROOMS,
        "origin": origin,
        "at": stamp,
        "rooms": [[room, [list(entry) for entry in items]] for room, items in rooms],
    }


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


def probe(number: int, shard: int = 0) -> LayerMessage:
    """Build a hub's probe of its own subscriptions on one Redis server of the layer."""
    return {"type": PROBE, "n": number, "s": shard}


def resync(origin: str) -> LayerMessage:
    """Build "catch up from history" for every hub."""
    return {"type": RESYNC, "origin": origin}


def presence(
    room: str,
    origin: str,
    reply_to: str,
    version: tuple[int, int],
    entries: dict[str, typing.Any],
    *,
    full: bool = False,
    want: bool = False,
) -> LayerMessage:
    """Build a process's presence change for a room (channel id -> ``[key, meta]``, or None: left)."""
    return {
        "type": PRESENCE,
        "room": room,
        "origin": origin,
        "reply_to": reply_to,
        "v": list(version),
        "e": entries,
        "full": full,
        "want": want,
    }


def presence_want(room: str, origin: str, reply_to: str) -> LayerMessage:
    """Build a request for one hub's full presence entries of a room."""
    return {"type": PRESENCE_WANT, "room": room, "origin": origin, "reply_to": reply_to}


def presence_gone(origins: list[str]) -> LayerMessage:
    """Build "forget the presence of these (dead) processes" for every hub."""
    return {"type": PRESENCE_GONE, "origins": origins}


@dataclasses.dataclass(frozen=True)
class Fanout:
    """Broadcasts to a room, published by the hub ``origin``."""

    room: str
    origin: str
    frames: list[FrameCache]
    stamp: float | None = None


@dataclasses.dataclass(frozen=True)
class FanoutRooms:
    """Broadcasts to many rooms, published by the hub ``origin`` to every hub.

    The items stay in their wire form (``frames`` builds them): a hub builds frames
    only for the rooms it has members in.
    """

    origin: str
    stamp: float | None
    rooms: list[tuple[str, list[list[typing.Any]]]]


def frames(room: str, items: list[list[typing.Any]]) -> list[FrameCache]:
    """Return the frames of one room's broadcasts in their wire form."""
    return [FrameCache(room, *entry) for entry in items]


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
    shard: int = 0


@dataclasses.dataclass(frozen=True)
class Resync:
    """Catch up every room from history."""

    origin: str


@dataclasses.dataclass(frozen=True)
class Presence:
    """One process's presence entries of a room: changed ones, or all (``full``)."""

    room: str
    origin: str
    reply_to: str
    # (incarnation, number): ordered per origin and room; numbers follow each other.
    version: tuple[int, int]
    # channel id -> (key, meta), or None for an entry that left.
    entries: dict[str, tuple[str, dict[str, typing.Any]] | None]
    full: bool
    want: bool


@dataclasses.dataclass(frozen=True)
class PresenceWant:
    """A hub asks for this process's full presence entries of a room."""

    room: str
    origin: str
    reply_to: str


@dataclasses.dataclass(frozen=True)
class PresenceGone:
    """Processes found dead: forget their presence everywhere."""

    origins: list[str]


Parsed = (
    Fanout
    | FanoutRooms
    | SendTo
    | Close
    | FlushGroups
    | Probe
    | Resync
    | Presence
    | PresenceWant
    | PresenceGone
)


def parse(message: LayerMessage) -> Parsed | None:
    """Return the typed form of a layer message, or ``None`` for a type no hub sends."""
    kind = message.get("type")
    if kind == FANOUT:
        room = message["room"]
        return Fanout(room, message.get("origin", ""), frames(room, message["items"]), message.get("at"))
    if kind == FANOUT_ROOMS:
        rooms = [(str(room), list(items)) for room, items in message["rooms"]]
        return FanoutRooms(message.get("origin", ""), message.get("at"), rooms)
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
        return Probe(int(message.get("n", 0)), int(message.get("s", 0)))
    if kind == RESYNC:
        return Resync(message.get("origin", ""))
    if kind == PRESENCE:
        entries = {
            cid: (str(entry[0]), dict(entry[1])) if entry is not None else None
            for cid, entry in message["e"].items()
        }
        version = (int(message["v"][0]), int(message["v"][1]))
        return Presence(
            message["room"],
            message["origin"],
            message["reply_to"],
            version,
            entries,
            bool(message.get("full")),
            bool(message.get("want")),
        )
    if kind == PRESENCE_WANT:
        return PresenceWant(message["room"], message["origin"], message["reply_to"])
    if kind == PRESENCE_GONE:
        return PresenceGone([str(origin) for origin in message["origins"]])
    return None
