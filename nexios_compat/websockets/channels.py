"""``Channel`` (one socket with a payload type) and ``ChannelBox`` (rooms of channels)."""

from __future__ import annotations

import logging
import time
import typing
import uuid
from collections.abc import Generator

from .. import engine
from ..conf import get_config
from ..encoding import ENVELOPE_EPOCH, ENVELOPE_NONE, ENVELOPE_SEQ, dumps, pack
from ..exceptions import PayloadTooLarge, RoomFull, TooManyRooms
from ..history import HistoryService, PendingMessage
from ..presence import MemberInfo, PresenceService
from ..rooms import check_group_name
from . import history as managers
from .base import Message, WebSocket
from .utils import (
    ChannelAddStatusEnum,
    ChannelMessageDC,
    ChannelRemoveStatusEnum,
    GroupSendStatusEnum,
    PayloadTypeEnum,
)

logger = logging.getLogger("nexios_compat.websockets")

__all__ = [
    "Channel",
    "ChannelAddStatusEnum",
    "ChannelBox",
    "ChannelMessageDC",
    "ChannelRemoveStatusEnum",
    "GroupSendStatusEnum",
    "PayloadTypeEnum",
    "RemoteChannel",
]


def _query_flag(websocket: WebSocket, name: str) -> bool:
    return websocket.query_params.get(name, "").lower() in {"1", "true", "yes", "on"}


def resume_point(websocket: WebSocket) -> int | None:
    """Return the ``?since=N`` sequence number the client asked to resume after, if valid."""
    raw = websocket.query_params.get("since")
    if raw is None or not raw.isdigit():
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
        self.expires = expires
        self.metadata: dict[str, typing.Any] = dict(metadata or {})
        self.id = uuid.uuid4()
        self.created = time.time()
        self.last_active = time.monotonic()
        self.groups: set[str] = set()
        # Opt-in: ?envelope=1 wraps JSON broadcasts as {"room", "seq", "payload"}; a
        # client that tracks epochs (sends ?epoch=, even empty) gets "epoch" in it too.
        self.envelope = ENVELOPE_NONE
        if _query_flag(websocket, "envelope"):
            epochs = resume_epoch(websocket) is not None
            self.envelope = ENVELOPE_EPOCH if epochs else ENVELOPE_SEQ
        # Groups joined since the socket opened: ``?since=N`` applies to the first join only.
        self._resumed: set[str] = set()
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
        return self.expires is not None and self.idle_seconds() > self.expires

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


class RemoteChannel:
    """A member held by another process, as ``show_groups()`` and ``group()`` list it."""

    def __init__(self, info: MemberInfo) -> None:
        self.id = info.channel_id
        self.metadata = dict(info.metadata)
        self.created = info.joined.timestamp()
        self.process_id = info.process_id
        self.expires = None
        self.is_active = True

    @property
    def uuid(self) -> uuid.UUID:
        """Alias of ``id``."""
        return self.id

    async def send(self, payload: typing.Any) -> None:
        """Send a payload to this channel through its process's hub."""
        await ChannelBox.send_to(self.id, payload)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemoteChannel) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"<RemoteChannel {self.id} on {self.process_id}>"


Members = dict[Channel | RemoteChannel, typing.Any]


async def _members(room: str | None) -> dict[str, Members]:
    hub = engine.current_hub()
    try:
        infos = await PresenceService().members(room)
    except Exception:
        if hub is None:
            raise
        # The database is down: answer from this process's memory (its own members only).
        logger.warning("Membership rows unreadable; listing this process's members only", exc_info=True)
        return {
            name: {member: ... for member in slots if isinstance(member, Channel)}
            for name, slots in hub.registry.rooms.items()
            if room is None or name == room
        }
    groups: dict[str, Members] = {}
    for info in infos:
        local = hub.registry.get(info.channel_id) if hub is not None else None
        channel = local if isinstance(local, Channel) else None
        groups.setdefault(info.room, {})[channel if channel is not None else RemoteChannel(info)] = ...
    return groups


async def _check_room_limits(channel: Channel, group_name: str) -> None:
    config = get_config()
    max_rooms = config["MAX_ROOMS_PER_CONNECTION"]
    if max_rooms is not None:
        joined = {group for other in channel.websocket.channels for group in other.groups}
        if group_name not in joined and len(joined) >= max_rooms:
            raise TooManyRooms(f"This connection is already in {max_rooms} rooms")
    max_members = config["MAX_MEMBERS_PER_ROOM"]
    if max_members is not None:
        count = await PresenceService().count(group_name)
        if count >= max_members:
            raise RoomFull(f"Room is full ({max_members} members)")


class GroupsView:
    """What ``show_groups()`` returns: await it for the dict, or ``await view.get(name, {})``."""

    def __await__(self) -> Generator[typing.Any, None, dict[str, Members]]:
        return _members(None).__await__()

    async def get(self, name: str, default: typing.Any = None) -> typing.Any:
        """Return the members of one group, or ``default`` when it has none."""
        members = (await _members(name)).get(name)
        return members if members else default


