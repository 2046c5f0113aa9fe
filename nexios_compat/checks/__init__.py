"""System checks, registered on import (``apps.py``): ``nexios_compat.E001`` ... and ``W001`` ...

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

from . import layers, limits, security
from .layers import check_channel_layer

__all__ = ["check_channel_layer", "layers", "limits", "security"]
