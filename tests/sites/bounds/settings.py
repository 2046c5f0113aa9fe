"""Settings for the bounds tests under daphne: the security tests' settings, frames queued bounded."""

from tests.sites.security.settings import *  # noqa: F403

NEXIOS_COMPAT = {**NEXIOS_COMPAT, "MAX_QUEUED_FRAMES": 20}  # noqa: F405
