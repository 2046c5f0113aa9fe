"""The room page's "present now" table: live presence keys and their metas, from the member rows."""

from __future__ import annotations

import datetime
import json
import typing

from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from ..models import Member, Room

# Connections read for one room page; a room with more shows the first ones and says so.
PRESENCE_PAGE_ROWS = 200
# Shown on their own columns; any other meta field is listed as JSON.
SHOWN_FIELDS = ("channel_id", "online_at", "username")


def online_since(value: typing.Any) -> str:
    """A meta's ``online_at`` (unix time) as a local date and time; anything else as it is."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    try:
        moment = datetime.datetime.fromtimestamp(value, tz=datetime.UTC)
    except (OverflowError, OSError, ValueError):
        return str(value)
    return date_format(timezone.localtime(moment), "DATETIME_FORMAT")


def presence_rows(room: Room) -> tuple[dict[str, list[tuple[dict[str, typing.Any], Member]]], bool]:
    """The room's present members grouped by key (first seen first), and whether rows were left out."""
    members = list(
        room.members.filter(presence__isnull=False)
        .select_related("process")
        .order_by("joined", "pk")[: PRESENCE_PAGE_ROWS + 1]
    )
    keys: dict[str, list[tuple[dict[str, typing.Any], Member]]] = {}
    for member in members[:PRESENCE_PAGE_ROWS]:
        presence = member.presence if isinstance(member.presence, dict) else {}
        meta = presence.get("meta")
        meta = meta if isinstance(meta, dict) else {}
        keys.setdefault(str(presence.get("key", "")), []).append((meta, member))
    return keys, len(members) > PRESENCE_PAGE_ROWS


def _meta_line(meta: dict[str, typing.Any], member: Member) -> tuple[typing.Any, ...]:
    extra = {name: value for name, value in meta.items() if name not in SHOWN_FIELDS}
    return (
        online_since(meta.get("online_at")),
        member.process,
        meta.get("channel_id", member.channel_id),
        json.dumps(extra, ensure_ascii=False) if extra else "",
    )


def presence_table(room: Room) -> SafeString | str:
    """An HTML table of who is present: one row per key with its tabs count, name and connections."""
    if room.pk is None:
        return "-"
    keys, more = presence_rows(room)
    if not keys:
        return "Nobody (or no endpoint with presence on)."
    rows = []
    for key, metas in keys.items():
        names = sorted({str(meta["username"]) for meta, _ in metas if meta.get("username") not in (None, "")})
        connections = format_html_join(
            "",
            "<li>since {} on {} <small>({})</small> <code>{}</code></li>",
            (_meta_line(meta, member) for meta, member in metas),
        )
        rows.append(
            format_html(
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td><ul>{}</ul></td></tr>",
                key,
                len(metas),
                ", ".join(names) or "-",
                connections,
            )
        )
    note = format_html("<p>Only the first {} connections are shown.</p>", PRESENCE_PAGE_ROWS) if more else ""
    return format_html(
        "<table><thead><tr><th>key</th><th>tabs</th><th>username</th><th>connections</th></tr></thead>"
        "<tbody>{}</tbody></table>{}",
        format_html_join("", "{}", ((row,) for row in rows)),
        note,
    )
