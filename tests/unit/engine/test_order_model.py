"""A model test of ``RoomOrdering`` (with its ``RoomSequencer``s) under random interleavings.

Several simulated processes save broadcasts to one room of a fake store (per-room
seqs and epochs); one observing process receives them through a layer that
reorders, duplicates, delays and loses them; the room is flushed (new epoch,
numbering goes on) and recreated (new epoch, seq 1 again); unsaved broadcasts
and replies come in between; gaps are filled from the fake history.

Invariants, checked against a small reference model:
- the delivered saved broadcasts, as ``(numbering line, seq)``, strictly increase:
  each epoch's messages at most once and in seq order, and nothing of a retired
  (recreated-away) line after the new one started;
- once the layer has brought the current epoch's latest message and gaps are
  filled, every message of the current epoch saved since the observer followed
  it was delivered;
- an unsaved broadcast (or a reply) never overtakes a saved one held when it came.

``NEXIOS_MODEL_EXAMPLES`` sets the number of examples (default 60).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from nexios_compat.encoding import FrameCache
from nexios_compat.engine.ordering import RoomOrdering
from tests.support.models import model_settings

ROOM = "r"
PROCESSES = 3


@dataclasses.dataclass(frozen=True)
class Saved:
    """One saved broadcast as the store numbered it."""

    epoch: str
    line: int
    seq: int

    def frame(self) -> FrameCache:
        return FrameCache(ROOM, "text", f"{self.epoch}:{self.seq}", None, self.seq, self.epoch)


class OrderingModel(RuleBasedStateMachine):
    """Drives one observer's ``RoomOrdering``; the fields below are the reference model."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        # The store: current epoch and its numbering line, counter, history of the epoch.
        self.epoch_no = 1
        self.epoch = "e1"
        self.line = 1
        self.last_seq = 0
        self.history: list[Saved] = []
        self.by_text: dict[str, Saved] = {}
        # The layer: per publishing process, what is on its way to the observer.
        self.in_flight: list[list[Saved]] = [[] for _ in range(PROCESSES)]
        self.offered: list[Saved] = []
        # What the observer delivered, in order: Saved or an unsaved broadcast's text.
        self.delivered: list[Saved | str] = []
        self.unsaved: dict[str, set[Saved]] = {}  # each unsaved text, with the saved ones held then
        self.replies: list[tuple[asyncio.Future[None], set[Saved], int]] = []
        # From which seq of which epoch the observer must have everything (None: not following).
        self.follows: tuple[str, int] | None = (self.epoch, 1)
        self.ordering = RoomOrdering(self._deliver, self._read_since, 3600.0, read_head=self._read_head)
        self.ordering.start(ROOM, 1, self.epoch)

    # The observer's side ------------------------------------------------------

    async def _deliver(self, cache: FrameCache) -> None:
        assert cache.text is not None
        self.delivered.append(self.by_text[cache.text] if cache.seq is not None else cache.text)

    async def _read_since(self, room: str, since: int) -> tuple[list[FrameCache], int]:
        return [m.frame() for m in self.history if m.seq > since], self.last_seq

    async def _read_head(self, room: str) -> tuple[int, str]:
        return self.last_seq, self.epoch

    def run(self, coro: object) -> None:
        self.loop.run_until_complete(coro)  # type: ignore[arg-type]

    def held_now(self) -> set[Saved]:
        """Saved broadcasts the observer holds behind a gap now."""
        held = self.ordering.sequencers[ROOM].held.values()
        return {self.by_text[cache.text or ""] for cache in held}

    def offer(self, message: Saved) -> None:
        self.offered.append(message)
        self.run(self.ordering.offer(message.frame()))

    # Rules ---------------------------------------------------------------------

    @rule(process=st.integers(0, PROCESSES - 1))
    def save(self, process: int) -> None:
        self.last_seq += 1
        message = Saved(self.epoch, self.line, self.last_seq)
        self.history.append(message)
        self.by_text[message.frame().text or ""] = message
        self.in_flight[process].append(message)

    @rule(process=st.integers(0, PROCESSES - 1))
    def arrive(self, process: int) -> None:
        """The next broadcast of one process reaches the observer (each process publishes in order)."""
        if self.in_flight[process]:
            self.offer(self.in_flight[process].pop(0))

    @rule(process=st.integers(0, PROCESSES - 1), index=st.integers(0, 10))
    def arrive_late(self, process: int, index: int) -> None:
        """Any broadcast on its way arrives, ahead of those published before it."""
        queue = self.in_flight[process]
        if queue:
            self.offer(queue.pop(index % len(queue)))

    @rule(process=st.integers(0, PROCESSES - 1))
    def lose(self, process: int) -> None:
        """The layer drops a broadcast (only history has it)."""
        if self.in_flight[process]:
            self.in_flight[process].pop(0)

    @precondition(lambda self: bool(self.offered))
    @rule(index=st.integers(0, 1000))
    def duplicate(self, index: int) -> None:
        self.offer(self.offered[index % len(self.offered)])

    @rule()
    def flush(self) -> None:
        """``flush_history``: a new epoch, numbering goes on, history emptied."""
        self.epoch_no += 1
        self.epoch = f"e{self.epoch_no}"
        self.history = []

    @rule()
    def recreate(self) -> None:
        """The room is deleted and created again: a new epoch and line, seq 1 again."""
        self.epoch_no += 1
        self.epoch = f"e{self.epoch_no}"
        self.line += 1
        self.last_seq = 0
        self.history = []
        self.follows = None  # followed again once a broadcast of it reaches the observer

    @rule(text=st.integers(0, 10**9).map(lambda n: f"u{n}"))
    def send_unsaved(self, text: str) -> None:
        if text in self.unsaved:
            return
        self.unsaved[text] = self.held_now()
        self.run(self.ordering.offer(FrameCache(ROOM, "text", text, None, None)))

    @rule()
    def reply(self) -> None:
        future = asyncio.ensure_future(self.ordering.settled([ROOM]), loop=self.loop)
        self.replies.append((future, self.held_now(), len(self.delivered)))
        self.run(asyncio.sleep(0))

    @rule()
    def fill(self) -> None:
        """The reorder timeout fired: read the gap from history."""
        self.run(self.ordering.fill(ROOM))

    @rule()
    def settle(self) -> None:
        """Everything on its way arrives, the latest of the current epoch too; gaps are filled."""
        for queue in self.in_flight:
            while queue:
                self.offer(queue.pop(0))
        latest = self.history[-1] if self.history else None
        if latest is not None:
            self.offer(latest)  # the layer brings a later one at some point; a duplicate does as well
        self.run(self.ordering.fill(ROOM))
        self.run(asyncio.sleep(0))
        if self.follows is None and latest is not None:
            self.follows = (self.epoch, 1)
        if self.follows is not None and self.follows[0] != self.epoch:
            self.follows = (self.epoch, self.follows[1])  # a flush: the same line goes on
        delivered = {m for m in self.delivered if isinstance(m, Saved)}
        if self.follows is not None:
            start = self.follows[1]
            missing = [m for m in self.history if m.seq >= start and m not in delivered]
            assert not missing, f"lost once the gap was filled: {missing}"
        assert not self.ordering.sequencers[ROOM].waiting or latest is None
        texts = {m for m in self.delivered if isinstance(m, str)}
        assert texts == set(self.unsaved), "an unsaved broadcast was lost"
        for future, _, _ in self.replies:
            assert future.done(), "a reply still waits after every gap was filled"

    # Invariants ----------------------------------------------------------------

    @invariant()
    def saved_in_order_at_most_once(self) -> None:
        keys = [(m.line, m.seq) for m in self.delivered if isinstance(m, Saved)]
        for before, after in itertools.pairwise(keys):
            assert before < after, f"delivered {after} after {before}: {keys}"

    @invariant()
    def unsaved_never_overtake_held(self) -> None:
        position = {m: i for i, m in enumerate(self.delivered)}
        for text, held in self.unsaved.items():
            if text not in position:
                continue
            late = [m for m in held if position.get(m, -1) > position[text]]
            assert not late, f"unsaved {text} overtook held {late}"

    @invariant()
    def replies_wait_for_held(self) -> None:
        for future, held, _ in self.replies:
            if future.done():
                assert held <= set(self.delivered), "a reply went before a saved broadcast held then"

    def teardown(self) -> None:
        for task in self.ordering.timers():
            task.cancel()
        for future, _, _ in self.replies:
            future.cancel()
        self.loop.run_until_complete(asyncio.sleep(0))
        self.loop.close()


OrderingModel.TestCase.settings = model_settings()
TestOrderingModel = OrderingModel.TestCase
