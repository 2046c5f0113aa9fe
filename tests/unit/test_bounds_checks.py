"""Deploy checks for the bounds: W110 and W111."""

from __future__ import annotations

import typing

from django.core.checks import run_checks


def ids(deploy: bool = True) -> set[str]:
    return {message.id for message in run_checks(include_deployment_checks=deploy) if message.id}


def test_no_queued_frame_bound_is_nudged_on_deploy_only(settings: typing.Any) -> None:
    assert "nexios_compat.W110" in ids()
    assert "nexios_compat.W110" not in ids(deploy=False)
    settings.NEXIOS_COMPAT = {"MAX_QUEUED_FRAMES": 100}
    assert "nexios_compat.W110" not in ids()


def test_an_unbounded_resume_is_nudged(settings: typing.Any) -> None:
    assert "nexios_compat.W111" not in ids()
    settings.NEXIOS_COMPAT = {"RESUME_MAX_BUFFERED": None}
    assert "nexios_compat.W111" in ids()
