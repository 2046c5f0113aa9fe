"""The row a Django team writes per chat message: room, JSON text, time."""

from __future__ import annotations

from typing import ClassVar

from django.db import models


class ChatMessage(models.Model):
    """One saved chat message."""

    room = models.CharField(max_length=200, db_index=True)
    content = models.TextField()
    created = models.DateTimeField(auto_now_add=True)

    objects: ClassVar[models.Manager[ChatMessage]] = models.Manager()
