"""Mirrors ``nexios.events``: ``EventEmitter``, ``Event``, namespaces, priorities, ``once``.

Semantics are Nexios 3.12's: ``emit``/``trigger`` are plain calls that run
the listeners in priority order (``HIGHEST`` first; within a priority in the
order added, one-time listeners after the others) and return statistics; an
``async def`` listener is scheduled as a task on the running loop, not
awaited; an exception in a listener is logged and the next listener runs;
``EventCancelledError`` (``event.cancel()``) stops the remaining listeners
and is raised to the emitter.

Beyond Nexios: ``EventEmitter(across_processes=True)`` also delivers each
event to the same emitter's listeners in every other process on the channel
layer (see ``_events_relay``). Off by default.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import inspect
import json
import logging
import threading
import time
import uuid
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from ._events_relay import Relay

__all__ = [
    "AsyncEventEmitter",
    "Event",
    "EventCancelledError",
    "EventContext",
    "EventEmitter",
    "EventError",
    "EventNamespace",
    "EventPhase",
    "EventPriority",
    "EventProtocol",
    "EventSerializationMixin",
    "ListenerAlreadyRegisteredError",
    "ListenerType",
    "MaxListenersExceededError",
]

logger = logging.getLogger("nexios_compat.events")

Listener = Callable[..., Any]
ListenerType = Listener | weakref.ReferenceType[Listener] | weakref.WeakMethod[Listener]
_T = TypeVar("_T", bound="EventSerializationMixin")


class EventPriority(enum.Enum):
    """Listener priorities, highest first."""

    HIGHEST = enum.auto()
    HIGH = enum.auto()
    NORMAL = enum.auto()
    LOW = enum.auto()
    LOWEST = enum.auto()


class EventPhase(enum.Enum):
    """Propagation phases between parent and child events."""

    CAPTURING = enum.auto()
    BUBBLING = enum.auto()
    AT_TARGET = enum.auto()


class EventError(Exception):
    """Base of the event errors."""


class ListenerAlreadyRegisteredError(EventError):
    """The listener is already registered for this event (at this priority)."""


class MaxListenersExceededError(EventError):
    """The event already has ``max_listeners`` listeners."""


class EventCancelledError(EventError):
    """A listener cancelled the event: the remaining listeners do not run."""


@dataclass
class EventContext:
    """When and where one trigger happened."""

    timestamp: float
    event_id: str
    source: Any
    phase: EventPhase = EventPhase.AT_TARGET


class EventProtocol(Protocol):
    """What an event exposes to serialization."""

    name: str
    listener_count: int
    max_listeners: int
    enabled: bool

    def get_metrics(self) -> dict[str, Any]:
        """Return the trigger statistics."""
        ...


class EventSerializationMixin:
    """``to_json``/``from_json`` of an event's configuration (not its listeners)."""

    name: str
    max_listeners: int
    enabled: bool

    @property
    def listener_count(self) -> int:
        """Number of listeners (overridden by ``Event``)."""
        return 0

    def get_metrics(self) -> dict[str, Any]:
        """Return the trigger statistics (overridden by ``Event``)."""
        return {}

    def to_json(self) -> str:
        """Serialize the event's name, limits, state and metrics."""
        return json.dumps(
            {
                "name": self.name,
                "listener_count": self.listener_count,
                "max_listeners": self.max_listeners,
                "enabled": self.enabled,
                "metrics": self.get_metrics(),
            }
        )

    @classmethod
    def from_json(cls: type[_T], json_str: str) -> _T:
        """Build an event (without listeners) from ``to_json``'s output."""
        data = json.loads(json_str)
        event = cls(data["name"])  # type: ignore[call-arg]
        event.max_listeners = data["max_listeners"]
        event.enabled = data["enabled"]
        return event


# Events whose trigger is under way in this context: propagation skips them, where
# Nexios recurses until RecursionError (a parent with a grandchild).
_TRIGGERING: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar(
    "nexios_compat_events_triggering", default=frozenset()
)


def _resolve(listener: ListenerType) -> Listener | None:
    if isinstance(listener, weakref.ReferenceType):  # WeakMethod is a ReferenceType too
        target = listener()
        return target if callable(target) else None  # a dead reference gives None
    return listener


def _same_listener(a: ListenerType, b: ListenerType) -> bool:
    if a == b:
        return True
    first, second = _resolve(a), _resolve(b)
    if first is None or second is None:
        return False
    first = getattr(first, "__wrapped__", first)
    second = getattr(second, "__wrapped__", second)
    return bool(first == second)


