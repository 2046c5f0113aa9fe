"""The admin: rooms, saved messages and live members, and the room actions reaching real sockets."""

from __future__ import annotations

import time
import typing
import uuid

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from nexios_compat.encoding import pack
from nexios_compat.models import Member, Message, Process, Room
from nexios_compat.stores.history import DatabaseHistoryStore, PendingMessage
from nexios_compat.websockets.channels import ChannelBox
from tests.support import helpers

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("hub_cleanup")]

XSS = "<script>alert(1)</script>"


def save(room: str, *payloads: typing.Any) -> None:
    messages = []
    for payload in payloads:
        kind, text, data = pack(payload)
        messages.append(PendingMessage(room=room, kind=kind, text=text, data=data))
    DatabaseHistoryStore().append(messages)


def member(room: str, **metadata: typing.Any) -> Member:
    process, _ = Process.objects.get_or_create(
        id="test-process",
        defaults={"layer_channel": "x", "hostname": "testhost", "pid": 7, "last_heartbeat": timezone.now()},
    )
    room_row, _ = Room.objects.get_or_create(name=room)
    return Member.objects.create(room=room_row, channel_id=uuid.uuid4(), process=process, metadata=metadata)


def url(name: str, *args: typing.Any) -> str:
    return reverse(f"admin:nexios_compat_{name}", args=args)


def run_action(client: Client, action: str, rooms: list[Room], **fields: typing.Any) -> typing.Any:
    """Submit an action's intermediate page, as the staff user's browser would."""
    data = {"action": action, "_selected_action": [room.pk for room in rooms], "apply": "yes", **fields}
    return client.post(url("room_changelist"), data)


def notices(response: typing.Any) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


# Rooms ------------------------------------------------------------------------


def test_room_list_shows_live_members_messages_and_last_activity(admin_client: Client) -> None:
    save("lobby", *range(3))
    save("quiet", "one")
    member("lobby", username="ann")
    member("lobby", username="bob")
    lobby = Room.objects.get(name="lobby")
    response = admin_client.get(url("room_changelist"))
    assert response.status_code == 200
    rows = {room.name: room for room in response.context["cl"].result_list}
    assert (rows["lobby"].live_member_count, rows["lobby"].message_total) == (2, 3)
    assert (rows["quiet"].live_member_count, rows["quiet"].message_total) == (0, 1)
    html = response.content.decode()
    assert f'href="{url("member_changelist")}?room__id__exact={lobby.pk}">2</a>' in html
    assert f'href="{url("message_changelist")}?room__id__exact={lobby.pk}">3</a>' in html
    assert "last activity" in html.lower()
    searched = admin_client.get(url("room_changelist"), {"q": "lob"})
    assert [room.name for room in searched.context["cl"].result_list] == ["lobby"]
    by_members = admin_client.get(url("room_changelist"), {"o": "-2"})
    assert [room.name for room in by_members.context["cl"].result_list] == ["lobby", "quiet"]


def test_room_page_lists_who_is_connected_with_metadata_and_edits_retention(admin_client: Client) -> None:
    save("lobby", "hello")
    ann = member("lobby", username="ann", note=XSS)
    room = Room.objects.get(name="lobby")
    response = admin_client.get(url("room_change", room.pk))
    html = response.content.decode()
    assert str(ann.channel_id) in html
    assert "ann" in html and "testhost:7" in html
    assert XSS not in html and "&lt;script&gt;" in html
    assert 'name="name"' not in html  # the name is the key: read-only
    response = admin_client.post(url("room_change", room.pk), {"max_messages": "5", "max_age": ""})
    assert response.status_code == 302
    room.refresh_from_db()
    assert (room.max_messages, room.max_age, room.last_seq) == (5, None, 1)


def test_rooms_cannot_be_deleted(admin_client: Client) -> None:
    room = Room.objects.create(name="keep")
    assert admin_client.get(url("room_delete", room.pk)).status_code == 403
    actions = admin_client.get(url("room_changelist")).context["action_form"].fields["action"].choices
    assert {name for name, _ in actions} == {"", "send_announcement", "close_connections", "flush_history"}


# Messages ---------------------------------------------------------------------


def test_message_list_previews_payloads_filters_and_searches(admin_client: Client) -> None:
    save("a", {"user": "ann", "message": "hello world"}, "plain words", b"\x00\x01\x02\xff")
    save("b", {"user": "bob", "message": "elsewhere"})
    response = admin_client.get(url("message_changelist"))
    html = response.content.decode()
    assert '{"user": "ann", "message": "hello world"}'.replace('"', "&quot;") in html
    assert "plain words" in html
    assert "binary, 4 bytes" in html
    assert f"?created__year={timezone.now().year}" in html  # the date hierarchy

    def listed(**params: str) -> list[tuple[str, int]]:
        result = admin_client.get(url("message_changelist"), params).context["cl"].result_list
        return sorted((m.room.name, m.seq) for m in result)

    room_a = Room.objects.get(name="a")
    assert listed(room__id__exact=str(room_a.pk)) == [("a", 1), ("a", 2), ("a", 3)]
    assert listed(kind__exact="bytes") == [("a", 3)]
    assert listed(kind__exact="json") == [("a", 1), ("b", 1)]
    assert listed(q="elsewhere") == [("b", 1)]
    year = str(timezone.now().year)
    assert len(listed(created__year=year)) == 4


