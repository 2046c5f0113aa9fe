"""``SessionAuthMiddleware`` gives a socket what Channels' ``AuthMiddlewareStack`` gives it, holding less.

Side by side on the same cookies: no cookie, a logged-in session, a session whose auth hash
no longer matches (flushed: anonymous). The scope's user and cookies are the same; the session
reads the same data after the handshake, though an unmodified one is let go meanwhile.
"""

from __future__ import annotations

import json
import typing

import pytest
from asgiref.sync import sync_to_async
from channels.auth import AuthMiddlewareStack
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY
from django.contrib.auth.models import User
from django.test import Client
from django.utils.functional import empty

from nexios_compat.security import SessionAuthMiddleware
from nexios_compat.websockets.base import Receive, Scope, Send

pytestmark = [pytest.mark.django_db(transaction=True)]


def facts(scope: Scope, held: bool) -> dict[str, typing.Any]:
    user = scope["user"]
    return {
        "user": user.get_username() if user.is_authenticated else None,
        "cookies": dict(scope["cookies"]),
        "held": held,  # whether the loaded session is still held by the scope
        "auth_id": scope["session"].get("_auth_user_id"),
    }


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Accept, then answer with what the scope says (``held`` read before anything touches the session)."""
    held = scope["session"]._wrapped is not empty
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    answer = await sync_to_async(facts)(scope, held)
    await send({"type": "websocket.send", "text": json.dumps(answer)})


async def ask(application: typing.Any, cookie: str | None) -> dict[str, typing.Any]:
    headers = [(b"cookie", cookie.encode())] if cookie else []
    communicator = WebsocketCommunicator(application, "/", headers=headers)
    connected, _ = await communicator.connect()
    assert connected
    answer = typing.cast(dict[str, typing.Any], json.loads(await communicator.receive_from()))
    await communicator.disconnect()
    return answer


def logged_in_session(name: str) -> str:
    client = Client()
    client.force_login(User.objects.create_user(name, password="x"))
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def stale_session(name: str) -> str:
    key = logged_in_session(name)
    from django.contrib.sessions.backends.db import SessionStore

    session = SessionStore(key)
    session[HASH_SESSION_KEY] = "not the user's hash any more"  # e.g. the password changed
    session.save()
    return key


@pytest.mark.parametrize("make", [None, logged_in_session, stale_session])
async def test_the_scope_says_what_channels_auth_stack_says(make: typing.Any) -> None:
    cookie = None
    if make is not None:
        key = await sync_to_async(make)(f"user-{make.__name__}")
        cookie = f"{settings.SESSION_COOKIE_NAME}={key}; theme=dark"
    ours = await ask(SessionAuthMiddleware(app), cookie)
    theirs = await ask(AuthMiddlewareStack(app), cookie)
    assert theirs["held"]  # Channels keeps the loaded session for the socket's life
    assert ours["held"] is (make is stale_session)  # ours only a session get_user flushed
    for answer in (ours, theirs):
        answer.pop("held")
    assert ours == theirs
    if make is logged_in_session:
        assert ours["user"] == "user-logged_in_session" and ours["auth_id"] is not None
    else:
        assert ours["user"] is None and ours["auth_id"] is None


async def test_a_flushed_session_is_kept_as_flushed() -> None:
    key = await sync_to_async(stale_session)("stale")
    answer = await ask(SessionAuthMiddleware(app), f"{settings.SESSION_COOKIE_NAME}={key}")
    # get_user flushed it (modified): the scope keeps that session, not a fresh read of the old key.
    assert answer["held"] and answer["user"] is None