class Event(EventSerializationMixin):
    """A named event with prioritised listeners, one-time listeners, metrics and history."""

    DEFAULT_MAX_LISTENERS = 100
    HISTORY_SIZE = 100

    def __init__(self, name: str, max_listeners: int | None = None) -> None:
        self.name = name
        self._listeners: dict[EventPriority, list[ListenerType]] = {p: [] for p in EventPriority}
        self._once_listeners: dict[EventPriority, list[ListenerType]] = {p: [] for p in EventPriority}
        self._max_listeners = max_listeners or self.DEFAULT_MAX_LISTENERS
        self._lock = threading.RLock()
        self._parent: Event | None = None
        self._children: list[Event] = []
        self._enabled = True
        self._history: list[dict[str, Any]] = []
        self._metrics: dict[str, Any] = {
            "trigger_count": 0,
            "total_listeners_executed": 0,
            "average_execution_time": 0.0,
        }
        # Tasks of async listeners: referenced until done, so the loop cannot drop them.
        self._tasks: set[asyncio.Task[Any]] = set()

    def __repr__(self) -> str:
        return f"<Event name='{self.name}' listeners={self.listener_count}>"

    @property
    def listener_count(self) -> int:
        """Number of listeners, one-time ones included."""
        with self._lock:
            return sum(len(v) for v in self._listeners.values()) + sum(
                len(v) for v in self._once_listeners.values()
            )

    @property
    def max_listeners(self) -> int:
        """The most listeners this event accepts."""
        return self._max_listeners

    @max_listeners.setter
    def max_listeners(self, value: int) -> None:
        with self._lock:
            if value < self.listener_count:
                raise ValueError(
                    f"Cannot set max_listeners to {value} when there are {self.listener_count} listeners"
                )
            self._max_listeners = value

    @property
    def enabled(self) -> bool:
        """Whether triggering runs the listeners."""
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._enabled = value

    @property
    def parent(self) -> Event | None:
        """The event triggered before this one's listeners (capture phase)."""
        return self._parent

    @parent.setter
    def parent(self, value: Event | None) -> None:
        with self._lock:
            if self._parent is not None:
                self._parent._children = [c for c in self._parent._children if c is not self]
            self._parent = value
            if value is not None:
                value._children.append(self)

    @property
    def children(self) -> list[Event]:
        """Events triggered after this one's listeners (bubble phase)."""
        return self._children.copy()

    def add_child(self, child: Event) -> None:
        """Make ``child`` a child of this event."""
        child.parent = self

    def remove_child(self, child: Event) -> None:
        """Detach ``child`` from this event."""
        if any(c is child for c in self._children):
            child.parent = None

    def listen(
        self,
        func: Listener | None = None,
        *,
        priority: EventPriority = EventPriority.NORMAL,
        weak_ref: bool = False,
    ) -> Listener:
        """Register a listener (or, without ``func``, return a decorator that does)."""

        def decorator(f: Listener) -> Listener:
            self._add_listener(f, priority=priority, weak_ref=weak_ref)
            return f

        return decorator if func is None else decorator(func)

    def once(
        self,
        func: Listener | None = None,
        *,
        priority: EventPriority = EventPriority.NORMAL,
        weak_ref: bool = False,
    ) -> Listener:
        """Register a listener removed after the next trigger (or return a decorator)."""

        def decorator(f: Listener) -> Listener:
            self._add_listener(f, priority=priority, once=True, weak_ref=weak_ref)
            return f

        return decorator if func is None else decorator(func)

    def _add_listener(
        self, listener: Listener, *, priority: EventPriority, once: bool = False, weak_ref: bool = False
    ) -> None:
        with self._lock:
            if self.listener_count >= self._max_listeners:
                raise MaxListenersExceededError(
                    f"Max listeners ({self._max_listeners}) exceeded for event '{self.name}'"
                )
            container = self._once_listeners if once else self._listeners
            if any(_same_listener(existing, listener) for existing in container[priority]):
                raise ListenerAlreadyRegisteredError(f"Listener already registered for event '{self.name}'")
            stored: ListenerType = listener
            if weak_ref:
                stored = weakref.WeakMethod(listener) if inspect.ismethod(listener) else weakref.ref(listener)
            container[priority].append(stored)

    def remove_listener(self, listener: Listener) -> None:
        """Remove ``listener`` at every priority, one-time or not."""
        with self._lock:
            for container in (self._listeners, self._once_listeners):
                for priority in EventPriority:
                    container[priority] = [
                        kept for kept in container[priority] if not _same_listener(kept, listener)
                    ]

    def remove_all_listeners(self) -> None:
        """Remove every listener."""
        with self._lock:
            for priority in EventPriority:
                self._listeners[priority].clear()
                self._once_listeners[priority].clear()

    def has_listener(self, listener: Listener) -> bool:
        """Whether ``listener`` is registered (at any priority)."""
        with self._lock:
            return any(
                _same_listener(kept, listener)
                for container in (self._listeners, self._once_listeners)
                for priority in EventPriority
                for kept in container[priority]
            )

    def trigger(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Run the listeners with ``args`` and ``kwargs``; return the trigger's statistics.

        A disabled event returns ``{"cancelled": True, "reason": "Event disabled"}``.
        A parent's listeners run first, then this event's, then each child's.
        """
        if not self._enabled:
            return {"cancelled": True, "reason": "Event disabled"}
        with self._lock:
            event_id = str(uuid.uuid4())
            data: dict[str, Any] = {
                "args": args,
                "kwargs": kwargs,
                "context": EventContext(timestamp=time.time(), event_id=event_id, source=self),
                "cancelled": False,
                "default_prevented": False,
            }
            token = _TRIGGERING.set(_TRIGGERING.get() | {id(self)})
            try:
                if self._parent is not None:
                    data["context"].phase = EventPhase.CAPTURING
                    self._propagate_to(self._parent, args, kwargs)
                stats = self._execute_listeners(data, EventPhase.AT_TARGET)
                # As Nexios: children run only for an event that has a parent itself.
                if not data["cancelled"] and self._parent is not None:
                    for child in self.children:
                        data["context"].phase = EventPhase.BUBBLING
                        self._propagate_to(child, args, kwargs)
                self._update_metrics(stats)
                self._record_history(data, stats)
                if data["cancelled"]:
                    raise EventCancelledError("Event was cancelled during propagation")
                return {
                    "event_id": event_id,
                    "listeners_executed": stats["total"],
                    "execution_time": stats["total_time"],
                    "cancelled": data["cancelled"],
                }
            except Exception as exc:
                logger.error("Error triggering event '%s': %s", self.name, exc, exc_info=True)
                raise
            finally:
                _TRIGGERING.reset(token)

    @staticmethod
    def _propagate_to(event: Event, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if id(event) not in _TRIGGERING.get():
            event.trigger(*args, **kwargs)

    def _execute_listeners(self, data: dict[str, Any], phase: EventPhase) -> dict[str, Any]:
        start = time.time()
        executed = 0
        with self._lock:
            selected: list[ListenerType] = []
            for priority in EventPriority:
                selected.extend(self._listeners[priority])
                selected.extend(self._once_listeners[priority])
                self._once_listeners[priority].clear()
        for stored in selected:
            listener = _resolve(stored)
            if listener is None:
                continue
            data["context"].phase = phase
            try:
                if inspect.iscoroutinefunction(listener):
                    self._schedule(listener, data["args"], data["kwargs"])
                else:
                    listener(*data["args"], **data["kwargs"])
                executed += 1
            except EventCancelledError:
                data["cancelled"] = True
                break
            except Exception as exc:
                # As Nexios: a failing listener is logged, and the next one runs.
                logger.error("Error in event listener for '%s': %s", self.name, exc, exc_info=True)
        elapsed = time.time() - start
        return {
            "total": executed,
            "total_time": elapsed,
            "average_time": elapsed / max(1, executed),
            "cancelled": data["cancelled"],
        }

    def _schedule(self, listener: Listener, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        # Raises RuntimeError outside a running loop (before the coroutine is made), as Nexios
        # fails there too; the caller logs it like any listener error.
        loop = asyncio.get_running_loop()
        task = loop.create_task(listener(*args, **kwargs), name=f"nexios_compat.event-{self.name}")
        self._tasks.add(task)
        task.add_done_callback(self._listener_done)

    def _listener_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error(
                "Error in event listener for '%s': %s", self.name, task.exception(), exc_info=task.exception()
            )

    async def wait_listeners(self) -> None:
        """Wait until the async listeners scheduled so far have finished (ours; tests use it)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    def _update_metrics(self, stats: dict[str, Any]) -> None:
        with self._lock:
            self._metrics["trigger_count"] += 1
            self._metrics["total_listeners_executed"] += stats["total"]
            count = self._metrics["trigger_count"]
            old = self._metrics["average_execution_time"]
            self._metrics["average_execution_time"] = (old * (count - 1) + stats["average_time"]) / count

    def _record_history(self, data: dict[str, Any], stats: dict[str, Any]) -> None:
        with self._lock:
            self._history.append(
                {
                    "timestamp": datetime.now().isoformat(),
                    "event_id": data["context"].event_id,
                    "args": str(data["args"]),
                    "kwargs": str(data["kwargs"]),
                    "listeners_executed": stats["total"],
                    "execution_time": stats["total_time"],
                    "cancelled": data["cancelled"],
                }
            )
            del self._history[: -self.HISTORY_SIZE]

    def get_metrics(self) -> dict[str, Any]:
        """Return trigger count, listeners run and average execution time."""
        return self._metrics.copy()

    def get_history(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Return the last triggers (at most 100 kept), the last ``limit`` if given."""
        with self._lock:
            if limit is None:
                return self._history.copy()
            return self._history[-limit:] if limit else []

    def cancel(self) -> None:
        """Stop this trigger: call from a listener; the remaining listeners do not run."""
        raise EventCancelledError("Event propagation cancelled")

    def prevent_default(self) -> None:
        """Kept for Nexios's API; it has no observable effect there either."""


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
