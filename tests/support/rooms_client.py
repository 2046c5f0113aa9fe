"""``rooms.js``'s ``RoomClient`` under Node (tests/support/rooms_client.mjs), driven from a test.

The test paces the typing (``type``) and reads the client's events (``wait_for``):
a real client of the library, without a browser.
"""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
import typing

from devservers import REPO_ROOT
from tests.support.fixtures import require_service

ROOMS_JS = REPO_ROOT / "nexios_compat" / "static" / "nexios_compat" / "rooms.js"
CLIENT = REPO_ROOT / "tests" / "support" / "rooms_client.mjs"


class NodeClient:
    """A RoomClient of the site at ``base`` in room ``path``: lines to its stdin, events read in a thread."""

    def __init__(self, base: str, path: str) -> None:
        node = shutil.which("node")
        require_service("node", node is not None)
        assert node is not None
        self.process = subprocess.Popen(
            [node, "--experimental-websocket", "--no-warnings", str(CLIENT), ROOMS_JS.as_uri(), base, path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.events: queue.Queue[dict[str, typing.Any]] = queue.Queue()
        self.seen: list[dict[str, typing.Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.events.put(json.loads(line))

    def tell(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def wait_for(self, event: str, timeout: float = 30) -> dict[str, typing.Any]:
        """The next event named ``event`` (others seen meanwhile are kept in ``seen``)."""
        while True:
            try:
                got = self.events.get(timeout=timeout)
            except queue.Empty:
                recent = self.seen[-5:]
                raise AssertionError(f"no {event!r} from the client in {timeout} s; saw {recent}") from None
            self.seen.append(got)
            if got["event"] == event:
                return got

    def type(self, count: int) -> None:
        for _ in range(count):
            self.tell("go")
            self.wait_for("typed")

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(10)
