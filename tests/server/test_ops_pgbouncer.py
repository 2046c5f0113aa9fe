"""The writer behind a real PgBouncer in transaction mode: its timeouts stay in its own transactions."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import psycopg
import pytest

from devservers import REPO_ROOT, PgBouncerServer, PostgresServer, pgbouncer_available, run_manage
from tests.support.fixtures import require_service

# A separate process whose Django reaches PostgreSQL through PgBouncer, saving as the hub's
# writer does on PostgreSQL: on an executor of its own, with HISTORY_STATEMENT_TIMEOUT.
WRITER = """
import asyncio, concurrent.futures, json
import django
django.setup()
from django.db import OperationalError, connection, transaction
from nexios_compat.encoding import pack
from nexios_compat.stores.db import call_db_limited
from nexios_compat.stores.history import PendingMessage
from nexios_compat.stores.services import HistoryService

def message(room, n):
    kind, text, data = pack({"n": n})
    return PendingMessage(room=room, kind=kind, text=text, data=data)

async def main():
    service = HistoryService(executor=concurrent.futures.ThreadPoolExecutor(1), statement_timeout=5.0)
    first = await service.append([message("lobby", 1)])
    second = await service.append_available([message("lobby", 2), message("other", 3)], 0.1)
    print(json.dumps([m.seq for m in first + second.saved]))
    await service.close()

def show():
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        return cursor.fetchone()[0]

def in_atomic():
    with transaction.atomic():
        return show()

def sleeps():
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(5)")
    except OperationalError as exc:
        return type(exc.__cause__).__name__
    return "slept"

asyncio.run(main())
print(json.dumps([call_db_limited(0.25, show), call_db_limited(0.25, in_atomic), show(),
                  call_db_limited(0.25, sleeps)]))
"""


@pytest.fixture
def pgbouncer(postgres_server: PostgresServer, postgres_url: str) -> Iterator[PgBouncerServer]:
    require_service("pgbouncer", pgbouncer_available())
    server = PgBouncerServer(postgres_server)
    try:
        yield server.start()
    finally:
        server.close()


def settings_seen(url: str) -> dict[str, str]:
    """What a new client of the pool finds set on the (one) server connection."""
    seen = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for name in ("statement_timeout", "lock_timeout"):
            row = conn.execute(f"SHOW {name}").fetchone()
            assert row is not None
            seen[name] = str(row[0])
    return seen


def test_saves_through_pgbouncer_leave_no_timeout_on_the_pooled_connection(
    postgres_url: str, pgbouncer: PgBouncerServer
) -> None:
    dbname = postgres_url.rsplit("/", 1)[1]
    env = {"DJANGO_SETTINGS_MODULE": "project.settings", "REDIS_URL": "", "DEBUG": "0"}
    run_manage("migrate", "--noinput", env={**env, "DATABASE_URL": postgres_url})
    through = pgbouncer.url(dbname)
    assert settings_seen(through) == {"statement_timeout": "0", "lock_timeout": "0"}
    result = subprocess.run(
        [sys.executable, "-c", WRITER],
        env={**__import__("os").environ, **env, "DATABASE_URL": through},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    saved, limits = map(json.loads, result.stdout.splitlines())
    assert saved == [1, 2, 1]  # lobby 1 and 2, other 1
    # Inside the writer's calls the timeout holds, in autocommit and in a transaction alike;
    # outside them (the same connection, later) it is gone.
    assert limits == ["250ms", "250ms", "0", "QueryCanceled"]
    assert settings_seen(through) == {"statement_timeout": "0", "lock_timeout": "0"}
