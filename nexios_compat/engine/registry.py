"""The local registry: this process's members, and which rooms each is in."""

from __future__ import annotations

import uuid

from ..encoding import FrameCache
from .protocols import LocalMember


class Slot:
    """One member's place in one room, with what delivery must know about it."""

    __slots__ = ("buffer", "replayed")

    def __init__(self) -> None:
        # While a resume replays history, live broadcasts wait here.
        self.buffer: list[FrameCache] | None = None
        # The last seq a resume replayed ahead of the room's live stream.
        self.replayed: int | None = None


class LocalRegistry:
    """Members by id and by room; no I/O."""

    def __init__(self) -> None:
        self.members: dict[uuid.UUID, LocalMember] = {}
        self.rooms: dict[str, dict[LocalMember, Slot]] = {}

    def register(self, member: LocalMember) -> None:
        """Track a member created in this process (for expiry and ``send_to``)."""
        self.members[member.id] = member

    def unregister(self, member: LocalMember) -> None:
        """Stop tracking a member that is in no room any more."""
        self.members.pop(member.id, None)

    def get(self, member_id: uuid.UUID) -> LocalMember | None:
        """Return a local member by id."""
        return self.members.get(member_id)

    def slot(self, member: LocalMember, room: str) -> Slot | None:
        """Return a member's place in a room, if it is there."""
        slots = self.rooms.get(room)
        return slots.get(member) if slots is not None else None

    def add(self, member: LocalMember, room: str) -> Slot:
        """Put a member in a room (which must exist: see ``open_room``)."""
        slot = self.rooms[room][member] = Slot()
        member.groups.add(room)
        self.register(member)
        return slot

    def open_room(self, room: str) -> bool:
        """Make a room exist locally; return whether it is new."""
        if room in self.rooms:
            return False
        self.rooms[room] = {}
        return True

    def remove(self, member: LocalMember, room: str) -> bool:
        """Take a member out of a room; return whether the room is now empty."""
        slots = self.rooms.get(room)
        if slots is not None:
            slots.pop(member, None)
        member.groups.discard(room)
        return not slots

    def close_room(self, room: str) -> None:
        """Forget an empty room."""
        self.rooms.pop(room, None)

    def memberships(self) -> list[tuple[str, LocalMember]]:
        """Return every ``(room, member)`` pair."""
        return [(room, member) for room, slots in self.rooms.items() for member in slots]
