"""One room's presence as this process knows it: entries by origin, and what its clients were told.

No I/O: ``PresenceTracker`` feeds it changes and sends the frames it builds.
An entry is one connection: its channel id (as text) maps to ``(key, meta)``.
Entries are owned by the process (``origin``) that holds the connection; a
replica of each other origin's entries is kept with the last version applied.
"""

from __future__ import annotations

import collections
import functools
import itertools
import typing

Meta = dict[str, typing.Any]
Entry = tuple[str, Meta]
Version = tuple[int, int]
# What a client of a presence endpoint is sent: {key: {"metas": [meta, ...]}}.
State = dict[str, dict[str, list[Meta]]]

_ABSENT: typing.Final = None


class Roster:
    """Entries of one room from every process, and the view this process's clients were given."""

    def __init__(self, origin: str, incarnation: int, max_metas: int | None = None) -> None:
        self.origin = origin
        # Clients are shown at most this many metas (tabs) per key, the oldest; None: all.
        self.max_metas = max_metas
        # Each key's cids in the order they came (only kept when metas are capped).
        self.by_key: dict[str, dict[str, None]] = {}
        # This process's entries, versioned (incarnation, n) for the other processes.
        self.version: Version = (incarnation, 0)
        # Every entry, wherever its connection is: cid -> (origin, entry).
        self.current: dict[str, tuple[str, Entry]] = {}
        # Metas per key (the number of keys is len(keys)).
        self.keys: collections.Counter[str] = collections.Counter()
        # Last version applied per other origin; absent while unknown.
        self.versions: dict[str, Version] = {}
        # Changes from origins of unknown version, replayed over their full state when it comes.
        self.stash: dict[str, list[tuple[Version, dict[str, Entry | None]]]] = {}
        # Local changes not yet published: cid -> entry, or None for a leave.
        self.outgoing: dict[str, Entry | None] = {}
        # What every client that joined before the last flush was told: cid -> entry.
        self.told: dict[str, Entry] = {}
        # Entries changed since the last flush.
        self.dirty: set[str] = set()
        # Clients that joined since the last flush, with what their state said of dirty entries.
        self.newcomers: dict[typing.Any, dict[str, Entry | None]] = {}
        # Whether clients are being sent counts (the room is over PRESENCE_MAX_LIST keys).
        self.counting = False
        self.counted = -1

    # Changes -------------------------------------------------------------------

    def set(self, origin: str, cid: str, entry: Entry) -> None:
        """Record (or replace) an entry."""
        old = self.current.get(cid)
        if old is not None:
            if old == (origin, entry):
                return
            self._uncount(old[1][0])
            if old[1][0] != entry[0]:
                self._unlist(old[1][0], cid)
        self.current[cid] = (origin, entry)
        self.keys[entry[0]] += 1
        self.dirty.add(cid)
        if self.max_metas is not None:
            self.by_key.setdefault(entry[0], {})[cid] = None
            self._mark_shown(entry[0])
        if origin == self.origin:
            self.outgoing[cid] = entry

    def drop(self, origin: str, cid: str) -> None:
        """Remove an entry, if ``origin`` holds it."""
        old = self.current.get(cid)
        if old is None or old[0] != origin:
            return
        del self.current[cid]
        self._uncount(old[1][0])
        self._unlist(old[1][0], cid)
        self.dirty.add(cid)
        if origin == self.origin:
            self.outgoing[cid] = None

    def _uncount(self, key: str) -> None:
        self.keys[key] -= 1
        if self.keys[key] <= 0:
            del self.keys[key]

    def _unlist(self, key: str, cid: str) -> None:
        cids = self.by_key.get(key)
        if cids is None:
            return
        cids.pop(cid, None)
        if not cids:
            del self.by_key[key]
        else:
            self._mark_shown(key)  # the next tab in line may now be shown

    def _mark_shown(self, key: str) -> None:
        """Mark the key's shown cids changed: which of them are shown may have moved."""
        assert self.max_metas is not None
        self.dirty.update(itertools.islice(self.by_key.get(key, {}), self.max_metas))

    def _shown(self, cid: str, key: str) -> bool:
        """Whether clients are shown this entry (within the first ``max_metas`` of its key)."""
        if self.max_metas is None:
            return True
        return cid in itertools.islice(self.by_key.get(key, {}), self.max_metas)

    def entries_of(self, origin: str) -> dict[str, Entry]:
        """Return the entries an origin holds."""
        return {cid: entry for cid, (owner, entry) in self.current.items() if owner == origin}

    def replace(self, origin: str, entries: dict[str, Entry]) -> None:
        """Make an origin's entries exactly ``entries``."""
        for cid in set(self.entries_of(origin)) - entries.keys():
            self.drop(origin, cid)
        for cid, entry in entries.items():
            self.set(origin, cid, entry)

    def apply(self, origin: str, changes: dict[str, Entry | None]) -> None:
        """Apply an origin's changes: entries set, or dropped where None."""
        for cid, entry in changes.items():
            if entry is None:
                self.drop(origin, cid)
            else:
                self.set(origin, cid, entry)

    def forget(self, origin: str) -> None:
        """Drop everything of an origin (it is gone)."""
        self.replace(origin, {})
        self.versions.pop(origin, None)
        self.stash.pop(origin, None)

    def receive(self, origin: str, version: Version, changes: dict[str, Entry | None], full: bool) -> bool:
        """Apply a versioned message from another origin; return whether one was missed before it."""
        known = self.versions.get(origin)
        if full:
            if known is not None and version < known:
                return False  # older than what was applied already
            self.replace(origin, {cid: e for cid, e in changes.items() if e is not None})
            self.versions[origin] = version
            for later, stashed in self.stash.pop(origin, []):
                if later > version:
                    self.apply(origin, stashed)
                    self.versions[origin] = later
            return False
        if known is not None and version <= known:
            return False
        self.apply(origin, changes)
        if known is None or version != (known[0], known[1] + 1):
            # Unknown base, or a gap: keep it to replay over the full state asked for.
            self.versions.pop(origin, None)
            self.stash.setdefault(origin, []).append((version, changes))
            return True
        self.versions[origin] = version
        return False

    def take_outgoing(self) -> tuple[Version, dict[str, Entry | None]] | None:
        """Return this process's unpublished changes with their new version, if any."""
        if not self.outgoing:
            return None
        changes, self.outgoing = self.outgoing, {}
        self.version = (self.version[0], self.version[1] + 1)
        return self.version, changes

    # What clients see ------------------------------------------------------------

    def state(self) -> State:
        """Return every key with its metas."""
        state: State = {}
        if self.max_metas is not None:
            for key, cids in self.by_key.items():
                shown = itertools.islice(cids, self.max_metas)
                state[key] = {"metas": [self.current[cid][1][1] for cid in shown]}
            return state
        for _, (key, meta) in self.current.values():
            state.setdefault(key, {"metas": []})["metas"].append(meta)
        return state

    def welcome(self, client: typing.Any) -> None:
        """Note that ``client`` was just sent ``state()``: its next diff starts from there."""
        self.newcomers[client] = {cid: self._entry(cid) for cid in self.dirty}

    def _entry(self, cid: str) -> Entry | None:
        found = self.current.get(cid)
        if found is None or not self._shown(cid, found[1][0]):
            return _ABSENT
        return found[1]

    def diffs(self) -> tuple[tuple[State, State] | None, dict[typing.Any, tuple[State, State]]]:
        """Return the diff for clients told before, and one per newcomer; then start over from now."""
        common = _diff(self.dirty, self.told.get, self._entry)
        own = {}
        for client, seen in self.newcomers.items():
            diff = _diff(self.dirty, functools.partial(self._seen, seen), self._entry)
            if diff is not None:
                own[client] = diff
        for cid in self.dirty:
            entry = self._entry(cid)
            if entry is None:
                self.told.pop(cid, None)
            else:
                self.told[cid] = entry
        self.dirty.clear()
        self.newcomers.clear()
        return common, own

    def _seen(self, seen: dict[str, Entry | None], cid: str) -> Entry | None:
        """What a newcomer's state said of an entry (what everyone was told, where it said nothing)."""
        return seen[cid] if cid in seen else self.told.get(cid)

    def reset_view(self) -> None:
        """Note that every client was just sent the whole state (or counts only)."""
        self.told = {cid: entry for cid, (_, entry) in self.current.items() if self._shown(cid, entry[0])}
        self.dirty.clear()
        self.newcomers.clear()

    def forget_client(self, client: typing.Any) -> None:
        """Stop tracking what a departed client was told."""
        self.newcomers.pop(client, None)


def _diff(
    cids: typing.Iterable[str],
    before: typing.Callable[[str], Entry | None],
    after: typing.Callable[[str], Entry | None],
) -> tuple[State, State] | None:
    """Return ``(joins, leaves)`` between two views of some entries, or None when they agree."""
    joins: State = {}
    leaves: State = {}
    for cid in cids:
        old, new = before(cid), after(cid)
        if old == new:
            continue
        if old is not None:
            leaves.setdefault(old[0], {"metas": []})["metas"].append(old[1])
        if new is not None:
            joins.setdefault(new[0], {"metas": []})["metas"].append(new[1])
    return (joins, leaves) if joins or leaves else None
