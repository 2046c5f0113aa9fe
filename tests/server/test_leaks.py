"""Connections that end badly must leave nothing behind: rows, groups, tasks, memory.

Each test runs its own daphne (``tests.sites.security.asgi``) on its own SQLite file and
asks the server about itself through ``GET /sec/stats`` (hub groups and
channels, in-memory layer groups, asyncio tasks, RSS, live daphne protocol
objects). Membership is read from the ``nexios_compat_member`` table.

- 1,000 cycles of connect, join and abrupt close (half TCP reset, half close
  without a close frame): rows, groups and tasks return to the baseline, RSS
  grows by less than ``RSS_BOUND``.
- A client that stops answering (half-open) is dropped by daphne's ping
  timeout, and its membership goes away.
- SIGTERM: sockets closed with 1001, ``on_disconnect`` runs (the chat
  endpoint's "left" notices are saved), membership is removed and nothing
  saved is lost.
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
import typing
from pathlib import Path

import pytest

from devservers import DaphneServer
from tests.support.helpers import history, member_count, query, wait_for
from tests.support.rawsocket import TEXT, RawSocket, encode_frame, open_raw
from tests.support.site import SECURITY_APP, SECURITY_SETTINGS, migrated_database, server_env, server_stats

TIMEOUT = 10.0
CYCLES = 1000
WARMUP = 100
BATCH = 25  # sockets open at once (each in its own room)
RSS_BOUND = 30 * 1024 * 1024


def join(server: DaphneServer, room: str, user: str) -> RawSocket:
    """Connect to the chat room and wait for the connection's own join notice."""
    ws = open_raw(server, f"/ws/chat/{room}/?username={user}")
    while f'"{user} joined"' not in ws.read_message(TIMEOUT).text:
        pass
    return ws


def run_cycles(server: DaphneServer, count: int, prefix: str) -> None:
    """``count`` connect-join-abort cycles, ``BATCH`` sockets at a time."""
    done = 0
    while done < count:
        batch = [join(server, f"{prefix}-{i}", f"u{done + i}") for i in range(min(BATCH, count - done))]
        for i, ws in enumerate(batch):
            if (done + i) % 2:
                ws.reset()  # TCP RST
            else:
                ws.drop()  # FIN, no close frame
        done += len(batch)


def idle(server: DaphneServer, db: Path) -> dict[str, typing.Any] | None:
    """The server's stats once no connection is left (only this request runs), else ``None``."""
    if member_count(db):
        return None
    stats = server_stats(server)
    connections = stats["task_names"].get("ProtocolTypeRouter.__call__", 0)
    if stats["groups"] or stats["channels"] or connections != 1:
        return None
    return stats


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return migrated_database(tmp_path)


def test_abrupt_closes_leave_nothing_behind(
    daphne_factory: typing.Callable[..., DaphneServer], db: Path
) -> None:
    server = daphne_factory(server_env(db, SECURITY_SETTINGS), app=SECURITY_APP)

    def released() -> dict[str, typing.Any] | None:
        stats = server_stats(server, collect=True)
        return stats if stats["ws_protocols"] == 0 else None

    # Warm up (hub started, code paths and caches touched, allocator arenas grown), then settle.
    run_cycles(server, WARMUP, "warm")
    wait_for(lambda: idle(server, db), "the warm-up connections to go", timeout=TIMEOUT)
    before = wait_for(released, "daphne to reap the warm-up connections", timeout=TIMEOUT)

    started = time.monotonic()
    run_cycles(server, CYCLES, "leak")
    elapsed = time.monotonic() - started

    def back_to_baseline() -> dict[str, typing.Any] | None:
        stats = idle(server, db)
        if stats is None or stats["tasks"] != before["tasks"]:
            return None
        return stats if stats["layer_groups"] == before["layer_groups"] else None

    wait_for(back_to_baseline, f"members, groups and tasks to return to {before}", timeout=30)
    # daphne reaps finished connections once a second.
    after = wait_for(released, "daphne to reap the connections", timeout=TIMEOUT)
    growth = after["rss"] - before["rss"]
    print(
        f"\n{CYCLES} connect/join/abort cycles in {elapsed:.1f} s; tasks {before['tasks']} -> "
        f"{after['tasks']}; hub groups {after['groups']}, channels {after['channels']}; layer groups "
        f"{before['layer_groups']} -> {after['layer_groups']}, layer channels {before['layer_channels']} "
        f"-> {after['layer_channels']}; daphne protocols {after['ws_protocols']}; RSS "
        f"{before['rss'] / 2**20:.1f} -> {after['rss'] / 2**20:.1f} MiB ({growth / 2**20:+.2f} MiB)"
    )
    assert after["tasks"] == before["tasks"], (before["task_names"], after["task_names"])
    assert after["layer_groups"] == before["layer_groups"]
    assert after["layer_channels"] <= before["layer_channels"]
    assert after["ws_protocols"] == 0
    assert growth < RSS_BOUND
    # Every cycle left a join and a leave notice: on_disconnect ran for each abrupt close.
    notices = [json.loads(text or "{}")["message"] for _, text in history(db, "leak-0")]
    assert sum(n.endswith(" left") for n in notices) == sum(n.endswith(" joined") for n in notices) == 40


