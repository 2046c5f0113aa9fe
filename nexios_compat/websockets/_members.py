"""Members as ``show_groups()`` and ``group()`` list them (local or elsewhere), and room limits."""

from __future__ import annotations

import logging
import typing
import uuid
from collections.abc import Generator

from django.db import DatabaseError

from .. import engine
from ..conf import get_config
from ..exceptions import RoomFull, TooManyRooms
from ..policy import get_policy
from ..stores.membership import MemberInfo
from ..stores.services import MembershipService
from ._channel import Channel

logger = logging.getLogger("nexios_compat.websockets")


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
        await engine.send_to(self.id, payload)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemoteChannel) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"<RemoteChannel {self.id} on {self.process_id}>"


Members = dict[Channel | RemoteChannel, typing.Any]


async def members_of(room: str | None) -> dict[str, Members]:
    hub = engine.current_hub()
    try:
        infos = await MembershipService().members(room)
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


async def check_room_limits(channel: Channel, group_name: str) -> None:
    config = get_config()
    max_rooms = config["MAX_ROOMS_PER_CONNECTION"]
    if max_rooms is not None:
        joined = {group for other in channel.websocket.channels for group in other.groups}
        if group_name not in joined and len(joined) >= max_rooms:
            raise TooManyRooms(f"This connection is already in {max_rooms} rooms")
    max_members = config["MAX_MEMBERS_PER_ROOM"]
    room_cap = get_policy().rule_for(group_name).max_members
    if room_cap is not None:
        # The room's own cap may only be tighter than the site's.
        max_members = room_cap if max_members is None else min(max_members, room_cap)
    if max_members is not None:
        try:
            count = await MembershipService().count(group_name)
        except DatabaseError:
            # The database is down: count this process's members only, so that joins
            # keep working (the limit may be passed across processes until it returns).
            hub = engine.current_hub()
            count = len(hub.registry.rooms.get(group_name, ())) if hub is not None else 0
            logger.warning(
                "Membership rows unreadable; checking %r's limit against local members", group_name
            )
        if count >= max_members:
            raise RoomFull(f"Room is full ({max_members} members)")


class GroupsView:
    """What ``show_groups()`` returns: await it for the dict, or ``await view.get(name, {})``."""

    def __await__(self) -> Generator[typing.Any, None, dict[str, Members]]:
        return members_of(None).__await__()

    async def get(self, name: str, default: typing.Any = None) -> typing.Any:
        """Return the members of one group, or ``default`` when it has none."""
        members = (await members_of(name)).get(name)
        return members if members else default
