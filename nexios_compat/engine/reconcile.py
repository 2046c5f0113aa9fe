"""Membership rows that follow the live sockets, whatever the database does.

A join or leave whose row could not be written (the database is down) does
not fail: the socket's membership lives on in memory, and this part makes
the process's rows match its live members again at the next chance: at every
heartbeat while something is owed, and every ``interval`` seconds regardless.
"""

from __future__ import annotations

import logging
import time
import typing
import uuid
from collections.abc import Callable

from .. import metrics
from ..stores.membership import MembershipRow
from ..stores.services import MembershipService

logger = logging.getLogger("nexios_compat.engine")

Memberships = Callable[[], list[MembershipRow]]


class MembershipReconciler:
    """Writes this process's membership rows, and repairs them after failures."""

    def __init__(
        self, rows: MembershipService, process_id: str, memberships: Memberships, interval: float
    ) -> None:
        self.rows = rows
        self.process_id = process_id
        self.memberships = memberships
        self.interval = interval
        # Rows are owed (a write failed): reconcile at the next run, whatever the interval.
        self.dirty = False
        self._last = time.monotonic()
        # Rows fixed so far (diagnostics): stale ones deleted, missing ones added.
        self.removed = 0
        self.added = 0

    async def add(
        self,
        room: str,
        channel_id: uuid.UUID,
        metadata: dict[str, typing.Any],
        presence: dict[str, typing.Any] | None = None,
    ) -> None:
        """Record a membership; if the database fails, owe it to the next reconciliation."""
        try:
            await self.rows.add(room, channel_id, self.process_id, metadata, presence)
        except Exception:
            self._failed("add")

    async def remove(self, room: str, channel_id: uuid.UUID) -> None:
        """Forget a membership; if the database fails, owe it to the next reconciliation."""
        try:
            await self.rows.remove(room, channel_id)
        except Exception:
            self._failed("remove")

    def _failed(self, op: str) -> None:
        metrics.DB_FAILURES.labels(f"presence_{op}").inc()
        if not self.dirty:
            logger.warning(
                "Membership %s failed; will reconcile when the database answers", op, exc_info=True
            )
        self.dirty = True

    async def run(self) -> None:
        """Reconcile when rows are owed or ``interval`` has passed since the last time."""
        if not self.dirty and time.monotonic() - self._last < self.interval:
            return
        await self.reconcile()

    async def reconcile(self) -> bool:
        """Make this process's rows equal its live memberships now; return whether it worked."""
        owed, self.dirty = self.dirty, False
        self._last = time.monotonic()
        try:
            # The snapshot and the write are queued together on the presence
            # thread, so joins and leaves queued after it are applied after it.
            removed, added = await self.rows.reconcile(self.process_id, self.memberships())
        except Exception:
            metrics.DB_FAILURES.labels("presence_reconcile").inc()
            logger.debug("Reconciling membership rows failed", exc_info=True)
            self.dirty = True
            return False
        self.removed += removed
        self.added += added
        metrics.RECONCILED.labels("removed").inc(removed)
        metrics.RECONCILED.labels("added").inc(added)
        if owed:
            metrics.RECOVERIES.labels("membership").inc()
            logger.warning("Membership rows reconciled: %d stale removed, %d missing added", removed, added)
        return True
