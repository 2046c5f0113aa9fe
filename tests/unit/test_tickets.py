"""Tickets for clients without cookies: signing, expiry, single use, user and session binding, rooms."""

from __future__ import annotations

import json
import time
import typing
from unittest import mock

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.core import signing
from django.core.checks import run_checks
from django.test import Client, override_settings

from chat.sockets import app as chat_app
from nexios_compat.policy import RoomRule, deny, is_authenticated
from nexios_compat.security import SecureWebSocketStack
from nexios_compat.tickets import TicketRefused, issue_ticket, redeem_ticket
from nexios_compat.types import WS_4401_UNAUTHORIZED, WS_4403_FORBIDDEN

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("hub_cleanup")]

ORIGIN = "http://testserver"
APP_ORIGIN = "https://app.example.net"


def member(name: str = "ada") -> User:
    return User.objects.create_user(name, password="x")


def refusal(ticket: str) -> str:
    with pytest.raises(TicketRefused) as refused:
        redeem_ticket(ticket)
    return refused.value.reason


# The ticket itself ---------------------------------------------------------------------


def test_a_ticket_names_its_user_and_a_changed_one_is_refused() -> None:
    user = member()
    ticket = issue_ticket(user)
    assert len(ticket) < 200  # it goes in a URL
    head, _, signature = ticket.rpartition(":")
    assert "bad signature" in refusal(f"{head}:{signature[:-2]}xx")
    assert "bad signature" in refusal(signing.dumps({"n": "x", "u": str(user.pk)}, salt="other"))
    redeemed = redeem_ticket(ticket)
    assert redeemed.user == user and redeemed.rooms is None


def test_a_ticket_expires_after_ticket_max_age() -> None:
    user = member()
    with mock.patch("time.time", return_value=time.time() - 31):
        old = issue_ticket(user)
    assert "expired" in refusal(old)
    with override_settings(NEXIOS_COMPAT={"TICKET_MAX_AGE": 120}):
        with mock.patch("time.time", return_value=time.time() - 31):
            longer = issue_ticket(user)
        assert redeem_ticket(longer).user == user


def test_a_ticket_is_used_once() -> None:
    ticket = issue_ticket(member())
    redeem_ticket(ticket)
    assert "used" in refusal(ticket)


def test_a_ticket_is_bound_to_its_user_and_password() -> None:
    user = member()
    ticket = issue_ticket(user)
    user.set_password("changed")
    user.save()
    assert "password" in refusal(ticket)
    gone = member("gone")
    ticket = issue_ticket(gone)
    gone.delete()
    assert "no such user" in refusal(ticket)


def test_a_deactivated_users_ticket_is_refused() -> None:
    user = member()
    ticket = issue_ticket(user)
    User.objects.filter(pk=user.pk).update(is_active=False)
    assert "inactive" in refusal(ticket)


def test_a_ticket_from_a_session_dies_with_the_session() -> None:
    user = member()
    client = Client()
    client.force_login(user)
    key = client.session.session_key
    kept = issue_ticket(user, session_key=key)
    ended = issue_ticket(user, session_key=key)
    assert redeem_ticket(kept).user == user
    client.logout()
    assert "session" in refusal(ended)


def test_room_limited_tickets_carry_their_rooms() -> None:
    ticket = issue_ticket(member(), rooms=["members-a", "lobby"])
    assert redeem_ticket(ticket).rooms == frozenset({"members-a", "lobby"})


# The view --------------------------------------------------------------------------------


@pytest.mark.urls("project.urls")
def test_the_view_issues_tickets_to_logged_in_users_only_and_checks_csrf() -> None:
    anonymous = Client()
    assert anonymous.post("/rooms/ticket").status_code == 401
    assert anonymous.get("/rooms/ticket").status_code == 405
    client = Client(enforce_csrf_checks=True)
    client.force_login(member())
    assert client.post("/rooms/ticket").status_code == 403  # no CSRF token
    client.cookies["csrftoken"] = "a" * 32
    response = client.post("/rooms/ticket", HTTP_X_CSRFTOKEN="a" * 32)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["expires_in"] == 30 and body["rooms"] is None
    assert response["Cache-Control"] == "no-store"
    assert redeem_ticket(body["ticket"]).user.username == "ada"


