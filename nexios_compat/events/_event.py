"""``Event``: one named event, its listeners and what emitting it did."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
import uuid
import weakref
from datetime import datetime
from typing import Any

from ._types import (
    _TRIGGERING,
    EventCancelledError,
    EventContext,
    EventPhase,
    EventPriority,
    EventSerializationMixin,
    Listener,
    ListenerAlreadyRegisteredError,
    ListenerType,
    MaxListenersExceededError,
    _resolve,
    _same_listener,
    logger,
)


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
