"""rooms.js in headless Chromium: scroll-up paging, network drop, flush while away, two tabs.

Uses the module-scoped browser and server of tests/browser/test_browser.py (the
server restart case lives there and runs on rooms.js too).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

from playwright.sync_api import Browser, Page, expect
from websockets.sync.client import connect
from websockets.typing import Origin

from devservers import DaphneServer, run_manage
from tests.browser.test_browser import browser, log_line, migrated, open_room, pages, send, server  # noqa: F401
from tests.support.fixtures import DaphneFactory
from tests.support.helpers import room_name

SAVE = (
    "import time; from nexios_compat.stores.history import DatabaseHistoryStore, PendingMessage; "
    "from nexios_compat.encoding import pack; "
    "DatabaseHistoryStore().append([PendingMessage({room!r}, *pack({{'type': 'chat', 'user': 'old', "
    "'message': f'm{{i:03}}', 'timestamp': time.time()}})) for i in range({count})])"
)
FLUSH = (
    "from nexios_compat.stores.history import DatabaseHistoryStore; DatabaseHistoryStore().flush({room!r})"
)


class CuttableProxy:
    """A TCP proxy to a server whose "network" the test can cut (every connection reset) and restore."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut = threading.Event()
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.cut.is_set():
                client.close()
                continue
            self._serve(client)

    def _serve(self, client: socket.socket) -> None:
        """Connect an accepted client to the server (subclasses may look at the request first)."""
        self._join(client, socket.create_connection(("127.0.0.1", self.target)))

    def _join(self, client: socket.socket, upstream: socket.socket) -> None:
        """Pump bytes both ways between ``client`` and ``upstream`` until either end closes."""
        with self.lock:
            self.open |= {client, upstream}
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def drop(self) -> None:
        """Cut the network: reset every connection and refuse new ones."""
        self.cut.set()
        with self.lock:
            for sock in self.open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            self.open.clear()

    def restore(self) -> None:
        """Let connections through again."""
        self.cut.clear()

    def close(self) -> None:
        self.drop()
        self.listener.close()


@contextlib.contextmanager
def proxy_to(target: DaphneServer) -> Iterator[CuttableProxy]:
    proxy = CuttableProxy(target.port)
    try:
        yield proxy
    finally:
        proxy.close()


def shell(target: DaphneServer, code: str, **values: object) -> None:
    run_manage("shell", "-c", code.format(**values), env=target.extra_env)


def chat_texts(page: Page) -> list[str]:
    return page.eval_on_selector_all(
        "#log li:not(.notice)", "items => items.map(li => li.lastChild.textContent)"
    )


def test_older_messages_load_when_scrolled_to_the_top(
    browser: Browser,  # noqa: F811
    pages: list[Page],  # noqa: F811
    server: DaphneServer,  # noqa: F811
) -> None:
    room = room_name("older")
    shell(server, SAVE, room=room, count=120)
    page = open_room(browser, pages, server.url, room, "carol")
    expect(page.locator("#log li")).to_have_count(51)  # the newest 50, carol's join
    assert chat_texts(page)[0] == "m070"
    page.eval_on_selector("#log", "log => { log.scrollTop = 0; }")
    expect(page.locator("#log li")).to_have_count(101)
    page.eval_on_selector("#log", "log => { log.scrollTop = 0; }")
    expect(page.locator("#log li")).to_have_count(121)
    assert chat_texts(page) == [f"m{i:03}" for i in range(120)]
    assert page.evaluate("lastSeq") == 121  # loading older pages never moves the resume position


def test_network_drop_and_return_resumes_without_loss_or_duplicates(
    browser: Browser,  # noqa: F811
    pages: list[Page],  # noqa: F811
    server: DaphneServer,  # noqa: F811
) -> None:
    room = room_name("drop")
    with proxy_to(server) as proxy:
        page = open_room(browser, pages, f"http://127.0.0.1:{proxy.port}", room, "carol")
        sockets: list[str] = []
        page.on("websocket", lambda ws: sockets.append(ws.url))
        proxy.drop()
        expect(page.locator("#status")).to_contain_text("disconnected")
        with connect(server.ws_url(f"/ws/chat/{room}/?username=dave"), origin=Origin(server.url)) as dave:
            dave.send(json.dumps({"type": "message", "content": "while offline"}))
            while json.loads(dave.recv(10)).get("message") != "while offline":
                pass
        proxy.restore()
        expect(page.locator("#status")).to_have_text("connected", timeout=20_000)
        for text in ("while offline", "dave joined", "dave left", "carol joined"):
            expect(log_line(page, text).first).to_be_visible()
        for text in ("while offline", "dave joined", "dave left"):
            expect(log_line(page, text)).to_have_count(1)
        assert sockets and "epoch=" in sockets[-1], sockets


def test_flush_while_disconnected_reloads_instead_of_replaying_part(
    browser: Browser,  # noqa: F811
    pages: list[Page],  # noqa: F811
    daphne_factory: DaphneFactory,
    tmp_path: Path,
) -> None:
    env = migrated(tmp_path / "flush.sqlite3")
    first = daphne_factory(env)
    room = room_name("flush")
    page = browser.new_page()
    pages.append(page)
    page.clock.install()
    page.goto(f"{first.url}/room/{room}/?username=carol")
    expect(page.locator("#status")).to_have_text("connected")
    send(page, "before the flush")
    expect(log_line(page, "before the flush")).to_have_count(1)
    assert page.evaluate("lastSeq") >= 2

    page.clock.pause_at(page.evaluate("Date.now()") + 1000)
    first.stop()
    expect(page.locator("#status")).to_contain_text("disconnected, retrying in")
    second = daphne_factory(env, port=first.port)
    shell(second, FLUSH, room=room)
    with connect(second.ws_url(f"/ws/chat/{room}/?username=dave"), origin=Origin(second.url)) as dave:
        dave.send(json.dumps({"type": "message", "content": "after the flush"}))
        while json.loads(dave.recv(10)).get("message") != "after the flush":
            pass

    page.clock.resume()
    expect(page.locator("#status")).to_have_text("connected")
    # recovered: false -> the history was reloaded: the flushed message is gone, the new one shown once.
    expect(log_line(page, "after the flush")).to_have_count(1)
    expect(log_line(page, "before the flush")).to_have_count(0)
    expect(log_line(page, "dave left")).to_have_count(1)


def test_two_tabs_of_one_browser_talk_to_each_other(
    browser: Browser,  # noqa: F811
    server: DaphneServer,  # noqa: F811
) -> None:
    room = room_name("tabs")
    context = browser.new_context()
    try:
        tabs = [context.new_page(), context.new_page()]
        for tab, name in zip(tabs, ("ann", "bob"), strict=True):
            tab.goto(f"{server.url}/room/{room}/?username={name}")
            expect(tab.locator("#status")).to_have_text("connected")
        expect(log_line(tabs[0], "bob joined")).to_have_count(1)
        send(tabs[0], "from the first tab")
        send(tabs[1], "from the second tab")
        for tab in tabs:
            expect(log_line(tab, "from the first tab")).to_have_count(1)
            expect(log_line(tab, "from the second tab")).to_have_count(1)
    finally:
        context.close()
