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
layer (see ``events._relay``). Off by default.
"""

from ._emitter import AsyncEventEmitter, EventEmitter, EventNamespace
from ._event import Event
from ._types import (
    EventCancelledError,
    EventContext,
    EventError,
    EventPhase,
    EventPriority,
    EventProtocol,
    EventSerializationMixin,
    ListenerAlreadyRegisteredError,
    ListenerType,
    MaxListenersExceededError,
)

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
