"""Async access to the history and presence stores: how the engine and the API reach the database.

Stores are synchronous and pluggable (``HISTORY_STORE``, ``MEMBERSHIP_STORE``);
these services run them on Django's database thread, or on a thread of their own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import functools
import typing
import uuid
from collections.abc import Callable

from django.db import connection, transaction
from django.utils import timezone

from ..conf import get_config
from ..types import ChannelMessageDC
from .db import call_db, call_db_limited, run_db
from .history import Appended, BaseHistoryStore, PendingMessage, Position, SavedMessage, get_history_store
from .membership import BaseMembershipStore, Heartbeat, MemberInfo, MembershipRow, get_membership_store

if typing.TYPE_CHECKING:
    from .retention import Pass  # imports the models: not before apps are ready

Deliver = typing.Callable[[PendingMessage, SavedMessage | None], None]


class HistoryService:
    """Async access to the configured history store, run on Django's database thread.

    With ``executor``, ``append`` runs there instead (the hub's writer on
    PostgreSQL: its own connection, with ``statement_timeout``), so that a
    stalled save does not hold handshakes, presence and reads queued on the shared thread.
    """

    def __init__(
        self,
        store: BaseHistoryStore | None = None,
        executor: concurrent.futures.ThreadPoolExecutor | None = None,
        statement_timeout: float | None = None,
    ) -> None:
        self.store = store if store is not None else get_history_store()
        self.executor = executor
        self.statement_timeout = statement_timeout
        # Retention: when this service's last pass and last full pass started, and what the last did.
        self._pruned_at: datetime.datetime | None = None
        self._full_at = timezone.now()
        self.last_pass: Pass | None = None

    @classmethod
    def for_writer(cls, statement_timeout: float | None) -> HistoryService:
        """The writer's service: on PostgreSQL, its own thread, connection and statement timeout.

        Handshakes (session auth), presence and reads then never queue behind a
        stalled save on Django's shared database thread. SQLite serializes writers
        in the file anyway, so there the writer keeps the shared thread.
        """
        if connection.vendor == "sqlite":
            return cls()
        executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="nexios-history-writer")
        return cls(executor=executor, statement_timeout=statement_timeout)

    async def append(self, messages: list[PendingMessage]) -> list[SavedMessage]:
        """Store messages in order; return the sequence numbers assigned."""
        if self.executor is None:
            return await run_db(self.store.append, messages)
        call = functools.partial(call_db_limited, self.statement_timeout, self.store.append, messages)
        return await asyncio.get_running_loop().run_in_executor(self.executor, call)

    async def append_available(self, messages: list[PendingMessage], lock_timeout: float) -> Appended:
        """Store what can be numbered now; rooms whose row another transaction holds are set aside."""
        store = self.store.append_available
        if self.executor is None:
            return await run_db(store, messages, lock_timeout)
        call = functools.partial(call_db_limited, self.statement_timeout, store, messages, lock_timeout)
        return await asyncio.get_running_loop().run_in_executor(self.executor, call)

    async def close(self) -> None:
        """Close the connection of ``executor``'s thread and stop it (no-op without one)."""
        if self.executor is None:
            return
        from django.db import connections

        await asyncio.get_running_loop().run_in_executor(self.executor, connections.close_all)
        self.executor.shutdown(wait=False)

    async def append_for_caller(
        self, message: PendingMessage, save: bool, deliver: Deliver
    ) -> tuple[SavedMessage | None, bool]:
        """From sync code waiting on this call: store in *its* transaction, deliver at its commit.

        Runs on the caller's own thread (asgiref sends thread-sensitive work
        there), so the row joins whatever ``transaction.atomic()`` the caller has
        open; ``deliver`` is registered with ``transaction.on_commit`` and a
        rollback (or a rolled-back savepoint) sends nothing. Return what was
        saved and whether delivery was deferred (outside a transaction it is
        the caller's to do now).
        """
        return await run_db(self._append_for_caller, message, save, deliver)

    def _append_for_caller(
        self, message: PendingMessage, save: bool, deliver: Deliver
    ) -> tuple[SavedMessage | None, bool]:
        saved = self.store.append([message])[0] if save else None
        if connection.in_atomic_block:
            transaction.on_commit(lambda: deliver(message, saved))
            return saved, True
        return saved, False

    async def fetch(
        self, room: str, since: int | None = None, limit: int | None = None
    ) -> list[ChannelMessageDC]:
        """Run ``BaseHistoryStore.fetch`` (described there)."""
        return await run_db(self.store.fetch, room, since, limit)

    async def read(
        self, room: str, since: int, limit: int | None = None, max_bytes: int | None = None
    ) -> Position:
        """Run ``BaseHistoryStore.read`` (described there)."""
        return await run_db(self.store.read, room, since, limit, max_bytes)

    async def page(self, room: str, before: int | None, limit: int) -> list[ChannelMessageDC]:
        """Run ``BaseHistoryStore.page`` (described there)."""
        return await run_db(self.store.page, room, before, limit)

    async def fetch_all(self) -> dict[str, list[ChannelMessageDC]]:
        """Run ``BaseHistoryStore.fetch_all`` (described there)."""
        return await run_db(self.store.fetch_all)

    async def last_seq(self, room: str) -> int:
        """Run ``BaseHistoryStore.last_seq`` (described there)."""
        return await run_db(self.store.last_seq, room)

    async def head(self, room: str) -> tuple[int, str]:
        """Run ``BaseHistoryStore.head`` (described there)."""
        return await run_db(self.store.head, room)

    async def flush(self, room: str | None = None) -> int:
        """Run ``BaseHistoryStore.flush`` (described there)."""
        return await run_db(self.store.flush, room)

    async def prune(self) -> int:
        """Run a retention pass: the rooms saved to since this service's last pass, at times all rooms.

        The database store's pass runs on a thread and connection of its own on
        PostgreSQL (a long delete must not hold the shared thread), under an
        advisory lock that lets one process prune at a time. Other stores run
        ``BaseHistoryStore.prune`` (described there).
        """
        from .history import DatabaseHistoryStore
        from .retention import prune_pass

        if not isinstance(self.store, DatabaseHistoryStore):
            return await run_db(self.store.prune)
        now = timezone.now()
        full_every = get_config()["HISTORY_PRUNE_FULL_INTERVAL"]
        full = self._pruned_at is None or (
            full_every is not None and (now - self._full_at).total_seconds() >= float(full_every)
        )
        since = None if full else typing.cast(datetime.datetime, self._pruned_at) - CLOCK_SLACK
        if connection.vendor == "postgresql":
            done = await asyncio.get_running_loop().run_in_executor(
                _retention_thread(), _prune_and_close, since
            )
        else:
            # SQLite has one writer at a time anyway: a second connection would only wait for the file.
            done = await run_db(prune_pass, since)
        self.last_pass = done
        if not done.skipped:
            self._pruned_at = now
            if full:
                self._full_at = now
        return done.deleted