class ChannelBox:
    """Rooms of channels, the same from every process (class-level, as in Nexios)."""

    @classmethod
    async def add_channel_to_group(
        cls,
        channel: Channel,
        group_name: str = "default",
        since: int | None = None,
        epoch: str | None = None,
    ) -> ChannelAddStatusEnum:
        """Add a channel to a group; ``since`` (or the socket's ``?since=N``) replays history first.

        With an ``epoch`` (or ``?epoch=E``) the resume is all or nothing and
        answered with a ``{"type": "resume", ...}`` frame first.
        """
        check_group_name(group_name)
        hub = await engine.get_hub()
        if not hub.is_member(channel, group_name):
            await _check_room_limits(channel, group_name)
        if since is None and group_name not in channel._resumed:
            since = resume_point(channel.websocket)
            epoch = resume_epoch(channel.websocket)
        channel._resumed.add(group_name)
        return await hub.join(channel, group_name, since=since, epoch=epoch)

    @classmethod
    async def remove_channel_from_group(cls, channel: Channel, group_name: str) -> ChannelRemoveStatusEnum:
        """Remove a channel from a group."""
        hub = engine.current_hub()
        if hub is None:
            return ChannelRemoveStatusEnum.GROUP_DOES_NOT_EXIST
        return await hub.leave(channel, group_name)

    @classmethod
    async def group_send(
        cls,
        group_name: str = "default",
        payload: typing.Any = None,
        save_history: bool = False,
        sender: uuid.UUID | None = None,
    ) -> GroupSendStatusEnum:
        """Send a payload to every member of a group in every process; save it first if asked."""
        check_group_name(group_name)
        if payload is None:
            payload = {}
        if save_history and await managers.save_to_manager(group_name, payload, sender):
            save_history = False  # a plugged-in Nexios manager holds it instead of the database
        kind, text, data = pack(payload)
        message = PendingMessage(room=group_name, kind=kind, text=text, data=data, sender=sender)
        if save_history:
            limit = get_config()["MAX_HISTORY_PAYLOAD"]
            size = len(data) if data is not None else len((text or "").encode("utf-8"))
            if limit is not None and size > limit:
                raise PayloadTooLarge(f"Payload of {size} bytes exceeds MAX_HISTORY_PAYLOAD ({limit})")
        await engine.publish(message, save_history)
        if await engine.room_has_members(group_name):
            return GroupSendStatusEnum.GROUP_SEND
        return GroupSendStatusEnum.NO_SUCH_GROUP

    @classmethod
    def show_groups(cls) -> GroupsView:
        """Return every group with its members (awaitable; ``.get(name, default)`` too)."""
        return GroupsView()

    @classmethod
    async def group(cls, group_name: str) -> list[Channel | RemoteChannel]:
        """Return the members of one group."""
        return list((await _members(group_name)).get(group_name, {}))

    @classmethod
    async def flush_groups(cls) -> None:
        """Take every channel out of every group, in every process; sockets stay open."""
        await engine.flush_groups()

    @classmethod
    async def send_to(cls, channel_id: uuid.UUID | str, payload: typing.Any) -> bool:
        """Send a payload to one channel, whichever process holds it; return whether it was found."""
        target = channel_id if isinstance(channel_id, uuid.UUID) else uuid.UUID(str(channel_id))
        return await engine.send_to(target, payload)

    @classmethod
    async def close_all_connections(
        cls, group_name: str | None = None, code: int = 1000, reason: str = ""
    ) -> None:
        """Close every connection (of one group, if named) in every process."""
        await engine.close_all(group_name, code, reason)

    @classmethod
    async def _clean_expired(cls) -> int:
        """Close this process's channels that have been idle for longer than ``expires``."""
        hub = engine.current_hub()
        return await hub.sweep() if hub is not None else 0

    @classmethod
    async def show_history(
        cls, group_name: str = ""
    ) -> list[ChannelMessageDC] | dict[str, list[ChannelMessageDC]]:
        """Return one group's saved messages oldest first, or a dict of every group's."""
        if (manager := managers.get_history_manager()) is not None:
            return await manager.get_history(group_name or None)
        await engine.flush_writes()
        history = HistoryService()
        if group_name:
            return await history.fetch(group_name)
        return await history.fetch_all()

    @classmethod
    def set_history_manager(cls, manager: managers.BaseHistoryManager | None) -> None:
        """Keep history in ``manager`` (Nexios's API) instead of the database; ``None`` undoes it."""
        managers.set_history_manager(manager)

    @classmethod
    async def history_since(
        cls, group_name: str, since: int = 0, limit: int | None = None
    ) -> list[ChannelMessageDC]:
        """Return a group's saved messages with ``seq > since`` (the newest ``limit``)."""
        check_group_name(group_name)
        await engine.flush_writes()
        return await HistoryService().fetch(group_name, since, limit)

    @classmethod
    async def flush_history(cls, group_name: str | None = None) -> int:
        """Delete the saved messages of one group, or of every group."""
        if (manager := managers.get_history_manager()) is not None:
            await manager.flush_history(group_name or None)
            return 0
        await engine.flush_writes()
        return await HistoryService().flush(group_name or None)

    @classmethod
    async def prune_history(cls) -> int:
        """Apply the retention settings now; return how many messages were deleted."""
        return await HistoryService().prune()
