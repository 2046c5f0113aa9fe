"""Room history: pluggable stores, and the batched writer that saves before sending."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import typing
import uuid
from collections.abc import Awaitable, Callable

from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from .conf import get_config, history_size_bytes
from .db import run_db
from .encoding import KIND_BYTES, unpack
from .websockets.utils import ChannelMessageDC

logger = logging.getLogger("nexios_compat.history")


@dataclasses.dataclass
class PendingMessage:
    """A message on its way to history: packed payload plus who sent it."""

    room: str
    kind: str
    text: str | None
    data: bytes | None
    sender: uuid.UUID | None = None


@dataclasses.dataclass(frozen=True)
class SavedMessage:
    """What the store assigned to a pending message."""

    seq: int
    uuid: uuid.UUID
    created: datetime.datetime


class BaseHistoryStore:
    """Where saved messages live; methods are synchronous and run on the ORM thread."""

    def append(self, messages: list[PendingMessage]) -> list[SavedMessage]:
        """Store messages in order, numbering each room's messages; return what was assigned."""
        raise NotImplementedError

    def fetch(self, room: str, since: int | None = None, limit: int | None = None) -> list[ChannelMessageDC]:
        """Return a room's messages with ``seq > since``, oldest first (the newest ``limit``)."""
        raise NotImplementedError

    def fetch_all(self) -> dict[str, list[ChannelMessageDC]]:
        """Return every room's messages, oldest first."""
        raise NotImplementedError

    def flush(self, room: str | None = None) -> int:
        """Delete the messages of one room, or of every room; return how many."""
        raise NotImplementedError

    def prune(self) -> int:
        """Apply retention; return how many messages were deleted."""
        raise NotImplementedError


class DatabaseHistoryStore(BaseHistoryStore):
    """History in the ``Room`` and ``Message`` models."""

    def append(self, messages: list[PendingMessage]) -> list[SavedMessage]:
        """Store messages in one transaction; sequence numbers come from the locked room row."""
        from .models import Message, Room

        by_room: dict[str, list[int]] = {}
        for index, message in enumerate(messages):
            by_room.setdefault(message.room, []).append(index)
        now = timezone.now()
        saved: list[SavedMessage | None] = [None] * len(messages)
        for name in by_room:
            Room.objects.get_or_create(name=name)
        with transaction.atomic():
            # Lock rooms in one global order so that concurrent batches never deadlock.
            rooms = {
                room.name: room
                for room in Room.objects.select_for_update().filter(name__in=list(by_room)).order_by("pk")
            }
            rows = []
            for name, indexes in by_room.items():
                room = rooms[name]
                seq = room.last_seq
                for index in indexes:
                    seq += 1
                    message = messages[index]
                    row = Message(
                        room_id=room.pk,
                        seq=seq,
                        kind=message.kind,
                        text=message.text,
                        data=message.data,
                        size=len(message.data)
                        if message.kind == KIND_BYTES and message.data is not None
                        else len((message.text or "").encode("utf-8")),
                        sender=message.sender,
                        created=now,
                    )
                    rows.append(row)
                    saved[index] = SavedMessage(seq=seq, uuid=row.uuid, created=now)
                Room.objects.filter(pk=room.pk).update(last_seq=seq, last_activity=now)
            Message.objects.bulk_create(rows)
        return [item for item in saved if item is not None]

    @staticmethod
    def _to_dc(room: str, row: typing.Any) -> ChannelMessageDC:
        return ChannelMessageDC(
            payload=unpack(row.kind, row.text, row.data),
            uuid=row.uuid,
            created=row.created,
            seq=row.seq,
            room=room,
            sender=row.sender,
        )

    def fetch(self, room: str, since: int | None = None, limit: int | None = None) -> list[ChannelMessageDC]:
        """Return a room's messages after ``since``, oldest first."""
        from .models import Message

        rows = Message.objects.filter(room__name=room)
        if since is not None:
            rows = rows.filter(seq__gt=since)
        if limit is not None:
            newest = list(rows.order_by("-seq")[:limit])
            newest.reverse()
            return [self._to_dc(room, row) for row in newest]
        return [self._to_dc(room, row) for row in rows.order_by("seq")]

    def fetch_all(self) -> dict[str, list[ChannelMessageDC]]:
        """Return every room that has messages, with its messages oldest first."""
        from .models import Message

        result: dict[str, list[ChannelMessageDC]] = {}
        for row in Message.objects.select_related("room").order_by("room__name", "seq"):
            result.setdefault(row.room.name, []).append(self._to_dc(row.room.name, row))
        return result

    def flush(self, room: str | None = None) -> int:
        """Delete messages; sequence numbers keep counting so resume stays correct."""
        from .models import Message

        rows = Message.objects.all() if room is None else Message.objects.filter(room__name=room)
        return rows.delete()[0]

    def prune(self) -> int:
        """Trim every room to its retention limits, always keeping its newest message."""
        from .models import Message, Room

        config = get_config()
        byte_bound = history_size_bytes()
        deleted = 0
        for room in Room.objects.filter(messages__isnull=False).distinct():
            newest = Message.objects.filter(room=room).order_by("-seq").values_list("seq", flat=True).first()
            if newest is None:
                continue
            cutoff = 0  # delete seq <= cutoff
            max_messages = (
                room.max_messages if room.max_messages is not None else config["HISTORY_MAX_MESSAGES"]
            )
            if max_messages is not None:
                keep_from = (
                    Message.objects.filter(room=room)
                    .order_by("-seq")
                    .values_list("seq", flat=True)[max(int(max_messages), 1) - 1 : max(int(max_messages), 1)]
                )
                first_kept = next(iter(keep_from), None)
                if first_kept is not None:
                    cutoff = max(cutoff, first_kept - 1)
            max_age = room.max_age if room.max_age is not None else config["HISTORY_MAX_AGE"]
            if max_age is not None:
                limit = timezone.now() - datetime.timedelta(seconds=float(max_age))
                old = (
                    Message.objects.filter(room=room, created__lt=limit)
                    .order_by("-seq")
                    .values_list("seq", flat=True)
                    .first()
                )
                if old is not None:
                    cutoff = max(cutoff, old)
            if byte_bound is not None:
                total = 0
                for seq, size in (
                    Message.objects.filter(room=room).order_by("-seq").values_list("seq", "size")
                ):
                    total += size
                    if total > byte_bound and seq != newest:
                        cutoff = max(cutoff, seq)
                        break
            cutoff = min(cutoff, newest - 1)
            if cutoff > 0:
                deleted += Message.objects.filter(room=room, seq__lte=cutoff).delete()[0]
        return deleted


