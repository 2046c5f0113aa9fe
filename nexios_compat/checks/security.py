"""Checks of who may do what: room rules, ``/metrics``, tickets and origins."""

from __future__ import annotations

import typing

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from ..conf import get_config
from .layers import INMEMORY

# Room policy ------------------------------------------------------------------------


@register(Tags.security)
def check_room_policy(app_configs: typing.Any = None, **kwargs: typing.Any) -> list[CheckMessage]:
    """E120: ROOM_POLICY cannot be loaded; W121: a rule an earlier one always shadows."""
    from ..policy import load_policy

    value = get_config()["ROOM_POLICY"]
    try:
        policy = load_policy(value)
    except (ImportError, TypeError, ValueError) as exc:
        return [
            Error(
                f"NEXIOS_COMPAT['ROOM_POLICY'] = {value!r} cannot be loaded: {exc}",
                hint="Name a nexios_compat.policy.RoomPolicy or a list of RoomRule by dotted path.",
                id="nexios_compat.E120",
            )
        ]
    messages: list[CheckMessage] = []
    for index, rule in enumerate(policy.rules):
        earlier = policy.rules[:index]
        target = rule.name if rule.name is not None else rule.prefix
        if rule.match is None and target is not None:
            shadow = next((e for e in earlier if e.match is None and e.matches(target)), None)
            if shadow is not None and (rule.name is not None or shadow.name is None):
                messages.append(
                    Warning(
                        f"Room rule {index} ({target!r}) is never used: "
                        f"rule {earlier.index(shadow)} matches first.",
                        hint="The first matching rule wins: put the more specific rule first.",
                        id="nexios_compat.W121",
                    )
                )
    return messages


# Operations (W100-W109) -------------------------------------------------------


@register(Tags.security, deploy=True)
def check_metrics_access(app_configs: typing.Any = None, **kwargs: typing.Any) -> list[CheckMessage]:
    """Warn a deployment that has not said who may read /metrics."""
    config = get_config()
    if config["METRICS_TOKEN"] is not None or config["METRICS_ALLOWED_IPS"] is not None:
        return []
    return [
        Warning(
            "Neither NEXIOS_COMPAT['METRICS_TOKEN'] nor ['METRICS_ALLOWED_IPS'] is set: "
            "/metrics answers everyone under DEBUG, and 403 to everyone (your scraper too) without it.",
            hint="Set METRICS_TOKEN (sent as 'Authorization: Bearer <token>') or METRICS_ALLOWED_IPS "
            "(addresses or networks, matched on REMOTE_ADDR).",
            id="nexios_compat.W100",
        )
    ]


# Tickets for clients without cookies ---------------------------------------------------------

LOCMEM_CACHE = "django.core.cache.backends.locmem.LocMemCache"


@register(Tags.security)
def check_ticket_settings(app_configs: typing.Any = None, **kwargs: typing.Any) -> list[CheckMessage]:
    """Check the ticket settings, and that issued tickets are remembered where every process looks."""
    from ..security import parse_origin

    config = get_config()
    messages: list[CheckMessage] = []
    origins = config["ALLOWED_ORIGINS"]
    entries = [origins] if isinstance(origins, str) else list(origins)
    for entry in entries:
        origin = parse_origin(entry) if isinstance(entry, str) and not isinstance(origins, str) else None
        if origin is None or str(origin) != entry.lower().rstrip("/"):
            messages.append(
                Error(
                    f"NEXIOS_COMPAT['ALLOWED_ORIGINS'] holds {entry!r}, which is not an origin.",
                    hint='Write origins as "https://app.example.com" (no path, no wildcard).',
                    id="nexios_compat.E140",
                )
            )
    age = config["TICKET_MAX_AGE"]
    alias = config["TICKET_CACHE"]
    caches = getattr(settings, "CACHES", {}) or {}
    if isinstance(age, bool) or not isinstance(age, int | float) or age <= 0:
        messages.append(
            Error(
                f"NEXIOS_COMPAT['TICKET_MAX_AGE'] is {age!r}; tickets need a lifetime in seconds.",
                hint="Use a small positive number: 30 (the default) is enough to fetch a ticket and connect.",
                id="nexios_compat.E141",
            )
        )
    if alias not in caches:
        messages.append(
            Error(
                f"NEXIOS_COMPAT['TICKET_CACHE'] is {alias!r}, which is not in CACHES.",
                hint="Name a cache alias every process shares (Redis or the database cache).",
                id="nexios_compat.E142",
            )
        )
    return messages


@register(Tags.security, deploy=True)
def check_ticket_cache(app_configs: typing.Any = None, **kwargs: typing.Any) -> list[CheckMessage]:
    """Warn when tickets are issued but remembered per process while rooms span processes."""
    alias = get_config()["TICKET_CACHE"]
    cache = (getattr(settings, "CACHES", {}) or {}).get(alias, {})
    layer = (getattr(settings, "CHANNEL_LAYERS", {}) or {}).get(get_config()["LAYER_ALIAS"], {})
    messages: list[CheckMessage] = []
    # The in-memory layer serves one process (W001 says so): a per-process cache is then right.
    if (
        not settings.DEBUG
        and cache.get("BACKEND") == LOCMEM_CACHE
        and layer.get("BACKEND") != INMEMORY
        and _ticket_view_mounted()
    ):
        messages.append(
            Warning(
                f"Tickets are remembered in CACHES[{alias!r}], a LocMemCache: each process has its own.",
                hint="A ticket issued by one process is refused by every other. With more than one process, "
                "point TICKET_CACHE at a shared cache (RedisCache, or DatabaseCache after createcachetable).",
                id="nexios_compat.W140",
            )
        )
    return messages


def _ticket_view_mounted() -> bool:
    """Whether the root urlconf routes to a ``TicketView`` (sites that issue no tickets need no cache)."""
    from django.urls import URLPattern, URLResolver, get_resolver

    from ..views import TicketView

    def walk(patterns: typing.Iterable[typing.Any]) -> bool:
        for entry in patterns:
            if isinstance(entry, URLResolver) and walk(entry.url_patterns):
                return True
            view_class = getattr(getattr(entry, "callback", None), "view_class", None)
            if (
                isinstance(entry, URLPattern)
                and isinstance(view_class, type)
                and issubclass(view_class, TicketView)
            ):
                return True
        return False

    return walk(get_resolver().url_patterns)
