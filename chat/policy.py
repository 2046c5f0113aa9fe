"""The chat example's room rules: ``members-*`` rooms are for logged-in users, on every route."""

from nexios_compat.policy import RoomPolicy, RoomRule, is_authenticated

MEMBERS_ONLY_PREFIX = "members-"

# NEXIOS_COMPAT["ROOM_POLICY"] names this. Joining, resuming, publishing and reading
# history over HTTP all ask it, whichever socket route or view is used; other rooms are open.
rooms = RoomPolicy([RoomRule(prefix=MEMBERS_ONLY_PREFIX, join=is_authenticated)])
