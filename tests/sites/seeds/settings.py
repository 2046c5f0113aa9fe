"""Settings for the end-to-end tests: the project's, with a fast expiry sweep."""

from project.settings import *  # noqa: F403

NEXIOS_COMPAT = {"EXPIRE_SWEEP_INTERVAL": 0.2}
