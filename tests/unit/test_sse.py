"""The Server-Sent Events fallback: the stream as a hub member, resume by Last-Event-ID, sends by POST."""

from __future__ import annotations

import typing

import pytest
from django.core.handlers.asgi import ASGIHandler
from django.test import AsyncClient, override_settings

from nexios_compat import engine
from nexios_compat.sse import StreamMember
from nexios_compat.sse._member import event, parse_event_id
from nexios_compat.websockets import ChannelBox
from tests.support.helpers import until
from tests.support.sse import Stream, asgi_stream

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.urls("tests.sites.sse.urls"),
    pytest.mark.usefixtures("hub_cleanup"),
]


def _is(kind: str) -> typing.Callable[[typing.Any], bool]:
    return lambda e: e.json().get("type") == kind


def _payload(value: typing.Any) -> typing.Callable[[typing.Any], bool]:
    return lambda e: e.json().get("payload") == value


async def _joined(room: str) -> None:
    hub = await engine.get_hub()
    await until(lambda: hub.has_members(room), f"the stream joined {room}")


async def test_a_stream_is_a_member_with_presence_envelopes_and_event_ids() -> None:
    app = ASGIHandler()
    async with asgi_stream(app, "/events/lobby/", query="since=0&epoch=&username=ann") as stream:
        assert stream.status == 200 and stream.headers["content-type"] == "text/event-stream"
        assert stream.headers["x-accel-buffering"] == "no"
        first = await stream.next_event()
        assert first is not None and first.json()["type"] == "resume" and first.json()["recovered"] is True
        state = (await stream.events_until(_is("presence_state")))[-1].json()
        assert [m["username"] for m in state["state"]["ann"]["metas"]] == ["ann"]
        await ChannelBox.group_send("lobby", {"n": 1}, save_history=True)
        got = (await stream.events_until(_payload({"n": 1})))[-1]
        body = got.json()
        assert (body["room"], body["seq"]) == ("lobby", 1) and body["epoch"]
        assert got.id == f"{body['epoch']}:1"
    hub = await engine.get_hub()
    await until(lambda: not hub.has_members("lobby"), "the stream left lobby")
    assert not any(isinstance(m, StreamMember) for m in hub.registry.members.values())


async def test_last_event_id_resumes_with_nothing_lost_or_repeated() -> None:
    app = ASGIHandler()
    async with asgi_stream(app, "/plain/r/", query="since=0&epoch=") as stream:
        await _joined("r")
        await ChannelBox.group_send("r", {"n": 1}, save_history=True)
        last = (await stream.events_until(_payload({"n": 1})))[-1]
    for n in (2, 3):
        await ChannelBox.group_send("r", {"n": n}, save_history=True)
    await engine.flush_writes()
    assert last.id is not None
    async with asgi_stream(app, "/plain/r/", {"Last-Event-ID": last.id}, query="since=0&epoch=") as stream:
        resume = await stream.next_event()
        assert resume is not None and resume.json()["recovered"] is True
        replayed = [await stream.next_event(), await stream.next_event()]
        assert [e.json()["payload"]["n"] for e in replayed if e] == [2, 3]
    bogus = {"Last-Event-ID": "not-the-epoch:1"}
    async with asgi_stream(app, "/plain/r/", bogus) as stream:
        answer = await stream.next_event()
        assert answer is not None and answer.json()["recovered"] is False and answer.json()["last_seq"] == 3


async def test_the_room_policy_refuses_a_stream_before_anything_is_sent() -> None:
    async with asgi_stream(ASGIHandler(), "/events/members-only/") as stream:
        assert stream.status == 403
    hub = await engine.get_hub()
    assert not hub.has_members("members-only")


async def test_posts_are_saved_broadcasts_stored_once_per_id_and_answered_with_the_ack() -> None:
    client = AsyncClient()
    async with asgi_stream(ASGIHandler(), "/plain/p/", query="since=0&epoch=") as stream:
        await _joined("p")
        body = {"text": "hi", "id": "m-1"}
        first = await client.post("/plain/p/?client=tab", body, content_type="application/json")
        assert first.status_code == 200
        ack = first.json()
        assert (ack["type"], ack["id"], ack["room"], ack["seq"]) == ("ack", "m-1", "p", 1)
        again = await client.post("/plain/p/?client=tab", body, content_type="application/json")
        assert again.json() == ack
        unacked = await client.post("/plain/p/", {"text": "plain"}, content_type="application/json")
        assert unacked.status_code == 202
        seen = await stream.events_until(_payload({"text": "plain"}))
        payloads = [e.json().get("payload") for e in seen if e.json().get("payload")]
        assert payloads == [body, {"text": "plain"}]  # the retry was not broadcast again
    assert (await client.post("/plain/p/", "nope", content_type="application/json")).status_code == 400
    refused = await client.post("/plain/members-x/", {"a": 1}, content_type="application/json")
    assert refused.status_code == 403


async def test_posts_need_the_csrf_token_like_any_django_post() -> None:
    client = AsyncClient(enforce_csrf_checks=True)
    answer = await client.post("/plain/c/", {"id": "x"}, content_type="application/json")
    assert answer.status_code == 403


async def test_a_reader_past_the_bound_is_ended_and_leaves_its_rooms() -> None:
    with override_settings(NEXIOS_COMPAT={"ROOM_POLICY": "chat.policy.rooms", "SSE_MAX_QUEUED": 3}):
        member = StreamMember(max_queued=3)
        hub = await engine.get_hub()
        await hub.join(member, "slow")
        for n in range(5):
            await ChannelBox.group_send("slow", {"n": n})
        await until(lambda: member.closed is not None, "the slow member was shut")
        assert member.closed == "Send backlog exceeded"
        frames = []
        while (frame := await member.next_frame()) is not None:
            frames.append(frame)
        assert len(frames) == 3
        await hub.discard(member)
        assert not hub.has_members("slow")


async def test_idle_streams_get_keep_alive_comments() -> None:
    with override_settings(NEXIOS_COMPAT={"ROOM_POLICY": "chat.policy.rooms", "SSE_KEEPALIVE": 0.05}):
        async with asgi_stream(ASGIHandler(), "/plain/k/") as stream:
            await stream.wait_comment()  # the opening comment
            await stream.wait_comment()  # a keep-alive
            assert isinstance(stream, Stream) and stream.comments >= 2


def test_events_split_lines_carry_ids_and_base64_bytes() -> None:
    enveloped = '{"room":"a\\"b","seq":7,"epoch":"3f9c","payload":{"x":1}}'
    assert event({"text": enveloped}) == f"id: 3f9c:7\ndata: {enveloped}\n\n".encode()
    assert event({"text": "one\ntwo\r\nthree"}) == b"data: one\ndata: two\ndata: three\n\n"
    assert event({"bytes": b"\x00\xff"}) == b"event: bytes\ndata: AP8=\n\n"
    assert event({"text": '{"room":"a","seq":null,"payload":1}'}).startswith(b"data: ")
    assert parse_event_id("3f9c:7") == (7, "3f9c")
    assert parse_event_id("3f9c:x") is None and parse_event_id("") is None and parse_event_id("7") is None
