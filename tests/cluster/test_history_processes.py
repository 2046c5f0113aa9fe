"""History across OS processes: concurrent writers, retention and resume, on SQLite and PostgreSQL.

Each test migrates its own database (a SQLite file, or a fresh PostgreSQL
database from ``postgres_url``) and works on it only through other
processes: ``tests.support.history_worker`` scripts, ``manage.py`` and daphne.
PostgreSQL tests skip when it is not installed and fail when ``$CI`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import typing
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin

from devservers import REPO_ROOT, run_manage
from nexios_compat.encoding import dumps
from tests.support.fixtures import DaphneFactory

TIMEOUT = 10.0


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database that only subprocesses use."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'history.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_url")
    run_manage("migrate", "--noinput", env={"DATABASE_URL": url})
    return url


def worker(database_url: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.history_worker", *args],
        cwd=REPO_ROOT,
        env={**os.environ, "DATABASE_URL": database_url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str], timeout: float = 120) -> list[dict[str, typing.Any]]:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, f"worker failed:\n{err}"
    return [json.loads(line) for line in out.splitlines()]


def dump(database_url: str) -> dict[str, list[tuple[int, typing.Any]]]:
    (history,) = finish(worker(database_url, "dump"))
    return {room: [(seq, payload) for seq, payload in rows] for room, rows in history.items()}


def test_concurrent_writer_processes_number_each_room_without_gaps_or_duplicates(
    database_url: str, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    senders, count, rooms = 4, 300, "one,two"
    args = ["append", "--rooms", rooms, "--count", str(count), "--go", str(go)]
    workers = [worker(database_url, *args, "--sender", str(n)) for n in range(senders)]
    for w in workers:  # each has imported Django and connected: start them together
        assert w.stdout is not None and "ready" in json.loads(w.stdout.readline())
    go.touch()
    outputs = [finish(w) for w in workers]

    starts = [lines[0]["start"] for lines in outputs]
    ends = [lines[-1]["end"] for lines in outputs]
    assert max(starts) < min(ends), "the writers did not overlap"
    history = dump(database_url)
    assert set(history) == {"one", "two"}
    for room, rows in history.items():
        seqs = [seq for seq, _ in rows]
        # In the database: every number from 1, once.
        assert seqs == list(range(1, len(seqs) + 1)), room
        by_seq = dict(rows)
        for sender, lines in enumerate(outputs):
            mine = [line for line in lines if line.get("room") == room]
            # What each writer was told matches what was stored...
            assert all(by_seq[line["seq"]] == {"sender": sender, "i": line["i"]} for line in mine)
            # ...and each writer's messages keep its order.
            assert [line["seq"] for line in mine] == sorted(line["seq"] for line in mine)
    assert sum(len(rows) for rows in history.values()) == senders * count


def test_prune_history_command_applies_the_byte_bound(database_url: str, tmp_path: Path) -> None:
    go = tmp_path / "go"
    go.touch()
    finish(worker(database_url, "append", "--sender", "0", "--rooms", "r", "--count", "30", "--go", str(go)))
    sizes = [len(dumps(payload).encode()) for _, payload in dump(database_url)["r"]]
    bound = sum(sizes[-7:]) + 1  # room for the newest 7 messages, not 8
    result = run_manage(
        "prune_history",
        env={"DATABASE_URL": database_url, "CHANNEL_BOX_HISTORY_SIZE": str(bound), "DJANGO_DEVELOPMENT": "1"},
    )
    assert result.stdout.strip() == "Deleted 23 saved messages."
    assert [seq for seq, _ in dump(database_url)["r"]] == list(range(24, 31))


# Resume on real servers --------------------------------------------------------


@contextlib.asynccontextmanager
async def chat(url: str, origin: str) -> AsyncIterator[ClientConnection]:
    async with connect(url, origin=Origin(origin), open_timeout=TIMEOUT, max_queue=None) as ws:
        yield ws


async def drain(ws: ClientConnection) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for _ in ws:
            pass


def explain(seqs: list[int], first: int) -> str:
    """Show where a run of sequence numbers first leaves first, first + 1, ..."""
    for index, seq in enumerate(seqs):
        if seq != first + index:
            return f"at {index}: expected {first + index}, got {seqs[max(index - 5, 0) : index + 10]}"
    return "a shorter run"


def last_seq(database_url: str, room: str) -> int:
    import psycopg

    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT last_seq FROM nexios_compat_room WHERE name = %s", (room,)).fetchone()
    return int(row[0]) if row else 0


@pytest.mark.parametrize(("layer", "processes"), [("memory", 1), ("redis", 1), ("redis", 2)])
async def test_resume_on_daphne_and_postgres_while_others_keep_talking(
    request: pytest.FixtureRequest,
    postgres_url: str,
    daphne_factory: DaphneFactory,
    layer: str,
    processes: int,
) -> None:
    redis_url = request.getfixturevalue("redis_url") if layer == "redis" else ""
    env = {
        "DATABASE_URL": postgres_url,
        "REDIS_URL": redis_url,
        "DEBUG": "1",
        "ALLOWED_HOSTS": "127.0.0.1",
        # The talkers send far above the default 20 frames/s a client may send.
        "DJANGO_SETTINGS_MODULE": "tests.sites.multiprocess.settings",
        "MP_NEXIOS_COMPAT": '{"RATE_LIMIT_MESSAGES": null}',
    }
    run_manage("migrate", "--noinput", env=env)
    servers = [daphne_factory(env) for _ in range(processes)]
    room = "resume"

    def url(server: typing.Any, query: str = "") -> tuple[str, str]:
        return server.ws_url(f"/ws/chat/{room}/?{query}"), server.url

    stop = asyncio.Event()
    sent = 0

    async def talk(server: typing.Any, name: str) -> None:
        nonlocal sent
        async with chat(*url(server, f"username={name}")) as ws:
            reader = asyncio.create_task(drain(ws))
            while not stop.is_set():
                await ws.send(json.dumps({"type": "message", "content": f"{name} {sent}"}))
                sent += 1
                await asyncio.sleep(0.003)
            reader.cancel()

    talkers = [asyncio.create_task(talk(servers[n % processes], f"talker{n}")) for n in range(2 * processes)]
    try:
        while await asyncio.to_thread(last_seq, postgres_url, room) < 30:
            await asyncio.sleep(0.02)
        since = 10
        async with chat(*url(servers[-1], f"username=resumer&since={since}&envelope=1")) as resumer:
            seqs: list[int] = []
            while len(seqs) < 80:
                frame = json.loads(await asyncio.wait_for(resumer.recv(), TIMEOUT))
                if "seq" in frame:  # not a presence event
                    seqs.append(frame["seq"])
            stop.set()
            await asyncio.gather(*talkers)
            last, previous = await asyncio.to_thread(last_seq, postgres_url, room), -1
            while last != previous:  # the talkers' "left" notices are saved too
                await asyncio.sleep(0.5)
                last, previous = await asyncio.to_thread(last_seq, postgres_url, room), last
            while seqs[-1] < last:
                frame = json.loads(await asyncio.wait_for(resumer.recv(), TIMEOUT))
                if "seq" in frame:
                    seqs.append(frame["seq"])
            assert seqs == list(range(since + 1, last + 1)), explain(seqs, since + 1)
            assert sent > 80
    finally:
        stop.set()
        for task in talkers:
            task.cancel()
