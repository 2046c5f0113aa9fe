"""System checks: ``nexios_compat.E001`` ... and ``W001`` ...

- E001: ``LAYER_ALIAS`` is not in ``CHANNEL_LAYERS``.
- E002: the layer's ``BACKEND`` cannot be imported.
- E003: the layer has no groups (rooms are layer groups: we cannot serve it).
- E004: a channels_redis Sentinel host without ``sentinels`` or ``master_name``.
- W001: the in-memory layer with ``DEBUG`` off (it cannot span processes).
- W002: a layer ``capacity`` under 1000 (busy rooms lose broadcasts).
- W003: a ``RedisChannelLayer`` host whose socket timeout is not above channels_redis's 5 s BZPOPMIN.
- W004: a ``RedisChannelLayer`` host without ``max_connections`` (redis-py caps a pool at 100).
- W005: ``PROCESS_TIMEOUT`` under twice ``HEARTBEAT_INTERVAL`` (live processes get reaped).
- W006 (``check --deploy``): no incoming rate limit (the default, as in Nexios).
- W100 (``check --deploy``): neither ``METRICS_TOKEN`` nor ``METRICS_ALLOWED_IPS`` set.
- W110 (``check --deploy``): no ``MAX_QUEUED_FRAMES`` (the default, as in Nexios).
- W111 (``check --deploy``): a resume bound (``RESUME_MAX_*``) set to None.
- E120: ``ROOM_POLICY`` cannot be loaded; W121: a room rule an earlier one shadows.
- W140 (``check --deploy``): ``TicketView`` mounted, ``DEBUG`` off, a layer that spans processes
  and a process-local (``LocMemCache``) ``TICKET_CACHE``.
- E140: an ``ALLOWED_ORIGINS`` entry that is not ``scheme://host[:port]``.
- E141: ``TICKET_MAX_AGE`` not a positive number; E142: ``TICKET_CACHE`` not in ``CACHES``.
- E160: a Redis layer host whose address redis-py cannot open (``valkey://``, a Redis Cluster scheme).
- W160: a ``RedisChannelLayer`` sharded over several hosts (the site's own ``send`` to a channel is lost).
"""

from __future__ import annotations

import typing
from urllib.parse import parse_qs, urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.utils.module_loading import import_string

from .conf import get_config

INMEMORY = "channels.layers.InMemoryChannelLayer"
REDIS = "channels_redis.core.RedisChannelLayer"
PUBSUB = "channels_redis.pubsub.RedisPubSubChannelLayer"
# Layers the cluster tests run on; any other is checked for what rooms need.
KNOWN_LAYERS = {INMEMORY, REDIS, PUBSUB}
# channels_redis blocks on BZPOPMIN for this long; redis-py 8 times sockets out after 5 s by default.
REDIS_POP_TIMEOUT = 5.0
REDIS_DEFAULT_SOCKET_TIMEOUT = 5.0


@register(Tags.compatibility)
def check_channel_layer(app_configs: typing.Any = None, **kwargs: typing.Any) -> list[CheckMessage]:
    """Check that the configured layer exists and can span the processes it must."""
    alias = get_config()["LAYER_ALIAS"]
    layers = getattr(settings, "CHANNEL_LAYERS", {}) or {}
    if alias not in layers:
        return [
            Error(
                f"NEXIOS_COMPAT['LAYER_ALIAS'] is {alias!r}, which is not in CHANNEL_LAYERS.",
                hint="Add it to CHANNEL_LAYERS (channels_redis for several processes).",
                id="nexios_compat.E001",
            )
        ]
    backend = layers[alias].get("BACKEND", "")
    config = layers[alias].get("CONFIG", {}) or {}
    if backend not in KNOWN_LAYERS:
        unusable = _check_other_backend(alias, backend)
        if unusable:
            return unusable
    messages: list[CheckMessage] = []
    if backend == INMEMORY and not settings.DEBUG:
        messages.append(
            Warning(
                "The in-memory channel layer cannot span processes.",
                hint="With DEBUG off you are likely running several daphne processes: "
                "set REDIS_URL / use channels_redis.core.RedisChannelLayer.",
                id="nexios_compat.W001",
            )
        )
    # The pub/sub layer keeps no capacity: it queues in the process without a bound.
    capacity = config.get("capacity", 100)
    if backend != PUBSUB and capacity < 1000:
        messages.append(
            Warning(
                f"The channel layer's capacity is {capacity}; busy rooms lose broadcasts beyond it.",
                hint="Set CHANNEL_LAYERS[alias]['CONFIG']['capacity'] to 10000 or more.",
                id="nexios_compat.W002",
            )
        )
    if backend in (REDIS, PUBSUB):
        for host in config.get("hosts") or [{}]:
            messages += _check_sentinel_host(host)
            # The pub/sub layer reads with 0.1 s polls and publishes on one connection
            # at a time: the pop timeout and pool size traps are RedisChannelLayer's.
            if backend == REDIS:
                messages += _check_redis_host(host)
    return messages


