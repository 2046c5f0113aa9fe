"""Checks of the limits a site sets (or should, under ``check --deploy``)."""

from __future__ import annotations

import typing

from django.core.checks import CheckMessage, Tags, Warning, register

from ..conf import get_config


@register(Tags.security, deploy=True)
def check_rate_limit(app_configs: typing.Any = None, **kwargs: typing.Any) -> list[CheckMessage]:
    """Warn a deployment that runs without a rate limit on incoming frames."""
    if get_config()["RATE_LIMIT_MESSAGES"]:
        return []
    return [
        Warning(
            "WebSocket clients may send frames as fast as they like: NEXIOS_COMPAT sets no rate limit.",
            hint="The default keeps Nexios's behaviour (no limit). In production set e.g. "
            "NEXIOS_COMPAT = {'RATE_LIMIT_MESSAGES': 20, 'RATE_LIMIT_BURST': 40} "
            "(over it: close with 1008, or RATE_LIMIT_POLICY='drop'), a MAX_MESSAGE_SIZE your app needs, "
            "and MAX_MEMBERS_PER_ROOM / MAX_ROOMS_PER_CONNECTION.",
            id="nexios_compat.W006",
        )
    ]


# Bounds on what clients can make the server hold (W110-W119) -----------------------


@register(Tags.security, deploy=True)
def check_bounds(app_configs: typing.Any = None, **kwargs: typing.Any) -> list[CheckMessage]:
    """Warn a deployment that lets one client make the server hold unbounded memory."""
    config = get_config()
    messages: list[CheckMessage] = []
    if config["MAX_QUEUED_FRAMES"] is None:
        messages.append(
            Warning(
                "A client may queue any number of frames while its handler is busy: "
                "NEXIOS_COMPAT sets no MAX_QUEUED_FRAMES.",
                hint="The default keeps Nexios's behaviour. In production set e.g. "
                "NEXIOS_COMPAT = {'MAX_QUEUED_FRAMES': 100} "
                "(past it: close with 1008 'Too many queued frames').",
                id="nexios_compat.W110",
            )
        )
    for key in (
        "RESUME_MAX_MESSAGES",
        "RESUME_MAX_BYTES",
        "RESUME_MAX_BUFFERED",
        "RESUME_MAX_BUFFERED_BYTES",
    ):
        if config[key] is None:
            messages.append(
                Warning(
                    f"NEXIOS_COMPAT[{key!r}] is None: one resume may make the server hold "
                    "a room's whole history.",
                    hint="Past the bound a client is told recovered: false (docs/bounds.md); "
                    "keep the default.",
                    id="nexios_compat.W111",
                )
            )
    return messages


# Rolling deploys (W150-W159) ---------------------------------------------------


@register()
def check_shutdown_retry_after(app_configs: typing.Any = None, **kwargs: typing.Any) -> list[CheckMessage]:
    """W150: SHUTDOWN_RETRY_AFTER is not a number of seconds (it is then ignored)."""
    value = get_config()["SHUTDOWN_RETRY_AFTER"]
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        return [
            Warning(
                f"NEXIOS_COMPAT['SHUTDOWN_RETRY_AFTER'] = {value!r} is not a non-negative number of seconds.",
                hint="It is ignored: sockets closed at shutdown get no retry-after hint. Set seconds "
                "(e.g. 5) over which clients should spread their reconnections, or 0.",
                id="nexios_compat.W150",
            )
        ]
    return []
