"""Under a real daphne: a blocked handler's flooder is closed at arrival, its queue bounded, others served."""

from __future__ import annotations

import json
import typing
import urllib.request
from pathlib import Path

import pytest

from devservers import DaphneServer
from tests.support import site
from tests.support.rawsocket import open_raw
from tests.support.site import migrated_database


@pytest.fixture
def server(tmp_path: Path) -> typing.Iterator[DaphneServer]:
    env = site.server_env(migrated_database(tmp_path), "tests.sites.bounds.settings")
    daphne = DaphneServer(env, app="tests.sites.bounds.asgi:application").start()
    try:
        yield daphne
    finally:
        daphne.stop()


def get(server: DaphneServer, path: str) -> dict[str, typing.Any]:
    with urllib.request.urlopen(f"{server.url}{path}", timeout=30) as response:
        return typing.cast(dict[str, typing.Any], json.loads(response.read()))


def test_a_flooder_is_closed_with_1008_while_its_handler_is_blocked(server: DaphneServer) -> None:
    flooder = open_raw(server, "/blocked")
    calm = open_raw(server, "/blocked")
    assert flooder.read_message().text == "ready" and calm.read_message().text == "ready"
    calm.send_text("hello")
    for n in range(500):
        try:
            flooder.send_text(f"frame {n}")
        except OSError:
            break  # the server closed and dropped us part-way: that is the point
    # Closed while the handler still waits: the verdict came at arrival.
    ending = flooder.read_until_closed(timeout=10)
    assert ending.close_code == 1008
    queued = get(server, "/bounds/stats")["queued"]
    assert max(queued) <= 20 + 2  # MAX_QUEUED_FRAMES, the verdict and the disconnect
    get(server, "/bounds/release")
    assert calm.read_message().text == "hello"
    calm.close()
