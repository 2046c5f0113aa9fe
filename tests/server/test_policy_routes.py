"""Adversarial: an anonymous client walks every route and view of the example project against daphne.

The routes are enumerated from the app's router and the urlconf, so a new
route is covered without editing this file. Each socket route is opened with
its path parameters set to a members-only room (plain, with ``?since=0`` and
with ``?since=0&envelope=1&epoch=``), sent frames that each of the example's
handlers would publish, and watched while a logged-in member talks in the
room: no member's message may reach it, and nothing it sent may be saved or
delivered there.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import typing
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from websockets.exceptions import ConnectionClosed, InvalidStatus

from chat.sockets import app as chat_app
from devservers import DaphneServer, run_manage
from tests.support import helpers
from tests.support.site import migrated, open_ws

ROOM = "members-staff"
SECRET = "members-only-secret"
LEAK = "anonymous-leak"
QUERIES = ["", "?since=0", "?since=0&envelope=1&epoch="]
# One frame each handler of the example publishes from (chat, seeds' room, endpoint and chatroom).
FRAMES = [
    f'{{"type": "message", "content": "{LEAK}", "user": "eve", "message": "{LEAK}"}}',
    LEAK,
]

_LOGIN = """
from django.contrib.auth.models import User
from django.test import Client
user = User.objects.create_user("ada", password="x")
client = Client()
client.force_login(user)
print("SESSION=" + client.cookies["sessionid"].value)
"""


def socket_paths() -> list[str]:
    """Every WebSocket route of the example, its parameters set to the members-only room."""
    return [
        re.sub(r"\{[^}]+\}", ROOM, route.path) + query for route in chat_app.get_routes() for query in QUERIES
    ]


def http_paths() -> list[str]:
    """Every URL of the example's urlconf (admin included), its parameters set to the room."""

    def walk(patterns: typing.Sequence[typing.Any], prefix: str) -> Iterator[str]:
        for entry in patterns:
            text = prefix + str(entry.pattern)
            if isinstance(entry, URLResolver):
                yield from walk(entry.url_patterns, text)
            elif isinstance(entry, URLPattern):
                yield "/" + re.sub(r"<[^>]+>", ROOM, text).lstrip("^").rstrip("$").replace("\\Z", "")

    return sorted({path for path in walk(get_resolver().url_patterns, "") if "(?P" not in path})


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaphneServer, Path, str]]:
    db = tmp_path_factory.mktemp("policy-routes") / "site.sqlite3"
    env = migrated(db, "project.settings")
    session = run_manage("shell", "-c", _LOGIN, env=env).stdout.split("SESSION=")[1].split()[0]
    server = DaphneServer(env).start()
    try:
        yield server, db, session
    finally:
        server.stop()
        print(f"----- daphne log -----\n{server.log()}")
        server.close()


async def drain(ws: typing.Any, seconds: float) -> list[str]:
    """What a socket receives within ``seconds`` (or until it closes): the window we watch for leaks."""
    frames: list[str] = []
    with contextlib.suppress(TimeoutError, ConnectionClosed):
        async with asyncio.timeout(seconds):
            while True:
                frame = await ws.recv()
                frames.append(frame if isinstance(frame, str) else frame.decode("utf-8", "replace"))
    return frames


async def receive_until(ws: typing.Any, text: str, seen: list[str]) -> None:
    async with asyncio.timeout(helpers.TIMEOUT):
        while True:
            frame = await ws.recv()
            seen.append(frame)
            if text in frame:
                return


@pytest.mark.parametrize("path", socket_paths())
async def test_anonymous_sockets_get_nothing_of_a_members_room_and_put_nothing_in_it(
    site: tuple[DaphneServer, Path, str], path: str
) -> None:
    server, db, session = site
    member_saw: list[str] = []
    async with open_ws(
        server, f"/ws/chat/{ROOM}/", additional_headers={"Cookie": f"sessionid={session}"}
    ) as member:
        await receive_until(member, "joined", member_saw)  # the member is in the room
        stranger_saw: list[str] = []
        try:
            async with open_ws(server, path) as stranger:
                for frame in FRAMES:
                    with contextlib.suppress(ConnectionClosed):
                        await stranger.send(frame)
                secret = f"{SECRET} {path}"
                await member.send(f'{{"type": "message", "content": "{secret}"}}')
                await receive_until(member, secret, member_saw)  # delivered in the room by now
                stranger_saw = await drain(stranger, 0.5)
        except InvalidStatus as refused:
            assert refused.response.status_code == 403  # refused at the handshake: it saw nothing
        assert not [frame for frame in stranger_saw if SECRET in frame], stranger_saw
    assert not [frame for frame in member_saw if LEAK in frame], member_saw
    assert not [text for _, text in helpers.history(db, ROOM) if text and LEAK in text]
    assert [
        text for _, text in helpers.history(db, ROOM) if text and SECRET in text
    ]  # the member's were saved


@pytest.mark.parametrize("path", http_paths())
def test_anonymous_http_reads_get_no_members_message(site: tuple[DaphneServer, Path, str], path: str) -> None:
    server, _, _ = site
    status, body = 0, ""
    try:
        with urllib.request.urlopen(
            server.url + path + "?before=999&limit=5", timeout=helpers.TIMEOUT
        ) as response:
            status, body = response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read().decode("utf-8", "replace")
    assert status < 500, (path, status, body[:500])
    assert SECRET not in body and LEAK not in body, path


def test_a_member_reads_the_room_over_http(site: tuple[DaphneServer, Path, str]) -> None:
    server, _, session = site
    request = urllib.request.Request(
        f"{server.url}/room/{ROOM}/history/", headers={"Cookie": f"sessionid={session}"}
    )
    with urllib.request.urlopen(request, timeout=helpers.TIMEOUT) as response:
        assert response.status == 200
