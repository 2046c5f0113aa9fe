"""A member that stops reading must not slow its room or hold the server's memory.

daphne serves ``tests.sites.backpressure.asgi`` (``GET /sec/stats`` and ``/bp/{room}``, the
chat room without history, so that the room runs as fast as the hub delivers)
with ``tests.sites.backpressure.settings``: no incoming rate limit and ``MAX_SEND_BACKLOG`` of
256 KiB. Three members join one room over raw sockets: a publisher sends
``COUNT`` messages of about 1 KiB as fast as the server takes them (every
member, the publisher too, gets each one), a healthy member reads everything,
and a stalled member (a 4 KiB receive buffer) completes its join and never
reads again. A thread samples the server's RSS and per-socket send backlogs
meanwhile.

- With the bound: the healthy member gets every message in order, the stalled
  one is closed (its TCP connection dropped) as soon as its backlog passes the
  bound, leaves the room (its ``Member`` row goes, the room sees "stalled
  left"), and no socket's backlog is ever seen far above the bound.
- The control, without the bound: the stalled member stays in the room and its
  backlog grows with everything the room sends (what the bound prevents).
- A resume that replays several times the bound to a client that reads is
  paced by the client, not cut with 1008 (on the chat example's saved room).
"""

from __future__ import annotations

import json
import socket
import threading
import time
import typing
from pathlib import Path

import pytest

from devservers import DaphneServer
from tests.support.helpers import history, member_count, wait_for
from tests.support.rawsocket import CLOSE, TEXT, RawSocket, encode_frame, open_raw
from tests.support.site import SECURITY_APP, migrated_database, server_env, server_stats

TIMEOUT = 10.0
COUNT = 20000
CHUNK = 100  # messages written at once by the publisher
BOUND = 256 * 1024
ROOM = "backpressure"
FILLER = "x" * 1000


class Reader(threading.Thread):
    """Reads a member's socket until the publisher's last message; records what came."""

    def __init__(self, ws: RawSocket) -> None:
        super().__init__(daemon=True)
        self.ws = ws
        self.chats: list[int] = []
        self.notices: list[str] = []
        self.error: BaseException | None = None
        self.finished_at = 0.0

    def run(self) -> None:
        try:
            while not self.chats or self.chats[-1] != COUNT - 1:
                text = self.ws.read_message(30).text
                if text.startswith("m"):
                    self.chats.append(int(text.split(" ", 1)[0][1:]))
                else:
                    self.notices.append(json.loads(text)["message"])
            self.finished_at = time.monotonic()
        except BaseException as exc:  # reported by the test
            self.error = exc


def join(server: DaphneServer, user: str, *, rcvbuf: int | None = None) -> RawSocket:
    """Join the room as ``user`` and read up to the connection's own join notice."""
    path = f"/bp/{ROOM}?username={user}"
    if rcvbuf is None:
        ws = open_raw(server, path)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect: sets the window
        sock.settimeout(TIMEOUT)
        sock.connect(("127.0.0.1", server.port))
        ws = RawSocket(sock)
        ws.handshake(path, origin=server.url, host=f"127.0.0.1:{server.port}")
    while f'"{user} joined"' not in ws.read_message(TIMEOUT).text:
        pass
    return ws


def drain_until_closed(ws: RawSocket, timeout: float) -> tuple[int, str]:
    """Read everything the server still sends; return the bytes and how the connection ended."""
    ws.sock.settimeout(timeout)
    received = len(ws.buffer)
    try:
        while chunk := ws.sock.recv(1 << 20):
            received += len(chunk)
    except ConnectionResetError:
        return received, "reset"
    except TimeoutError:
        return received, "still open"
    return received, "closed"


