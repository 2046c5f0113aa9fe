"""Every query parameter a socket or view of the example reads, fuzzed: a documented answer, no 1011."""

from __future__ import annotations

import typing
from urllib.parse import quote

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chat.sockets import app as chat_app

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("hub_cleanup")]

# Values no client should send: huge, signed, non-ASCII digits, empty, long.
ODD = ["", "-1", "0", "1", str(2**63), str(2**64 + 1), "9" * 40, "²", "١٢", "1e3", " 1", "nan", "x" * 600]
ROOMS = ["members-x", "a b", "é", "%", "..", "a/b", "x" * 499, "members-", "\u202e", "null"]


@pytest.mark.parametrize("name", ["before", "limit"])
@pytest.mark.parametrize("value", ODD)
def test_history_view_parameters(name: str, value: str) -> None:
    response = Client().get(f"/room/lobby/history/?{name}={quote(value)}")
    assert response.status_code in {200, 400}, (name, value, response.content[:200])


@pytest.mark.parametrize("room", ROOMS)
def test_history_view_room_names(room: str) -> None:
    response = Client().get(f"/room/{quote(room, safe='')}/history/")
    expected = {403} if room.startswith("members-") else {200, 400, 404}
    assert response.status_code in expected, (room, response.status_code)


async def close_or_frames(path: str) -> int | None:
    communicator = WebsocketCommunicator(chat_app, path)
    communicator.scope["user"] = AnonymousUser()
    connected, code = await communicator.connect()
    if not connected:
        return typing.cast(int, code)
    await communicator.send_to(text_data='{"user": "f", "message": "m", "type": "message", "content": "m"}')
    output = await communicator.receive_output(timeout=5)
    await communicator.disconnect()
    return int(output["code"]) if output["type"] == "websocket.close" else None


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    since=st.sampled_from(ODD) | st.text(max_size=8),
    epoch=st.sampled_from(ODD) | st.text(max_size=40),
    envelope=st.sampled_from(["", "1", "true", "no", "x"]),
    route=st.sampled_from(["/ws/chat/lobby/", "/seeds/room/lobby", "/seeds/endpoint/lobby"]),
)
async def test_socket_resume_parameters(since: str, epoch: str, envelope: str, route: str) -> None:
    query = f"since={quote(since)}&epoch={quote(epoch)}&envelope={quote(envelope)}"
    assert await close_or_frames(f"{route}?{query}") not in {1011, 1006}


@pytest.mark.parametrize("room", ROOMS)
async def test_socket_room_names(room: str) -> None:
    code = await close_or_frames(f"/seeds/room/{quote(room, safe='')}?since=0&envelope=1")
    # 4404: no route matches (a slash in the name); 4403: the members rule.
    assert code in ({4403} if room.startswith("members-") else {None, 1000, 4404})
