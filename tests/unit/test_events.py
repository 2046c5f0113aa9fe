"""``nexios_compat.events``: Nexios 3.12's emitter semantics, and the relay on one in-memory layer."""

from __future__ import annotations

import asyncio
import gc
import logging
import typing

import pytest

from nexios_compat import NexiosApp, Router, get_application
from nexios_compat.events import (
    AsyncEventEmitter,
    Event,
    EventCancelledError,
    EventEmitter,
    EventPriority,
    ListenerAlreadyRegisteredError,
    MaxListenersExceededError,
)
from nexios_compat.events._relay import Relay


def test_listeners_run_by_priority_then_in_order_added_once_ones_last_within_a_priority() -> None:
    events = EventEmitter()
    calls: list[str] = []
    events.on("e", lambda: calls.append("normal-1"))
    events.once("e", lambda: calls.append("normal-once"))
    events.on("e", lambda: calls.append("normal-2"))
    events.on("e", lambda: calls.append("lowest"), priority=EventPriority.LOWEST)
    events.on("e", lambda: calls.append("highest"), priority=EventPriority.HIGHEST)
    stats = events.emit("e")
    assert calls == ["highest", "normal-1", "normal-2", "normal-once", "lowest"]
    assert stats["listeners_executed"] == 5 and stats["cancelled"] is False and stats["event_id"]
    calls.clear()
    events.emit("e")
    assert calls == ["highest", "normal-1", "normal-2", "lowest"]  # the one-time listener is gone


def test_decorators_return_the_function_and_pass_arguments_through() -> None:
    events = EventEmitter()
    seen: list[typing.Any] = []

    @events.on("user.created")
    def created(user: dict[str, str], *, source: str) -> None:
        seen.append((user, source))

    assert callable(created) and events["user.created"].has_listener(created)
    events.emit("user.created", {"name": "ada"}, source="signup")
    assert seen == [({"name": "ada"}, "signup")]
    assert "user.created" in events and events.event_names() == ["user.created"]


def test_namespaces_prefix_names_with_a_colon_and_nest() -> None:
    events = EventEmitter()
    ws = events.namespace("websocket")
    seen: list[str] = []
    ws.on("message", lambda text: seen.append(f"ws:{text}"))
    ws.namespace("admin").on("kick", lambda who: seen.append(f"kick:{who}"))
    ws.emit("message", "hi")
    events.emit("websocket:admin:kick", "bob")
    events.emit("message", "not in the namespace")
    assert seen == ["ws:hi", "kick:bob"]
    assert ws["message"] is events.event("websocket:message")


def test_a_failing_listener_is_logged_and_the_next_one_still_runs(caplog: pytest.LogCaptureFixture) -> None:
    events = EventEmitter()
    calls: list[str] = []

    def broken() -> None:
        raise ValueError("boom")

    events.on("e", broken, priority=EventPriority.HIGH)
    events.on("e", lambda: calls.append("after"))
    with caplog.at_level(logging.ERROR, "nexios_compat.events"):
        stats = events.emit("e")
    assert calls == ["after"] and stats["listeners_executed"] == 1
    assert "Error in event listener for 'e': boom" in caplog.text


def test_cancel_stops_the_remaining_listeners_and_raises_to_the_emitter() -> None:
    events = EventEmitter()
    calls: list[str] = []
    event = events.event("e")
    event.listen(lambda: calls.append("first"), priority=EventPriority.HIGHEST)
    event.listen(event.cancel)
    event.listen(lambda: calls.append("never"), priority=EventPriority.LOW)
    with pytest.raises(EventCancelledError):
        events.emit("e")
    assert calls == ["first"]
    assert event.get_history()[-1]["cancelled"] is True


def test_disabled_events_registration_limits_and_removal() -> None:
    event = Event("e", max_listeners=2)

    def listener() -> None:
        pass

    event.listen(listener)
    with pytest.raises(ListenerAlreadyRegisteredError):
        event.listen(listener)
    event.once(listener)  # once and always are separate registrations, as in Nexios
    with pytest.raises(MaxListenersExceededError):
        event.listen(lambda: None)
    with pytest.raises(ValueError, match="max_listeners"):
        event.max_listeners = 1
    event.enabled = False
    assert event.trigger() == {"cancelled": True, "reason": "Event disabled"}
    event.enabled = True
    event.remove_listener(listener)
    assert event.listener_count == 0 and not event.has_listener(listener)
    assert event.trigger()["listeners_executed"] == 0
    assert event.get_metrics()["trigger_count"] == 1
    copy = Event.from_json(event.to_json())
    assert (copy.name, copy.max_listeners, copy.enabled) == ("e", 2, True)


