"""Clients, database reads and worker runs shared by the multi-process and PostgreSQL tests."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import typing
from collections.abc import Callable

import psycopg
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from devservers import REPO_ROOT, DaphneServer, run_manage
from tests.support.helpers import TIMEOUT
from tests.support.site import open_ws


def cluster_env(
    redis_url: str, postgres_url: str, nexios_compat: dict[str, typing.Any] | None = None
) -> dict[str, str]:
    """The environment of a daphne in the cluster: PostgreSQL, Redis, the multiprocess site."""
    return {
        "DATABASE_URL": postgres_url,
        "REDIS_URL": redis_url,
        "DJANGO_SETTINGS_MODULE": "tests.sites.multiprocess.settings",
        "MP_NEXIOS_COMPAT": json.dumps(nexios_compat or {}),
        "DEBUG": "1",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
    }


def migrate(env: dict[str, str]) -> None:
    run_manage("migrate", "--noinput", env=env)


def run_worker(module: str, postgres_url: str, timeout: float = 180) -> dict[str, typing.Any]:
    """Run ``python -m module`` on a migrated PostgreSQL database; return the JSON of its last line."""
    env = {**os.environ, "DATABASE_URL": postgres_url, "REDIS_URL": "", "DEBUG": "0"}
    run_manage("migrate", "--noinput", env=env)
    done = subprocess.run(
        [sys.executable, "-m", module],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out: dict[str, typing.Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def start_cluster(
    daphne_factory: Callable[..., DaphneServer], env: dict[str, str], count: int
) -> list[DaphneServer]:
    return [daphne_factory(env=env, app="tests.sites.multiprocess.asgi:application") for _ in range(count)]


class Member:
    """A client socket whose JSON frames are collected in the background."""

    def __init__(self, ws: ClientConnection, name: str = "") -> None:
        self.ws = ws
        self.name = name
        self.frames: list[typing.Any] = []
        self.closed = False
        self._changed = asyncio.Event()
        self._pump = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, server: DaphneServer, path: str, name: str = "", **kwargs: typing.Any) -> Member:
        return cls(await open_ws(server, path, **kwargs), name)

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                self.frames.append(json.loads(frame))
                self._changed.set()
        except ConnectionClosed:
            pass
        finally:
            self.closed = True
            self._changed.set()

    async def wait(
        self, predicate: Callable[[list[typing.Any]], bool], what: str, timeout: float = TIMEOUT
    ) -> None:
        """Wait until the frames received so far satisfy ``predicate``."""
        deadline = time.monotonic() + timeout
        while not predicate(self.frames):
            self._changed.clear()
            if predicate(self.frames):
                return
            if self.closed:
                raise AssertionError(f"{self.name}: closed ({self.ws.close_code}) while waiting for {what}")
            remaining = deadline - time.monotonic()
            try:
                await asyncio.wait_for(self._changed.wait(), max(remaining, 0.001))
            except TimeoutError:
                raise AssertionError(
                    f"{self.name}: no {what} within {timeout}s; last frames: {self.frames[-5:]}"
                ) from None

    async def wait_closed(self, timeout: float = TIMEOUT) -> int | None:
        await asyncio.wait_for(asyncio.shield(self._pump), timeout)
        return self.ws.close_code

    async def send(self, data: typing.Any) -> None:
        await self.ws.send(json.dumps(data))

    async def close(self) -> None:
        await self.ws.close()
        await self._pump

    def seqs(self) -> list[int]:
        """Sequence numbers of the enveloped frames received (chat room with ``?envelope=1``)."""
        return [frame["seq"] for frame in self.frames if isinstance(frame, dict) and "seq" in frame]


def chats(frames: list[typing.Any]) -> list[tuple[int, str]]:
    """(seq, text) of the chat messages among enveloped chat-room frames."""
    return [
        (frame["seq"], frame["payload"]["message"])
        for frame in frames
        if isinstance(frame, dict) and frame.get("payload", {}).get("type") == "chat"
    ]


def chat_texts(frames: list[typing.Any]) -> list[str]:
    return [text for _, text in chats(frames)]


class Control:
    """The ``/mp/control`` socket of one daphne: ask its process about the cluster."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def open(cls, server: DaphneServer) -> Control:
        return cls(await open_ws(server, "/mp/control"))

    async def __call__(self, op: str, **kwargs: typing.Any) -> typing.Any:
        await self.ws.send(json.dumps({"op": op, **kwargs}))
        return json.loads(await asyncio.wait_for(self.ws.recv(), TIMEOUT))["ok"]


