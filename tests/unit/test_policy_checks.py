"""The room policy's system checks."""

from __future__ import annotations

import typing

from django.core.checks import run_checks

from nexios_compat.policy import RoomRule


def ids(settings: typing.Any, policy: object) -> list[str]:
    settings.NEXIOS_COMPAT = {"ROOM_POLICY": policy}
    return [m.id for m in run_checks() if m.id and m.id.startswith("nexios_compat.") and m.id[-3:-1] == "12"]


def test_an_unloadable_policy_is_an_error(settings: typing.Any) -> None:
    assert ids(settings, "no.such.policy") == ["nexios_compat.E120"]
    assert ids(settings, "chat.policy.rooms") == []


def test_a_shadowed_rule_is_a_warning(settings: typing.Any) -> None:
    assert ids(settings, [RoomRule(prefix="a-"), RoomRule(prefix="a-b")]) == ["nexios_compat.W121"]
    assert ids(settings, [RoomRule(prefix="a-b"), RoomRule(prefix="a-")]) == []