def _check_other_backend(alias: str, backend: str) -> list[CheckMessage]:
    """Explain why a layer we have not tested cannot serve rooms, if it cannot."""
    try:
        layer_class = import_string(backend)
    except ImportError as error:
        return [
            Error(
                f"CHANNEL_LAYERS[{alias!r}]['BACKEND'] is {backend!r}, which cannot be imported ({error}).",
                hint=f"Install the package that provides it, or use {REDIS} or {PUBSUB}.",
                id="nexios_compat.E002",
            )
        ]
    if "groups" not in getattr(layer_class, "extensions", ()) or not hasattr(layer_class, "group_send"):
        return [
            Error(
                f"The channel layer {backend!r} has no groups: nexios_compat cannot serve rooms on it.",
                hint="Every room is a layer group its processes subscribe to; use a layer with the "
                f"'groups' extension: {INMEMORY} (one process), {REDIS} or {PUBSUB} (several).",
                id="nexios_compat.E003",
            )
        ]
    return []


def _check_sentinel_host(host: typing.Any) -> list[CheckMessage]:
    """Check that a Sentinel host entry has both halves channels_redis needs."""
    if not isinstance(host, dict) or ("master_name" in host) == ("sentinels" in host):
        return []
    missing = "sentinels" if "master_name" in host else "master_name"
    return [
        Error(
            f"A channel layer host reaches Redis through Sentinel but has no {missing!r}: {_shown(host)}.",
            hint="A Sentinel host needs both, e.g. {'sentinels': [('sentinel-1', 26379)], "
            "'master_name': 'mymaster', ...}; without them channels_redis fails on the first message.",
            id="nexios_compat.E004",
        )
    ]


def _shown(host: dict[str, typing.Any]) -> str:
    """A host entry without its passwords."""
    secret = {"password", "sentinel_kwargs"}
    return repr({key: "***" if key in secret else value for key, value in host.items()})


def _check_redis_host(host: typing.Any) -> list[CheckMessage]:
    """Check one channels_redis host entry against redis-py 8's defaults."""
    options: dict[str, typing.Any] = dict(host) if isinstance(host, dict) else {}
    address = options.get("address", host if isinstance(host, str) else "")
    if isinstance(address, str) and address:
        # Query parameters of the URL win over keyword arguments in redis-py.
        options.update({key: values[-1] for key, values in parse_qs(urlsplit(address).query).items()})
    if isinstance(address, str) and address:
        shown = _without_password(address)
    else:
        shown = _shown(host) if isinstance(host, dict) else repr(host)
    messages: list[CheckMessage] = []
    timeout = options.get("socket_timeout", REDIS_DEFAULT_SOCKET_TIMEOUT)
    if timeout is not None and float(timeout) <= REDIS_POP_TIMEOUT:
        messages.append(
            Warning(
                f"The Redis host {shown} has a socket timeout of {timeout} s, not above the "
                f"{REDIS_POP_TIMEOUT:g} s that channels_redis blocks waiting for messages.",
                hint="Idle readers then fail with TimeoutError and reconnect over and over: "
                "set 'socket_timeout': 15 in the host dict.",
                id="nexios_compat.W003",
            )
        )
    if "max_connections" not in options:
        messages.append(
            Warning(
                f"The Redis host {shown} has no max_connections: redis-py caps its pool at 100.",
                hint="Layer calls running at once beyond it fail with MaxConnectionsError: set "
                "'max_connections' to about the sockets one process serves (see docs/deployment.md).",
                id="nexios_compat.W004",
            )
        )
    return messages


