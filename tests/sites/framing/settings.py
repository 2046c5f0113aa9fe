"""Settings for the framing tests: the project's, no incoming rate limit (a test sends in bursts)."""

from project.settings import *  # noqa: F403

NEXIOS_COMPAT = {"RATE_LIMIT_MESSAGES": None}
