"""``ChannelBox`` (rooms of channels), and ``Channel`` at the path Nexios has it."""

from __future__ import annotations

import logging
import typing
import uuid

from .. import engine
from ..conf import get_config
from ..encoding import dumps, pack
from ..exceptions import PayloadTooLarge, RoomAccessDenied
from ..policy import get_policy
from ..rooms import check_group_name
from ..stores.history import PendingMessage
from ..stores.services import HistoryService
from . import _presence as live
from . import history as managers
from ._channel import Channel, resume_epoch, resume_point
from ._members import GroupsView, RemoteChannel, check_room_limits, members_of
from .base import WebSocket, current_websocket
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
        # The room's rules, whichever route or endpoint asks: room names are global.
        policy = get_policy()
        websocket = channel.websocket
        if not await policy.allows("join", group_name, user=websocket.user, scope=websocket.scope):
            raise RoomAccessDenied(f"Not allowed to join {group_name!r}")
        hub = await engine.get_hub()
        if not hub.is_member(channel, group_name):
            await check_room_limits(channel, group_name)
        if since is None and group_name not in channel._resumed:
            since = resume_point(websocket)
            epoch = resume_epoch(websocket)
        if since is not None and not (
            policy.rule_for(group_name).history
            and await policy.allows("read", group_name, user=websocket.user, scope=websocket.scope)
        ):
            # Joining does not entitle to the past: the replay is what ``read`` guards.
            since, epoch = None, None
        status = await hub.join(channel, group_name, since=since, epoch=epoch)
        # Only once it worked: a join whose replay failed resumes when tried again.
        if group_name not in channel._resumed:
            channel._resumed += (group_name,)
        return status

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
        client_id: str | None = None,
    ) -> GroupSendStatusEnum:
        """Send a payload to every member of a group in every process; save it first if asked.

        With ``client_id`` a saved send is stored at most once per room and sender
        (retries answer with the first one's seq), and the sending socket gets an
        ``{"type": "ack", ...}`` frame once it is stored.
        """
        check_group_name(group_name)
        check_client_id(client_id)
        if payload is None:
            payload = {}
        client = _client_of(sender)
        policy = get_policy()
        if client is not None and not await policy.allows(
            "publish", group_name, user=client.user, scope=client.scope
        ):
            # Refused before anything is saved or sent; the client is told, the handler goes on.
            await client.send_text(_REFUSED_FRAME.format(room=dumps(group_name)))
            return GroupSendStatusEnum.NO_SUCH_GROUP
        if save_history and not policy.rule_for(group_name).history:
            save_history = False
        if save_history and await managers.save_to_manager(group_name, payload, sender):
            save_history = False  # a plugged-in Nexios manager holds it instead of the database
        kind, text, data = pack(payload)
        message = PendingMessage(room=group_name, kind=kind, text=text, data=data, sender=sender)
        if save_history and client_id is not None:
            message.client_id, message.sender_key = client_id, sender_key(client, sender)
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
        return list((await members_of(group_name)).get(group_name, {}))

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
    async def track_presence(cls, channel: Channel, key: str | None = None) -> None:
        """Show a channel in the live presence of its rooms (``presence = True`` for function handlers).

        ``key`` defaults to the Django user's pk, else ``metadata["username"]``,
        else the channel id; JSON channels then get presence events.
        """
        await live.track(channel, key)

    @classmethod
    async def presence(cls, group_name: str) -> live.PresenceState:
        """Return who is in a group, in every process: ``{key: {"metas": [meta, ...]}}``."""
        return await live.room_presence(group_name)

    @classmethod
    async def presence_count(cls, group_name: str) -> int:
        """Return the number of presence keys (users) in a group, in every process."""
        return len(await live.room_presence(group_name))

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
            await _check_read(group_name)
            return await history.fetch(group_name)
        return await _readable(await history.fetch_all())

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
        await _check_read(group_name)
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


# What a client whose publish a room's rules refused is sent (nothing was sent or saved).
_REFUSED_FRAME = '{{"type":"error","error":"forbidden","room":{room}}}'


def check_client_id(client_id: object) -> None:
    """Raise ``ValueError`` unless ``client_id`` is None or a string of 1 to 64 characters."""
    if client_id is not None and not (isinstance(client_id, str) and 0 < len(client_id) <= MAX_CLIENT_ID):
        raise ValueError(f"client_id must be a string of 1 to {MAX_CLIENT_ID} characters or None")


def sender_key(client: WebSocket | None, sender: uuid.UUID | None) -> str:
    """Whose client ids a send's are: the user, else the anonymous client's ``?client=``, else the socket.

    A logged-in user's key ignores what the client says; an anonymous client
    chooses its own, so it can only dedupe against itself (and whoever it
    tells). Server code (no socket) shares one key.
    """
    if client is None:
        return "server" if sender is None else f"channel:{sender}"
    user = client.user
    if user is not None and user.is_authenticated:
        return f"user:{user.pk}"
    chosen = client.query_params.get("client", "")
    if 0 < len(chosen) <= MAX_CLIENT_ID:
        return f"anon:{chosen}"
    return f"channel:{sender}" if sender is not None else "server"


# Longest client id and anonymous client key (the columns hold 64 and 160).
MAX_CLIENT_ID = 64


def _client_of(sender: uuid.UUID | None) -> WebSocket | None:
    """The socket a send comes from, or None for the server's own sends (views, admin, commands)."""
    if sender is not None:
        hub = engine.current_hub()
        member = hub.registry.get(sender) if hub is not None else None
        if isinstance(member, Channel):
            return member.websocket
    return current_websocket.get()


async def _readable(rooms: dict[str, list[ChannelMessageDC]]) -> dict[str, list[ChannelMessageDC]]:
    """Keep the rooms a socket's client may read (every room for server code)."""
    client = current_websocket.get()
    if client is None:
        return rooms
    policy = get_policy()
    return {
        room: messages
        for room, messages in rooms.items()
        if await policy.allows("read", room, user=client.user, scope=client.scope)
    }


async def _check_read(group_name: str) -> None:
    """Refuse a socket's handler reading a room its client may not read (server code is trusted)."""
    client = current_websocket.get()
    if client is not None and not await get_policy().allows(
        "read", group_name, user=client.user, scope=client.scope
    ):
        raise RoomAccessDenied(f"Not allowed to read {group_name!r}")
