"""Storing one of the writer's batches: what became of each entry.

A batch is stored in one transaction, retried while the database is down or
stalled until its oldest entry's ``HISTORY_WRITE_TIMEOUT``. A batch the store
refuses for its content (a non-transient error: bad data, a constraint) is
stored again room by room, then the refusing room message by message, so only
the messages at fault fail. Rooms whose row another transaction holds are set
aside (``locked_rooms``) while the batch's other rooms commit.
"""

from __future__ import annotations

import asyncio
import logging

from django.db import InterfaceError, OperationalError

from .. import metrics
from ..exceptions import HistoryUnavailable
from ..stores.history import Appended, SavedMessage
from ..stores.services import HistoryService
from .locked_rooms import Entry, HeldRooms

logger = logging.getLogger("nexios_compat.stores.history")

# What a lost connection, a stopped server or a statement timeout raise: worth retrying.
TRANSIENT = (OperationalError, InterfaceError)
# What fails a whole batch (the database, not a message): not worth storing piece by piece.
RETRIED = (HistoryUnavailable, *TRANSIENT)
# Longest pause between attempts to store a batch again.
MAX_RETRY_DELAY = 1.0

# An entry with what became of it: its record, or the error that kept it from being stored.
Outcome = tuple[Entry, SavedMessage | None, Exception | None]


