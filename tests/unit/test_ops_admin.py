"""Room actions in the admin need permissions: view-only staff can look but not act."""

from __future__ import annotations

import typing

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from nexios_compat.models import Message, Room
from tests.unit.test_admin import run_action, save, url

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("hub_cleanup")]

ACTIONS = {"send_announcement", "close_connections", "flush_history"}


def staff(*codenames: str) -> Client:
    """A logged-in staff user (not superuser) holding only these nexios_compat permissions."""
    user = User.objects.create_user("staff-" + "-".join(codenames), password="x", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="nexios_compat", codename__in=codenames)
    )
    client = Client()
    client.force_login(user)
    return client


def offered(client: Client) -> set[str]:
    response = client.get(url("room_changelist"))
    assert response.status_code == 200
    form = response.context["action_form"]  # None when the user may run no action
    return set() if form is None else {name for name, _ in form.fields["action"].choices} - {""}


def test_view_only_staff_is_offered_no_action_and_direct_posts_do_nothing() -> None:
    save("a", 1, 2)
    room = Room.objects.get(name="a")
    client = staff("view_room", "view_message")
    assert offered(client) == set()
    for action, fields in (
        ("flush_history", {}),
        ("send_announcement", {"message": "hijack", "save_history": "on"}),
        ("close_connections", {"reason": "bye"}),
    ):
        response = run_action(client, action, [room], **fields)
        assert response.status_code in (200, 302), action  # the changelist again, nothing done
    assert Message.objects.count() == 2  # neither flushed nor an announcement saved


def test_change_room_allows_announce_and_close_but_flush_needs_delete_message() -> None:
    save("a", 1)
    room = Room.objects.get(name="a")
    changer = staff("view_room", "change_room")
    assert offered(changer) == {"send_announcement", "close_connections"}
    run_action(changer, "flush_history", [room])
    assert Message.objects.count() == 1
    run_action(changer, "send_announcement", [room], message="hello", save_history="on")
    assert Message.objects.count() == 2
    flusher = staff("view_room", "delete_message")
    assert offered(flusher) == {"flush_history"}
    assert run_action(flusher, "flush_history", [room]).status_code == 302
    assert Message.objects.count() == 0


def test_superuser_keeps_every_action(admin_client: Client) -> None:
    assert offered(admin_client) == ACTIONS


def test_calling_an_action_without_its_permission_is_refused() -> None:
    from django.contrib.admin.sites import site
    from django.core.exceptions import PermissionDenied
    from django.test import RequestFactory

    save("a", 1)
    request = RequestFactory().post("/")
    request.user = User.objects.create_user("viewer", is_staff=True)
    model_admin: typing.Any = site._registry[Room]
    with pytest.raises(PermissionDenied):
        model_admin.flush_history(request, Room.objects.all())
    assert Message.objects.count() == 1
