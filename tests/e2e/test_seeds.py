"""End to end: every example of the two seed documents, served by a real daphne.

One daphne (``tests.sites.seeds.asgi``: the project's routes plus a few ``/e2e``
test routes) on a temporary SQLite database migrated for this module, driven
by the ``websockets`` client. Tests use distinct room names, so they share it.
Saved history and membership are read straight from the SQLite file: the
test process's own Django database is pytest-django's, not the server's.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
import typing
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin

from devservers import DaphneServer
from tests.support.helpers import member_count, query, room_name, until
from tests.support.site import migrated, open_ws, server_env

TIMEOUT = 5.0
SETTINGS = "tests.sites.seeds.settings"
# Long enough for a message that is going to arrive to arrive, when asserting that none does.
QUIET = 0.5


# Fixtures --------------------------------------------------------------------


@pytest.fixture(scope="module")
def db_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite database file for this module's server."""
    path = tmp_path_factory.mktemp("e2e-seeds") / f"e2e-{uuid.uuid4().hex[:8]}.sqlite3"
    migrated(path, SETTINGS, debug=True)
    return path


@pytest.fixture(scope="module")
def server(db_path: Path) -> Iterator[DaphneServer]:
    """One daphne for the module (daphne_factory is per test; this is the same server class)."""
    daphne = DaphneServer(server_env(db_path, SETTINGS, debug=True), app="tests.sites.seeds.asgi:application")
    try:
        daphne.start()
        yield daphne
    finally:
        daphne.stop()
        print(f"----- daphne port {daphne.port} (pid {daphne.pid}) log -----")
        print(daphne.log() or "<empty>")
        daphne.close()


@pytest.fixture
def ws_connect(server: DaphneServer) -> typing.Callable[..., typing.Any]:
    """``async with ws_connect(path, **kw) as ws``: a client with the server's own Origin."""

    return functools.partial(open_ws, server, open_timeout=TIMEOUT)


# Helpers ---------------------------------------------------------------------


async def recv(ws: ClientConnection) -> typing.Any:
    """The next frame (str or bytes), or fail after TIMEOUT."""
    return await asyncio.wait_for(ws.recv(), TIMEOUT)


async def recv_json(ws: ClientConnection) -> typing.Any:
    frame = await recv(ws)
    assert isinstance(frame, str), f"expected a text frame, got {frame!r}"
    return json.loads(frame)


async def send_json(ws: ClientConnection, data: typing.Any) -> None:
    await ws.send(json.dumps(data))


async def expect_close(ws: ClientConnection, timeout: float = TIMEOUT) -> tuple[int, str]:
    """Wait for the server to close the socket (no frame may arrive first); return (code, reason)."""
    with pytest.raises(ConnectionClosed) as info:
        frame = await asyncio.wait_for(ws.recv(), timeout)
        pytest.fail(f"expected the socket to close, got a frame: {frame!r}")
    received = info.value.rcvd
    assert received is not None, f"no close frame from the server: {info.value!r}"
    return received.code, received.reason


async def expect_silence(ws: ClientConnection) -> None:
    """Assert that nothing arrives for QUIET seconds and the socket stays open."""
    with pytest.raises(TimeoutError):
        frame = await asyncio.wait_for(ws.recv(), QUIET)
        pytest.fail(f"expected nothing, got {frame!r}")


def assert_recent(timestamp: typing.Any) -> None:
    assert isinstance(timestamp, float)
    assert abs(time.time() - timestamp) < 60


def saved_messages(db: Path, room: str) -> list[tuple[int, str, typing.Any]]:
    """(seq, kind, payload) of a room's saved messages, read from the server's SQLite file."""
    rows = query(
        db,
        "SELECT m.seq, m.kind, m.text, m.data FROM nexios_compat_message m "
        "JOIN nexios_compat_room r ON m.room_id = r.id WHERE r.name = ? ORDER BY m.seq",
        room,
    )
    return [
        (seq, kind, json.loads(text) if kind == "json" else text or data) for seq, kind, text, data in rows
    ]


# Origin check and routing ----------------------------------------------------


async def test_allowed_origin_is_accepted(ws_connect: typing.Any) -> None:
    async with ws_connect("/seeds/ws") as ws:
        await ws.send("hi")
        assert await recv(ws) == "You said: hi"


