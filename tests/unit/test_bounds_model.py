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

from nexios_compat.engine.presence.roster import Entry, Meta, Roster, Version
from nexios_compat.engine.resume import decide
from nexios_compat.models import Message, Room
from nexios_compat.stores.history import DatabaseHistoryStore
from nexios_compat.stores.records import payload_size
from tests.support.helpers import pending

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


# The presence roster across processes -------------------------------------------------

ORIGINS = ("p0", "p1", "p2")
PAIRS = [(src, dst) for src in ORIGINS for dst in ORIGINS if src != dst]


class RosterMachine(RuleBasedStateMachine):
    """Three processes' rosters of one room, joined by a lossy in-order layer; each has one client."""

    max_metas: int | None = None

    def __init__(self) -> None:
        super().__init__()
        self.rosters = {origin: Roster(origin, 1, self.max_metas) for origin in ORIGINS}
        self.alive = set(ORIGINS)
        # In-order channels between processes: (version, changes, full).
        self.channels: dict[tuple[str, str], list[tuple[Version, dict[str, Entry | None], bool]]] = {
            (src, dst): [] for src in ORIGINS for dst in ORIGINS if src != dst
        }
        # Channels whose last message was lost with none after it: nothing can show that gap
        # but a re-announce (a layer recovery); a later message must show it by itself.
        self.lost: set[tuple[str, str]] = set()
        # The reference: every live entry, by cid.
        self.entries: dict[str, tuple[str, Entry]] = {}
        # What each process's client was shown: key -> metas, starting from the (empty) state.
        self.views: dict[str, dict[str, list[Meta]]] = {origin: {} for origin in ORIGINS}
        self.next_cid = 0

    @rule(origin=st.sampled_from(ORIGINS), key=st.sampled_from(["ann", "bob", "cy"]))
    def join(self, origin: str, key: str) -> None:
        if origin not in self.alive:
            return
        cid = f"c{self.next_cid}"
        self.next_cid += 1
        entry: Entry = (key, {"cid": cid})
        self.rosters[origin].set(origin, cid, entry)
        self.entries[cid] = (origin, entry)

    @rule(data=st.data())
    def leave(self, data: st.DataObject) -> None:
        mine = sorted(cid for cid, (origin, _) in self.entries.items() if origin in self.alive)
        if not mine:
            return
        cid = data.draw(st.sampled_from(mine))
        origin = self.entries.pop(cid)[0]
        self.rosters[origin].drop(origin, cid)

    @rule(origin=st.sampled_from(ORIGINS))
    def flush(self, origin: str) -> None:
        if origin not in self.alive:
            return
        roster = self.rosters[origin]
        outgoing = roster.take_outgoing()
        if outgoing is not None:
            for (src, dst), channel in self.channels.items():
                if src == origin and dst in self.alive:
                    channel.append((outgoing[0], outgoing[1], False))
                    self.lost.discard((src, dst))
        self.tell(origin)

    def tell(self, origin: str) -> None:
        """Send the process's client its diff, checking that it makes sense against what it saw."""
        common, _own = self.rosters[origin].diffs()
        if common is None:
            return
        joins, leaves = common
        view = self.views[origin]
        for key, value in leaves.items():
            for meta in value["metas"]:
                assert meta in view.get(key, []), f"leave of an entry never shown: {key} {meta}"
                view[key].remove(meta)
                if not view[key]:
                    del view[key]
        for key, value in joins.items():
            for meta in value["metas"]:
                assert meta not in view.get(key, []), f"duplicate join shown: {key} {meta}"
                view.setdefault(key, []).append(meta)

    @rule(pair=st.sampled_from(PAIRS))
    def deliver_one(self, pair: tuple[str, str]) -> None:
        self.deliver(*pair)

    def deliver(self, src: str, dst: str) -> None:
        channel = self.channels.get((src, dst))
        if not channel or dst not in self.alive:
            return
        version, changes, full = channel.pop(0)
        if self.rosters[dst].receive(src, version, changes, full) and src in self.alive:
            # A gap: ask for the full set, which comes after what is in flight.
            roster = self.rosters[src]
            channel.append((roster.version, dict(roster.entries_of(src)), True))

    @rule(pair=st.sampled_from(PAIRS))
    def lose(self, pair: tuple[str, str]) -> None:
        src, dst = pair
        channel = self.channels.get(pair)
        if channel:
            channel.pop(0)
            if not channel:
                self.lost.add((src, dst))

    @precondition(lambda self: len(self.alive) > 1)
    @rule(origin=st.sampled_from(ORIGINS))
    def die(self, origin: str) -> None:
        if origin not in self.alive:
            return
        self.alive.discard(origin)
        for cid in [cid for cid, (owner, _) in self.entries.items() if owner == origin]:
            del self.entries[cid]
        for other in self.alive:
            self.rosters[other].forget(origin)
        for key in list(self.channels):
            if origin in key:
                self.channels[key].clear()

    @rule()
    def settle(self) -> None:
        """Flush and deliver everything (re-announcing after a loss, as a layer recovery does)."""
        for origin in sorted(self.alive):
            self.flush(origin)
        for src, dst in sorted(self.lost):
            if src in self.alive and dst in self.alive:
                roster = self.rosters[src]
                entries: dict[str, Entry | None] = dict(roster.entries_of(src))
                self.channels[(src, dst)].append((roster.version, entries, True))
        self.lost.clear()
        while any(self.channels[key] for key in self.channels):
            for src, dst in list(self.channels):
                while self.channels[(src, dst)]:
                    self.deliver(src, dst)
        for origin in sorted(self.alive):
            self.tell(origin)
            roster = self.rosters[origin]
            assert roster.current == self.entries, origin
            shown = {key: sorted(m["cid"] for m in metas) for key, metas in self.views[origin].items()}
            state = {key: sorted(m["cid"] for m in value["metas"]) for key, value in roster.state().items()}
            assert shown == state, origin
            if self.max_metas is not None:
                assert all(len(cids) <= self.max_metas for cids in shown.values())

    @invariant()
    def counts_match_entries(self) -> None:
        for origin in self.alive:
            roster = self.rosters[origin]
            keys: dict[str, int] = {}
            for _, (key, _meta) in roster.current.values():
                keys[key] = keys.get(key, 0) + 1
            assert dict(roster.keys) == keys


@pytest.mark.filterwarnings("ignore")
def test_rosters_converge_and_clients_never_see_a_duplicate_join_or_an_unknown_leave() -> None:
    run_state_machine_as_test(
        RosterMachine,
        settings=hypothesis_settings(max_examples=EXAMPLES * 5, stateful_step_count=50, deadline=None),
    )


class CappedRosterMachine(RosterMachine):
    """The same, with clients shown one meta per key."""

    max_metas = 1


@pytest.mark.filterwarnings("ignore")
def test_capped_rosters_show_the_oldest_tab_and_diffs_stay_consistent() -> None:
    run_state_machine_as_test(
        CappedRosterMachine,
        settings=hypothesis_settings(max_examples=EXAMPLES * 5, stateful_step_count=50, deadline=None),
    )
