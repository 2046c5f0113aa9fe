"""Room policy: one list of rules, matched by room name, checked on every path into a room.

A site declares it once (``NEXIOS_COMPAT["ROOM_POLICY"] = "mysite.rooms.policy"``)::

    from nexios_compat.policy import RoomPolicy, RoomRule, is_authenticated

    policy = RoomPolicy([RoomRule(prefix="members-", join=is_authenticated)])

The first rule that matches a room wins (like ``urlpatterns``); a room no rule
matches gets ``default`` (open unless the site says otherwise). Joins (and the
resume replay they carry) are checked against ``join`` and ``read``,
publishes from a socket against ``publish``, history over HTTP against
``read``. Without a policy every room is open, as in Nexios.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Awaitable, Callable, Iterable

from django.utils.module_loading import import_string

from .conf import get_config

Action = typing.Literal["join", "publish", "read"]


@dataclasses.dataclass(frozen=True)
class Access:
    """Who asks to do what in which room: what a rule's predicates are given."""

    room: str
    action: Action
    user: typing.Any
    # The socket's ASGI scope, or None for an HTTP request (then ``request`` is set).
    scope: typing.Mapping[str, typing.Any] | None = None
    request: typing.Any = None


Predicate = Callable[[Access], bool | Awaitable[bool]]


def allow(access: Access) -> bool:
    """Let anyone in."""
    return True


def deny(access: Access) -> bool:
    """Let nobody in."""
    return False


def is_authenticated(access: Access) -> bool:
    """Let logged-in users in."""
    return bool(access.user is not None and getattr(access.user, "is_authenticated", False))


def is_staff(access: Access) -> bool:
    """Let active staff users in."""
    user = access.user
    return bool(is_authenticated(access) and user.is_active and user.is_staff)


def has_perms(*perms: str) -> Predicate:
    """Let in users that have every one of ``perms`` (``"app.codename"``)."""
    from channels.db import database_sync_to_async

    async def check(access: Access) -> bool:
        if not is_authenticated(access):
            return False
        return bool(await database_sync_to_async(access.user.has_perms)(perms))

    return check


@dataclasses.dataclass(frozen=True)
class RoomRule:
    """What a set of rooms allows: matched by ``name``, ``prefix`` or ``match`` (none: every room)."""

    name: str | None = None
    prefix: str | None = None
    match: Callable[[str], bool] | None = None
    join: Predicate = allow
    # None: the same as ``join`` (who may be in the room may speak in it and read it).
    publish: Predicate | None = None
    read: Predicate | None = None
    # False: saved sends are delivered unsaved, resume replays nothing, HTTP history is 404.
    history: bool = True
    # A per-room cap on members (4409), below the site's MAX_MEMBERS_PER_ROOM.
    max_members: int | None = None
    # How much history these rooms keep: messages, and seconds (None: the site's
    # HISTORY_MAX_MESSAGES / HISTORY_MAX_AGE). A room's own row (admin) wins over both.
    keep_messages: int | None = None
    keep_seconds: float | None = None
    # False: nobody is shown in these rooms' live presence, whatever their endpoint says.
    presence: bool = True
    # The metadata fields a presence meta may show to the other members of these rooms
    # (``channel_id`` and ``online_at`` always); None: ``PRESENCE_META_FIELDS`` decides.
    presence_fields: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        given = [m for m in (self.name, self.prefix, self.match) if m is not None]
        if len(given) > 1:
            raise ValueError("A RoomRule matches by one of name, prefix or match")
        if self.max_members is not None and self.max_members < 0:
            raise ValueError("max_members must be None or a non-negative integer")

    def matches(self, room: str) -> bool:
        """Whether this rule governs ``room``."""
        if self.name is not None:
            return room == self.name
        if self.prefix is not None:
            return room.startswith(self.prefix)
        if self.match is not None:
            return bool(self.match(room))
        return True

    def presence_entry(
        self, entry: tuple[str, dict[str, typing.Any]] | None
    ) -> tuple[str, dict[str, typing.Any]] | None:
        """A member's presence ``(key, meta)`` as these rooms show it (None: not shown)."""
        if entry is None or not self.presence:
            return None
        if self.presence_fields is None:
            return entry
        key, meta = entry
        shown = {*self.presence_fields, "channel_id", "online_at"}
        return key, {field: value for field, value in meta.items() if field in shown}

    def predicate(self, action: Action) -> Predicate:
        """The predicate that decides ``action``."""
        if action == "join":
            return self.join
        chosen = self.publish if action == "publish" else self.read if action == "read" else _unknown(action)
        return chosen if chosen is not None else self.join


OPEN = RoomRule()


def _unknown(action: str) -> typing.NoReturn:
    raise KeyError(action)


class RoomPolicy:
    """An ordered list of room rules; the first that matches a room decides, else ``default``."""

    def __init__(self, rules: Iterable[RoomRule] = (), default: RoomRule = OPEN) -> None:
        self.rules = tuple(rules)
        self.default = default
        for rule in (*self.rules, default):
            if not isinstance(rule, RoomRule):
                raise TypeError(f"A RoomPolicy holds RoomRule objects, not {type(rule).__name__}")

    def rule_for(self, room: str) -> RoomRule:
        """The rule that governs ``room``."""
        if not self.rules:
            return self.default
        return next((rule for rule in self.rules if rule.matches(room)), self.default)

    async def allows(
        self,
        action: Action,
        room: str,
        *,
        user: typing.Any,
        scope: typing.Mapping[str, typing.Any] | None = None,
        request: typing.Any = None,
    ) -> bool:
        """Whether ``user`` (on a socket's ``scope`` or an HTTP ``request``) may ``action`` in ``room``."""
        # A room-limited ticket (nexios_compat.tickets) narrows what its socket may do, never widens it.
        ticket_rooms = scope.get("nexios_ticket_rooms") if scope is not None else None
        if ticket_rooms is not None and room not in ticket_rooms:
            return False
        predicate = self.rule_for(room).predicate(action)
        if predicate is allow:
            return True  # an open room (every room without a policy): nothing to ask
        access = Access(room=room, action=action, user=user, scope=scope, request=request)
        answer = predicate(access)
        if inspect.isawaitable(answer):
            answer = await answer
        return bool(answer)


_OPEN_POLICY = RoomPolicy()
# (setting as given, policy built from it): rebuilt when the setting changes.
_loaded: tuple[object, RoomPolicy] | None = None


def load_policy(value: object) -> RoomPolicy:
    """Build the policy that ``ROOM_POLICY`` names: None, a dotted path, a RoomPolicy or a list of rules."""
    if value is None:
        return _OPEN_POLICY
    if isinstance(value, str):
        value = import_string(value)
    if isinstance(value, RoomPolicy):
        return value
    if isinstance(value, RoomRule):
        return RoomPolicy([value])
    if isinstance(value, list | tuple):
        return RoomPolicy(value)
    raise TypeError(f"ROOM_POLICY must name a RoomPolicy or a list of RoomRule, not {type(value).__name__}")


def get_policy() -> RoomPolicy:
    """Return the site's room policy (``NEXIOS_COMPAT["ROOM_POLICY"]``; open without one)."""
    global _loaded
    value = get_config()["ROOM_POLICY"]
    if _loaded is None or _loaded[0] is not value:
        _loaded = (value, load_policy(value))
    return _loaded[1]
