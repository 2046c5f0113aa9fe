"""``manage.py prune_history``: apply the history retention settings now."""

from __future__ import annotations

import typing

from django.core.management.base import BaseCommand

from ...stores.history import DatabaseHistoryStore, get_history_store


class Command(BaseCommand):
    """Trim every room's saved messages to its retention limits."""

    help = (
        "Delete saved messages beyond HISTORY_MAX_MESSAGES, HISTORY_MAX_AGE, the rooms' own "
        "limits and CHANNEL_BOX_HISTORY_SIZE (oldest first; a room's newest message is always kept)."
    )

    def handle(self, *args: typing.Any, **options: typing.Any) -> None:
        """Run one full retention pass (every room) and print how many messages it deleted."""
        store = get_history_store()
        if isinstance(store, DatabaseHistoryStore):
            from ...stores.retention import prune_pass

            done = prune_pass(since=None)
            if done.skipped:
                self.stdout.write("Another process is pruning now; nothing deleted (run it again later).")
                return
            deleted = done.deleted
        else:
            deleted = store.prune()
        self.stdout.write(f"Deleted {deleted} saved message{'s' if deleted != 1 else ''}.")
