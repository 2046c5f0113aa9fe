"""Resume across OS processes: two daphne processes on one database (SQLite or PostgreSQL) and Redis.

A reader records the stream (seq and epoch) from one process while a writer
talks through the other; then it resumes after a disconnect (all of it
replayed), after a flush made in a third process (``manage.py shell``:
nothing replayed, a new epoch) and after retention trimmed its position
(nothing replayed, the same epoch).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import typing
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect

from devservers import run_manage
from tests.support.fixtures import DaphneFactory

TIMEOUT = 10.0
ROOM = "resume2"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database that only subprocesses use."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'resume.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_url")
    run_manage("migrate", "--noinput", env={"DATABASE_URL": url})
    return url


@contextlib.asynccontextmanager
async def chat(server: typing.Any, query: str) -> AsyncIterator[ClientConnection]:
    url = server.ws_url(f"/ws/chat/{ROOM}/?envelope=1&{query}")
    async with connect(url, origin=server.url, open_timeout=TIMEOUT, max_queue=None) as ws:
        yield ws


async def frame(ws: ClientConnection) -> dict[str, typing.Any]:
    """The next frame that is not a presence event (the chat room has presence on)."""
    while str((received := json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))).get("type")).startswith(
        "presence_"
    ):
        pass
    return typing.cast(dict[str, typing.Any], received)


async def frames_until(ws: ClientConnection, seq: int) -> list[dict[str, typing.Any]]:
    """Saved frames up to and including ``seq`` (the resume answer first, if any)."""
    seen = [await frame(ws)]
    while seen[-1].get("seq") != seq:
        seen.append(await frame(ws))
    return seen


async def until_said(ws: ClientConnection, text: str) -> dict[str, typing.Any]:
    """Read until the saved frame whose message is ``text`` arrives; return it."""
    while (received := await frame(ws)).get("payload", {}).get("message") != text:
        pass
    return received


async def say(ws: ClientConnection, *texts: str) -> None:
    for text in texts:
        await ws.send(json.dumps({"type": "message", "content": text}))


async def test_resume_is_all_or_nothing_across_processes(
    database_url: str, redis_url: str, daphne_factory: DaphneFactory
) -> None:
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "ALLOWED_HOSTS": "127.0.0.1"}
    one, two = daphne_factory(env), daphne_factory(env)

    async with chat(one, "username=writer") as writer:
        assert (await frame(writer))["payload"]["message"] == "writer joined"  # seq 1
        async with chat(two, "username=reader&since=0&epoch=") as reader:
            answer = await frame(reader)
            assert (answer["type"], answer["recovered"], answer["last_seq"]) == ("resume", True, 1)
            epoch = answer["epoch"]
            stream = await frames_until(reader, 2)  # writer joined (replayed), reader joined (live)
            assert [f["payload"]["message"] for f in stream] == ["writer joined", "reader joined"]
            await say(writer, "a", "b")
            stream += await frames_until(reader, 4)
            assert [f["seq"] for f in stream] == [1, 2, 3, 4]
            assert [f["payload"]["message"] for f in stream[2:]] == ["a", "b"]
            assert {f["epoch"] for f in stream} == {epoch}
            position = 4
        # The reader left (a saved notice); the writer goes on in the other process.
        await until_said(writer, "reader left")
        await say(writer, "c", "d")
        await until_said(writer, "d")
        async with chat(one, f"username=reader&since={position}&epoch={epoch}") as reader:
            resumed = await frames_until(reader, position + 3)  # left notice, c, d
            assert resumed[0] == {
                "type": "resume",
                "room": ROOM,
                "epoch": epoch,
                "recovered": True,
                "last_seq": position + 3,
            }
            assert [f["seq"] for f in resumed[1:]] == [position + 1, position + 2, position + 3]
            assert [f["payload"].get("message") for f in resumed[2:]] == ["c", "d"]
            position = (await frames_until(reader, position + 4))[-1]["seq"]  # its own join notice

    flush = (
        "from nexios_compat.stores.history import DatabaseHistoryStore; "
        f"DatabaseHistoryStore().flush({ROOM!r})"
    )
    run_manage("shell", "-c", flush, env=env)
    async with chat(two, f"username=reader&since={position}&epoch={epoch}") as reader:
        answer = await frame(reader)
        assert answer["recovered"] is False and answer["epoch"] != epoch
        assert answer["last_seq"] >= position
        new_epoch, position = answer["epoch"], answer["last_seq"]
        # Nothing partial was replayed: the next frame is live, after the room's counter.
        joined = await frame(reader)
        assert (joined["seq"], joined["epoch"]) == (position + 1, new_epoch)
        position = joined["seq"]

    async with chat(one, "username=writer") as writer:
        await say(writer, *"efgh")
        last = (await frames_until(writer, position + 6))[-1]["seq"]  # left, joined, e..h
    trim = {
        **env,
        "MP_NEXIOS_COMPAT": '{"HISTORY_MAX_MESSAGES": 2}',
        "DJANGO_SETTINGS_MODULE": "tests.sites.multiprocess.settings",
    }
    run_manage("prune_history", env=trim)
    async with chat(two, f"username=reader&since={position}&epoch={new_epoch}") as reader:
        answer = await frame(reader)
        assert (answer["recovered"], answer["epoch"]) == (False, new_epoch)
        assert answer["last_seq"] >= last
