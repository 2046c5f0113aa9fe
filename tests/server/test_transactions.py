"""Publishing inside Django transactions: delivered after commit, nothing on rollback (real daphne)."""

from __future__ import annotations

import asyncio
import json
import typing
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from websockets.asyncio.client import ClientConnection, connect

from devservers import DaphneServer, run_manage


def env(database_url: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "DJANGO_SETTINGS_MODULE": "tests.sites.transactions.settings",
        "REDIS_URL": "",
        "DEBUG": "0",
        "ALLOWED_HOSTS": "localhost,127.0.0.1",
    }


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path: typing.Any) -> Iterator[DaphneServer]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'tx.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_url")
    run_manage("migrate", "--noinput", env=env(url))
    daphne = DaphneServer(env(url), app="tests.sites.transactions.asgi:application")
    try:
        daphne.start()
        yield daphne
    finally:
        daphne.stop()
        print(daphne.log() or "<empty>")
        daphne.close()


def get(server: DaphneServer, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(server.url + path, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


@pytest.fixture
async def room(server: DaphneServer) -> AsyncIterator[tuple[str, ClientConnection]]:
    name = f"tx{uuid.uuid4().hex[:8]}"
    async with connect(server.ws_url(f"/tx-room/{name}"), origin=server.url) as ws:  # type: ignore[arg-type]
        assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"joined": name}
        yield name, ws


async def request(server: DaphneServer, path: str) -> tuple[int, str]:
    return await asyncio.to_thread(get, server, path)


async def next_messages(ws: ClientConnection, count: int) -> list[typing.Any]:
    return [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(count)]


async def test_a_committed_view_delivers_after_commit_and_keeps_its_rows(
    server: DaphneServer, room: tuple[str, ClientConnection]
) -> None:
    name, ws = room
    assert await request(server, f"/tx/commit/{name}") == (200, "commit")
    assert await next_messages(ws, 2) == [{"saved": "commit"}, {"unsaved": "commit"}]
    _, body = await request(server, f"/tx-history/{name}")
    assert json.loads(body) == {"history": [{"saved": "commit"}], "seqs": [1], "groups": [f"{name}-commit"]}


@pytest.mark.parametrize("mode", ["rollback", "error"])
async def test_a_rolled_back_view_sends_and_stores_nothing(
    server: DaphneServer, room: tuple[str, ClientConnection], mode: str
) -> None:
    name, ws = room
    status, _ = await request(server, f"/tx/{mode}/{name}")
    assert status == (200 if mode == "rollback" else 500)
    # A committed request afterwards: its messages are the next the member receives.
    assert await request(server, f"/tx/commit/{name}") == (200, "commit")
    assert await next_messages(ws, 2) == [{"saved": "commit"}, {"unsaved": "commit"}]
    _, body = await request(server, f"/tx-history/{name}")
    # The rolled-back message took no sequence number either: the committed one is seq 1.
    assert json.loads(body) == {"history": [{"saved": "commit"}], "seqs": [1], "groups": [f"{name}-commit"]}


async def test_a_rolled_back_savepoint_drops_only_what_was_sent_inside_it(
    server: DaphneServer, room: tuple[str, ClientConnection]
) -> None:
    name, ws = room
    assert await request(server, f"/tx/savepoint/{name}") == (200, "savepoint")
    assert await request(server, f"/tx/commit/{name}") == (200, "commit")
    assert await next_messages(ws, 4) == [
        {"saved": "savepoint"},
        {"unsaved": "savepoint"},
        {"saved": "commit"},
        {"unsaved": "commit"},
    ]
    _, body = await request(server, f"/tx-history/{name}")
    assert json.loads(body) == {
        "history": [{"saved": "savepoint"}, {"saved": "commit"}],
        "seqs": [1, 2],
        "groups": sorted([f"{name}-commit", f"{name}-savepoint"]),
    }