def test_half_open_client_is_dropped_by_ping_timeout(
    daphne_factory: typing.Callable[..., DaphneServer], db: Path
) -> None:
    server = daphne_factory(
        server_env(db, SECURITY_SETTINGS),
        app=SECURITY_APP,
        extra_args=["--ping-interval", "1", "--ping-timeout", "2"],
    )
    room = "half-open"
    alive = join(server, room, "alive")
    ghost = join(server, room, "ghost")  # from now on reads and writes nothing, socket left open
    assert member_count(db, room) == 2
    started = time.monotonic()
    deadline = started + 20
    left = False
    # The live client answers pings (read_message does) while we wait for the ghost to go.
    while time.monotonic() < deadline and not (left and member_count(db, room) == 1):
        with contextlib.suppress(TimeoutError):
            left = left or '"ghost left"' in alive.read_message(0.2).text
    removed_after = time.monotonic() - started
    print(f"\nghost removed {removed_after:.1f} s after it went silent (ping interval 1 s, timeout 2 s)")
    assert left, "the live member never saw the ghost leave"
    assert member_count(db, room) == 1
    # The ghost's socket was closed by the server; the live one still works.
    ghost.sock.settimeout(TIMEOUT)
    ghost_ending = ghost.read_until_closed(TIMEOUT)
    print(f"ghost connection ended with close code {ghost_ending.close_code} (None: dropped)")
    alive.send_text(json.dumps({"type": "message", "content": "still here"}))
    while "still here" not in alive.read_message(TIMEOUT).text:
        pass
    assert alive.close().close_code == 1000
    wait_for(lambda: member_count(db) == 0, "no members", timeout=TIMEOUT)


def test_server_that_is_never_pinged_keeps_silent_clients(
    daphne_factory: typing.Callable[..., DaphneServer], db: Path
) -> None:
    """The control for the test above: without the ping timeout, a silent client stays a member."""
    server = daphne_factory(server_env(db, SECURITY_SETTINGS), app=SECURITY_APP)
    quiet = join(server, "silent", "quiet")  # keep the reference: a collected socket closes
    with pytest.raises(AssertionError):
        wait_for(lambda: member_count(db, "silent") == 0, "the silent member to go", timeout=3)
    quiet.drop()
    wait_for(lambda: member_count(db) == 0, "no members", timeout=TIMEOUT)


@pytest.mark.parametrize("window", ["handshake-just-before", "no-recent-handshake"])
def test_sigterm_closes_with_1001_and_loses_nothing(
    daphne_factory: typing.Callable[..., DaphneServer], db: Path, window: str
) -> None:
    server = daphne_factory(server_env(db, SECURITY_SETTINGS), app=SECURITY_APP)
    room = "shutdown"
    alice = join(server, room, "alice")
    bob = join(server, room, "bob")
    seeds = open_raw(server, "/seeds/room/shutdown-seeds")  # a function handler in a room
    seeds.send_text(json.dumps({"user": "s", "message": "before"}))
    while "before" not in seeds.read_message(TIMEOUT).text:
        pass
    assert member_count(db) == 3
    if window == "no-recent-handshake":
        # daphne reaps upgrade requests once a second; wait until it has (see tests/sites/security/asgi.py).
        reaped = lambda: server_stats(server, collect=True)["connections_without_application"] == 0  # noqa: E731
        wait_for(reaped, "daphne to reap the upgrade requests", timeout=TIMEOUT)
    # A burst of chat messages, then SIGTERM while they are being handled and saved.
    sent = [f"m{i}" for i in range(30)]
    alice.send_raw(
        b"".join(encode_frame(TEXT, json.dumps({"type": "message", "content": t}).encode()) for t in sent)
    )
    while '"m0"' not in bob.read_message(TIMEOUT).text:
        pass
    started = time.monotonic()
    assert server.proc is not None
    server.proc.send_signal(signal.SIGTERM)
    clients = {"alice": alice, "bob": bob, "seeds": seeds}
    endings = {name: ws.read_until_closed(TIMEOUT) for name, ws in clients.items()}
    server.proc.wait(timeout=TIMEOUT)
    took = time.monotonic() - started
    codes = {name: ending.close_code for name, ending in endings.items()}
    saved = [json.loads(text or "{}") for _, text in history(db, room)]
    saved_chats = [p["message"] for p in saved if p.get("type") == "chat"]
    notices = [p["message"] for p in saved if p.get("type") == "system"]
    print(
        f"\nSIGTERM ({window}): daphne exited in {took:.1f} s with {server.proc.returncode}; close codes "
        f"{codes}; {len(saved_chats)}/{len(sent)} chat messages saved; notices {notices}; "
        f"members left {member_count(db)}"
    )
    assert server.proc.returncode == 0
    assert codes == {"alice": 1001, "bob": 1001, "seeds": 1001}
    assert "alice left" in notices and "bob left" in notices
    assert saved_chats == sent[: len(saved_chats)], "saved messages are a prefix of those sent"
    # A broadcast is sent only after its message is saved: whatever bob saw is in history.
    seen_by_bob = {json.loads(f.text).get("message") for f in endings["bob"].frames if f.opcode == TEXT}
    assert {m for m in seen_by_bob if m in sent} <= set(saved_chats)
    assert member_count(db) == 0
    assert query(db, "SELECT COUNT(*) FROM nexios_compat_process")[0][0] == 0
    assert took < 5