@pytest.mark.urls("project.urls")
def test_the_view_never_grants_a_room_the_policy_refuses() -> None:
    client = Client()
    client.force_login(member())
    rules = [RoomRule(prefix="members-", join=is_authenticated), RoomRule(prefix="staff-", join=deny)]
    with override_settings(NEXIOS_COMPAT={"ROOM_POLICY": rules}):
        ok = client.post("/rooms/ticket", {"room": ["members-a", "lobby"]})
        assert ok.status_code == 200 and sorted(ok.json()["rooms"]) == ["lobby", "members-a"]
        refused = client.post("/rooms/ticket", {"room": ["members-a", "staff-b"]})
        assert refused.status_code == 403 and "staff-b" in refused.json()["error"]
        as_json = client.post(
            "/rooms/ticket", json.dumps({"rooms": ["lobby"]}), content_type="application/json"
        )
        assert as_json.json()["rooms"] == ["lobby"]
        assert client.post("/rooms/ticket", {"room": [""]}).status_code == 400


@pytest.mark.urls("project.urls")
def test_the_view_answers_cors_only_for_allowed_origins() -> None:
    client = Client()
    client.force_login(member())
    with override_settings(NEXIOS_COMPAT={"ALLOWED_ORIGINS": [APP_ORIGIN]}):
        listed = client.post("/rooms/ticket", HTTP_ORIGIN=APP_ORIGIN)
        unlisted = client.post("/rooms/ticket", HTTP_ORIGIN="https://evil.example")
        preflight = client.options("/rooms/ticket", HTTP_ORIGIN=APP_ORIGIN)
    assert listed["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert listed["Access-Control-Allow-Credentials"] == "true"
    assert "Origin" in listed["Vary"]
    assert "Access-Control-Allow-Origin" not in unlisted
    assert preflight.status_code == 200 and "POST" in preflight["Access-Control-Allow-Methods"]


# The socket ------------------------------------------------------------------------------


def communicator(path: str, origin: str = ORIGIN, cookie: str | None = None) -> WebsocketCommunicator:
    headers = [(b"origin", origin.encode()), (b"host", b"testserver")]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    return WebsocketCommunicator(SecureWebSocketStack(chat_app), path, headers=headers)


async def closed_with(path: str, **kwargs: typing.Any) -> int | None:
    """The close code the socket gets before it receives anything else."""
    socket = communicator(path, **kwargs)
    connected, code = await socket.connect()
    if not connected:
        return typing.cast(int | None, code)
    output = await socket.receive_output()
    await socket.disconnect()
    assert output["type"] == "websocket.close", output
    return typing.cast(int | None, output.get("code"))


async def joined(path: str, **kwargs: typing.Any) -> str:
    """The first frame of a socket that got into its room: its presence state, naming its user."""
    socket = communicator(path, **kwargs)
    connected, _ = await socket.connect()
    assert connected
    frame = await socket.receive_from()
    await socket.disconnect()
    return typing.cast(str, frame)


async def test_a_ticket_lets_a_cookieless_client_into_a_members_room() -> None:
    user = await sync_to_async(member)()
    ticket = await sync_to_async(issue_ticket)(user)
    assert '"username":"ada"' in await joined(f"/ws/chat/members-a/?ticket={ticket}")
    assert await closed_with("/ws/chat/members-a/") == WS_4403_FORBIDDEN  # no ticket: anonymous


async def test_a_refused_ticket_closes_with_4401_before_any_join() -> None:
    user = await sync_to_async(member)()
    ticket = await sync_to_async(issue_ticket)(user)
    assert '"username":"ada"' in await joined(f"/ws/chat/members-a/?ticket={ticket}")
    assert await closed_with(f"/ws/chat/members-a/?ticket={ticket}") == WS_4401_UNAUTHORIZED
    assert await closed_with("/ws/chat/lobby/?ticket=nonsense") == WS_4401_UNAUTHORIZED


async def test_a_room_limited_ticket_opens_only_its_rooms() -> None:
    user = await sync_to_async(member)()
    other = await sync_to_async(issue_ticket)(user, rooms=["members-a"])
    assert await closed_with(f"/ws/chat/members-b/?ticket={other}") == WS_4403_FORBIDDEN
    mine = await sync_to_async(issue_ticket)(user, rooms=["members-a"])
    assert '"username":"ada"' in await joined(f"/ws/chat/members-a/?ticket={mine}")


async def test_other_origins_need_to_be_listed_and_to_carry_a_ticket() -> None:
    user = await sync_to_async(member)()
    with override_settings(
        NEXIOS_COMPAT={"ROOM_POLICY": "chat.policy.rooms", "ALLOWED_ORIGINS": [APP_ORIGIN]}
    ):
        ticket = await sync_to_async(issue_ticket)(user)
        assert '"username":"ada"' in await joined(f"/ws/chat/members-a/?ticket={ticket}", origin=APP_ORIGIN)
        # Listed, but with no ticket (a browser page there sending the user's cookie): refused.
        assert await closed_with("/ws/chat/lobby/", origin=APP_ORIGIN) == 1008
        ticket = await sync_to_async(issue_ticket)(user)
        assert await closed_with(f"/ws/chat/lobby/?ticket={ticket}", origin="https://evil.example") == 1008


# Checks ------------------------------------------------------------------------------------


def ticket_checks(**settings: typing.Any) -> set[str]:
    """Our W14x/E14x ids from ``check --deploy`` under ``settings`` (DEBUG on unless given)."""
    settings.setdefault("DEBUG", True)
    with override_settings(**settings):
        return {
            m.id
            for m in run_checks(include_deployment_checks=True)
            if m.id and m.id.startswith("nexios_compat.") and m.id[-3:-1] == "14"
        }


LOCMEM = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
REDIS_LAYER = {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": ["redis://h:6379"]}}
DBCACHE = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "t"}}


