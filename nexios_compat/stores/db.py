"""Run ORM work from async code on Django's one database thread."""

from __future__ import annotations

import typing
from collections.abc import Callable

from asgiref.sync import sync_to_async
from django.db import DatabaseError, connection, transaction

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
    """``call_db`` on a thread of its own, with PostgreSQL's ``statement_timeout`` on each transaction.

    A statement stuck behind a locked row then fails after the timeout instead
    of holding this thread (and everything queued on it) for as long as the lock.
    The timeout is set per transaction (``set_config(..., true)``), never on the
    session: behind PgBouncer in transaction mode, or in Django 5.1+'s pool, the
    server connection goes on to other clients after the transaction ends.
    """
    if statement_timeout is None or connection.vendor != "postgresql":
        return call_db(fn, *args, **kwargs)
    _bound_the_network(statement_timeout)
    with connection.execute_wrapper(_TransactionTimeout(statement_timeout)):
        return call_db(fn, *args, **kwargs)


class _TransactionTimeout:
    """Execute wrapper: the first statement of each transaction sets ``statement_timeout`` locally."""

    def __init__(self, seconds: float) -> None:
        self.value = f"{max(int(seconds * 1000), 1)}"

    def __call__(
        self,
        execute: Callable[..., typing.Any],
        sql: str,
        params: typing.Any,
        many: bool,
        context: dict[str, typing.Any],
    ) -> typing.Any:
        if connection.in_atomic_block:
            # The driver begins the transaction at its first statement: while the
            # server side is still idle, this statement is that first one.
            if _transaction_status() == TRANSACTION_IDLE:
                return self._first(execute, sql, params, many, context)
            return execute(sql, params, many, context)
        # A statement in autocommit is its own transaction: give it one that can hold
        # the local setting (same effect, one more round trip for the commit).
        with transaction.atomic():
            return self._first(execute, sql, params, many, context)

    def _first(
        self,
        execute: Callable[..., typing.Any],
        sql: str,
        params: typing.Any,
        many: bool,
        context: dict[str, typing.Any],
    ) -> typing.Any:
        """Send the driver's BEGIN, the local timeout and the statement in one flight.

        Each would otherwise be a round trip of its own, which on a distant database
        (200 ms away) made every batch a quarter slower. psycopg 3's pipeline mode
        sends them together; results are read when the pipeline syncs, on leaving it.
        """
        pipeline = getattr(connection.connection, "pipeline", None)
        if pipeline is None:  # a driver without pipelines: one more round trip
            execute(SET_STATEMENT_TIMEOUT, [self.value], False, context)
            return execute(sql, params, many, context)
        # Errors surface when the pipeline syncs, outside the cursor's own wrapping:
        # wrap them here too, so callers see Django's exceptions as for any statement.
        with connection.wrap_database_errors, pipeline():
            execute(SET_STATEMENT_TIMEOUT, [self.value], False, context)
            return execute(sql, params, many, context)


def _transaction_status() -> int:
    """Return the driver's transaction status of this thread's connection (psycopg 2 and 3 alike)."""
    raw: typing.Any = connection.connection
    return int(raw.info.transaction_status)


# libpq's PQTRANS_IDLE: connected, no transaction open.
TRANSACTION_IDLE = 0
# Local to the transaction (is_local = true): gone at its commit or rollback.
SET_STATEMENT_TIMEOUT = "SELECT set_config('statement_timeout', %s, true)"


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
