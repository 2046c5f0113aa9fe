"""History over HTTP: pages, limits, room rules and headers."""

from __future__ import annotations

import typing

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from nexios_compat.models import Room
from nexios_compat.stores.history import DatabaseHistoryStore
from tests.support.helpers import pending

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls("tests.sites.views.urls")]


def save(room: str, *payloads: typing.Any) -> None:
    DatabaseHistoryStore().append([pending(room, payload) for payload in payloads])


def test_pages_go_back_oldest_first_within_a_page_until_none_is_left(client: Client) -> None:
    save("r", *range(1, 8))
    newest = client.get("/open/r/?limit=3").json()
    assert newest["room"] == "r" and newest["last_seq"] == 7
    assert newest["epoch"] == Room.objects.get(name="r").epoch
    assert [m["payload"] for m in newest["messages"]] == [5, 6, 7]
    assert [m["seq"] for m in newest["messages"]] == [5, 6, 7]
    older = client.get(f"/open/r/?before={newest['before']}&limit=3").json()
    assert [m["seq"] for m in older["messages"]] == [2, 3, 4]
    oldest = client.get(f"/open/r/?before={older['before']}&limit=3").json()
    assert [m["seq"] for m in oldest["messages"]] == [1]
    assert oldest["before"] is None
    exact = client.get("/open/r/?before=4&limit=3").json()
    assert ([m["seq"] for m in exact["messages"]], exact["before"]) == ([1, 2, 3], None)


def test_payload_kinds_and_an_unknown_room() -> None:
    save("k", {"a": 1}, "text", b"\x00\xff")
    messages = Client().get("/open/k/").json()["messages"]
    assert [(m["kind"], m["payload"]) for m in messages] == [
        ("json", {"a": 1}),
        ("text", "text"),
        ("bytes", "AP8="),
    ]
    empty = Client().get("/open/nothing-here/").json()
    assert (empty["messages"], empty["before"], empty["last_seq"], empty["epoch"]) == ([], None, 0, "")


def test_limit_is_capped_and_bad_parameters_are_refused(client: Client) -> None:
    save("big", *range(250))
    assert len(client.get("/open/big/?limit=100000").json()["messages"]) == 200
    assert len(client.get("/open/big/?limit=0").json()["messages"]) == 1
    assert client.get("/open/big/?limit=-1").status_code == 400
    assert client.get("/open/big/?before=x").status_code == 400
    assert client.get("/open/" + "x" * 20_000 + "/").status_code == 400


def test_headers_say_nosniff_and_cache_only_older_pages_privately(client: Client) -> None:
    save("h", 1, 2)
    newest = client.get("/open/h/")
    assert newest["Content-Type"] == "application/json"
    assert newest["X-Content-Type-Options"] == "nosniff"
    assert newest["Cache-Control"] == "private, no-cache"
    assert "Cookie" in newest["Vary"]
    older = client.get("/open/h/?before=2")
    assert older["Cache-Control"] == "private, max-age=60"
    refused = client.get("/login/h/")
    assert refused.status_code == 403 and refused["X-Content-Type-Options"] == "nosniff"


def test_room_rules_are_the_sockets(client: Client) -> None:
    save("a", 1)
    save("b", 1)
    assert client.get("/login/a/").status_code == 403
    assert client.get("/perm/a/").status_code == 403
    assert client.get("/custom/a/").status_code == 200
    assert client.get("/custom/b/").status_code == 403
    user = User.objects.create_user("ann", password="pw")
    client.force_login(user)
    assert client.get("/login/a/").status_code == 200
    assert client.get("/perm/a/").status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_message"))
    assert client.get("/perm/a/").status_code == 200


def test_a_view_without_an_endpoint_is_governed_by_the_room_policy_alone(client: Client) -> None:
    # The room policy is the gate now (docs/policy.md); without one every room is open, as in Nexios.
    assert client.get("/unset/a/").status_code == 200