def test_messages_are_read_only_but_deletable(admin_client: Client) -> None:
    save("a", {"n": 1}, {"n": 2})
    first = Message.objects.get(seq=1)
    assert admin_client.get(url("message_add")).status_code == 403
    page = admin_client.get(url("message_change", first.pk))
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert admin_client.post(url("message_change", first.pk), {"seq": 9}).status_code == 403
    response = admin_client.post(url("message_delete", first.pk), {"post": "yes"})
    assert response.status_code == 302
    assert list(Message.objects.values_list("seq", flat=True)) == [2]
    second = Message.objects.get()
    response = admin_client.post(
        url("message_changelist"),
        {"action": "delete_selected", "_selected_action": [second.pk], "post": "yes"},
    )
    assert response.status_code == 302
    assert not Message.objects.exists()
    assert Room.objects.get(name="a").last_seq == 2  # numbering is untouched


def test_payloads_are_escaped_everywhere(admin_client: Client) -> None:
    save(XSS, {"html": XSS}, XSS)
    pages = [admin_client.get(url("message_changelist")), admin_client.get(url("room_changelist"))]
    pages += [admin_client.get(url("message_change", m.pk)) for m in Message.objects.all()]
    for page in pages:
        html = page.content.decode()
        assert "<script>alert" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_message_page_shows_the_whole_payload(admin_client: Client) -> None:
    save("a", {"b": 1, "a": [1, 2]}, bytes(range(100)))
    json_page = admin_client.get(url("message_change", Message.objects.get(seq=1).pk)).content.decode()
    assert "{\n  &quot;b&quot;: 1,\n  &quot;a&quot;: [\n    1,\n    2\n  ]\n}" in json_page
    bytes_page = admin_client.get(url("message_change", Message.objects.get(seq=2).pk)).content.decode()
    assert "100 bytes" in bytes_page and "00 01 02 03" in bytes_page and "3f ..." in bytes_page


# Live members -----------------------------------------------------------------


def test_live_members_per_room_with_metadata_read_only(admin_client: Client) -> None:
    ann = member("lobby", username="ann")
    member("other", username="bob")
    lobby = Room.objects.get(name="lobby")
    response = admin_client.get(url("member_changelist"), {"room__id__exact": lobby.pk})
    assert [m.channel_id for m in response.context["cl"].result_list] == [ann.channel_id]
    assert "{&quot;username&quot;: &quot;ann&quot;}" in response.content.decode()
    assert admin_client.get(url("member_add")).status_code == 403
    assert admin_client.get(url("member_delete", ann.pk)).status_code == 403
    assert admin_client.get(url("member_change", ann.pk)).status_code == 200


# Actions ----------------------------------------------------------------------


def test_flush_action_asks_then_deletes_only_the_selected_rooms(admin_client: Client) -> None:
    save("a", 1, 2)
    save("b", 3)
    save("c", 4)
    a, b = Room.objects.get(name="a"), Room.objects.get(name="b")
    page = admin_client.post(
        url("room_changelist"), {"action": "flush_history", "_selected_action": [a.pk, b.pk], "index": 0}
    )
    assert page.status_code == 200
    html = page.content.decode()
    assert "Delete saved messages" in html and "cannot be undone" in html
    assert Message.objects.count() == 4
    response = run_action(admin_client, "flush_history", [a, b])
    assert response.status_code == 302
    assert notices(response) == ["Deleted 3 saved message(s) from 2 room(s)."]
    assert list(Message.objects.values_list("room__name", flat=True)) == ["c"]
    assert Room.objects.get(name="a").last_seq == 2


def test_flush_action_starts_a_new_epoch_in_each_selected_room_only(admin_client: Client) -> None:
    save("a", 1)
    save("b", 2)
    save("c", 3)
    before = dict(Room.objects.values_list("name", "epoch"))
    rooms = list(Room.objects.filter(name__in=["a", "b"]))
    assert run_action(admin_client, "flush_history", rooms).status_code == 302
    after = dict(Room.objects.values_list("name", "epoch"))
    assert after["a"] != before["a"] and after["b"] != before["b"] and after["a"] != after["b"]
    assert after["c"] == before["c"]


