"""A message the store refuses fails alone: every other room's and sender's message commits.

Unit tests with a fake store that refuses one poisoned message; one test on a
real PostgreSQL (a NUL character in a text payload, which PostgreSQL cannot hold).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import typing
import uuid

import pytest
from django.db import DataError

from devservers import REPO_ROOT, run_manage
from nexios_compat.engine.writer import HistoryWriter
from nexios_compat.stores.history import PendingMessage, SavedMessage
from tests.support.fakes import SlowHistory, until


def msg(text: str, room: str = "a", sender: uuid.UUID | None = None) -> PendingMessage:
    return PendingMessage(room=room, kind="text", text=text, data=None, sender=sender)


class PoisonedHistory(SlowHistory):
    """Refuses, like a constraint or bad data would, any transaction holding a poisoned message."""

    async def append(self, messages: list[PendingMessage]) -> list[SavedMessage]:
        if any(m.text == "poison" for m in messages):
            self.calls += 1
            raise DataError("invalid byte sequence")
        return await super().append(messages)


async def test_a_poisoned_message_fails_alone_and_its_sender_is_told() -> None:
    history = PoisonedHistory()
    delivered: list[tuple[str | None, str, int | None]] = []
    rejected: list[PendingMessage] = []

    async def publish(message: PendingMessage, saved: SavedMessage | None) -> None:
        delivered.append((message.text, message.room, saved.seq if saved else None))

    async def reject(message: PendingMessage) -> None:
        rejected.append(message)

    writer = HistoryWriter(history, publish, reject=reject)  # type: ignore[arg-type]
    writer.start()
    history.gate.clear()
    await writer.submit(msg("first"))
    await until(lambda: history.calls == 1, "the first transaction to begin")
    poisoner, other = uuid.uuid4(), uuid.uuid4()
    await writer.submit(msg("a1", "a", other))
    await writer.submit(msg("poison", "a", poisoner))  # the sender moves on
    await writer.submit(msg("a2", "a", other))
    await writer.submit(msg("x", "a", other), save=False)  # unsaved, queued behind
    await writer.submit(msg("b1", "b", other))
    await writer.submit(msg("b2", "b", other))
    history.gate.set()
    await writer.flush()
    assert delivered == [
        ("first", "a", 1),
        ("a1", "a", 2),
        ("a2", "a", 3),
        ("x", "a", None),
        ("b1", "b", 1),
        ("b2", "b", 2),
    ]
    assert [m.text for m in rejected] == ["poison"]
    assert rejected[0].sender == poisoner
    assert writer.refused == 1 and writer.pending == 0
    await writer.stop()


async def test_a_waiting_sender_of_a_poisoned_message_gets_the_error() -> None:
    history = PoisonedHistory()
    delivered: list[str | None] = []

    async def publish(message: PendingMessage, saved: SavedMessage | None) -> None:
        delivered.append(message.text)

    writer = HistoryWriter(history, publish)  # type: ignore[arg-type]
    writer.start()
    with pytest.raises(DataError):
        await writer.submit(msg("poison"), wait=True)
    await writer.submit(msg("after"), wait=True)
    assert delivered == ["after"]
    await writer.stop()


async def test_what_a_store_cannot_hold_is_refused_before_it_is_queued() -> None:
    def refuse(message: PendingMessage) -> None:  # as DatabaseHistoryStore.refuse does on PostgreSQL
        if "\x00" in (message.text or ""):
            raise ValueError("NUL")

    writer = HistoryWriter(SlowHistory(), lambda m, s: None, check=refuse)  # type: ignore[arg-type,return-value]
    with pytest.raises(ValueError, match="NUL"):
        await writer.submit(msg("a\x00b"))
    assert writer.pending == 0
    await writer.submit(msg("a\x00b"), save=False)  # not stored: nothing to refuse
    assert writer.pending == 1


# Real PostgreSQL: a batch with a NUL in one message's text, through the real store.

SCRIPT = """
import asyncio, json, django
django.setup()
from nexios_compat.engine.writer import HistoryWriter
from nexios_compat.stores.history import PendingMessage
from nexios_compat.stores.services import HistoryService

async def main():
    out = {"delivered": [], "rejected": [], "errors": []}
    async def publish(message, saved):
        out["delivered"].append([message.room, message.text, saved.seq if saved else None])
    async def reject(message):
        out["rejected"].append(message.text)
    writer = HistoryWriter(HistoryService(), publish, reject=reject)
    writer.start()
    texts = [("pg-a", "a1"), ("pg-a", "bad\\x00text"), ("pg-b", "b1"), ("pg-a", "a2"), ("pg-b", "b2")]
    for room, text in texts:
        await writer.submit(PendingMessage(room=room, kind="text", text=text, data=None))
    await writer.flush()
    await writer.stop()
    from nexios_compat.stores.history import DatabaseHistoryStore
    try:
        DatabaseHistoryStore().refuse(PendingMessage(room="pg-a", kind="text", text="x\\x00", data=None))
    except ValueError as exc:
        out["refused_upfront"] = str(exc)
    from nexios_compat.models import Message
    from channels.db import database_sync_to_async
    out["rows"] = await database_sync_to_async(
        lambda: sorted(Message.objects.values_list("room__name", "seq", "text"))
    )()
    print(json.dumps(out))

asyncio.run(main())
"""


def test_a_nul_in_one_text_on_postgresql_fails_only_that_message(postgres_url: str) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": postgres_url,
        "DJANGO_SETTINGS_MODULE": "tests.sites.transactions.settings",
        "REDIS_URL": "",
        "DEBUG": "0",
    }
    run_manage("migrate", "--noinput", env=env)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out: dict[str, typing.Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["rows"] == [["pg-a", 1, "a1"], ["pg-a", 2, "a2"], ["pg-b", 1, "b1"], ["pg-b", 2, "b2"]]
    # The hub hands the store's own check to the writer: on PostgreSQL, NUL is refused before queueing.
    assert "NUL" in out.get("refused_upfront", "")
    assert sorted(map(tuple, out["delivered"])) == [
        ("pg-a", "a1", 1),
        ("pg-a", "a2", 2),
        ("pg-b", "b1", 1),
        ("pg-b", "b2", 2),
    ]
    assert out["rejected"] == ["bad\x00text"]