def test_w140_a_process_local_ticket_cache_where_tickets_are_issued_and_rooms_span_processes() -> None:
    assert ticket_checks() == set()
    spanning = {"CHANNEL_LAYERS": {"default": REDIS_LAYER}, "DEBUG": False}
    assert ticket_checks(**spanning, CACHES=LOCMEM) == {"nexios_compat.W140"}  # project.urls mounts it
    assert ticket_checks(**spanning, CACHES=DBCACHE) == set()
    assert ticket_checks(**spanning, CACHES=LOCMEM, ROOT_URLCONF="tests.sites.views.urls") == set()
    assert ticket_checks(DEBUG=False, CACHES=LOCMEM) == set()  # the in-memory layer: one process
    with override_settings(**spanning, CACHES=LOCMEM):
        assert "nexios_compat.W140" not in {m.id for m in run_checks()}  # only ``check --deploy``


def test_e140_e141_e142_malformed_origins_ages_and_caches() -> None:
    assert ticket_checks(NEXIOS_COMPAT={"ALLOWED_ORIGINS": ["https://app.example.net"]}) == set()
    for bad in (["*"], ["app.example.net"], ["https://app.example.net/path"], "https://a.example"):
        assert ticket_checks(NEXIOS_COMPAT={"ALLOWED_ORIGINS": bad}) == {"nexios_compat.E140"}, bad
    for age in (0, -1, "30", None):
        assert ticket_checks(NEXIOS_COMPAT={"TICKET_MAX_AGE": age}) == {"nexios_compat.E141"}, age
    assert ticket_checks(NEXIOS_COMPAT={"TICKET_CACHE": "nope"}) == {"nexios_compat.E142"}
