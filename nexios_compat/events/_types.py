"""The parts of ``nexios.events`` every other part uses: priorities, phases, errors, contexts."""

from __future__ import annotations

import contextvars
import enum
import json
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

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