def test_weak_listeners_go_away_with_their_object() -> None:
    events = EventEmitter()
    calls: list[str] = []

    class Owner:
        def handle(self) -> None:
            calls.append("owner")

    owner = Owner()
    events.on("e", owner.handle, weak_ref=True)
    events.emit("e")
    del owner
    gc.collect()
    assert events.emit("e")["listeners_executed"] == 0
    assert calls == ["owner"]


def test_parent_listeners_run_first_and_children_after() -> None:
    parent, child, target = Event("parent"), Event("child"), Event("target")
    calls: list[str] = []
    for event in (parent, child, target):
        event.listen(lambda e=event: calls.append(e.name))
    target.parent = parent
    target.add_child(child)
    target.trigger()
    # Nexios recurses here (the child captures through the target) until RecursionError.
    assert calls == ["parent", "target", "child"]
    calls.clear()
    parent.trigger()  # as Nexios: an event without a parent does not bubble to its children
    assert calls == ["parent"]


async def test_async_listeners_are_scheduled_not_awaited_and_their_errors_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events = EventEmitter()
    started = asyncio.Event()
    release = asyncio.Event()

    @events.on("e")
    async def slow() -> None:
        started.set()
        await release.wait()
        raise RuntimeError("late failure")

    stats = events.emit("e")
    assert stats["listeners_executed"] == 1 and not started.is_set()  # emit returned first
    await started.wait()
    release.set()
    with caplog.at_level(logging.ERROR, "nexios_compat.events"):
        await events["e"].wait_listeners()
    assert "late failure" in caplog.text


def test_emit_returns_statistics_not_an_awaitable() -> None:
    # As in Nexios: ``await app.events.emit(...)`` (the events page) is a TypeError there too.
    assert isinstance(EventEmitter().emit("e"), dict)


def test_an_async_listener_outside_a_loop_is_an_error_logged_like_any_other(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events = EventEmitter()

    async def listener() -> None:
        pass

    events.on("e", listener)
    with caplog.at_level(logging.ERROR, "nexios_compat.events"):
        assert events.emit("e")["listeners_executed"] == 0
    assert "no running event loop" in caplog.text


async def test_async_event_emitter_is_deprecated_and_emits_on_the_loop() -> None:
    with pytest.deprecated_call():
        events = AsyncEventEmitter()
    seen: list[int] = []
    events.on("e", seen.append)
    assert (await events.emit_async("e", 1))["listeners_executed"] == 1
    await events.schedule_emit("e", 2)
    assert seen == [1, 2]


def test_apps_and_routers_carry_their_own_emitters() -> None:
    app, other = get_application(), NexiosApp()
    assert isinstance(app.events, EventEmitter) and app.events is not other.events
    assert app.events.across_processes is False
    assert isinstance(Router(prefix="/r").event, EventEmitter)


# The relay, on the in-memory layer (one process, two relays standing for two processes) --


async def test_relays_deliver_in_order_once_to_each_other_never_to_themselves() -> None:
    received: dict[str, list[tuple[str, list[typing.Any], dict[str, typing.Any]]]] = {"a": [], "b": []}
    b_done = asyncio.Event()

    def deliver_to(name: str) -> typing.Callable[[str, list[typing.Any], dict[str, typing.Any]], None]:
        def deliver(event: str, args: list[typing.Any], kwargs: dict[str, typing.Any]) -> None:
            received[name].append((event, args, kwargs))
            if name == "b" and event == "done":
                b_done.set()

        return deliver

    a, b = Relay("test", deliver_to("a")), Relay("test", deliver_to("b"))
    await a.subscribe()
    await b.subscribe()
    try:
        for n in range(30):
            a.publish("n", [n], {"k": n})
        a.publish("done", [], {})
        await b_done.wait()
        assert [args[0] for event, args, _ in received["b"] if event == "n"] == list(range(30))
        assert received["b"][0] == ("n", [0], {"k": 0})
        # A replayed message (the same origin and number) is not delivered again.
        b._receive(
            {"type": "nexios.event", "origin": a.origin, "seq": 1, "event": "n", "args": [0], "kwargs": {}}
        )
        assert len(received["b"]) == 31
        assert received["a"] == []
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_shared_emitter_delivers_locally_at_emit_and_refuses_what_the_layer_cannot_carry() -> None:
    events = EventEmitter(across_processes=True, name="local-check")
    seen: list[int] = []
    events.on("e", seen.append)
    await events.subscribe()
    try:
        events.emit("e", 1)
        assert seen == [1]  # at emit, not after the layer's echo
        await events.flush()
        with pytest.raises(TypeError):
            events.emit("e", object())
        assert seen == [1]
    finally:
        await events.aclose()


def test_a_shared_emitter_needs_a_group_safe_name() -> None:
    with pytest.raises(ValueError, match="name"):
        EventEmitter(across_processes=True, name="has spaces")
