"""Django admin: saved messages, read-only, deletable for moderation."""

from __future__ import annotations

import json
import typing

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.text import Truncator

from ..models import Message

PREVIEW_CHARS = 120
HEX_PREVIEW_BYTES = 64


def _json_text(value: typing.Any, indent: int | None = None) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=False)


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    """Saved messages: read-only, deletable for moderation."""

    list_display = ("seq", "room", "preview", "kind", "size", "sender", "created")
    list_display_links = ("seq", "preview")
    list_filter = ("room", "kind")
    list_select_related = ("room",)
    date_hierarchy = "created"
    search_fields = ("text",)
    search_help_text = "Search the text of JSON and text messages."
    ordering = ("-created", "-seq")
    show_full_result_count = False
    fields = ("room", "seq", "uuid", "kind", "payload", "size", "sender", "created")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Never: messages are saved by ``group_send``."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: Message | None = None) -> bool:
        """Never: history is what was sent."""
        return False

    @admin.display(description="payload")
    def preview(self, message: Message) -> str:
        """One line: JSON or text cut short, or the size of a binary payload."""
        if message.kind == Message.Kind.BYTES:
            return f"binary, {message.size} bytes"
        text = message.text or ""
        if message.kind == Message.Kind.JSON:
            text = _json_text(json.loads(text or "null"))
        return Truncator(" ".join(text.split())).chars(PREVIEW_CHARS)

    @admin.display(description="payload")
    def payload(self, message: Message) -> str:
        """The whole payload: indented JSON, the text, or a hex dump of the bytes' start."""
        if message.kind == Message.Kind.BYTES:
            data = bytes(message.data or b"")
            more = " ..." if len(data) > HEX_PREVIEW_BYTES else ""
            return format_html("{} bytes<pre>{}{}</pre>", len(data), data[:HEX_PREVIEW_BYTES].hex(" "), more)
        text = message.text or ""
        if message.kind == Message.Kind.JSON:
            text = _json_text(json.loads(text or "null"), indent=2)
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', text)


# Live members -----------------------------------------------------------------
