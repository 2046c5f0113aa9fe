"""Run ORM work from async code on Django's one database thread."""

from __future__ import annotations

import typing
from collections.abc import Callable

from asgiref.sync import sync_to_async
from django.db import DatabaseError, connection

T = typing.TypeVar("T")
P = typing.ParamSpec("P")


def call_db(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Call ``fn`` on this thread, dropping a broken database connection first."""
    # Long-lived consumers never see request_finished, which is where Django
    # usually drops broken connections: do it here, but only after an error,
    # so a healthy connection is reused for every call (no reconnect per batch).
    if connection.connection is not None and connection.errors_occurred and not connection.is_usable():
        connection.close()
    try:
        return fn(*args, **kwargs)
    except DatabaseError:
        if not connection.in_atomic_block and not connection.is_usable():
            connection.close()
        raise


async def run_db(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Await ``fn(*args, **kwargs)`` run in the thread Django's ORM calls share."""
    return await sync_to_async(call_db, thread_sensitive=True)(fn, *args, **kwargs)
