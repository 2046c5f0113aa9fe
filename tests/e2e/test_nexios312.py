"""End to end: a typical Nexios 3.12 app (tests/sites/nexios312/app.py) on daphne, driven by ``websockets``.

The app is Nexios code with only the import prefix changed, served with no
``NEXIOS_COMPAT`` setting: nested routers, ``WebsocketRoute``, a consumer's
``as_route``, status codes, a plugged-in history manager, the error middleware,
and the defaults (bursts and big frames pass, as under Nexios).
"""

from __future__ import annotations

import asyncio
import json
import sys
import types
import typing
import uuid
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from devservers import REPO_ROOT, DaphneServer
from tests.support.site import migrated, open_ws

TIMEOUT = 5.0
APP_SOURCE = REPO_ROOT / "tests" / "sites" / "nexios312" / "app.py"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaphneServer]:
    path = tmp_path_factory.mktemp("nx312") / f"nx312-{uuid.uuid4().hex[:8]}.sqlite3"
    env = migrated(path, "tests.sites.nexios312.settings", debug=True)
    daphne = DaphneServer(env, app="tests.sites.nexios312.asgi:application")
    try:
        daphne.start()
        yield daphne
    finally:
        daphne.stop()
        print(daphne.log() or "<empty daphne log>")
        daphne.close()


def open_app_ws(server: DaphneServer, path: str) -> connect:
    """A client as a Nexios app's would connect: no Origin header, frames up to 4 MiB."""
    return open_ws(server, path, origin=None, open_timeout=TIMEOUT, max_size=4 * 1024 * 1024)


async def receive_json(ws: typing.Any) -> typing.Any:
    return json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))


def test_the_same_source_is_a_nexios_3_12_app() -> None:
    """Swap the prefix back: the module imports and routes under the real Nexios."""
    pytest.importorskip("nexios")
    source = APP_SOURCE.read_text().replace("nexios_compat", "nexios")
    module = types.ModuleType("nx312_as_nexios")
    sys.modules[module.__name__] = module
    try:
        exec(compile(source, "nx312_as_nexios", "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]
    import nexios

    assert isinstance(module.app, nexios.NexiosApp)
    assert type(module.app).__module__.startswith("nexios.")


async def test_nested_routes_rooms_and_the_plugged_in_history(server: DaphneServer) -> None:
    async with (
        open_app_ws(server, "/api/v1/rooms/lobby?user=ada") as ada,
        open_app_ws(server, "/api/v1/rooms/lobby?user=bob") as bob,
    ):
        for ws in (ada, bob):  # a reply means the handler has joined the room
            await ws.send(json.dumps({"type": "history"}))
            assert await receive_json(ws) == {"history": []}
        await ada.send(json.dumps({"text": "hello"}))
        assert await receive_json(bob) == {"user": "ada", "text": "hello"}
        assert await receive_json(ada) == {"user": "ada", "text": "hello"}
        await bob.send(json.dumps({"type": "history"}))
        assert await receive_json(bob) == {"history": [{"user": "ada", "text": "hello"}]}
    with pytest.raises(InvalidStatus):  # only under the mounted prefixes
        async with open_app_ws(server, "/v1/rooms/lobby"):
            pass


async def test_consumer_route_and_nexios_query_params(server: DaphneServer) -> None:
    async with open_app_ws(server, "/api/v1/echo?name=test&tag=a&tag=b") as ws:
        await ws.send(json.dumps({"n": 1}))
        assert await receive_json(ws) == {"echo": {"n": 1}, "query": {"name": "test", "tag": "b"}}


async def test_a_websocket_exception_closes_with_its_status_code(server: DaphneServer) -> None:
    async with open_app_ws(server, "/api/v1/rooms/arena") as ws:
        await ws.send(json.dumps({"type": "cheat"}))
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (1008, "WebSocket 1008: no cheating")


async def test_defaults_let_a_game_loop_burst_and_a_big_upload_through(server: DaphneServer) -> None:
    async with open_app_ws(server, "/ticks") as ws:
        for _ in range(300):  # a client replaying its queue; the example site would close at 40
            await ws.send("tick")
        replies = [await asyncio.wait_for(ws.recv(), TIMEOUT) for _ in range(300)]
        assert replies[-1] == "300"
    async with open_app_ws(server, "/upload") as ws:
        await ws.send(b"\0" * (1024 * 1024 - 64))  # under daphne's 1 MiB frame limit
        assert await receive_json(ws) == {"received": 1024 * 1024 - 64}