@pytest.mark.parametrize("origin", ["http://evil.example", None], ids=["foreign", "missing"])
async def test_foreign_or_missing_origin_is_refused(server: DaphneServer, origin: str | None) -> None:
    # The project's origin check refuses a missing Origin too (Channels'
    # AllowedHostsOriginValidator, which it used first, also did).
    with pytest.raises(InvalidStatus) as info:
        headers_origin = Origin(origin) if origin is not None else None
        async with connect(server.ws_url("/seeds/ws"), origin=headers_origin, open_timeout=TIMEOUT):
            pass
    assert info.value.response.status_code == 403


async def test_unknown_path_is_refused_at_handshake(ws_connect: typing.Any) -> None:
    for path in ("/nowhere", "/seeds/room/", "/seeds/endpoint/a/b", "/ws"):
        with pytest.raises(InvalidStatus) as info:
            async with ws_connect(path):
                pass
        assert info.value.response.status_code == 403, path


# "Basic WebSocket Setup" and "Handling Different Message Types" ---------------


async def test_basic_echo(ws_connect: typing.Any, server: DaphneServer) -> None:
    async with ws_connect("/seeds/ws") as ws:
        for text in ("hello", "", "héllo wörld ✓", "x" * 3000):
            await ws.send(text)
            assert await recv(ws) == f"You said: {text}"
    await until(
        lambda: "Received: hello" in server.log(), "the handler's print in the server log", timeout=TIMEOUT
    )


async def test_basic_echo_closes_on_a_binary_frame(ws_connect: typing.Any) -> None:
    # receive_text() on a binary frame: 1003 (unsupported data); the doc's
    # handler catches the error and returns.
    async with ws_connect("/seeds/ws") as ws:
        await ws.send(b"\x00\x01")
        assert (await expect_close(ws))[0] == 1003


async def test_text_bytes_and_json_fragments(ws_connect: typing.Any) -> None:
    async with ws_connect("/e2e/fragments") as ws:
        await ws.send("some text")
        assert await recv(ws) == "Response message"
        await ws.send(b"\x00\xffbin")
        assert await recv(ws) == b"Response bytes"
        await send_json(ws, {"k": [1, 2.5, None, "é"]})
        assert await recv_json(ws) == {"response": "data", "status": "success"}
        assert await recv_json(ws) == {
            "text": "some text",
            "bytes": b"\x00\xffbin".hex(),
            "json": {"k": [1, 2.5, None, "é"]},
        }
        assert (await expect_close(ws))[0] == 1000


# "Connection Lifecycle", "Accessing Connection Details", "Error Handling" -----


async def test_connection_lifecycle_echoes_processed_json(
    ws_connect: typing.Any, server: DaphneServer
) -> None:
    log_mark = len(server.log())
    async with ws_connect("/seeds/chat") as ws:
        for data in ({"a": 1}, [1, 2], "text", None):
            await send_json(ws, data)
            assert await recv_json(ws) == {"received": data}
    # 5. the disconnect reaches the handler as WebSocketDisconnect.
    await until(
        lambda: "Client disconnected" in server.log()[log_mark:], "'Client disconnected'", timeout=TIMEOUT
    )


async def test_connection_details(ws_connect: typing.Any) -> None:
    async with ws_connect("/seeds/info?a=1&b=two", additional_headers={"X-Custom-Header": "e2e"}) as ws:
        data = await recv_json(ws)
    assert data["ip"] == "127.0.0.1"
    assert data["headers"]["x-custom-header"] == "e2e"
    assert data["headers"]["origin"].startswith("http://127.0.0.1:")
    assert "host" in data["headers"] and "sec-websocket-key" in data["headers"]
    assert data["query"] == "a=1&b=two"
    assert data["room_id"] is None  # "/info" has no {room_id}


async def test_connection_details_port_and_path_param(ws_connect: typing.Any) -> None:
    # The document's handler reads ws.client.port but does not send it; this one does.
    async with ws_connect("/e2e/info/r-42?username=ann", additional_headers={"X-Custom-Header": "e2e"}) as ws:
        data = await recv_json(ws)
        host, port = ws.local_address[:2]
        assert (await expect_close(ws))[0] == 1000
    assert (data["ip"], data["port"]) == (host, port) == ("127.0.0.1", port)
    assert data["room_id"] == "r-42" and data["query"] == "username=ann" and data["username"] == "ann"
    assert data["header"] == "e2e"


