"""Mirrors ``nexios.websockets.history``: pluggable history managers for ``ChannelBox``.

By default no manager is plugged in and ``ChannelBox`` keeps history in the
database (seq numbers, resume, retention, admin). A site that calls
``ChannelBox.set_history_manager(manager)`` gets Nexios's behaviour instead:
``group_send(save_history=True)``, ``show_history`` and ``flush_history`` go to
that manager, and broadcasts carry no ``seq``. ``set_history_manager(None)``
returns to the database.
"""

from __future__ import annotations

import abc
import sys
import typing
import uuid

from .utils import ChannelMessageDC

__all__ = [
    "BaseHistoryManager",
    "InMemoryHistoryManager",
    "NoOpHistoryManager",
    "get_history_manager",
    "set_history_manager",
]

History = list[ChannelMessageDC] | dict[str, list[ChannelMessageDC]]


class BaseHistoryManager(abc.ABC):
    """Where ``ChannelBox`` saves, lists and flushes room history (subclass for other stores)."""

    @abc.abstractmethod
    async def save_message(self, group_name: str, message: ChannelMessageDC) -> None:
        """Save one message of ``group_name``."""

    @abc.abstractmethod
    async def get_history(self, group_name: str | None = None) -> History:
        """Return one group's messages, or (``None``) a dict of every group's."""

    @abc.abstractmethod
    async def flush_history(self, group_name: str | None = None) -> None:
        """Delete one group's messages, or (``None``) every group's."""


class InMemoryHistoryManager(BaseHistoryManager):
    """History in this process's memory; a group's list is emptied once it outgrows ``history_size``.

    The size is measured as Nexios measures it (``sys.getsizeof`` of the list).
    """

    def __init__(self, history_size: int = 1_048_576) -> None:
        self.history_size = history_size
        self._history: dict[str, list[ChannelMessageDC]] = {}

    async def save_message(self, group_name: str, message: ChannelMessageDC) -> None:
        """Append a message; clear the group's list when it grows past ``history_size``."""
        messages = self._history.setdefault(group_name, [])
        messages.append(message)
        if sys.getsizeof(messages) > self.history_size:
            self._history[group_name] = []

    async def get_history(self, group_name: str | None = None) -> History:
        """Return one group's messages, or every group's."""
        if group_name:
            return self._history.get(group_name, [])
        return self._history

    async def flush_history(self, group_name: str | None = None) -> None:
        """Forget one group's messages, or every group's."""
        if group_name:
            self._history.pop(group_name, None)
        else:
            self._history = {}


class NoOpHistoryManager(BaseHistoryManager):
    """Saves nothing: for sites that want no history at all."""

    async def save_message(self, group_name: str, message: ChannelMessageDC) -> None:
        """Discard the message."""

    async def get_history(self, group_name: str | None = None) -> History:
        """Return an empty history."""
        return [] if group_name else {}

    async def flush_history(self, group_name: str | None = None) -> None:
        """Nothing to flush."""


# Process-wide, as Nexios's ChannelBox.HISTORY_MANAGER is: plugged in once at start-up.
_manager: BaseHistoryManager | None = None


def set_history_manager(manager: BaseHistoryManager | None) -> None:
    """Plug ``manager`` in for every ``ChannelBox`` call (``None``: back to the database)."""
    global _manager
    if manager is not None and not isinstance(manager, BaseHistoryManager):
        raise TypeError(f"A history manager subclasses BaseHistoryManager, not {type(manager).__name__}")
    _manager = manager


def get_history_manager() -> BaseHistoryManager | None:
    """Return the plugged-in manager, or ``None`` when history lives in the database."""
    return _manager


async def save_to_manager(group_name: str, payload: typing.Any, sender: uuid.UUID | None) -> bool:
    """Save a broadcast with the plugged-in manager; return ``False`` when none is plugged in."""
    manager = _manager
    if manager is None:
        return False
    await manager.save_message(group_name, ChannelMessageDC(payload=payload, room=group_name, sender=sender))
    return True
