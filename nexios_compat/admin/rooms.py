"""Django admin: rooms with who is connected now, saved messages for moderation, live members."""

from __future__ import annotations

from asgiref.sync import async_to_sync
from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from ..models import Member, Message, Room
from ..stores.history import get_history_store
from ..websockets.channels import ChannelBox
from ..websockets.utils import WS_1000_NORMAL_CLOSURE, GroupSendStatusEnum
from .forms import AnnouncementForm, CloseForm, ConfirmForm
from .messages import _json_text
from .presence import presence_table

# Members listed on a room's page; the rest are one click away.
ROOM_PAGE_MEMBERS = 50


def _count_of(model: type[models.Model]) -> Coalesce:
    """Count a model's rows per room, as a subquery (two joined counts would multiply)."""
    rows = model._default_manager.filter(room=OuterRef("pk")).order_by().values("room")
    return Coalesce(Subquery(rows.annotate(n=Count("pk")).values("n")), 0)


def _changelist(model: type[models.Model], room: Room) -> str:
    opts = model._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist") + f"?room__id__exact={room.pk}"


# Action forms -----------------------------------------------------------------


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    """Rooms with live member and message counts; announce, disconnect and flush from here."""

    list_display = ("name", "live_members", "message_count", "last_activity", "last_seq")
    search_fields = ("name",)
    actions = ("send_announcement", "close_connections", "flush_history")
    fieldsets = (
        (None, {"fields": ("name", "created", "last_activity", "last_seq", "message_count")}),
        ("Retention", {"fields": ("max_messages", "max_age")}),
        ("Connected now", {"fields": ("live_members", "present_now", "connected_now")}),
    )
    formfield_overrides = {models.TextField: {"widget": forms.TextInput(attrs={"size": 60})}}

    def get_queryset(self, request: HttpRequest) -> QuerySet[Room]:
        """Annotate each room with its live member and saved message counts."""
        return (
            super()
            .get_queryset(request)
            .annotate(live_member_count=_count_of(Member), message_total=_count_of(Message))
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Room | None = None) -> tuple[str, ...]:
        """Keep the counters read-only, and the name once the room exists (it is the key)."""
        fields = (
            "created",
            "last_activity",
            "last_seq",
            "message_count",
            "live_members",
            "present_now",
            "connected_now",
        )
        return ("name", *fields) if obj is not None else fields

    def has_delete_permission(self, request: HttpRequest, obj: Room | None = None) -> bool:
        """Never: a re-created room would number its messages from 1 again and break resume."""
        return False

    @admin.display(description="live members", ordering="live_member_count")
    def live_members(self, room: Room) -> str:
        """Link to who is connected to the room now."""
        count = getattr(room, "live_member_count", None)
        if count is None:
            count = room.members.count()
        return format_html('<a href="{}">{}</a>', _changelist(Member, room), count)

    @admin.display(description="saved messages", ordering="message_total")
    def message_count(self, room: Room) -> str:
        """Link to the room's saved messages."""
        count = getattr(room, "message_total", None)
        if count is None:
            count = room.messages.count()
        return format_html('<a href="{}">{}</a>', _changelist(Message, room), count)

    @admin.display(description="present now")
    def present_now(self, room: Room) -> SafeString | str:
        """Live presence: each key with its tabs, username and connections (since when, which process)."""
        return presence_table(room)

    @admin.display(description="connected now")
    def connected_now(self, room: Room) -> SafeString | str:
        """Table of the room's live members with their metadata."""
        if room.pk is None:
            return "-"
        members = list(room.members.select_related("process").order_by("joined", "pk")[:ROOM_PAGE_MEMBERS])
        if not members:
            return "Nobody."
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            (
                (member.channel_id, _json_text(member.metadata), member.process, member.joined)
                for member in members
            ),
        )
        return format_html(
            "<table><thead><tr><th>channel</th><th>metadata</th><th>server process</th>"
            '<th>joined</th></tr></thead><tbody>{}</tbody></table><p><a href="{}">All live members of '
            "this room</a></p>",
            rows,
            _changelist(Member, room),
        )

    # Actions ----------------------------------------------------------------

    def _action_page(
        self,
        request: HttpRequest,
        queryset: QuerySet[Room],
        action: str,
        title: str,
        description: str,
        submit_label: str,
        form: forms.Form,
    ) -> TemplateResponse:
        """Render the intermediate page that asks for the action's input or confirmation."""
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "description": description,
            "submit_label": submit_label,
            "form": form,
            "rooms": queryset,
            "action": action,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "opts": self.model._meta,
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/nexios_compat/room/action_form.html", context)

    # Who may run each action. Rooms cannot be deleted, so Django's permissions
    # on Room are view and change: announcing and closing need change_room, and
    # flushing (deleting saved messages) needs delete_message. No migration.
    def has_announce_permission(self, request: HttpRequest) -> bool:
        """Allow sending announcements to staff who may change rooms."""
        return self.has_change_permission(request)

    def has_disconnect_permission(self, request: HttpRequest) -> bool:
        """Allow closing rooms' connections to staff who may change rooms."""
        return self.has_change_permission(request)

    def has_flush_permission(self, request: HttpRequest) -> bool:
        """Allow deleting a room's saved messages to staff who may delete messages."""
        opts = Message._meta
        return request.user.has_perm(f"{opts.app_label}.{get_permission_codename('delete', opts)}")

    def _require(self, request: HttpRequest, permission: str) -> None:
        """Refuse an action to a user without its permission, however it was called."""
        # Django drops actions the user may not run from get_actions(), which is what
        # response_action() looks a POSTed action up in; this also covers a subclass
        # or a view that calls the action method itself.
        if not getattr(self, f"has_{permission}_permission")(request):
            raise PermissionDenied

    @admin.action(description="Send an announcement to the selected rooms", permissions=["announce"])
    def send_announcement(self, request: HttpRequest, queryset: QuerySet[Room]) -> TemplateResponse | None:
        """Ask for a text, then broadcast it to every member of each room, in every process."""
        self._require(request, "announce")
        form = AnnouncementForm(request.POST if "apply" in request.POST else None)
        if not form.is_valid():
            return self._action_page(
                request,
                queryset,
                "send_announcement",
                "Send an announcement",
                "Every member connected to these rooms receives the announcement now.",
                "Send",
                form,
            )
        names = list(queryset.values_list("name", flat=True))
        payload, save = form.payload(), form.cleaned_data["save_history"]

        async def announce() -> int:
            statuses = [await ChannelBox.group_send(name, payload, save_history=save) for name in names]
            return statuses.count(GroupSendStatusEnum.GROUP_SEND)

        reached = async_to_sync(announce)()
        self.message_user(
            request,
            f"Announcement sent to {len(names)} room(s), {reached} of them with members connected now"
            + ("; saved to history." if save else "."),
            messages.SUCCESS,
        )
        return None

    @admin.action(description="Close every connection in the selected rooms", permissions=["disconnect"])
    def close_connections(self, request: HttpRequest, queryset: QuerySet[Room]) -> TemplateResponse | None:
        """Ask for a reason, then close every socket in each room, in every process."""
        self._require(request, "disconnect")
        form = CloseForm(request.POST if "apply" in request.POST else None)
        if not form.is_valid():
            return self._action_page(
                request,
                queryset,
                "close_connections",
                "Close connections",
                "Every connection to these rooms is closed (code 1000). Clients may reconnect.",
                "Close connections",
                form,
            )
        rooms = list(queryset)
        reason = form.cleaned_data["reason"]

        async def close() -> None:
            for room in rooms:
                await ChannelBox.close_all_connections(
                    group_name=room.name, code=WS_1000_NORMAL_CLOSURE, reason=reason
                )

        async_to_sync(close)()
        connected = sum(getattr(room, "live_member_count", 0) for room in rooms)
        self.message_user(
            request,
            f"Closing the connections of {len(rooms)} room(s) ({connected} were connected).",
            messages.SUCCESS,
        )
        return None

    @admin.action(description="Delete the saved messages of the selected rooms", permissions=["flush"])
    def flush_history(self, request: HttpRequest, queryset: QuerySet[Room]) -> TemplateResponse | None:
        """Confirm, then delete every saved message of each room (numbers keep counting, new epoch)."""
        self._require(request, "flush")
        form = ConfirmForm(request.POST if "apply" in request.POST else None)
        if not form.is_valid():
            return self._action_page(
                request,
                queryset,
                "flush_history",
                "Delete saved messages",
                "Every saved message of these rooms is deleted; this cannot be undone. "
                "New messages continue the rooms' numbering in a new epoch: clients resuming "
                "from before the flush are told to reload.",
                "Yes, delete the messages",
                form,
            )
        store = get_history_store()
        names = list(queryset.values_list("name", flat=True))
        deleted = sum(store.flush(name) for name in names)
        self.message_user(
            request, f"Deleted {deleted} saved message(s) from {len(names)} room(s).", messages.SUCCESS
        )
        return None
