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


def call_db_limited(
    statement_timeout: float | None, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs
) -> T:
    """``call_db`` on a thread of its own, with PostgreSQL's ``statement_timeout`` on its connection.

    A statement stuck behind a locked row then fails after the timeout instead
    of holding this thread (and everything queued on it) for as long as the lock.
    """
    if statement_timeout is not None and connection.vendor == "postgresql":
        _bound_the_network(statement_timeout)
        connection.ensure_connection()
        raw = connection.connection
        if raw is not None and getattr(raw, "_nexios_statement_timeout", None) != statement_timeout:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT set_config('statement_timeout', %s, false)", [f"{int(statement_timeout * 1000)}"]
                )
            raw._nexios_statement_timeout = statement_timeout
    return call_db(fn, *args, **kwargs)


def _bound_the_network(seconds: float) -> None:
    """Have this thread's PostgreSQL connection give up on a silent network after about ``seconds``.

    ``statement_timeout`` is enforced by the server: when packets to it vanish
    (a partition, a dead host) nothing comes back, and a statement or a
    reconnection would hang for the kernel's TCP timeouts (minutes). libpq's
    ``connect_timeout``, ``tcp_user_timeout`` and keepalives bound that on this
    connection only; the site's own ``OPTIONS`` win where they set the same.
    """
    if getattr(connection, "_nexios_network_bound", None) == seconds:
        return
    bounds = {
        "connect_timeout": max(1, round(seconds)),
        "tcp_user_timeout": int(seconds * 1000),
        "keepalives": 1,
        "keepalives_idle": 1,
        "keepalives_interval": 1,
        "keepalives_count": max(1, round(seconds)),
    }
    options = {**bounds, **connection.settings_dict.get("OPTIONS", {})}
    # This thread's connection wrapper only: the shared settings dict is left alone.
    connection.settings_dict = {**connection.settings_dict, "OPTIONS": options}
    connection._nexios_network_bound = seconds  # type: ignore[attr-defined]
    if connection.connection is not None:
        connection.close()  # reconnect with the bounds


async def run_db(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Await ``fn(*args, **kwargs)`` run in the thread Django's ORM calls share."""
    return await sync_to_async(call_db, thread_sensitive=True)(fn, *args, **kwargs)
