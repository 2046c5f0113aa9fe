"""``EventEmitter``, ``EventNamespace``, ``AsyncEventEmitter``: events by name, and across processes."""

from __future__ import annotations

import asyncio
import threading
import warnings
from typing import Any

from ._event import Event
from ._relay import Relay
from ._types import (
    EventCancelledError,
    EventPriority,
    Listener,
    logger,
)


class EventEmitter:
    """Named events, created on first use; ``on``/``once``/``emit`` by name, ``namespace``s.

    ``across_processes=True`` (not in Nexios) also delivers every ``emit`` to
    this emitter's listeners in the other processes on the channel layer, in
    emit order and once per process; ``name`` tells emitters apart there.
    Arguments must then be JSON-like (dicts, lists, strings, numbers).
    """

    def __init__(self, *, across_processes: bool = False, name: str = "default") -> None:
        self._events: dict[str, Event] = {}
        self._lock = threading.RLock()
        self._namespace_separator = ":"
        self.across_processes = across_processes
        self.name = name
        self._relay: Relay | None = Relay(name, self._deliver) if across_processes else None

    def __contains__(self, event_name: str) -> bool:
        return event_name in self._events

    def __getitem__(self, event_name: str) -> Event:
        return self.event(event_name)

    def event(self, event_name: str) -> Event:
        """Return the event called ``event_name``, creating it if needed."""
        with self._lock:
            if event_name not in self._events:
                self._events[event_name] = Event(event_name)
            return self._events[event_name]

    def namespace(self, namespace: str) -> EventNamespace:
        """Return a view whose event names are prefixed with ``namespace:``."""
        return EventNamespace(self, namespace)

    def remove_event(self, event_name: str) -> None:
        """Forget an event and its listeners."""
        with self._lock:
            self._events.pop(event_name, None)

    def remove_all_events(self) -> None:
        """Forget every event."""
        with self._lock:
            self._events.clear()

    def event_names(self) -> list[str]:
        """Names of the events created so far."""
        return list(self._events)

    def has_event(self, event_name: str) -> bool:
        """Whether ``event_name`` has been created."""
        return event_name in self._events

    def emit(self, event_name: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Trigger ``event_name`` here (and, across processes, everywhere else); return its statistics."""
        if self._relay is not None:
            self._relay.publish(event_name, list(args), kwargs)
        return self.event(event_name).trigger(*args, **kwargs)

    def on(
        self,
        event_name: str,
        func: Listener | None = None,
        *,
        priority: EventPriority = EventPriority.NORMAL,
        weak_ref: bool = False,
    ) -> Listener:
        """Register a listener of ``event_name`` (or return a decorator that does)."""
        return self.event(event_name).listen(func, priority=priority, weak_ref=weak_ref)

    def once(
        self,
        event_name: str,
        func: Listener | None = None,
        *,
        priority: EventPriority = EventPriority.NORMAL,
        weak_ref: bool = False,
    ) -> Listener:
        """Register a one-time listener of ``event_name`` (or return a decorator)."""
        return self.event(event_name).once(func, priority=priority, weak_ref=weak_ref)

    def remove_listener(self, event_name: str, listener: Listener) -> None:
        """Remove ``listener`` from ``event_name``."""
        self.event(event_name).remove_listener(listener)

    def remove_all_listeners(self, event_name: str | None = None) -> None:
        """Remove every listener of ``event_name``, or of every event."""
        if event_name is None:
            for event in list(self._events.values()):
                event.remove_all_listeners()
        else:
            self.event(event_name).remove_all_listeners()

    # Across processes (ours) -------------------------------------------

    async def subscribe(self) -> None:
        """Start receiving other processes' events (apps call it on each connection)."""
        if self._relay is not None:
            await self._relay.subscribe()

    async def flush(self) -> None:
        """Wait until every event emitted so far has been handed to the channel layer."""
        if self._relay is not None:
            await self._relay.flush()

    async def aclose(self) -> None:
        """Stop sending and receiving across processes (a later ``subscribe`` restarts)."""
        if self._relay is not None:
            await self._relay.aclose()

    def _deliver(self, event_name: str, args: list[Any], kwargs: dict[str, Any]) -> None:
        try:
            self.event(event_name).trigger(*args, **kwargs)
        except EventCancelledError:
            pass  # a listener in this process cancelled; Event.trigger logged it
        except Exception:
            logger.exception("Event %r from another process failed here", event_name)


class EventNamespace:
    """Events of an emitter under ``namespace:`` (``emitter.namespace("ws").on("open")``)."""

    def __init__(self, emitter: EventEmitter, namespace: str) -> None:
        self._emitter = emitter
        self._namespace = namespace

    def __getitem__(self, event_name: str) -> Event:
        return self.event(event_name)

    def _full(self, name: str) -> str:
        return f"{self._namespace}{self._emitter._namespace_separator}{name}"

    def event(self, event_name: str) -> Event:
        """Return ``namespace:event_name`` of the emitter."""
        return self._emitter.event(self._full(event_name))

    def namespace(self, sub_namespace: str) -> EventNamespace:
        """Return the nested namespace ``namespace:sub_namespace``."""
        return EventNamespace(self._emitter, self._full(sub_namespace))

    def emit(self, event_name: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Emit ``namespace:event_name`` through the emitter."""
        return self._emitter.emit(self._full(event_name), *args, **kwargs)

    def on(
        self,
        event_name: str,
        func: Listener | None = None,
        *,
        priority: EventPriority = EventPriority.NORMAL,
        weak_ref: bool = False,
    ) -> Listener:
        """Register a listener of ``namespace:event_name``."""
        return self.event(event_name).listen(func, priority=priority, weak_ref=weak_ref)

    def once(
        self,
        event_name: str,
        func: Listener | None = None,
        *,
        priority: EventPriority = EventPriority.NORMAL,
        weak_ref: bool = False,
    ) -> Listener:
        """Register a one-time listener of ``namespace:event_name``."""
        return self.event(event_name).once(func, priority=priority, weak_ref=weak_ref)


class AsyncEventEmitter(EventEmitter):
    """Deprecated in Nexios (``EventEmitter`` runs async listeners itself); kept for imports."""

    def __init__(self, max_workers: int | None = None) -> None:
        warnings.warn(
            "AsyncEventEmitter is deprecated and will be removed in a future version. "
            "Use EventEmitter instead, which supports async listeners natively.",
            DeprecationWarning,
            stacklevel=2,
        )
        super().__init__()

    async def emit_async(self, event_name: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Emit on the running loop (Nexios uses a thread, where async listeners cannot start)."""
        return self.emit(event_name, *args, **kwargs)

    def schedule_emit(self, event_name: str, *args: Any, **kwargs: Any) -> asyncio.Future[dict[str, Any]]:
        """Emit soon on the running loop; the future gives the statistics."""
        return asyncio.ensure_future(self.emit_async(event_name, *args, **kwargs))

    def shutdown(self) -> None:
        """Nothing to release (no thread pool here)."""
