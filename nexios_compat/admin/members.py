"""Django admin: live members as the membership rows record them (read-only)."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from ..models import Member
from .messages import _json_text


@admin.register(Member)
class MemberAdmin(admin.ModelAdmin):
    """Who is connected to which room now, held by which server process (read-only)."""

    list_display = ("channel_id", "room", "metadata_json", "process", "joined", "last_seen")
    list_filter = (("room", admin.RelatedOnlyFieldListFilter),)
    list_select_related = ("room", "process")
    search_fields = ("room__name",)
    fields = ("room", "channel_id", "metadata_json", "process", "joined", "last_seen")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Never: rows follow the sockets."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: Member | None = None) -> bool:
        """Never: rows follow the sockets."""
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Member | None = None) -> bool:
        """Never: deleting a row would not disconnect the socket; close the room instead."""
        return False

    @admin.display(description="metadata")
    def metadata_json(self, member: Member) -> str:
        """The channel's metadata as JSON."""
        return _json_text(member.metadata)