class BatchStore:
    """Turns a batch of entries into outcomes: stored with their records, failed, or set aside."""

    def __init__(
        self, history: HistoryService, held: HeldRooms, write_timeout: float | None, lock_timeout: float
    ) -> None:
        self.history = history
        self.held = held
        self.write_timeout = write_timeout
        self.lock_timeout = lock_timeout
        # Diagnostics: transactions, messages stored, attempts that failed.
        self.transactions = 0
        self.stored = 0
        self.failed = 0
        # True from a failed attempt to store until the next success.
        self.failing = False
        # Messages that failed with HistoryUnavailable; times a room was set aside (its row busy).
        self.unavailable = 0
        self.set_aside = 0
        # Messages the store refused (found by storing their batch again, piece by piece).
        self.refused = 0

    async def save(self, batch: list[Entry]) -> list[Outcome]:
        """Store a batch; return each entry with its record or the error that kept it from being stored."""
        to_save = [entry for entry in batch if entry.save]
        if not to_save:
            return [(entry, None, None) for entry in batch]
        try:
            appended = await self._store(to_save)
        except Exception as exc:
            if isinstance(exc, RETRIED) or len(to_save) == 1:
                self.refused += not isinstance(exc, RETRIED)
                return [(entry, None, exc if entry.save else None) for entry in batch]
            # Something in the batch the store refuses (bad data, a constraint): find
            # it, so that one sender's message does not fail every room's.
            return await self._isolate(batch)
        return self._sort_out(batch, appended)

    async def _isolate(self, batch: list[Entry]) -> list[Outcome]:
        """Store a refused batch again room by room, then a refusing room message by message.

        Only the entries the store refuses fail; each room keeps its order (the
        numbers are handed out as the entries commit, one after another).
        """
        rooms: dict[str, list[Entry]] = {}
        for entry in batch:
            rooms.setdefault(entry.message.room, []).append(entry)
        if len(rooms) == 1:
            return await self._one_by_one(batch)
        outcomes: list[Outcome] = []
        for entries in rooms.values():
            to_save = [entry for entry in entries if entry.save]
            if len(to_save) == 1:
                outcomes.extend(await self._one_by_one(entries))  # one transaction either way
                continue
            try:
                appended = await self._store(to_save) if to_save else Appended([], frozenset())
            except Exception as exc:
                if isinstance(exc, RETRIED):
                    outcomes.extend((entry, None, exc if entry.save else None) for entry in entries)
                else:
                    outcomes.extend(await self._one_by_one(entries))
                continue
            outcomes.extend(self._sort_out(entries, appended))
        return outcomes

    async def _one_by_one(self, entries: list[Entry]) -> list[Outcome]:
        """Store one room's entries each in its own transaction (the room refused them together)."""
        outcomes: list[Outcome] = []
        # Sockets whose send with an id failed: their later ones must not be stored ahead of its resend.
        unavailable: dict[tuple[object, str], Exception] = {}
        for entry in entries:
            if entry.message.room in self.held:
                self.held.follow(entry)  # set aside below: behind, in order
                continue
            if not entry.save:
                outcomes.append((entry, None, None))
                continue
            key = (entry.message.sender, entry.message.room) if entry.message.client_id else None
            if key in unavailable:
                outcomes.append((entry, None, unavailable[key]))
                continue
            try:
                appended = await self._store([entry])
            except Exception as exc:
                self.refused += not isinstance(exc, RETRIED)
                if key is not None and isinstance(exc, HistoryUnavailable):
                    unavailable[key] = exc
                outcomes.append((entry, None, exc))
                continue
            outcomes.extend(self._sort_out([entry], appended))
        return outcomes

    def _sort_out(self, batch: list[Entry], appended: Appended) -> list[Outcome]:
        """Pair stored entries with their records; set the busy rooms' entries aside (or fail them)."""
        records = iter(appended.saved)
        ready: list[Outcome] = []
        busy: dict[str, list[Entry]] = {}
        for entry in batch:
            if entry.message.room in appended.busy:
                busy.setdefault(entry.message.room, []).append(entry)
            else:
                ready.append((entry, next(records) if entry.save else None, None))
                self.held.settled(entry.message.room)
        now = asyncio.get_running_loop().time()
        for room, entries in busy.items():
            self.set_aside += 1
            metrics.SET_ASIDE.inc()
            settle = self.held.set_aside(room, entries, now)
            lost = sum(entry.save for entry in settle)
            error = HistoryUnavailable("History could not be saved in time; nothing was sent")
            if lost:
                self.unavailable += lost
                metrics.HISTORY_UNAVAILABLE.inc(lost)
                logger.error("History unavailable: %r's row stayed busy; %d message(s) not sent", room, lost)
            ready.extend((entry, None, error if entry.save else None) for entry in settle)
        return ready

    async def _store(self, entries: list[Entry]) -> Appended:
        """Store a batch, retrying transient failures until its oldest entry's deadline."""
        loop = asyncio.get_running_loop()
        deadline = None if self.write_timeout is None else entries[0].accepted + self.write_timeout
        delay = 0.05
        while True:
            try:
                appended = await self.history.append_available(
                    [entry.message for entry in entries], self.lock_timeout
                )
            except Exception as exc:
                self.failed += 1
                metrics.DB_FAILURES.labels("history_write").inc()
                if not isinstance(exc, TRANSIENT):
                    logger.exception(
                        "History refused %d message(s); the ones at fault are not sent", len(entries)
                    )
                    raise
                if not self.failing:
                    logger.warning("Saving %d message(s) to history failed", len(entries), exc_info=True)
                self.failing = True
                if deadline is not None and loop.time() >= deadline:
                    self.unavailable += len(entries)
                    metrics.HISTORY_UNAVAILABLE.inc(len(entries))
                    logger.error("History unavailable: %d message(s) not saved nor sent", len(entries))
                    raise HistoryUnavailable("History could not be saved in time; nothing was sent") from exc
                pause = delay if deadline is None else min(delay, max(deadline - loop.time(), 0.0))
                await asyncio.sleep(pause)  # a retry's backoff, while the database is down
                delay = min(delay * 2, MAX_RETRY_DELAY)
                continue
            if self.failing:
                self.failing = False
                metrics.RECOVERIES.labels("history_writer").inc()
                logger.warning("Saving to history works again")
            self.transactions += 1
            self.stored += len(appended.saved)
            metrics.SAVED.inc(len(appended.saved))
            metrics.BATCH_SIZE.observe(len(appended.saved))
            return appended
