"""A client with no cookies against daphne serving the example project: in with a ticket, out without one.

A member logs in (a session made by Django's ``Client.force_login``); the
app fetches a ticket over HTTP with that session, then opens its socket with
``?ticket=`` and no cookie at all, as a mobile app would. Without a ticket,
with a used or an expired one, or from an origin the site does not list, it
is refused with the code ``docs/tickets.md`` gives and hears nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import typing
import urllib.request
from collections.abc import Iterator

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from devservers import DaphneServer, run_manage
from nexios_compat.types import WS_4401_UNAUTHORIZED, WS_4403_FORBIDDEN
from tests.support import helpers
from tests.support.site import migrated, open_ws

ROOM = "members-tickets"
APP_ORIGIN = "https://app.example.net"
CSRF = "c" * 32

_LOGIN = """
from django.contrib.auth.models import User
from django.test import Client
client = Client()
client.force_login(User.objects.create_user("ada", password="x"))
print("SESSION=" + client.cookies["sessionid"].value)
"""
# A ticket signed as the server would have signed it a minute ago (its age is in the signature).
_EXPIRED = """
import time
from unittest import mock
from django.contrib.auth.models import User
from nexios_compat.tickets import issue_ticket
with mock.patch("time.time", return_value=time.time() - 60):
    print("TICKET=" + issue_ticket(User.objects.get(username="ada")))
"""


class Site(typing.NamedTuple):
    server: DaphneServer
    session: str
    expired: str


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    env = migrated(tmp_path_factory.mktemp("tickets") / "site.sqlite3", "project.settings")
    env["TICKET_ALLOWED_ORIGINS"] = APP_ORIGIN
    session = run_manage("shell", "-c", _LOGIN, env=env).stdout.split("SESSION=")[1].split()[0]
    expired = run_manage("shell", "-c", _EXPIRED, env=env).stdout.split("TICKET=")[1].split()[0]
    server = DaphneServer(env).start()
    try:
        yield Site(server, session, expired)
    finally:
        server.stop()
        print(f"----- daphne log -----\n{server.log()}")
        server.close()


def fetch_ticket(site: Site) -> str:
    """POST /rooms/ticket with the session (and Django's CSRF double submit), as the app's login step."""
    request = urllib.request.Request(
        f"{site.server.url}/rooms/ticket",
        data=b"",
        method="POST",
        headers={"Cookie": f"sessionid={site.session}; csrftoken={CSRF}", "X-CSRFToken": CSRF},
    )
    with urllib.request.urlopen(request, timeout=helpers.TIMEOUT) as response:
        return typing.cast(str, json.loads(response.read())["ticket"])


async def receive_until(ws: typing.Any, text: str) -> None:
    async with asyncio.timeout(helpers.TIMEOUT):
        while text not in await ws.recv():
            pass


@contextlib.asynccontextmanager
async def member_in_room(site: Site) -> typing.AsyncIterator[typing.Any]:
    async with open_ws(
        site.server, f"/ws/chat/{ROOM}/", additional_headers={"Cookie": f"sessionid={site.session}"}
    ) as member:
        await receive_until(member, "ada joined")
        yield member


@pytest.mark.parametrize("origin", [None, APP_ORIGIN])
async def test_a_cookieless_client_with_a_ticket_hears_a_member(site: Site, origin: str | None) -> None:
    ticket = fetch_ticket(site)
    async with member_in_room(site) as member:
        kwargs = {"origin": origin} if origin else {}
        async with open_ws(site.server, f"/ws/chat/{ROOM}/?ticket={ticket}", **kwargs) as app:
            await receive_until(app, "ada joined")  # the ticket's user, announced in the room
            await member.send(json.dumps({"type": "message", "content": f"hello app {origin}"}))
            await receive_until(app, f"hello app {origin}")


async def refused_and_deaf(site: Site, path: str, origin: str | None = None) -> int:
    """Open ``path`` without cookies while a member talks; return its close code (403 for the handshake)."""
    secret = f"for members only {path}"
    async with member_in_room(site) as member:
        try:
            async with open_ws(site.server, path, **({"origin": origin} if origin else {})) as stranger:
                await member.send(json.dumps({"type": "message", "content": secret}))
                await receive_until(member, secret)
                heard: list[str] = []
                with pytest.raises(ConnectionClosed) as closed:
                    async with asyncio.timeout(helpers.TIMEOUT):
                        while True:
                            heard.append(str(await stranger.recv()))
                assert not [frame for frame in heard if secret in frame or "joined" in frame], heard
                assert closed.value.rcvd is not None
                return closed.value.rcvd.code
        except InvalidStatus as refused:
            return refused.response.status_code


async def test_without_a_ticket_the_members_room_is_closed_with_4403(site: Site) -> None:
    assert await refused_and_deaf(site, f"/ws/chat/{ROOM}/") == WS_4403_FORBIDDEN


async def test_a_used_ticket_is_closed_with_4401(site: Site) -> None:
    ticket = fetch_ticket(site)
    async with open_ws(site.server, f"/ws/chat/{ROOM}/?ticket={ticket}") as app:
        await receive_until(app, "ada joined")
    assert await refused_and_deaf(site, f"/ws/chat/{ROOM}/?ticket={ticket}") == WS_4401_UNAUTHORIZED
    assert "already used" in site.server.log()


async def test_an_expired_ticket_is_closed_with_4401(site: Site) -> None:
    assert await refused_and_deaf(site, f"/ws/chat/{ROOM}/?ticket={site.expired}") == WS_4401_UNAUTHORIZED
    assert "expired" in site.server.log()


async def test_an_unlisted_origin_is_refused_at_the_handshake_even_with_a_ticket(site: Site) -> None:
    ticket = fetch_ticket(site)
    path = f"/ws/chat/{ROOM}/?ticket={ticket}"
    assert await refused_and_deaf(site, path, origin="https://evil.example") == 403
    # A listed origin without a ticket (a page there holding the user's cookie) is refused too.
    assert await refused_and_deaf(site, f"/ws/chat/{ROOM}/", origin=APP_ORIGIN) == 403
