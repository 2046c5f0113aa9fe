"""Models: the resume decision against a reference "all or nothing", under random room histories and caps."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from nexios_compat.engine.resume import decide
from nexios_compat.models import Message, Room
from nexios_compat.stores.history import DatabaseHistoryStore
from nexios_compat.stores.records import payload_size
from tests.helpers import pending

EXAMPLES = int(os.environ.get("NEXIOS_MODEL_EXAMPLES", "10"))
ROOM = "model"


class ResumeMachine(RuleBasedStateMachine):
    """A room's history changes at random; every resume is judged as a reference would judge it."""

    def __init__(self) -> None:
        super().__init__()
        Room.objects.all().delete()
        self.store = DatabaseHistoryStore()
        # The reference: the counter, the epoch, and the stored seqs with their sizes.
        self.last = 0
        self.epoch = ""
        self.stored: dict[int, int] = {}
        self.old_epochs: list[str] = []

    @rule(sizes=st.lists(st.integers(0, 40), min_size=1, max_size=6))
    def append(self, sizes: list[int]) -> None:
        messages = [pending(ROOM, "x" * size) for size in sizes]
        saved = self.store.append(messages)
        self.epoch = saved[0].epoch
        for message in messages:
            self.last += 1
            self.stored[self.last] = payload_size(message)
        assert [record.seq for record in saved] == list(range(self.last - len(sizes) + 1, self.last + 1))

    @precondition(lambda self: len(self.stored) > 1)
    @rule(data=st.data())
    def trim_oldest(self, data: st.DataObject) -> None:
        count = data.draw(st.integers(1, len(self.stored) - 1))
        gone = sorted(self.stored)[:count]
        Message.objects.filter(room__name=ROOM, seq__in=gone).delete()
        for seq in gone:
            del self.stored[seq]

    @precondition(lambda self: len(self.stored) > 2)
    @rule(data=st.data())
    def delete_one(self, data: st.DataObject) -> None:
        seq = data.draw(st.sampled_from(sorted(self.stored)[1:-1]))
        Message.objects.filter(room__name=ROOM, seq=seq).delete()
        del self.stored[seq]

    @precondition(lambda self: self.epoch != "")
    @rule()
    def flush(self) -> None:
        self.store.flush(ROOM)
        self.old_epochs.append(self.epoch)
        self.epoch = Room.objects.get(name=ROOM).epoch
        self.stored.clear()

    @precondition(lambda self: self.epoch != "")
    @rule()
    def recreate(self) -> None:
        Room.objects.filter(name=ROOM).delete()
        self.old_epochs.append(self.epoch)
        self.last, self.epoch = 0, ""
        self.stored.clear()

    @rule(
        data=st.data(),
        limit=st.one_of(st.none(), st.integers(0, 12)),
        max_bytes=st.one_of(st.none(), st.integers(0, 200)),
    )
    def resume(self, data: st.DataObject, limit: int | None, max_bytes: int | None) -> None:
        since = data.draw(st.integers(0, self.last + 2), label="since")
        epoch = data.draw(st.sampled_from([self.epoch, "", *self.old_epochs[-2:]]), label="epoch")
        outcome = decide(ROOM, self.store.read(ROOM, since, limit, max_bytes), since, epoch)
        wanted = range(since + 1, self.last + 1)
        expected = (
            (epoch == self.epoch or (since == 0 and epoch == ""))
            and since <= self.last
            and all(seq in self.stored for seq in wanted)
            and (limit is None or len(wanted) <= limit)
            and (max_bytes is None or sum(self.stored[seq] for seq in wanted) <= max_bytes)
        )
        assert outcome.recovered is expected, (since, epoch, limit, max_bytes)
        assert outcome.last_seq == self.last and outcome.epoch == self.epoch
        assert [m.seq for m in outcome.messages] == (list(wanted) if expected else [])

    @invariant()
    def counter_matches(self) -> None:
        assert self.store.head(ROOM) == (self.last, self.epoch)


@pytest.mark.django_db(transaction=True)
def test_resume_is_all_or_nothing_under_random_histories_and_caps() -> None:
    run_state_machine_as_test(
        ResumeMachine,
        settings=hypothesis_settings(max_examples=EXAMPLES, stateful_step_count=25, deadline=None),
    )
