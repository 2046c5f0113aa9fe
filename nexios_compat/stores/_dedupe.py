"""Client message ids: a batch's repeats and retries answer with the first copy's record."""

from __future__ import annotations

import dataclasses
import typing

from ._numbering import KnownElsewhere, known_messages
from .records import PendingMessage, SavedMessage

T = typing.TypeVar("T")

# Attempts at a batch whose client ids other transactions keep storing meanwhile
# (each one that fails means another copy committed, which the next attempt sees).
MAX_ATTEMPTS = 5


class Plan:
    """Which of a batch's messages are to be stored, and which answer with another's record.

    A client id repeated within the batch is a duplicate of its first copy. With
    ``look_up`` (after an attempt found a client id stored meanwhile), ids are
    also looked up in the store, before numbering, so a duplicate takes no
    number. Without it (the common case: a send is rarely a retry) there is no
    lookup at all; the insert's ``ON CONFLICT`` catches what was stored already.
    """

    def __init__(self, messages: list[PendingMessage], look_up: bool) -> None:
        self.messages = messages
        keys = {key for message in messages if (key := message.idempotency_key) is not None}
        known = known_messages(keys) if look_up and keys else {}
        self.fresh: list[PendingMessage] = []
        # Per message: the index of its fresh copy (and whether it is a repeat of it), or a known record.
        self.slots: list[tuple[int, bool] | SavedMessage] = []
        first: dict[tuple[str, str, str], int] = {}
        for message in messages:
            key = message.idempotency_key
            if key is not None and key in known:
                self.slots.append(known[key])
            elif key is not None and key in first:
                self.slots.append((first[key], True))
            else:
                if key is not None:
                    first[key] = len(self.fresh)
                self.slots.append((len(self.fresh), False))
                self.fresh.append(message)

    def answers(self, saved: list[SavedMessage], busy: typing.Collection[str] = ()) -> list[SavedMessage]:
        """Each message's record, in order (leaving out rooms set aside): ``saved`` is the fresh ones'."""
        kept = iter(saved)
        stored = {index: next(kept) for index, m in enumerate(self.fresh) if m.room not in busy}
        answers = []
        for message, slot in zip(self.messages, self.slots, strict=True):
            if message.room in busy:
                continue
            if isinstance(slot, SavedMessage):
                answers.append(slot)
            else:
                index, repeat = slot
                answers.append(
                    dataclasses.replace(stored[index], duplicate=True) if repeat else stored[index]
                )
        return answers


def idempotent(attempt: typing.Callable[[bool], T]) -> T:
    """Run ``attempt(look_up)``: first without looking client ids up, then with (one was stored)."""
    for tries in range(MAX_ATTEMPTS):
        try:
            return attempt(tries > 0)
        except KnownElsewhere:
            # Its transaction (or savepoint) rolled back: no number was used.
            continue
    raise KnownElsewhere()
