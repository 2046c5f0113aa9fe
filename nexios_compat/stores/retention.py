"""Retention: trimming rooms to their message count, age and byte limits (newest message always kept)."""

from __future__ import annotations

import datetime

from django.db.models import F, Sum, Window
from django.utils import timezone

from ..conf import get_config, history_size_bytes
from ..models import Message, Room


def prune_rooms() -> int:
    """Trim every room to its retention limits, always keeping its newest message."""
    deleted = 0
    for room in Room.objects.filter(messages__isnull=False).distinct():
        deleted += prune_room(room)
    return deleted


def prune_room(room: Room) -> int:
    """Delete a room's oldest messages beyond its limits; return how many."""
    config = get_config()
    messages = Message.objects.filter(room=room)
    newest = messages.order_by("-seq").values_list("seq", flat=True).first()
    if newest is None:
        return 0
    cutoff = 0  # delete seq <= cutoff
    max_messages = room.max_messages if room.max_messages is not None else config["HISTORY_MAX_MESSAGES"]
    if max_messages is not None:
        keep = max(int(max_messages), 1)
        first_kept = messages.order_by("-seq").values_list("seq", flat=True)[keep - 1 : keep].first()
        if first_kept is not None:
            cutoff = max(cutoff, first_kept - 1)
    max_age = room.max_age if room.max_age is not None else config["HISTORY_MAX_AGE"]
    if max_age is not None:
        limit = timezone.now() - datetime.timedelta(seconds=float(max_age))
        old = messages.filter(created__lt=limit).order_by("-seq").values_list("seq", flat=True).first()
        if old is not None:
            cutoff = max(cutoff, old)
    byte_bound = history_size_bytes()
    if byte_bound is not None:
        # The newest message whose running total (newest first) exceeds the bound.
        over = (
            messages.annotate(total=Window(Sum("size"), order_by=F("seq").desc()))
            .filter(total__gt=byte_bound)
            .order_by("-seq")
            .values_list("seq", flat=True)
            .first()
        )
        if over is not None:
            cutoff = max(cutoff, over)
    cutoff = min(cutoff, newest - 1)
    if cutoff <= 0:
        return 0
    return messages.filter(seq__lte=cutoff).delete()[0]