class Sampler(threading.Thread):
    """Polls ``/sec/stats`` until stopped."""

    def __init__(self, server: DaphneServer) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.samples: list[dict[str, typing.Any]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append(server_stats(self.server))
            self.stop.wait(0.05)


def run_room(server: DaphneServer) -> dict[str, typing.Any]:
    """Healthy member, stalled member, publisher; publish COUNT messages while sampling the server."""
    healthy = join(server, "healthy")
    stalled = join(server, "stalled", rcvbuf=4096)
    publisher = join(server, "publisher")
    readers = [Reader(healthy), Reader(publisher)]
    for reader in readers:
        reader.start()
    before = server_stats(server)
    sampler = Sampler(server)
    sampler.start()
    started = time.monotonic()
    for first in range(0, COUNT, CHUNK):
        batch = range(first, min(first + CHUNK, COUNT))
        publisher.send_raw(b"".join(encode_frame(TEXT, f"m{i} {FILLER}".encode()) for i in batch))
    sent_in = time.monotonic() - started
    for reader in readers:
        reader.join(120)
    sampler.stop.set()
    sampler.join()
    samples = [before, *sampler.samples, server_stats(server)]
    return {
        "healthy": readers[0],
        "publisher": readers[1],
        "stalled": stalled,
        "before": before,
        "samples": samples,
        "started": started,
        "sent_in": sent_in,
    }


def report(run: dict[str, typing.Any], label: str) -> tuple[int, int]:
    samples = run["samples"]
    max_backlog = max((max(s["send_backlogs"], default=0) for s in samples), default=0)
    max_rss = max(s["rss"] for s in samples)
    healthy: Reader = run["healthy"]
    took = (healthy.finished_at or time.monotonic()) - run["started"]
    print(
        f"\n{label}: {COUNT} messages of ~1 KiB published in {run['sent_in']:.1f} s; the healthy member "
        f"had all {len(healthy.chats)} after {took:.1f} s ({len(healthy.chats) / took:.0f}/s); largest "
        f"send backlog seen {max_backlog / 1024:.0f} KiB (bound {BOUND // 1024} KiB); RSS "
        f"{run['before']['rss'] / 2**20:.1f} MiB before, at most {max_rss / 2**20:.1f} MiB "
        f"({(max_rss - run['before']['rss']) / 2**20:+.1f} MiB)"
    )
    return max_backlog, max_rss


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return migrated_database(tmp_path)


def start(daphne_factory: typing.Callable[..., DaphneServer], db: Path, **env: str) -> DaphneServer:
    return daphne_factory(
        {**server_env(db, "tests.sites.backpressure.settings"), **env},
        app="tests.sites.backpressure.asgi:application",
        # No pings during the test: the reader threads would answer them on the
        # publisher's socket while the test writes to it.
        extra_args=["--ping-interval", "600"],
    )


def test_stalled_reader_is_disconnected_and_the_room_keeps_going(
    daphne_factory: typing.Callable[..., DaphneServer], db: Path
) -> None:
    server = start(daphne_factory, db)
    run = run_room(server)
    max_backlog, max_rss = report(run, "MAX_SEND_BACKLOG 256 KiB")
    healthy: Reader = run["healthy"]
    for reader in (healthy, run["publisher"]):
        assert reader.error is None, reader.error
        assert reader.chats == list(range(COUNT)), "every message, once, in order"
    assert "stalled left" in healthy.notices
    wait_for(lambda: member_count(db, ROOM) == 2, "the stalled member's row to go", timeout=TIMEOUT)
    received, ending = drain_until_closed(run["stalled"], TIMEOUT)
    print(f"the stalled client, reading at last: {received / 1024:.0f} KiB, then the connection {ending}")
    assert ending in {"reset", "closed"}
    # The check runs after each frame: a backlog is never seen much above the bound.
    assert max_backlog <= BOUND + 64 * 1024
    assert max_rss - run["before"]["rss"] < 8 * 2**20  # the control below grows by ~20 MiB
    assert server_stats(server)["send_backlogs"] == [0, 0]  # healthy and publisher


def test_without_the_bound_a_stalled_reader_holds_the_backlog(
    daphne_factory: typing.Callable[..., DaphneServer], db: Path
) -> None:
    """The control: ``MAX_SEND_BACKLOG = None``; what the test above prevents."""
    server = start(daphne_factory, db, BP_NO_LIMIT="1")
    run = run_room(server)
    max_backlog, max_rss = report(run, "MAX_SEND_BACKLOG None")
    assert run["healthy"].chats == list(range(COUNT))
    assert member_count(db, ROOM) == 3
    # Most of what the room sent waits for the stalled client, in the server's memory.
    assert max_backlog > COUNT * len(FILLER) // 2
    assert max_rss - run["before"]["rss"] > 12 * 2**20
    stalled: RawSocket = run["stalled"]
    stalled.drop()
    wait_for(lambda: member_count(db, ROOM) == 2, "the dropped member's row to go", timeout=TIMEOUT)


def test_a_long_replay_is_paced_by_a_reading_client_not_cut(
    daphne_factory: typing.Callable[..., DaphneServer], db: Path
) -> None:
    server = daphne_factory(server_env(db, "tests.sites.backpressure.settings"), app=SECURITY_APP)
    saved = 1000  # about 1 MiB: four times the bound
    writer = open_raw(server, "/ws/chat/replay/?username=writer")
    # In bursts of 50 (50 KiB): saves are pipelined, so a whole burst comes back at
    # once, and the writer reads its own messages, or it would be cut itself.
    echoed = 0
    for start in range(0, saved, 50):
        writer.send_raw(
            b"".join(
                encode_frame(TEXT, json.dumps({"type": "message", "content": f"r{i} {FILLER}"}).encode())
                for i in range(start, start + 50)
            )
        )
        while echoed < start + 50:
            echoed += '"chat"' in writer.read_message(TIMEOUT).text
    wait_for(lambda: len(history(db, "replay")) == saved + 1, "the messages to be saved", timeout=TIMEOUT)
    late = open_raw(server, "/ws/chat/replay/?username=late&since=0&envelope=1")
    seqs: list[int] = []
    while len(seqs) < saved + 1:
        frame = late.read_frame(TIMEOUT)
        assert frame.opcode != CLOSE, f"closed with {frame.close_code} after {len(seqs)} replayed messages"
        if frame.opcode == TEXT and "seq" in (saved_frame := json.loads(frame.text)):  # not presence
            seqs.append(saved_frame["seq"])
    assert seqs == list(range(1, saved + 2))  # the writer's join notice, then its messages
