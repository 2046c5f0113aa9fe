"""A room's presence roster: versioned replicas, repair after gaps, and the diffs clients are sent."""

from __future__ import annotations

from nexios_compat.engine.presence.roster import Roster


def entry(key: str, n: int = 0) -> tuple[str, dict[str, object]]:
    return key, {"channel_id": f"{key}-{n}", "n": n}


def keys(roster: Roster) -> dict[str, int]:
    return {key: len(value["metas"]) for key, value in roster.state().items()}


def test_changes_in_order_apply_and_older_ones_are_ignored() -> None:
    roster = Roster("me", 1)
    assert not roster.receive("p", (1, 0), {"a": entry("ann")}, full=True)
    assert not roster.receive("p", (1, 1), {"b": entry("bob")}, full=False)
    assert not roster.receive("p", (1, 1), {"b": None}, full=False)  # a repeat: ignored
    assert not roster.receive("p", (1, 0), {}, full=True)  # an older full state: ignored
    assert keys(roster) == {"ann": 1, "bob": 1}


def test_a_gap_asks_for_the_full_state_and_later_changes_replay_over_it() -> None:
    roster = Roster("me", 1)
    roster.receive("p", (1, 0), {"a": entry("ann")}, full=True)
    # (1, 1) was lost: it removed ann and added bob. (1, 2) adds cid.
    assert roster.receive("p", (1, 2), {"c": entry("cid")}, full=False)
    assert roster.versions.get("p") is None
    # The full state answered at (1, 1) does not know cid yet: cid must survive it.
    assert not roster.receive("p", (1, 1), {"b": entry("bob")}, full=True)
    assert keys(roster) == {"bob": 1, "cid": 1}
    assert roster.versions["p"] == (1, 2)
    assert not roster.receive("p", (1, 3), {"c": None}, full=False)
    assert keys(roster) == {"bob": 1}


def test_a_new_incarnation_of_a_peer_replaces_its_entries() -> None:
    roster = Roster("me", 1)
    roster.receive("p", (1, 0), {"a": entry("ann")}, full=True)
    roster.receive("p", (1, 5), {}, full=False)
    assert not roster.receive("p", (2, 0), {"b": entry("bob")}, full=True)
    assert keys(roster) == {"bob": 1}


def test_newcomers_get_only_what_changed_after_their_state() -> None:
    roster = Roster("me", 1)
    roster.set("me", "a", entry("ann"))
    old, new = object(), object()
    roster.reset_view()  # old was told: {ann}
    roster.set("me", "b", entry("bob"))
    roster.welcome(new)  # new was sent {ann, bob}
    roster.set("me", "a2", entry("ann", 2))  # ann's second tab
    common, own = roster.diffs()
    assert common is not None
    joins, leaves = common
    assert {k: len(v["metas"]) for k, v in joins.items()} == {"bob": 1, "ann": 1} and leaves == {}
    assert own[new] == ({"ann": {"metas": [entry("ann", 2)[1]]}}, {})
    assert old not in own
    assert roster.diffs() == (None, {})  # nothing changed since


def test_a_changed_meta_is_a_leave_and_a_join_and_a_gone_peer_leaves() -> None:
    roster = Roster("me", 1)
    roster.receive("p", (1, 0), {"a": entry("ann", 1)}, full=True)
    roster.reset_view()
    roster.receive("p", (1, 1), {"a": entry("ann", 2)}, full=False)
    common, _ = roster.diffs()
    assert common == ({"ann": {"metas": [entry("ann", 2)[1]]}}, {"ann": {"metas": [entry("ann", 1)[1]]}})
    roster.forget("p")
    common, _ = roster.diffs()
    assert common == ({}, {"ann": {"metas": [entry("ann", 2)[1]]}})
    assert roster.keys == {} and "p" not in roster.versions


def test_local_changes_are_published_once_with_consecutive_versions() -> None:
    roster = Roster("me", 7)
    roster.set("me", "a", entry("ann"))
    roster.set("me", "b", entry("bob"))
    roster.drop("me", "b")
    assert roster.take_outgoing() == ((7, 1), {"a": entry("ann"), "b": None})
    assert roster.take_outgoing() is None
    roster.drop("me", "a")
    assert roster.take_outgoing() == ((7, 2), {"a": None})
    roster.drop("other", "zzz")  # not ours, not there: nothing to publish
    assert roster.take_outgoing() is None
