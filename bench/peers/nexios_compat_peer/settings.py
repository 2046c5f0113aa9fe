"""The example project's settings with the per-connection rate limit off.

The load generator's publisher sends as fast as the window lets it, which the
default limit (20 frames/s) would rightly close with 1008.
"""

from project.settings import *  # noqa: F403

NEXIOS_COMPAT = {"RATE_LIMIT_MESSAGES": None}
