"""The SSE fallback under daphne: a stream hears a socket's messages and presence, sends by POST, resumes.

A raw HTTP/1.1 client (``tests/support/sse.py``) reads the example's event
stream while a ``websockets`` client chats in the same room; after the
stream's connection is cut, messages sent meanwhile come back on the next one
through ``Last-Event-ID``, each once and in order.
"""

from __future__ import annotations

import asyncio
import json
import typing
from collections.abc import Iterator

import pytest

from devservers import DaphneServer
from tests.support import helpers
from tests.support.site import migrated, open_ws
from tests.support.sse import Event, http_stream, post_json

ROOM = "sse-lobby"
CSRF = "s" * 32


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaphneServer]:
    env = migrated(tmp_path_factory.mktemp("sse") / "site.sqlite3", "project.settings")
    server = DaphneServer(env).start()
    try:
        yield server
    finally:
        server.stop()
        print(f"----- daphne log -----\n{server.log()}")
        server.close()


def _chat(text: str) -> typing.Callable[[Event], bool]:
    return lambda e: (e.json().get("payload") or {}).get("message") == text


def _presence_of(name: str) -> typing.Callable[[Event], bool]:
    return lambda e: e.json().get("type") in {"presence_state", "presence_diff"} and name in e.data


async def _ws_until(ws: typing.Any, text: str) -> list[str]:
    seen = []
    async with asyncio.timeout(helpers.TIMEOUT):
        while text not in (frame := str(await ws.recv())):
            seen.append(frame)
    return [*seen, frame]


async def _ws_until_json(ws: typing.Any, predicate: typing.Callable[[dict[str, typing.Any]], bool]) -> None:
    async with asyncio.timeout(helpers.TIMEOUT):
        while not predicate(json.loads(await ws.recv())):
            pass


async def test_a_stream_chats_with_a_socket_and_resumes_after_a_cut_with_nothing_lost(
    server: DaphneServer,
) -> None:
    host, port = "127.0.0.1", server.port
    events = f"/room/{ROOM}/events/?since=0&epoch=&username=sam"
    csrf = {"Cookie": f"csrftoken={CSRF}", "X-CSRFToken": CSRF}
    async with open_ws(server, f"/ws/chat/{ROOM}/?username=ann&envelope=1&since=0&epoch=") as ann:
        await _ws_until(ann, "ann joined")
        async with http_stream(host, port, events) as stream:
            assert stream.status == 200 and stream.headers["content-type"].startswith("text/event-stream")
            await stream.events_until(_presence_of("ann"))  # sam sees ann
            await _ws_until(ann, '"sam"')  # and ann sees sam (a presence diff)
            await ann.send(json.dumps({"type": "message", "content": "hello sam", "id": "a-1"}))
            last = (await stream.events_until(_chat("hello sam")))[-1]
            status, ack = await post_json(
                host,
                port,
                f"/room/{ROOM}/events/?username=sam&client=t",
                {"type": "message", "content": "hello ann", "id": "s-1"},
                csrf,
            )
            assert status == 200 and (ack["type"], ack["id"]) == ("ack", "s-1")
            await _ws_until(ann, "hello ann")
            last = (await stream.events_until(_chat("hello ann")))[-1]
            assert last.id == f"{ack['epoch']}:{ack['seq']}"
            refused, _ = await post_json(host, port, f"/room/{ROOM}/events/", {"type": "message"})
            assert refused == 403  # no CSRF token
        # The stream is gone, and so is sam (its member left the room): what ann says now waits in history.
        await _ws_until_json(ann, lambda f: f.get("type") == "presence_diff" and "sam" in f.get("leaves", {}))
        for n in range(3):
            await ann.send(json.dumps({"type": "message", "content": f"missed {n}", "id": f"a-m{n}"}))
        await _ws_until(ann, "missed 2")
        assert last.id is not None
        async with http_stream(host, port, events, {"Last-Event-ID": last.id}) as stream:
            resume = await stream.next_event()
            assert resume is not None and resume.json()["type"] == "resume" and resume.json()["recovered"]
            seen = await stream.events_until(_chat("missed 2"))
            chats = [e.json()["payload"]["message"] for e in seen if "payload" in e.json()]
            assert chats == ["missed 0", "missed 1", "missed 2"]
            seqs = [e.json()["seq"] for e in seen if "payload" in e.json()]
            assert seqs == list(range(ack["seq"] + 1, ack["seq"] + 4))


async def test_a_members_room_refuses_an_anonymous_stream(server: DaphneServer) -> None:
    async with http_stream("127.0.0.1", server.port, "/room/members-sse/events/") as stream:
        assert stream.status == 403