def test_announcement_action_asks_for_the_text_and_saves_it(admin_client: Client) -> None:
    a, b = Room.objects.create(name="a"), Room.objects.create(name="b")
    page = admin_client.post(
        url("room_changelist"), {"action": "send_announcement", "_selected_action": [a.pk]}
    )
    assert page.status_code == 200
    assert 'name="message"' in page.content.decode()
    invalid = run_action(admin_client, "send_announcement", [a], message="")
    assert invalid.status_code == 200 and "This field is required" in invalid.content.decode()
    response = run_action(
        admin_client, "send_announcement", [a, b], message="Closing at 6", save_history="on"
    )
    assert response.status_code == 302
    assert notices(response) == [
        "Announcement sent to 2 room(s), 0 of them with members connected now; saved to history."
    ]
    history = DatabaseHistoryStore().fetch_all()
    payloads = {room: [m.payload for m in msgs] for room, msgs in history.items()}
    assert list(payloads) == ["a", "b"]
    for (payload,) in payloads.values():
        assert payload == {
            "type": "announcement",
            "message": "Closing at 6",
            "timestamp": payload["timestamp"],
        }
        assert abs(payload["timestamp"] - time.time()) < 60
    run_action(admin_client, "send_announcement", [a], message="just text", as_text="on", save_history="on")
    run_action(admin_client, "send_announcement", [a], message="not saved")
    assert [m.payload for m in DatabaseHistoryStore().fetch("a")][-1] == "just text"


def test_close_action_validates_the_reason(admin_client: Client) -> None:
    room = Room.objects.create(name="a")
    page = admin_client.post(
        url("room_changelist"), {"action": "close_connections", "_selected_action": [room.pk]}
    )
    assert 'value="Closed by an administrator"' in page.content.decode()
    too_long = run_action(admin_client, "close_connections", [room], reason="é" * 62)
    assert too_long.status_code == 200 and "at most 123 bytes" in too_long.content.decode()
    response = run_action(admin_client, "close_connections", [room], reason="maintenance")
    assert notices(response) == ["Closing the connections of 1 room(s) (0 were connected)."]


# Actions reach live sockets ---------------------------------------------------


async def join(app: typing.Any, path: str) -> WebsocketCommunicator:
    """A member of the room at ``path`` that only listens."""
    communicator, _ = await helpers.join(app, path)
    return communicator


async def post_as_staff(client: Client, *args: typing.Any, **kwargs: typing.Any) -> typing.Any:
    # On asgiref's one ORM thread, the harder case: Django's ASGI handler gives each
    # request a thread of its own (ThreadSensitiveContext); this shares the hub's.
    return await sync_to_async(client.post)(*args, **kwargs)


async def test_announcement_reaches_connected_members(admin_client: Client) -> None:
    app = helpers.room_app(broadcast=False)
    ann = await join(app, "/room/lobby?username=ann")
    bob = await join(app, "/room/lobby?username=bob")
    other = await join(app, "/room/other")
    lobby = await Room.objects.aget(name="lobby")
    data = {
        "action": "send_announcement",
        "_selected_action": [lobby.pk],
        "apply": "yes",
        "message": "Server restarts in 5 minutes",
        "save_history": "on",
    }
    response = await post_as_staff(admin_client, url("room_changelist"), data)
    assert response.status_code == 302
    expected = await ann.receive_json_from(timeout=5)
    assert expected == {
        "type": "announcement",
        "message": "Server restarts in 5 minutes",
        "timestamp": expected["timestamp"],
    }
    assert await bob.receive_json_from(timeout=5) == expected
    assert await other.receive_nothing(timeout=0.3)
    assert [m.payload for m in await ChannelBox.show_history("lobby")] == [expected]
    assert notices(response) == [
        "Announcement sent to 1 room(s), 1 of them with members connected now; saved to history."
    ]
    for communicator in (ann, bob, other):
        await communicator.disconnect()


async def test_close_action_closes_every_connection_of_the_room(admin_client: Client) -> None:
    app = helpers.room_app(broadcast=False)
    ann = await join(app, "/room/lobby")
    bob = await join(app, "/room/lobby")
    other = await join(app, "/room/other")
    lobby = await Room.objects.aget(name="lobby")
    page = await sync_to_async(admin_client.get)(url("room_changelist"))
    assert "2</a>" in page.content.decode()  # both are listed as connected
    data = {
        "action": "close_connections",
        "_selected_action": [lobby.pk],
        "apply": "yes",
        "reason": "Moderation",
    }
    response = await post_as_staff(admin_client, url("room_changelist"), data)
    assert response.status_code == 302
    for communicator in (ann, bob):
        closed = await communicator.receive_output(timeout=5)
        assert closed == {"type": "websocket.close", "code": 1000, "reason": "Moderation"}
    assert await other.receive_nothing(timeout=0.3)
    assert notices(response) == ["Closing the connections of 1 room(s) (2 were connected)."]
    await other.disconnect()