async def test_error_handling_reports_invalid_json_and_stays_open(ws_connect: typing.Any) -> None:
    async with ws_connect("/seeds/safe") as ws:
        await ws.send("{not json")
        assert await recv_json(ws) == {"status": "error", "message": "Invalid JSON"}
        await ws.send(b"\xff\xfe")  # a binary frame that is not even UTF-8
        assert await recv_json(ws) == {"status": "error", "message": "Invalid JSON"}
        await send_json(ws, {"ok": True})
        assert await recv_json(ws) == {"status": "success", "data": {"ok": True}}
        await ws.send(b'{"as": "bytes"}')
        assert await recv_json(ws) == {"status": "success", "data": {"as": "bytes"}}


# "Function-Based Approach" ------------------------------------------------------


async def test_function_based_room_broadcasts_and_saves_history(
    ws_connect: typing.Any, db_path: Path
) -> None:
    room = room_name("fn")
    # There is no join notice: a member has joined once its own message comes
    # back (the handler joins before its receive loop).
    async with ws_connect(f"/seeds/room/{room}") as ann:
        await send_json(ann, {"user": "ann", "message": "first"})
        first = await recv_json(ann)
        assert first["user"] == "ann" and first["message"] == "first"
        assert_recent(first["timestamp"])
        async with ws_connect(f"/seeds/room/{room}") as bob:
            await send_json(bob, {"user": "bob", "message": "second"})
            for ws in (ann, bob):
                second = await recv_json(ws)
                assert (second["user"], second["message"]) == ("bob", "second")
            assert member_count(db_path, room) == 2
            await send_json(ann, {"message": "no user"})  # data.get("user") -> None
            for ws in (ann, bob):
                third = await recv_json(ws)
                assert (third["user"], third["message"]) == (None, "no user")
                assert_recent(third["timestamp"])
            # Saved before sent: the rows are there once the broadcast arrived.
            saved = saved_messages(db_path, room)
            assert [(seq, kind) for seq, kind, _ in saved] == [(1, "json"), (2, "json"), (3, "json")]
            assert [payload["message"] for _, _, payload in saved] == ["first", "second", "no user"]
            assert saved[1][2] == second
    await until(lambda: member_count(db_path, room) == 0, "both members to leave the room", timeout=TIMEOUT)


async def test_function_based_room_closes_on_a_message_without_message_key(ws_connect: typing.Any) -> None:
    # data["message"] raises KeyError; the doc's handler catches it and closes normally.
    room = room_name("fn-bad")
    async with ws_connect(f"/seeds/room/{room}") as ws:
        await send_json(ws, {"user": "ann"})
        assert (await expect_close(ws))[0] == 1000


# "Class-Based Approach" (ChatEndpoint) ----------------------------------------


async def test_chat_endpoint_join_broadcast_history_and_leave(ws_connect: typing.Any, db_path: Path) -> None:
    room = room_name("cls")
    async with ws_connect(f"/seeds/endpoint/{room}") as ann:
        assert await recv_json(ann) == {"system": f"New user joined {room}"}
        async with ws_connect(f"/seeds/endpoint/{room}") as bob:
            for ws in (ann, bob):
                assert await recv_json(ws) == {"system": f"New user joined {room}"}
            await send_json(bob, {"user": "bob", "message": "hi all"})
            for ws in (ann, bob):
                chat = await recv_json(ws)
                assert (chat["user"], chat["message"]) == ("bob", "hi all")
                assert_recent(chat["timestamp"])
            assert member_count(db_path, room) == 2
        assert await recv_json(ann) == {"system": f"User left {room}"}
        await expect_silence(ann)
        # Only the message sent with save_history=True is saved, not the notices.
        saved = saved_messages(db_path, room)
        assert [(seq, payload["message"]) for seq, _, payload in saved] == [(1, "hi all")]
        assert member_count(db_path, room) == 1


async def test_handler_error_closes_only_that_socket_with_1011(
    ws_connect: typing.Any, server: DaphneServer
) -> None:
    room = room_name("cls-err")
    async with ws_connect(f"/seeds/endpoint/{room}") as victim:
        assert await recv_json(victim) == {"system": f"New user joined {room}"}
        async with ws_connect(f"/seeds/endpoint/{room}") as bystander, ws_connect("/seeds/ws") as other:
            for ws in (victim, bystander):
                assert await recv_json(ws) == {"system": f"New user joined {room}"}
            await send_json(victim, {"message": "no user key"})  # data["user"]: KeyError
            assert await expect_close(victim) == (1011, "Internal error")
            # on_disconnect still ran for the victim.
            assert await recv_json(bystander) == {"system": f"User left {room}"}
            await send_json(bystander, {"user": "bob", "message": "still here"})
            chat = await recv_json(bystander)
            assert (chat["user"], chat["message"]) == ("bob", "still here")
            await other.send("ping")
            assert await recv(other) == "You said: ping"
    assert "KeyError" in server.log()