# Rooms saved this long before our last pass are examined again: other processes (other
# hosts) stamp last_activity with their own clocks, which may run a little behind ours.
CLOCK_SLACK = datetime.timedelta(seconds=5)

# The retention pass's own thread (one per process, its connection closed after each pass).
_retention: concurrent.futures.ThreadPoolExecutor | None = None


def _retention_thread() -> concurrent.futures.ThreadPoolExecutor:
    global _retention
    if _retention is None:
        _retention = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="nexios-retention")
    return _retention


def _prune_and_close(since: datetime.datetime | None) -> Pass:
    """Run a pass on this thread's own connection, then close it (a pass a minute needs no idle one)."""
    from django.db import connections

    from .retention import prune_pass

    try:
        return call_db(prune_pass, since)
    finally:
        connections.close_all()


T = typing.TypeVar("T")


class MembershipService:
    """Async access to the configured membership store (``BaseMembershipStore``, described there).

    Calls run on Django's database thread, or on ``executor`` when one is given
    (heartbeats use their own thread so that a backlog of other database work
    cannot make peers think this process is dead).
    """

    def __init__(
        self,
        store: BaseMembershipStore | None = None,
        executor: concurrent.futures.ThreadPoolExecutor | None = None,
    ) -> None:
        self.store = store if store is not None else get_membership_store()
        self.executor = executor

    async def _run(self, fn: Callable[..., T], *args: typing.Any) -> T:
        if self.executor is None:
            return await run_db(fn, *args)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(call_db, fn, *args))

    async def register_process(self, process_id: str, layer_channel: str, pid: int) -> None:
        """Run ``BaseMembershipStore.register_process`` (described there)."""
        await self._run(self.store.register_process, process_id, layer_channel, pid)

    async def unregister_process(self, process_id: str) -> None:
        """Run ``BaseMembershipStore.unregister_process`` (described there)."""
        await self._run(self.store.unregister_process, process_id)

    async def heartbeat(self, process_id: str) -> Heartbeat:
        """Run ``BaseMembershipStore.heartbeat`` (described there)."""
        return await self._run(self.store.heartbeat, process_id)

    async def add(
        self,
        room: str,
        channel_id: uuid.UUID,
        process_id: str,
        metadata: dict[str, typing.Any],
        presence: dict[str, typing.Any] | None = None,
    ) -> None:
        """Run ``BaseMembershipStore.add`` (described there)."""
        await self._run(self.store.add, room, channel_id, process_id, metadata, presence)

    async def add_many(self, process_id: str, members: list[MembershipRow]) -> None:
        """Run ``BaseMembershipStore.add_many`` (described there)."""
        await self._run(self.store.add_many, process_id, members)

    async def remove(self, room: str, channel_id: uuid.UUID) -> None:
        """Run ``BaseMembershipStore.remove`` (described there)."""
        await self._run(self.store.remove, room, channel_id)

    async def reconcile(self, process_id: str, members: list[MembershipRow]) -> tuple[int, int]:
        """Run ``BaseMembershipStore.reconcile`` (described there)."""
        return await self._run(self.store.reconcile, process_id, members)

    async def members(self, room: str | None = None) -> list[MemberInfo]:
        """Run ``BaseMembershipStore.members`` (described there)."""
        return await self._run(self.store.members, room)

    async def count(self, room: str) -> int:
        """Run ``BaseMembershipStore.count`` (described there)."""
        return await self._run(self.store.count, room)

    async def locate(self, channel_id: uuid.UUID) -> str | None:
        """Run ``BaseMembershipStore.locate`` (described there)."""
        return await self._run(self.store.locate, channel_id)

    async def clear(self) -> None:
        """Run ``BaseMembershipStore.clear`` (described there)."""
        await self._run(self.store.clear)

    async def close_connections(self) -> None:
        """Close the database connections of the thread this service runs on."""
        from django.db import connections

        await self._run(connections.close_all)


def __getattr__(name: str) -> typing.Any:
    """Return ``PresenceService``, the previous release's name, with a ``DeprecationWarning``."""
    if name == "PresenceService":
        import warnings

        warnings.warn(
            "PresenceService is deprecated; use MembershipService.", DeprecationWarning, stacklevel=2
        )
        return MembershipService
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
