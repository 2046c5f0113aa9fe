"""rooms.js in headless Chromium behind a proxy that refuses WebSocket upgrades: the SSE fallback.

The proxy answers 403 to every ``Upgrade: websocket`` request and passes other
HTTP through (one request per connection, so each is looked at), as a
corporate proxy would. The page falls back to the room's event stream, chats
with a WebSocket client in the same room, shows and is shown in presence, and
after the network is cut resumes with every missed message once (uses the
module-scoped browser and server of tests/browser/test_browser.py).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import typing
from collections.abc import Iterator
from urllib.parse import urlencode

from playwright.sync_api import Browser, Page, expect
from websockets.sync.client import connect
from websockets.typing import Origin

from devservers import DaphneServer
from tests.browser.test_browser import browser, log_line, pages, send, server  # noqa: F401
from tests.browser.test_browser_rooms import CuttableProxy
from tests.support.helpers import room_name

REFUSED = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class UpgradeRefusingProxy(CuttableProxy):
    """A cuttable proxy answering 403 to WebSocket upgrades; the rest passes with ``Connection: close``."""

    def __init__(self, port: int) -> None:
        self.refused = 0
        super().__init__(port)

    def _serve(self, client: socket.socket) -> None:
        threading.Thread(target=self._answer, args=(client,), daemon=True).start()  # reads first

    def _answer(self, client: socket.socket) -> None:
        head = b""
        with contextlib.suppress(OSError):
            while b"\r\n\r\n" not in head and (data := client.recv(65536)):
                head += data
        request, _, rest = head.partition(b"\r\n\r\n")
        lines = request.split(b"\r\n")
        if any(line.lower().replace(b" ", b"") == b"upgrade:websocket" for line in lines[1:]):
            self.refused += 1
            with contextlib.suppress(OSError):
                client.sendall(REFUSED)
            client.close()
            return
        kept = [line for line in lines if not line.lower().startswith((b"connection:", b"keep-alive:"))]
        upstream = socket.create_connection(("127.0.0.1", self.target))
        upstream.sendall(b"\r\n".join([*kept, b"Connection: close"]) + b"\r\n\r\n" + rest)
        self._join(client, upstream)


@contextlib.contextmanager
def refusing_proxy(target: DaphneServer) -> Iterator[UpgradeRefusingProxy]:
    proxy = UpgradeRefusingProxy(target.port)
    try:
        yield proxy
    finally:
        proxy.close()


def frames_until(
    ws: typing.Any, predicate: typing.Callable[[dict[str, typing.Any]], bool]
) -> list[dict[str, typing.Any]]:
    seen = []
    while not predicate(frame := json.loads(ws.recv(20))):
        seen.append(frame)
    return [*seen, frame]


def test_a_browser_without_websockets_chats_over_the_fallback_with_presence_and_resume(
    browser: Browser,  # noqa: F811
    pages: list[Page],  # noqa: F811
    server: DaphneServer,  # noqa: F811
) -> None:
    room = room_name("fallback")
    with (
        refusing_proxy(server) as proxy,
        connect(server.ws_url(f"/ws/chat/{room}/?username=watcher"), origin=Origin(server.url)) as watcher,
    ):
        page = browser.new_page()
        pages.append(page)
        page.goto(f"http://127.0.0.1:{proxy.port}/room/{room}/?{urlencode({'username': 'sam'})}")
        expect(page.locator("#status")).to_have_text("connected", timeout=20_000)
        assert page.evaluate("window.transport") == "sse"
        assert proxy.refused >= 2  # it did try the socket first
        # Presence both ways: the watcher sees sam join, the page lists the watcher.
        frames_until(watcher, lambda f: f.get("type") == "presence_diff" and "sam" in f.get("joins", {}))
        expect(page.locator("#who li", has_text="watcher")).to_be_visible()
        send(page, "hello from the fallback")
        frames_until(watcher, lambda f: f.get("message") == "hello from the fallback")
        page.wait_for_function("window.unacked === 0")  # the POST's answer was the ack
        watcher.send(json.dumps({"type": "message", "content": "hello sam"}))
        expect(log_line(page, "hello sam")).to_have_count(1)
        # Cut the network; what is said meanwhile comes back once the stream resumes.
        proxy.drop()
        expect(page.locator("#status")).not_to_have_text("connected")
        for n in range(3):
            watcher.send(json.dumps({"type": "message", "content": f"while away {n}"}))
        frames_until(watcher, lambda f: f.get("message") == "while away 2")
        proxy.restore()
        expect(page.locator("#status")).to_have_text("connected", timeout=20_000)
        for n in range(3):
            expect(log_line(page, f"while away {n}")).to_have_count(1)
        expect(log_line(page, "hello sam")).to_have_count(1)
        expect(log_line(page, "hello from the fallback")).to_have_count(1)
        assert page.evaluate("window.transport") == "sse"
