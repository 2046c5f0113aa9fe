"""Rooms, their saved messages, and who is connected to them now."""

from __future__ import annotations

import secrets
import uuid

from django.db import models

from .encoding import unpack


def new_epoch() -> str:
    """Return a fresh epoch: random, so a recreated room never repeats its predecessor's."""
    return secrets.token_hex(4)


class Room(models.Model):
    """A group (room) by its Nexios name, with its sequence counter and retention."""

    name = models.TextField(unique=True, help_text="The group name as the application uses it.")
    created = models.DateTimeField(auto_now_add=True)
    last_seq = models.BigIntegerField(default=0, help_text="Highest message number handed out.")
    epoch = models.CharField(
        max_length=16,
        default=new_epoch,
        help_text="Changes whenever the history can no longer be continued (flush, recreation).",
    )
    last_activity = models.DateTimeField(null=True, blank=True)
    max_messages = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Messages kept in this room (empty: HISTORY_MAX_MESSAGES). The newest is always kept.",
    )
    max_age = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Seconds a message is kept in this room (empty: HISTORY_MAX_AGE). "
        "The newest is always kept.",
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Message(models.Model):
    """One saved message; ``seq`` numbers a room's messages from 1 without gaps at write."""

    class Kind(models.TextChoices):
        JSON = "json", "JSON"
        TEXT = "text", "Text"
        BYTES = "bytes", "Bytes"

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    seq = models.BigIntegerField()
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    kind = models.CharField(max_length=5, choices=Kind.choices)
    # JSON payloads are kept as their exact text (jsonb would reorder keys).
    text = models.TextField(null=True, blank=True)
    data = models.BinaryField(null=True, blank=True)
    size = models.PositiveIntegerField(
        default=0, help_text="Payload size in bytes (UTF-8 for text and JSON)."
    )
    sender = models.UUIDField(null=True, blank=True, help_text="Channel id of the sender.")
    created = models.DateTimeField(db_index=True)
    client_id = models.CharField(
        max_length=64,
        null=True,
        blank=True,
        help_text="The sending client's id for this message: stored at most once per room and sender key.",
    )
    sender_key = models.CharField(
        max_length=160,
        null=True,
        blank=True,
        help_text='Whose client ids these are: "user:<pk>", or "anon:<id>" chosen by an anonymous client.',
    )

    class Meta:
        ordering = ["room", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["room", "seq"], name="nexios_message_room_seq"),
            # Partial, so that messages without an id (every Nexios send) are never compared.
            models.UniqueConstraint(
                fields=["room", "sender_key", "client_id"],
                condition=models.Q(client_id__isnull=False),
                name="nexios_message_client_id",
            ),
        ]
        indexes = [models.Index(fields=["room", "created"], name="nexios_message_room_created")]

    def __str__(self) -> str:
        return f"{self.room_id}#{self.seq}"

    @property
    def payload(self) -> object:
        """The payload as it was sent: dict/list/..., str or bytes."""
        return unpack(self.kind, self.text, bytes(self.data) if self.data is not None else None)


class Process(models.Model):
    """A running server process with a hub; rows of dead processes are removed by survivors."""

    id = models.CharField(primary_key=True, max_length=64)
    layer_channel = models.CharField(max_length=200, help_text="The hub's channel-layer name.")
    hostname = models.CharField(max_length=255, blank=True)
    pid = models.PositiveIntegerField(default=0)
    started = models.DateTimeField(auto_now_add=True)
    last_heartbeat = models.DateTimeField()

    class Meta:
        verbose_name_plural = "processes"

    def __str__(self) -> str:
        return f"{self.hostname}:{self.pid}"


class Member(models.Model):
    """A live channel in a room, held by one process (a row exists while the socket is in the room)."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="members")
    channel_id = models.UUIDField(db_index=True)
    process = models.ForeignKey(Process, on_delete=models.CASCADE, related_name="members")
    metadata = models.JSONField(default=dict, blank=True)
    presence = models.JSONField(
        null=True,
        blank=True,
        help_text='Live presence, for endpoints with presence on: {"key": ..., "meta": {...}}.',
    )
    joined = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["room", "joined"]
        verbose_name = "live member"
        constraints = [
            models.UniqueConstraint(fields=["room", "channel_id"], name="nexios_member_room_channel")
        ]

    def __str__(self) -> str:
        return f"{self.channel_id} in {self.room_id}"
