"""In-memory fakes for the engine's unit tests: a layer that can fail, members, stores."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import typing
import uuid

from channels.layers import InMemoryChannelLayer
from django.db import OperationalError

from nexios_compat.encoding import FrameCache
from nexios_compat.stores.history import Appended, PendingMessage, SavedMessage
from nexios_compat.stores.membership import BaseMembershipStore, Heartbeat, MemberInfo
from nexios_compat.types import PayloadTypeEnum


class FlakyLayer(InMemoryChannelLayer):
    """The in-memory layer, with switches to fail sends or to forget every subscription."""

    def __init__(self) -> None:
        super().__init__()
        self.broken = False
        self.sent: list[tuple[str, dict[str, typing.Any]]] = []
        self.discarded: list[tuple[str, str]] = []

    async def group_send(self, group: str, message: dict[str, typing.Any]) -> None:
        if self.broken:
            raise ConnectionError("layer down")
        self.sent.append((group, message))
        await super().group_send(group, message)

    async def group_add(self, group: str, channel: str) -> None:
        if self.broken:
            raise ConnectionError("layer down")
        await super().group_add(group, channel)

    async def group_discard(self, group: str, channel: str) -> None:
        self.discarded.append((group, channel))
        await super().group_discard(group, channel)

    def forget_subscriptions(self) -> None:
        """Lose every group, as a restarted Redis does."""
        self.groups.clear()


class FakeMember:
    """A local member that records the frames written to it."""

    def __init__(self, payload_type: PayloadTypeEnum = PayloadTypeEnum.JSON) -> None:
        self.id = uuid.uuid4()
        self.metadata: dict[str, typing.Any] = {"name": self.id.hex[:6]}
        self.payload_type = payload_type
        self.envelope = 0  # bare frames (encoding.ENVELOPE_* values)
        self.groups: set[str] = set()
        self.frames: list[typing.MutableMapping[str, typing.Any]] = []
        self.closed: tuple[int, str] | None = None
        self.expired = False
        self.presence: tuple[str, dict[str, typing.Any]] | None = None
        self.failed_saves = 0

    async def send_frame(self, frame: typing.MutableMapping[str, typing.Any]) -> bool:
        self.frames.append(frame)
        return True

    def write_prepared(self, cache: FrameCache) -> bool:
        return False  # not a daphne socket: every frame is recorded by send_frame

    async def drain(self) -> None:
        return None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed = (code, reason)

    def is_expired(self) -> bool:
        return self.expired

    def texts(self) -> list[str]:
        return [frame["text"] for frame in self.frames]


class SlowHistory:
    """Stores in memory; each append waits for the test to open ``gate``."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.batches: list[list[str]] = []
        self.seq: dict[str, int] = {}
        self.fail = False
        self.calls = 0
        # Rooms whose row another transaction holds: set aside, not stored.
        self.busy: set[str] = set()
        self.attempts = 0

    async def append_available(self, messages: list[PendingMessage], lock_timeout: float) -> Appended:
        self.attempts += 1
        busy = frozenset(m.room for m in messages if m.room in self.busy)
        stored = [m for m in messages if m.room not in busy]
        return Appended(await self.append(stored) if stored else [], busy)

    async def append(self, messages: list[PendingMessage]) -> list[SavedMessage]:
        self.calls += 1
        await self.gate.wait()
        if self.fail:
            raise OSError("database down")
        self.batches.append([m.text or "" for m in messages])
        saved = []
        for message in messages:
            self.seq[message.room] = self.seq.get(message.room, 0) + 1
            saved.append(
                SavedMessage(self.seq[message.room], uuid.uuid4(), datetime.datetime.now(datetime.UTC))
            )
        return saved


class IdempotentHistory(SlowHistory):
    """``SlowHistory`` that stores a client id once per room and sender key, and can be ``down``.

    ``down`` raises what a stopped PostgreSQL raises; ``rows`` is every stored
    message in store order; a retry answers with its first copy's record.
    """

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.rows: list[PendingMessage] = []
        self._first: dict[tuple[str, str, str], SavedMessage] = {}

    async def append(self, messages: list[PendingMessage]) -> list[SavedMessage]:
        self.calls += 1
        await self.gate.wait()
        if self.down:
            raise OperationalError("connection refused")
        saved = []
        for message in messages:
            key = message.idempotency_key
            if key is not None and key in self._first:
                saved.append(dataclasses.replace(self._first[key], duplicate=True))
                continue
            self.seq[message.room] = self.seq.get(message.room, 0) + 1
            record = SavedMessage(self.seq[message.room], uuid.uuid4(), datetime.datetime.now(datetime.UTC))
            if key is not None:
                self._first[key] = record
            self.rows.append(message)
            saved.append(record)
        return saved


class MemoryMembershipStore(BaseMembershipStore):
    """``BaseMembershipStore`` (described there) over dictionaries; ``now`` is set by the test."""

    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self.now = 1000.0
        self.processes: dict[str, tuple[str, float]] = {}
        self.rows: dict[
            tuple[str, uuid.UUID], tuple[str, dict[str, typing.Any], dict[str, typing.Any] | None]
        ] = {}

    def register_process(self, process_id: str, layer_channel: str, pid: int) -> None:
        self.processes[process_id] = (layer_channel, self.now)

    def unregister_process(self, process_id: str) -> None:
        self.processes.pop(process_id, None)
        self.rows = {key: row for key, row in self.rows.items() if row[0] != process_id}

    def retire_process(self, process_id: str) -> None:
        if process_id in self.processes:
            self.processes[process_id] = (self.processes[process_id][0], 0.0)

    def heartbeat(self, process_id: str) -> Heartbeat:
        registered = process_id in self.processes
        if registered:
            self.processes[process_id] = (self.processes[process_id][0], self.now)
        removed = []
        removed_ids = []
        for pid, (channel, beat) in list(self.processes.items()):
            if pid != process_id and self.now - beat > self.timeout:
                rooms = sorted({room for (room, _), row in self.rows.items() if row[0] == pid})
                removed.append((channel, rooms))
                removed_ids.append(pid)
                self.unregister_process(pid)
        return Heartbeat(registered, removed, removed_ids, frozenset(self.processes))

    def add(
        self,
        room: str,
        channel_id: uuid.UUID,
        process_id: str,
        metadata: dict[str, typing.Any],
        presence: dict[str, typing.Any] | None = None,
    ) -> None:
        self.rows[(room, channel_id)] = (process_id, dict(metadata), presence)

    def remove(self, room: str, channel_id: uuid.UUID) -> None:
        self.rows.pop((room, channel_id), None)

    def members(self, room: str | None = None) -> list[MemberInfo]:
        when = datetime.datetime.now(tz=datetime.UTC)
        return [
            MemberInfo(cid, r, pid, self.processes.get(pid, ("", 0.0))[0], meta, when, presence)
            for (r, cid), (pid, meta, presence) in self.rows.items()
            if room is None or r == room
        ]

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for room, _ in self.rows:
            counts[room] = counts.get(room, 0) + 1
        return counts

    def locate(self, channel_id: uuid.UUID) -> str | None:
        for (_, cid), (pid, _, _) in self.rows.items():
            if cid == channel_id:
                return self.processes.get(pid, ("", 0.0))[0]
        return None

    def clear(self) -> None:
        self.rows.clear()


async def until(predicate: typing.Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Wait for ``predicate`` (letting the loop run), or fail saying what never happened."""

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)