# "Complete Chat Room Example" (ChatRoom) --------------------------------------


async def test_chat_room_join_chat_and_leave(ws_connect: typing.Any, db_path: Path) -> None:
    room = room_name("chatroom")
    async with ws_connect(f"/seeds/chatroom/{room}?username=ann") as ann:
        joined = await recv_json(ann)
        assert {k: joined[k] for k in ("type", "message", "users")} == {
            "type": "system",
            "message": "ann joined the chat",
            "users": 1,
        }
        assert_recent(joined["timestamp"])
        async with ws_connect(f"/seeds/chatroom/{room}?username=bob") as bob:
            for ws in (ann, bob):
                joined = await recv_json(ws)
                assert (joined["type"], joined["message"], joined["users"]) == (
                    "system",
                    "bob joined the chat",
                    2,
                )
            await send_json(ann, {"type": "typing"})  # not a "message": ignored
            await send_json(ann, {"type": "message", "content": "hello bob"})
            for ws in (ann, bob):
                chat = await recv_json(ws)
                assert set(chat) == {"type", "user", "message", "timestamp"}
                assert (chat["type"], chat["user"], chat["message"]) == ("chat", "ann", "hello bob")
                assert_recent(chat["timestamp"])
        left = await recv_json(ann)
        assert (left["type"], left["message"], left["users"]) == ("system", "bob left the chat", 1)
        assert_recent(left["timestamp"])
        await expect_silence(ann)
        saved = [payload for _, _, payload in saved_messages(db_path, room)]
        assert [(p["type"], p["message"]) for p in saved] == [
            ("system", "ann joined the chat"),
            ("system", "bob joined the chat"),
            ("chat", "hello bob"),
            ("system", "bob left the chat"),
        ]
        assert [p.get("users") for p in saved] == [1, 2, None, 1]


async def test_chat_room_without_username_is_anonymous(ws_connect: typing.Any) -> None:
    room = room_name("chatroom-anon")
    async with ws_connect(f"/seeds/chatroom/{room}") as ws:
        joined = await recv_json(ws)
        assert (joined["message"], joined["users"]) == ("anonymous joined the chat", 1)


async def test_chat_room_closes_malformed_json_with_1003(ws_connect: typing.Any) -> None:
    room = room_name("chatroom-bad")
    async with ws_connect(f"/seeds/chatroom/{room}?username=ann") as ann:
        await recv_json(ann)
        async with ws_connect(f"/seeds/chatroom/{room}?username=eve") as eve:
            await recv_json(ann)
            await recv_json(eve)
            await eve.send("{not json")
            assert (await expect_close(eve))[0] == 1003
        # on_disconnect ran with the 1003 and told the room.
        left = await recv_json(ann)
        assert (left["message"], left["users"]) == ("eve left the chat", 1)


async def test_chat_room_closes_a_binary_frame_with_1003(ws_connect: typing.Any) -> None:
    # encoding = "json" takes JSON text frames only.
    async with ws_connect(f"/seeds/chatroom/{room_name('chatroom-bin')}") as ws:
        await recv_json(ws)
        await ws.send(b'{"type": "message", "content": "as bytes"}')
        assert (await expect_close(ws))[0] == 1003


# The Channels document: "/chat" and "/chat-with-heartbeat" ---------------------


async def test_channel_chat_responds_with_timestamp_and_keeps_working(ws_connect: typing.Any) -> None:
    async with ws_connect("/seeds/channels/chat") as ws:
        for data in ({"text": "hi"}, {"username": "ann"}, {"text": "after rename"}, [1, 2]):
            before = datetime.utcnow()  # naive UTC, as the document's handler stamps it
            await send_json(ws, data)
            reply = await recv_json(ws)
            assert set(reply) == {"response", "timestamp"}
            assert reply["response"] == data
            stamp = datetime.fromisoformat(reply["timestamp"])
            assert stamp.tzinfo is None and abs((stamp - before).total_seconds()) < 60