class Database:
    """Read the cluster's PostgreSQL database directly (the test's own Django DB is another one)."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)

    def close(self) -> None:
        self.conn.close()

    def history(self, room: str) -> list[tuple[int, typing.Any]]:
        rows = self.conn.execute(
            "SELECT m.seq, m.text FROM nexios_compat_message m JOIN nexios_compat_room r ON r.id = m.room_id "
            "WHERE r.name = %s ORDER BY m.seq",
            (room,),
        ).fetchall()
        return [(seq, json.loads(text)) for seq, text in rows]

    def members(self, room: str) -> list[tuple[str, str]]:
        """(channel id, process id) of a room's members."""
        rows = self.conn.execute(
            "SELECT m.channel_id::text, m.process_id FROM nexios_compat_member m "
            "JOIN nexios_compat_room r ON r.id = m.room_id WHERE r.name = %s",
            (room,),
        ).fetchall()
        return [(channel, process) for channel, process in rows]

    def processes(self) -> list[str]:
        return [row[0] for row in self.conn.execute("SELECT id FROM nexios_compat_process").fetchall()]

    def beats(self) -> dict[str, tuple[typing.Any, typing.Any]]:
        """(started, last_heartbeat) of every registered process, by id."""
        rows = self.conn.execute("SELECT id, started, last_heartbeat FROM nexios_compat_process").fetchall()
        return {process: (started, beat) for process, started, beat in rows}


class PresenceView:
    """A client's view of a room's presence, built from the presence frames it received.

    Applies ``presence_state`` and ``presence_diff`` as a client should; records
    what no correct server may send: a join of a meta the view already has, or a
    leave of one it does not.
    """

    def __init__(self) -> None:
        self.metas: dict[str, tuple[str, dict[str, typing.Any]]] = {}  # channel id -> (key, meta)
        self.errors: list[str] = []
        self.counts: list[int] = []
        self.diffs = 0

    def apply(self, frames: list[typing.Any]) -> PresenceView:
        for frame in frames:
            kind = frame.get("type") if isinstance(frame, dict) else None
            if kind == "presence_state":
                self.metas = {m["channel_id"]: (k, m) for k, v in frame["state"].items() for m in v["metas"]}
            elif kind == "presence_diff":
                self.diffs += 1
                for key, value in frame["leaves"].items():
                    for meta in value["metas"]:
                        if self.metas.pop(meta["channel_id"], None) is None:
                            self.errors.append(f"leave of unknown {key}/{meta['channel_id']}")
                for key, value in frame["joins"].items():
                    for meta in value["metas"]:
                        if meta["channel_id"] in self.metas:
                            self.errors.append(f"duplicate join of {key}/{meta['channel_id']}")
                        self.metas[meta["channel_id"]] = (key, meta)
            elif kind == "presence_count":
                self.counts.append(frame["count"])
        return self

    def keys(self) -> dict[str, int]:
        """Each key with its number of metas (tabs)."""
        result: dict[str, int] = {}
        for key, _ in self.metas.values():
            result[key] = result.get(key, 0) + 1
        return result


def presence_keys(state: dict[str, typing.Any]) -> dict[str, int]:
    """Each key of a ``ChannelBox.presence`` result with its number of metas."""
    return {key: len(value["metas"]) for key, value in state.items()}
