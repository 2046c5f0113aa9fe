"""Plain helpers shared by the test modules: polls with a deadline, rooms driven in one process.

Fixtures live in ``tests/conftest.py`` and ``tests/support/fixtures.py``; the environment and
clients of a served site in ``tests/support/site.py``, raw-socket clients in ``tests/support/rawsocket.py``.
"""

from __future__ import annotations

import asyncio
import inspect
import sqlite3
import time
import typing
import uuid
from collections.abc import Callable
from pathlib import Path

from channels.testing import WebsocketCommunicator

from nexios_compat import WebSocket, get_application
from nexios_compat.encoding import pack
from nexios_compat.stores.history import PendingMessage
from nexios_compat.websockets import WebSocketDisconnect
from nexios_compat.websockets.channels import Channel, ChannelBox

# How long a test waits for something that is going to happen, unless it says otherwise.
TIMEOUT = 10.0
POLL = 0.05


def _timed_out(what: str, timeout: float, last: object) -> AssertionError:
    return AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


async def until(
    predicate: Callable[[], typing.Any], what: str, *, timeout: float = TIMEOUT, poll: float = POLL
) -> float:
    """Poll ``predicate`` (plain or async) until it is truthy; return the seconds it took.

    Raises AssertionError naming ``what`` and the last value after ``timeout``.
    """
    start = time.monotonic()
    deadline = start + timeout
    while True:
        last = predicate()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return time.monotonic() - start
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout, last)
        await asyncio.sleep(poll)


def wait_for(
    predicate: Callable[[], typing.Any], what: str, *, timeout: float = TIMEOUT, poll: float = POLL
) -> typing.Any:
    """Poll ``predicate`` from sync code until it is truthy; return that value.

    Raises AssertionError naming ``what`` and the last value after ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout, last)
        time.sleep(poll)


# The server's SQLite file, read directly (the test's own Django database is another one) ---


def query(db_path: Path, sql: str, *params: typing.Any) -> list[tuple[typing.Any, ...]]:
    """Run one read-only query on the server's SQLite file."""
    db = sqlite3.connect(db_path, timeout=30)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def member_count(db_path: Path, room: str | None = None) -> int:
    """How many members one room (or every room) has, in every process."""
    if room is None:
        return int(query(db_path, "SELECT COUNT(*) FROM nexios_compat_member")[0][0])
    sql = (
        "SELECT COUNT(*) FROM nexios_compat_member m JOIN nexios_compat_room r ON r.id = m.room_id "
        "WHERE r.name = ?"
    )
    return int(query(db_path, sql, room)[0][0])


def history(db_path: Path, room: str) -> list[tuple[str, str | None]]:
    """``(kind, text)`` of the room's saved messages, in order."""
    sql = (
        "SELECT m.kind, m.text FROM nexios_compat_message m JOIN nexios_compat_room r "
        "ON r.id = m.room_id WHERE r.name = ? ORDER BY m.seq"
    )
    return [(kind, text) for kind, text in query(db_path, sql, room)]


def room_name(prefix: str) -> str:
    """A room name no other test uses (tests sharing a server use their own rooms)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def pending(room: str, payload: typing.Any, sender: uuid.UUID | None = None) -> PendingMessage:
    """A message to save, as the hub builds it from ``group_send``."""
    kind, text, data = pack(payload)
    return PendingMessage(room=room, kind=kind, text=text, data=data, sender=sender)


# One room driven in this process with WebsocketCommunicator -------------------------


def room_app(*, broadcast: bool = True) -> typing.Any:
    """A room at ``/room/{name}``: join (resuming after ``?since=N``), say so with the channel id,
    then broadcast and save what arrives (``broadcast=False``: only read it).

    ``?username=`` becomes the channel's metadata, as the admin shows it.
    """
    app = get_application()

    @app.websocket("/room/{name}")
    async def room(ws: WebSocket, name: str) -> None:
        await ws.accept()
        channel = Channel(ws, "json", metadata={"username": ws.query_params.get("username", "")})
        await ChannelBox.add_channel_to_group(channel, name)
        await ws.send_json({"joined": str(channel.id)})
        try:
            while True:
                data = await ws.receive_json()
                if broadcast:
                    await ChannelBox.group_send(name, data, save_history=True, sender=channel.id)
        except WebSocketDisconnect:
            pass

    return app


async def join(app: typing.Any, path: str) -> tuple[WebsocketCommunicator, list[typing.Any]]:
    """Connect, wait until the handler has joined; return the client and what was replayed."""
    communicator = WebsocketCommunicator(app, path)
    connected, _ = await communicator.connect()
    assert connected, f"handshake to {path} refused"
    replayed: list[typing.Any] = []
    while True:
        frame = await communicator.receive_json_from(timeout=TIMEOUT)
        if isinstance(frame, dict) and "joined" in frame:
            # The handler says so after add_channel_to_group: replayed frames came first.
            return communicator, replayed
        replayed.append(frame)


async def receive_seqs(communicator: WebsocketCommunicator, count: int) -> list[int]:
    """The ``seq`` of the next ``count`` enveloped frames."""
    return [(await communicator.receive_json_from(timeout=TIMEOUT))["seq"] for _ in range(count)]
