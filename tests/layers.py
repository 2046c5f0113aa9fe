"""A real in-memory channel layer that also counts what passes through it."""

from __future__ import annotations

from typing import Any

from channels.layers import InMemoryChannelLayer


class CountingInMemoryLayer(InMemoryChannelLayer):
    """``InMemoryChannelLayer`` that records every ``group_send`` and ``group_add``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.group_sends: list[tuple[str, dict[str, Any]]] = []
        self.group_adds: list[tuple[str, str]] = []

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        self.group_sends.append((group, message))
        await super().group_send(group, message)

    async def group_add(self, group: str, channel: str) -> None:
        self.group_adds.append((group, channel))
        await super().group_add(group, channel)
