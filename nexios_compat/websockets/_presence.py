"""Live presence on the API side: a connection's key and meta, and reading a room's presence."""

from __future__ import annotations

import json
import typing
import uuid

from .. import engine
from ..conf import get_config
from ..rooms import check_group_name
from ..stores.membership import jsonable
from ..stores.services import MembershipService
from ._channel import Channel

# {key: {"metas": [meta, ...]}}: one key per user, one meta per connection.
PresenceState = dict[str, dict[str, list[dict[str, typing.Any]]]]


def default_presence_key(channel: Channel) -> str:
    """The Django user's pk when authenticated, else ``metadata["username"]``, else the channel id."""
    user = channel.websocket.user
    if user is not None and getattr(user, "is_authenticated", False):
        return str(user.pk)
    username = channel.metadata.get("username")
    if username not in (None, ""):
        return str(username)
    return str(channel.id)


class Presentable(typing.Protocol):
    """What a meta is made of: a ``Channel``, or a stream member of the SSE fallback."""

    id: uuid.UUID
    created: float
    metadata: dict[str, typing.Any]


def presence_meta(channel: Presentable) -> dict[str, typing.Any]:
    """A connection's meta: its channel id, when it came online, and its metadata (made JSON-safe).

    Only ``PRESENCE_META_FIELDS`` of the metadata (all when None), and none of it
    past ``PRESENCE_MAX_META_BYTES``: every member of the room is sent the meta.
    """
    config = get_config()
    base = {"channel_id": str(channel.id), "online_at": channel.created}
    metadata = jsonable(channel.metadata)
    allowed = config["PRESENCE_META_FIELDS"]
    if allowed is not None:
        metadata = {field: value for field, value in metadata.items() if field in allowed}
    meta = {**base, **metadata}
    limit = config["PRESENCE_MAX_META_BYTES"]
    if limit is not None and len(json.dumps(meta, default=str).encode("utf-8")) > limit:
        return base
    return meta


async def track(channel: Channel, key: str | None = None) -> None:
    """Show a channel in the live presence of every room it is in now or joins later."""
    if channel.presence is not None:
        return
    if key is not None and not isinstance(key, str):
        raise TypeError(f"A presence key must be a str, not {type(key).__name__}")
    channel.presence = (key if key else default_presence_key(channel), presence_meta(channel))
    hub = await engine.get_hub()
    await hub.track(channel)


async def room_presence(room: str) -> PresenceState:
    """Return a room's presence in every process (from memory where tracked here, else from the rows)."""
    check_group_name(room)
    hub = engine.live_hub()
    state = hub.tracker.state(room) if hub is not None else None
    if state is not None:
        return state
    rows = await MembershipService().members(room)
    result: PresenceState = {}
    for row in rows:
        if row.presence is not None:
            result.setdefault(str(row.presence["key"]), {"metas": []})["metas"].append(row.presence["meta"])
    return result
