"""Retention: touched rooms only, set-based deletes, one process at a time, off the shared thread."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import typing

import psycopg
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from devservers import REPO_ROOT, run_manage
from nexios_compat.models import Message, Room
from nexios_compat.stores import retention
from nexios_compat.stores.services import HistoryService
from tests.unit.test_admin import save


@pytest.mark.django_db(transaction=True)
async def test_a_periodic_pass_examines_only_the_rooms_saved_to_since_the_last(settings: typing.Any) -> None:
    from asgiref.sync import sync_to_async

    settings.NEXIOS_COMPAT = {"HISTORY_MAX_MESSAGES": 2}
    for room in ("a", "b", "c"):
        await sync_to_async(save)(room, 1, 2, 3)
    # Saved a minute ago: before the pass below, by more than any clock slack.
    minute_ago = timezone.now() - datetime.timedelta(minutes=1)
    await sync_to_async(Room.objects.update)(last_activity=minute_ago)
    service = HistoryService()
    assert await service.prune() == 3  # the first pass is a full one
    assert service.last_pass is not None and service.last_pass.rooms == 3
    await sync_to_async(save)("a", 4)
    assert await service.prune() == 1
    assert service.last_pass.rooms == 1  # b and c were not touched
    assert await sync_to_async(Message.objects.count)() == 6


@pytest.mark.django_db(transaction=True)
def test_a_pass_deletes_with_a_statement_per_set_of_limits_not_per_room(settings: typing.Any) -> None:
    settings.NEXIOS_COMPAT = {"HISTORY_MAX_MESSAGES": 1}
    for i in range(20):
        save(f"room-{i}", 1, 2)
    with CaptureQueriesContext(connection) as queries:
        assert retention.prune_rooms() == 20
    deletes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("DELETE")]
    assert len(deletes) == 1
    assert len(queries.captured_queries) <= 6, [q["sql"] for q in queries.captured_queries]


# A separate process on PostgreSQL: saves, then one pass through HistoryService.prune,
# printing what it did and which thread ran it.
PRUNER = """
import asyncio, json, threading
import django
django.setup()
from nexios_compat.encoding import pack
from nexios_compat.stores import retention
from nexios_compat.stores.history import DatabaseHistoryStore, PendingMessage
from nexios_compat.stores.services import HistoryService

threads = []
real = retention.prune_pass
def watched(since):
    threads.append(threading.current_thread().name)
    return real(since)
retention.prune_pass = watched

def message(n):
    kind, text, data = pack(n)
    return PendingMessage(room="lobby", kind=kind, text=text, data=data)

DatabaseHistoryStore().append([message(n) for n in range(5)])
service = HistoryService()
deleted = asyncio.run(service.prune())
print(json.dumps({"deleted": deleted, "skipped": service.last_pass.skipped, "threads": threads}))
"""


def prune_in_a_process(url: str) -> dict[str, typing.Any]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.sites.multiprocess.settings",
        "MP_NEXIOS_COMPAT": json.dumps({"HISTORY_MAX_MESSAGES": 2}),
        "DATABASE_URL": url,
        "REDIS_URL": "",
    }
    result = subprocess.run(
        [sys.executable, "-c", PRUNER], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return typing.cast(dict[str, typing.Any], json.loads(result.stdout.splitlines()[-1]))


def test_two_processes_never_prune_at_once_and_the_pass_runs_off_the_shared_thread(postgres_url: str) -> None:
    run_manage("migrate", "--noinput", env={"DATABASE_URL": postgres_url, "REDIS_URL": ""})
    with psycopg.connect(postgres_url) as other:  # another process in the middle of its pass
        other.execute("SELECT pg_advisory_xact_lock(%s)", [retention.ADVISORY_LOCK_KEY])
        held = prune_in_a_process(postgres_url)
    assert held == {"deleted": 0, "skipped": True, "threads": ["nexios-retention_0"]}
    free = prune_in_a_process(postgres_url)  # 10 saved now, 2 kept
    assert free == {"deleted": 8, "skipped": False, "threads": ["nexios-retention_0"]}
