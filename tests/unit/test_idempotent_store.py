"""Idempotent sends in the history store: a client id is stored at most once per room and sender.

In process on SQLite; ``test_idempotent_postgres.py`` runs the same checks
(``tests.support.idem_worker``) and concurrent duplicates on PostgreSQL.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from nexios_compat.models import Message, Room
from nexios_compat.stores.history import DatabaseHistoryStore
from tests.support import idem_worker
from tests.support.idem_worker import send

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("check", idem_worker.CHECKS, ids=lambda check: check.__name__)
def test_store_check(check: idem_worker.Check) -> None:
    check(DatabaseHistoryStore())


def test_the_unique_constraint_itself_refuses_a_second_row() -> None:
    """Even a writer that skips the store's lookup cannot store a client id twice."""
    from django.db import IntegrityError
    from django.utils import timezone

    room = Room.objects.create(name="c")
    fields = {"room": room, "kind": "text", "text": "x", "created": timezone.now(), "client_id": "m1"}
    Message.objects.create(seq=1, sender_key="anon:a", **fields)
    Message.objects.create(seq=2, sender_key="anon:b", **fields)  # another sender: its own id space
    Message.objects.create(seq=3, sender_key="anon:a", **{**fields, "client_id": None})
    Message.objects.create(seq=4, sender_key="anon:a", **{**fields, "client_id": None})
    with pytest.raises(IntegrityError):
        Message.objects.create(seq=5, sender_key="anon:a", **fields)


SENDERS = ["user:1", "anon:x"]
ROOMS = ["r1", "r2"]


class Sends(RuleBasedStateMachine):
    """Random sends, retries and batches against a model: each (room, sender, id) stored once, in order."""

    @initialize()
    def start(self) -> None:
        Message.objects.all().delete()
        Room.objects.all().delete()
        self.store = DatabaseHistoryStore()
        self.sent: list[tuple[str, str, str | None]] = []  # every send, retries included
        # The model: per room, the stored (sender, id) in seq order; and each id's seq.
        self.rows: dict[str, list[tuple[str, str | None]]] = {room: [] for room in ROOMS}
        self.first: dict[tuple[str, str, str], int] = {}
        self.counter = 0

    @rule(
        batch=st.lists(
            st.tuples(st.sampled_from(ROOMS), st.sampled_from(SENDERS), st.booleans(), st.booleans()),
            min_size=1,
            max_size=6,
        )
    )
    def append(self, batch: list[tuple[str, str, bool, bool]]) -> None:
        messages = []
        for room, sender, with_id, retry in batch:
            earlier = [key for key in self.first if key[0] == room and key[1] == sender]
            if retry and earlier:
                client_id: str | None = earlier[len(self.sent) % len(earlier)][2]
            elif with_id:
                self.counter += 1
                client_id = f"m{self.counter}"
            else:
                client_id = None
            messages.append(send(room, f"{sender}/{client_id}", sender, client_id))
            self.sent.append((room, sender, client_id))
        saved = self.store.append(messages)
        for message, record in zip(messages, saved, strict=True):
            assert message.sender_key is not None
            key = (message.room, message.sender_key, message.client_id or "")
            if message.client_id is not None and key in self.first:
                assert record.duplicate and record.seq == self.first[key]
                continue
            assert not record.duplicate
            self.rows[message.room].append((message.sender_key, message.client_id))
            assert record.seq == len(self.rows[message.room])  # no seq burned by a duplicate
            if message.client_id is not None:
                self.first[key] = record.seq

    @invariant()
    def stored_as_the_model_says(self) -> None:
        if not hasattr(self, "store"):
            return
        for room in ROOMS:
            rows = list(
                Message.objects.filter(room__name=room)
                .order_by("seq")
                .values_list("seq", "sender_key", "client_id")
            )
            assert [(seq, sender, cid) for seq, sender, cid in rows] == [
                (index + 1, sender, cid) for index, (sender, cid) in enumerate(self.rows[room])
            ]
            counter = Room.objects.filter(name=room).values_list("last_seq", flat=True).first() or 0
            assert counter == len(self.rows[room])


def test_sends_and_retries_against_a_model() -> None:
    run_state_machine_as_test(
        Sends,
        settings=settings(
            max_examples=25, stateful_step_count=12, deadline=None, suppress_health_check=list(HealthCheck)
        ),
    )
