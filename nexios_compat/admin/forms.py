"""The forms behind the room admin's actions: announce, close connections, confirm a flush."""

from __future__ import annotations

import time
import typing

from django import forms

CLOSE_REASON = "Closed by an administrator"


class AnnouncementForm(forms.Form):
    """What a staff user types to announce something in rooms."""

    message = forms.CharField(
        max_length=2000, widget=forms.Textarea(attrs={"rows": 4, "cols": 60}), label="Announcement"
    )
    as_text = forms.BooleanField(
        required=False,
        label="Send the text alone",
        help_text='Unticked, members receive {"type": "announcement", "message": "...", '
        '"timestamp": ...} as JSON; ticked, just the text.',
    )
    save_history = forms.BooleanField(
        required=False,
        initial=True,
        label="Save to history",
        help_text="Saved announcements are replayed to members who reconnect with ?since=.",
    )

    def payload(self) -> typing.Any:
        """Return the payload to broadcast."""
        text = self.cleaned_data["message"]
        if self.cleaned_data["as_text"]:
            return text
        return {"type": "announcement", "message": text, "timestamp": time.time()}


class CloseForm(forms.Form):
    """The close reason sent to every connection of the rooms."""

    reason = forms.CharField(
        required=False,
        initial=CLOSE_REASON,
        max_length=123,
        help_text="Sent with close code 1000; at most 123 bytes of UTF-8.",
    )

    def clean_reason(self) -> str:
        """Keep the reason within what a WebSocket close frame can carry."""
        reason: str = self.cleaned_data["reason"]
        if len(reason.encode("utf-8")) > 123:
            raise forms.ValidationError("A close reason can hold at most 123 bytes of UTF-8.")
        return reason


class ConfirmForm(forms.Form):
    """No fields: the page only asks for confirmation."""


# Rooms ------------------------------------------------------------------------