async def test_channel_chat_with_heartbeat_acks(ws_connect: typing.Any) -> None:
    async with ws_connect("/seeds/channels/chat-with-heartbeat") as ws:
        await send_json(ws, {"type": "heartbeat"})
        assert await recv_json(ws) == {"type": "heartbeat_ack"}
        await send_json(ws, {"type": "other"})  # "Process other messages...": no reply
        await send_json(ws, {"type": "heartbeat"})
        assert await recv_json(ws) == {"type": "heartbeat_ack"}


async def test_channel_methods_and_properties(ws_connect: typing.Any) -> None:
    async with ws_connect("/e2e/channel") as ws:
        info = await recv_json(ws)
        assert uuid.UUID(info["id"]) and info["is_active"] is True
        assert_recent(info["created"])
        assert info["expires"] == 1800 and info["metadata"] == {"username": "anonymous"}
        assert await recv_json(ws) == {"type": "message", "content": "Hello!"}
        assert await recv(ws) == "Hello!"
        assert await recv(ws) == b"binary_data"
        await send_json(ws, {"n": 1})
        await ws.send("plain")
        await ws.send(b"\x01\x02")
        assert await recv_json(ws) == {"data": {"n": 1}, "text": "plain", "binary": "0102"}
        assert await expect_close(ws) == (1000, "User left the chat")


@pytest.mark.parametrize(
    ("payload_type", "sent", "echoed"),
    [
        ("json", '{"a": [1, "é"]}', '{"a":[1,"é"]}'),
        ("text", "plain text", "plain text"),
        ("bytes", b"\x00raw\xff", b"\x00raw\xff"),
        ("binary", b"\x00raw\xff", b"\x00raw\xff"),
    ],
)
async def test_channel_payload_types_round_trip(
    ws_connect: typing.Any, payload_type: str, sent: str | bytes, echoed: str | bytes
) -> None:
    async with ws_connect(f"/e2e/echo/{payload_type}") as ws:
        for _ in range(2):
            await ws.send(sent)
            assert await recv(ws) == echoed


async def test_channel_of_bytes_refuses_a_text_frame_with_1003(ws_connect: typing.Any) -> None:
    async with ws_connect("/e2e/echo/bytes") as ws:
        await ws.send("text")
        assert (await expect_close(ws))[0] == 1003


# "Channel Expiration and Heartbeats", with expires=1 and a 0.2 s sweep ---------


async def test_idle_channel_expires_and_is_closed_with_1001(ws_connect: typing.Any) -> None:
    async with ws_connect("/e2e/heartbeat") as ws:
        await send_json(ws, {"type": "heartbeat"})
        assert await recv_json(ws) == {"type": "heartbeat_ack"}
        silent_since = time.monotonic()
        code, reason = await expect_close(ws)
        idle = time.monotonic() - silent_since
    assert (code, reason) == (1001, "Channel expired")
    assert 0.9 <= idle < 4.0, idle


async def test_heartbeats_keep_a_channel_open_past_its_ttl(ws_connect: typing.Any) -> None:
    async with ws_connect("/e2e/heartbeat") as ws:
        started = time.monotonic()
        while time.monotonic() - started < 3.0:  # three TTLs
            last_heartbeat = time.monotonic()
            await send_json(ws, {"type": "heartbeat"})
            assert await recv_json(ws) == {"type": "heartbeat_ack"}
            with contextlib.suppress(TimeoutError):
                frame = await asyncio.wait_for(ws.recv(), 0.3)  # the interval between heartbeats
                pytest.fail(f"unexpected frame {frame!r}")
        # Once the heartbeats stop, it expires: a TTL after the last one.
        assert (await expect_close(ws))[0] == 1001
        assert time.monotonic() - last_heartbeat >= 0.95


async def test_other_messages_also_keep_a_channel_open(ws_connect: typing.Any) -> None:
    # Receiving anything counts as activity, not only heartbeats.
    async with ws_connect("/e2e/heartbeat") as ws:
        started = time.monotonic()
        while time.monotonic() - started < 2.5:
            await send_json(ws, {"type": "other"})
            with contextlib.suppress(TimeoutError):
                frame = await asyncio.wait_for(ws.recv(), 0.3)
                pytest.fail(f"unexpected frame {frame!r}")
        await send_json(ws, {"type": "heartbeat"})
        assert await recv_json(ws) == {"type": "heartbeat_ack"}
