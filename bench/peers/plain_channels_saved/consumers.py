"""The room consumer of the plain peer, saving each message as a row before broadcasting it."""

from __future__ import annotations

import json
from typing import Any

from channels.db import database_sync_to_async

from bench.peers.plain_channels.consumers import RoomConsumer
from bench.peers.plain_channels_saved.models import ChatMessage


class SavedRoomConsumer(RoomConsumer):
    """``RoomConsumer`` with one ``ChatMessage.objects.create`` per message, awaited first."""

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """Save the message, then fan it out (what a Channels tutorial's chat does)."""
        await database_sync_to_async(ChatMessage.objects.create)(room=self.room, content=json.dumps(content))
        await self.channel_layer.group_send(self.room, {"type": "chat.message", "payload": content})