def _without_password(address: str) -> str:
    parts = urlsplit(address)
    if parts.password is None:
        return address
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


@register(Tags.compatibility)
def check_presence_timing(app_configs: typing.Any = None, **kwargs: typing.Any) -> list[CheckMessage]:
    """Check that a live process always heartbeats well within PROCESS_TIMEOUT."""
    config = get_config()
    interval, timeout = float(config["HEARTBEAT_INTERVAL"]), float(config["PROCESS_TIMEOUT"])
    if timeout < 2 * interval:
        return [
            Warning(
                f"PROCESS_TIMEOUT ({timeout:g} s) is less than twice HEARTBEAT_INTERVAL ({interval:g} s).",
                hint="One late heartbeat would get a live process's members removed by its peers "
                "(it rejoins at its next heartbeat). Keep PROCESS_TIMEOUT at 3 or more intervals.",
                id="nexios_compat.W005",
            )
        ]
    return []


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


# Room policy ------------------------------------------------------------------------


@register(Tags.security)
def check_room_policy(app_configs: typing.Any = None, **kwargs: typing.Any) -> list[CheckMessage]:
    """E120: ROOM_POLICY cannot be loaded; W121: a rule an earlier one always shadows."""
    from .policy import load_policy

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


# Tickets for clients without cookies ---------------------------------------------------------

LOCMEM_CACHE = "django.core.cache.backends.locmem.LocMemCache"


@register(Tags.security)
def check_ticket_settings(app_configs: typing.Any = None, **kwargs: typing.Any) -> list[CheckMessage]:
    """Check the ticket settings, and that issued tickets are remembered where every process looks."""
    from .security import parse_origin

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

    from .views import TicketView

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


# Sharded layers (W160-W169, E160-E169) ----------------------------------------------------

# The schemes redis-py (and so channels_redis) opens; Valkey answers on redis:// too.
REDIS_SCHEMES = {"redis", "rediss", "unix"}


@register(Tags.compatibility)
def check_sharded_layer(app_configs: typing.Any = None, **kwargs: typing.Any) -> list[CheckMessage]:
    """E160: a host address redis-py cannot open; W160: a RedisChannelLayer sharded over several hosts."""
    layer = (getattr(settings, "CHANNEL_LAYERS", {}) or {}).get(get_config()["LAYER_ALIAS"], {})
    backend = layer.get("BACKEND", "")
    if backend not in (REDIS, PUBSUB):
        return []
    hosts = list((layer.get("CONFIG", {}) or {}).get("hosts") or [])
    messages: list[CheckMessage] = []
    for host in hosts:
        address = host.get("address") if isinstance(host, dict) else host
        scheme = urlsplit(address).scheme if isinstance(address, str) else "redis"
        if scheme not in REDIS_SCHEMES:
            messages.append(
                Error(
                    f"A channel layer host address is {_without_password(str(address))!r}: "
                    f"redis-py opens only {', '.join(sorted(REDIS_SCHEMES))} URLs.",
                    hint="Valkey answers redis:// URLs: write redis://host:6379/0. channels_redis cannot "
                    "talk to a Redis Cluster (its nodes answer MOVED for keys they do not own): list "
                    "standalone servers as separate 'hosts' and channels_redis shards over them itself.",
                    id="nexios_compat.E160",
                )
            )
    if backend == REDIS and len(hosts) > 1:
        messages.append(
            Warning(
                f"The RedisChannelLayer is sharded over {len(hosts)} hosts: channels_redis queues a "
                "send() to a process-local channel (a consumer's channel_name) on the server its whole "
                "name hashes to, but receives it from the one its part up to '!' hashes to, so most such "
                "sends are never read (django/channels#1492).",
                hint="Rooms are not affected: nexios_compat picks a channel both hashes agree on and "
                "sends through groups. Your own consumers' channel_layer.send(channel_name) are: use "
                f"{PUBSUB} on the same hosts (it hashes one name both ways), or a single host.",
                id="nexios_compat.W160",
            )
        )
    return messages
