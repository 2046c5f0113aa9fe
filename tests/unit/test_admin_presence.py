"""The admin's room page shows live presence: keys, tabs, usernames, since when and on which process."""

from __future__ import annotations

import typing
import uuid

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.utils import timezone

from chat.sockets import app
from nexios_compat.models import Member, Process, Room
from tests.support.helpers import until
from tests.unit.test_admin import XSS, member, url

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("hub_cleanup")]

ONLINE_AT = 1_700_000_000.5  # Nov. 14, 2023, 10:13 p.m. UTC (the project's TIME_ZONE)


def present(room: str, key: str, **meta: typing.Any) -> Member:
    """A live member row as a presence endpoint writes it."""
    row = member(room, **meta)
    row.presence = {"key": key, "meta": {"channel_id": str(row.channel_id), "online_at": ONLINE_AT, **meta}}
    row.save(update_fields=["presence"])
    return row


def present_now(html: str) -> str:
    """The "present now" field's part of a room page."""
    start = html.index("field-present_now")
    return html[start : html.index("field-connected_now", start)]


def test_room_page_lists_presence_keys_with_tabs_names_dates_and_processes(admin_client: Client) -> None:
    first = present("lobby", "7", username="ann")
    second = present("lobby", "7", username="ann")  # a second tab: the same key
    present("lobby", "bob", username="bob", colour="green")
    member("lobby", username="quiet")  # an endpoint without presence: connected, not present
    room = Room.objects.get(name="lobby")
    html = present_now(admin_client.get(url("room_change", room.pk)).content.decode())
    rows = html.split("<tr>")[2:]  # after the header row
    assert len(rows) == 2, html
    ann, bob = rows
    assert "<code>7</code></td><td>2</td><td>ann</td>" in ann
    assert str(first.channel_id) in ann and str(second.channel_id) in ann
    assert ann.count("since Nov. 14, 2023, 10:13 p.m. on testhost:7") == 2
    assert "<code>bob</code></td><td>1</td><td>bob</td>" in bob
    assert "{&quot;colour&quot;: &quot;green&quot;}" in bob  # other meta fields, as JSON
    assert "quiet" not in html


def test_presence_keys_names_and_metas_are_escaped(admin_client: Client) -> None:
    present("xss", XSS, username=XSS, note=XSS)
    room = Room.objects.get(name="xss")
    html = admin_client.get(url("room_change", room.pk)).content.decode()
    assert "<script>alert" not in html
    assert present_now(html).count("&lt;script&gt;alert(1)&lt;/script&gt;") == 3  # key, username, note


def test_a_room_without_presence_says_so(admin_client: Client) -> None:
    member("plain", username="ann")
    room = Room.objects.get(name="plain")
    assert "Nobody" in present_now(admin_client.get(url("room_change", room.pk)).content.decode())


def test_odd_rows_do_not_break_the_page(admin_client: Client) -> None:
    row = member("odd")
    row.presence = {"key": "k", "meta": {"online_at": "not a time"}}
    row.save(update_fields=["presence"])
    process = Process.objects.get()
    room = Room.objects.get(name="odd")
    Member.objects.create(room=room, channel_id=uuid.uuid4(), process=process, presence={"meta": []})
    html = present_now(admin_client.get(url("room_change", room.pk)).content.decode())
    assert "since not a time on testhost:7" in html
    assert "<code></code></td><td>1</td>" in html  # no key: listed, not an error


async def test_the_chat_rooms_sockets_show_up_as_one_person_with_two_tabs(admin_client: Client) -> None:
    tabs = []
    for _ in range(2):
        tab = WebsocketCommunicator(app, "/ws/chat/live/?username=carol")
        assert (await tab.connect())[0]
        # The first tab's join notice may reach the second one before its presence_state.
        while (await tab.receive_json_from(timeout=5))["type"] != "presence_state":
            pass
        tabs.append(tab)

    rows = Member.objects.filter(room__name="live", presence__isnull=False)
    # The rows are written by the hub, off the socket's path.
    await until(lambda: sync_to_async(lambda: rows.count() == 2)(), "both tabs' presence rows")
    keys = await sync_to_async(
        lambda: {typing.cast(dict[str, typing.Any], row.presence)["key"] for row in rows}
    )()
    assert keys == {"carol"}
    room = await Room.objects.aget(name="live")
    page = await sync_to_async(admin_client.get)(url("room_change", room.pk))
    html = present_now(page.content.decode())
    assert "<code>carol</code></td><td>2</td><td>carol</td>" in html
    assert timezone.now().strftime("%Y") in html
    for tab in tabs:
        await tab.disconnect()
