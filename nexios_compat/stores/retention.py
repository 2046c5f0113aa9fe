"""Retention: trimming rooms to their message count, age and byte limits (newest message always kept).

A pass deletes with one statement per set of limits (window functions rank
each room's messages newest first), over every room or only the rooms saved
to since a time. On PostgreSQL a pass runs under a transaction-level advisory
lock: when another process is pruning, this one skips its pass.
"""

from __future__ import annotations

import collections
import datetime
import typing

from django.db import connection, transaction
from django.utils import timezone

from ..conf import get_config, history_size_bytes
from ..models import Message, Room
from ..policy import get_policy

# pg_try_advisory_xact_lock key of a retention pass ("nexios-r" as 8 bytes).
ADVISORY_LOCK_KEY = int.from_bytes(b"nexios-r", "big") - (1 << 63)


class Pass(typing.NamedTuple):
    """What one retention pass did."""

    deleted: int
    rooms: int  # rooms examined
    skipped: bool  # another process held the lock


def prune_rooms(since: datetime.datetime | None = None) -> int:
    """Trim every room (or those saved to since ``since``) to its limits; return how many were deleted."""
    return prune_pass(since).deleted


def prune_pass(since: datetime.datetime | None = None) -> Pass:
    """Run one retention pass, unless another process is running one (PostgreSQL)."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [ADVISORY_LOCK_KEY])
                (locked,) = cursor.fetchone()
            if not locked:
                return Pass(0, 0, True)
        rooms = Room.objects.filter(last_seq__gt=0)
        if since is not None:
            rooms = rooms.filter(last_activity__gte=since)
        config = get_config()
        policy = get_policy()
        groups: dict[tuple[int | None, float | None], list[int]] = collections.defaultdict(list)
        examined = 0
        for pk, name, max_messages, max_age in rooms.values_list("pk", "name", "max_messages", "max_age"):
            examined += 1
            # The room's own row, then the room's rule, then the site's setting.
            rule = policy.rule_for(name)
            keep = _first(max_messages, rule.keep_messages, config["HISTORY_MAX_MESSAGES"])
            age = _first(max_age, rule.keep_seconds, config["HISTORY_MAX_AGE"])
            groups[(None if keep is None else max(int(keep), 1), None if age is None else float(age))].append(
                pk
            )
        deleted = sum(
            _delete_beyond(pks, keep, age, history_size_bytes()) for (keep, age), pks in groups.items()
        )
        return Pass(deleted, examined, False)


def _first(*limits: typing.Any) -> typing.Any:
    """The first limit that is set (None when none is)."""
    return next((limit for limit in limits if limit is not None), None)


def _delete_beyond(rooms: list[int], keep: int | None, max_age: float | None, byte_bound: int | None) -> int:
    """Delete, in one statement, these rooms' messages beyond the limits (never a room's newest)."""
    if keep is None and max_age is None and byte_bound is None:
        return 0
    table = connection.ops.quote_name(Message._meta.db_table)
    placeholders = ", ".join(["%s"] * len(rooms))
    conditions: list[str] = []
    params: list[int] = []
    age_limit = None  # NULL: no message counts as old
    if keep is not None:
        conditions.append("rank > %s")
        params.append(keep)
    if max_age is not None:
        # Like a cutoff: everything up to the newest message older than the limit.
        conditions.append("seq <= old_max")
        limit = timezone.now() - datetime.timedelta(seconds=max_age)
        age_limit = connection.ops.adapt_datetimefield_value(limit)
    if byte_bound is not None:
        conditions.append("total > %s")
        params.append(byte_bound)
    sql = (
        f"DELETE FROM {table} WHERE id IN (SELECT id FROM ("
        "SELECT id, seq, "
        "ROW_NUMBER() OVER (PARTITION BY room_id ORDER BY seq DESC) AS rank, "
        "SUM(size) OVER (PARTITION BY room_id ORDER BY seq DESC "
        "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS total, "
        "MAX(CASE WHEN created < %s THEN seq END) OVER (PARTITION BY room_id) AS old_max "
        f"FROM {table} WHERE room_id IN ({placeholders})"
        f") ranked WHERE rank > 1 AND ({' OR '.join(conditions)}))"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [age_limit, *rooms, *params])
        return int(cursor.rowcount)
