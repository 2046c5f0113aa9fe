"""Settings for the Nexios 3.12 port: the project's, with no ``NEXIOS_COMPAT`` at all (the defaults)."""

from project.settings import *  # noqa: F403

del NEXIOS_COMPAT  # noqa: F821  (a ported site has none)
