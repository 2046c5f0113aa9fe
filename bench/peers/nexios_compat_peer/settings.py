"""The example project's settings as a deployment runs them: DEBUG off, rate limit off.

- ``DEBUG = False``: ``project.settings`` turns DEBUG on unless ``DEBUG`` is set in the
  environment, and with DEBUG on Django keeps every SQL query in ``connection.queries_log``
  (up to 9000): CPU per query, and memory that the idle-connection measurement counted as
  per-connection cost (each join writes presence). The other peers run with DEBUG off.
- ``/metrics`` answers 127.0.0.1 (``METRICS_ALLOWED_IPS``), for the chat site's per-step counts.
- The per-connection rate limit is off: the load generator's publisher sends as fast as
  the window lets it, which the default limit (20 frames/s) would rightly close with 1008.
"""

from project.settings import *  # noqa: F403

DEBUG = False
# One process on the in-memory layer is what the single-process systems measure on purpose.
SILENCED_SYSTEM_CHECKS = ["nexios_compat.W001"]

# /metrics for the bench's own address only (the chat site counts set-asides and hold-backs per step).
NEXIOS_COMPAT = {"RATE_LIMIT_MESSAGES": None, "METRICS_ALLOWED_IPS": ["127.0.0.1/32"]}
