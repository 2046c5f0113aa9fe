"""``manage.py rooms``: the rooms, their members and the processes holding them, from the database."""

from __future__ import annotations

import typing

from django.core.management.base import BaseCommand, CommandParser
from django.db.models import Count
from django.utils import timezone

from ...conf import get_config
from ...models import Member, Process, Room


class Command(BaseCommand):
    """List rooms with their members, and every registered process with its heartbeat."""

    help = "List rooms (members, last seq), their members with -v 2, and the daphne processes holding them."

    def add_arguments(self, parser: CommandParser) -> None:
        """Accept room names to show only those."""
        parser.add_argument("room", nargs="*", help="only these rooms")

    def handle(self, *args: typing.Any, **options: typing.Any) -> None:
        """Print rooms, then members (verbosity 2), then processes."""
        rooms = Room.objects.annotate(n=Count("members")).order_by("name")
        if options["room"]:
            rooms = rooms.filter(name__in=options["room"])
        self.stdout.write(f"{'room':<40} {'members':>7} {'last seq':>9}")
        for room in rooms:
            self.stdout.write(f"{room.name:<40} {room.n:>7} {room.last_seq:>9}")
            if options["verbosity"] >= 2:
                for member in Member.objects.filter(room=room).order_by("joined"):
                    name = member.metadata.get("username", "") if isinstance(member.metadata, dict) else ""
                    self.stdout.write(f"    {member.channel_id}  {member.process_id}  {name}")
        self.stdout.write("")
        timeout = float(get_config()["PROCESS_TIMEOUT"])
        now = timezone.now()
        self.stdout.write(f"{'process':<50} {'members':>7} {'heartbeat':>10}  state")
        for process in Process.objects.annotate(n=Count("members")).order_by("id"):
            age = (now - process.last_heartbeat).total_seconds()
            state = "alive" if age <= timeout else "silent"
            self.stdout.write(f"{process.id:<50} {process.n:>7} {age:>9.1f}s  {state}")
