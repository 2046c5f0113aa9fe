"""The chat page's "Who is here" list in headless Chromium, on a real daphne.

Uses the module-scoped browser and server of tests/browser/test_browser.py.
"""

from __future__ import annotations

import typing

from playwright.sync_api import Browser, Locator, Page, expect

from devservers import DaphneServer
from tests.browser.test_browser import browser, open_room, pages, server  # noqa: F401
from tests.support.helpers import room_name

TIMES = "\u00d7"  # MULTIPLICATION SIGN: the page writes two tabs as TIMES + "2"


def who(page: Page) -> Locator:
    return page.locator("#who li")


def person(page: Page, key: str) -> Locator:
    return page.locator(f'#who li[data-key="{key}"]')


def test_who_is_here_follows_joins_tabs_and_leaves(
    browser: Browser,  # noqa: F811
    pages: list[Page],  # noqa: F811
    server: DaphneServer,  # noqa: F811
) -> None:
    room = room_name("who")
    ann = open_room(browser, pages, server.url, room, "ann")
    bob = open_room(browser, pages, server.url, room, "bob")
    for page in (ann, bob):
        expect(who(page)).to_have_text(["ann", "bob"])
        expect(page.locator("#count")).to_have_text("2")

    second_tab = open_room(browser, pages, server.url, room, "ann")  # the same person, once more
    expect(person(bob, "ann")).to_have_text(f"ann{TIMES}2")
    expect(person(bob, "ann").locator(".tabs")).to_have_text(f"{TIMES}2")
    expect(who(bob)).to_have_count(2)
    expect(bob.locator("#count")).to_have_text("2")  # people, not sockets
    expect(who(second_tab)).to_have_text([f"ann{TIMES}2", "bob"])

    second_tab.close()
    expect(person(bob, "ann").locator(".tabs")).to_have_count(0)
    expect(who(bob)).to_have_text(["ann", "bob"])
    expect(who(ann)).to_have_text(["ann", "bob"])

    ann.close()
    expect(who(bob)).to_have_text(["bob"])
    expect(bob.locator("#count")).to_have_text("1")


def test_names_in_the_list_are_text_never_html(
    browser: Browser,  # noqa: F811
    pages: list[Page],  # noqa: F811
    server: DaphneServer,  # noqa: F811
) -> None:
    room = room_name("who")
    name = "<i>mallory</i>"
    alice = open_room(browser, pages, server.url, room, "alice")
    open_room(browser, pages, server.url, room, name)
    expect(person(alice, name)).to_have_text(name)
    expect(alice.locator("#who i")).to_have_count(0)


# rooms.js's syncState/syncDiff, run in the page as the client runs them.
SYNC = """async () => {
  const {syncState, syncDiff} = await import("/static/nexios_compat/rooms.js");
  const meta = (id, name) => ({channel_id: id, online_at: 1, username: name});
  const joinA2 = {joins: {a: {metas: [meta("a2", "ann")]}}, leaves: {}};
  const leaveA1 = {joins: {}, leaves: {a: {metas: [meta("a1", "ann")]}}};
  const steps = [];
  let state = syncState({a: {metas: [meta("a1", "ann")]}, b: {metas: [meta("b1", "bob")]}});
  const first = state, before = JSON.stringify(state);
  steps.push(state = syncDiff(state, joinA2));
  steps.push(state = syncDiff(state, joinA2));  // the same join again: nothing changes
  steps.push(state = syncDiff(state, leaveA1));
  steps.push(state = syncDiff(state, leaveA1));  // the same leave again: nothing changes
  steps.push(state = syncDiff(state, {leaves: {a: {metas: [meta("a2", "ann")]}, z: {metas: []}}}));
  return {unchanged: JSON.stringify(first) === before, steps: steps.map((s) => Object.fromEntries(
    Object.entries(s).map(([key, {metas}]) => [key, metas.map((m) => m.channel_id)])))};
}"""


def test_sync_diff_is_keyed_by_channel_id_and_never_duplicates(
    browser: Browser,  # noqa: F811
    pages: list[Page],  # noqa: F811
    server: DaphneServer,  # noqa: F811
) -> None:
    page = browser.new_page()
    pages.append(page)
    page.goto(f"{server.url}/")
    result: dict[str, typing.Any] = page.evaluate(SYNC)
    assert result["steps"] == [
        {"a": ["a1", "a2"], "b": ["b1"]},
        {"a": ["a1", "a2"], "b": ["b1"]},
        {"a": ["a2"], "b": ["b1"]},
        {"a": ["a2"], "b": ["b1"]},
        {"b": ["b1"]},  # the last meta gone: the key goes; an unknown key is ignored
    ]
    assert result["unchanged"]  # syncDiff returned new states and left the first one alone
