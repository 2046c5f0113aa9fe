"""rooms.js in headless Chromium through a proxy that cuts the connection at random moments while typing.

Every message typed is stored exactly once and in the order typed, and another
client receives each once, in that order (uses the module-scoped browser and
server of tests/browser/test_browser.py and the proxy of test_browser_rooms.py).
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import typing

from playwright.sync_api import Browser, Page, expect
from websockets.sync.client import connect
from websockets.typing import Origin

from devservers import DaphneServer
from tests.browser.test_browser import browser, log_line, open_room, pages, send, server  # noqa: F401
from tests.browser.test_browser_rooms import proxy_to
from tests.support.helpers import room_name

TYPED = 30


def stored(daphne: DaphneServer, room: str) -> list[dict[str, typing.Any]]:
    """The room's saved payloads in seq order, read from the server's SQLite file."""
    path = daphne.extra_env["DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT m.text FROM nexios_compat_message m JOIN nexios_compat_room r ON r.id = m.room_id "
            "WHERE r.name = ? ORDER BY m.seq",
            [room],
        ).fetchall()
    return [json.loads(text) for (text,) in rows]


def test_messages_typed_while_the_network_keeps_dropping_are_stored_once_in_order(
    browser: Browser,  # noqa: F811
    pages: list[Page],  # noqa: F811
    server: DaphneServer,  # noqa: F811
) -> None:
    room = room_name("once")
    typed = [f"t{i:02}" for i in range(TYPED)]
    with (
        proxy_to(server) as proxy,
        connect(server.ws_url(f"/ws/chat/{room}/?username=watcher"), origin=Origin(server.url)) as watcher,
    ):
        page = open_room(browser, pages, f"http://127.0.0.1:{proxy.port}", room, "typist")
        stop = threading.Event()
        cuts = 0

        def cut_at_random() -> None:
            nonlocal cuts
            rng = random.Random(room)
            # The stimulus, not a synchronisation: cuts land before, during and after sends and acks;
            # at least four, cutting on while the resends go out if typing was quicker.
            while not (stop.wait(rng.uniform(0.02, 0.4)) and cuts >= 4):
                proxy.drop()
                proxy.restore()
                cuts += 1

        cutter = threading.Thread(target=cut_at_random, daemon=True)
        cutter.start()
        try:
            for text in typed:
                send(page, text)
                expect(page.locator("#text")).to_have_value("")  # taken by rooms.js (sent or kept)
        finally:
            stop.set()
            cutter.join(30)
        page.wait_for_function("window.unacked === 0", timeout=60_000)
        expect(page.locator("#status")).to_have_text("connected", timeout=20_000)
        watcher.send(json.dumps({"type": "message", "content": "sentinel"}))
        received = []
        while (frame := json.loads(watcher.recv(20))).get("message") != "sentinel":
            if frame.get("type") == "chat":
                received.append(frame["message"])
    assert cuts > 3, cuts
    saved = [p["message"] for p in stored(server, room) if p.get("type") == "chat" and p["user"] == "typist"]
    assert saved == typed
    assert received == typed
    for text in typed:
        expect(log_line(page, text)).to_have_count(1)
