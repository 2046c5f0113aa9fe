"""Real channel layers with a test twist: counting what passes, or publishing late."""

from __future__ import annotations

import asyncio
from typing import Any

from channels.layers import InMemoryChannelLayer
from channels_redis.core import RedisChannelLayer


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


class LaggingRedisChannelLayer(RedisChannelLayer):
    """channels_redis, with every broadcast this process publishes sent ``lag`` seconds late.

    A process whose broadcasts arrive late makes its peers receive saved
    messages out of order for certain, rather than when a race happens to.
    """

    def __init__(self, lag: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lag = lag

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        if message.get("type") == "nexios.fanout":
            await asyncio.sleep(self.lag)
        await super().group_send(group, message)