def get_history_store() -> BaseHistoryStore:
    """Return an instance of the configured ``HISTORY_STORE``."""
    store_class = import_string(get_config()["HISTORY_STORE"])
    return typing.cast(BaseHistoryStore, store_class())


Publish = Callable[[PendingMessage, SavedMessage | None], Awaitable[None]]


class HistoryWriter:
    """Batches saved messages per process: one transaction for all that arrive together.

    Each message is stored, then published, in the order it was submitted, and
    the sender's ``await`` returns once both are done: saved before sent.
    """

    def __init__(self, store: BaseHistoryStore, publish: Publish) -> None:
        self.store = store
        self.publish = publish
        self._queue: list[tuple[PendingMessage, asyncio.Future[SavedMessage]]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        """Start the background writer task."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="nexios_compat.history-writer")

    async def stop(self) -> None:
        """Write and publish everything queued, then stop the task."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def submit(self, message: PendingMessage) -> SavedMessage:
        """Queue a message; return once it is stored and published."""
        future: asyncio.Future[SavedMessage] = asyncio.get_running_loop().create_future()
        self._queue.append((message, future))
        self._wakeup.set()
        return await future

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                await self._flush_batch()
            if self._closing:
                return

    async def _flush_batch(self) -> None:
        size = int(get_config()["HISTORY_BATCH_SIZE"])
        batch, self._queue = self._queue[:size], self._queue[size:]
        try:
            saved = await run_db(self.store.append, [message for message, _ in batch])
        except Exception as exc:
            logger.exception("Saving %d message(s) to history failed", len(batch))
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (message, future), record in zip(batch, saved, strict=True):
            try:
                await self.publish(message, record)
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc)
                continue
            if not future.done():
                future.set_result(record)
