"""Settings for the send-backlog tests: the project's, no incoming rate limit, a small backlog bound.

``BP_NO_LIMIT=1`` switches the bound off (the control test).
"""

import os

from project.settings import *  # noqa: F403

NEXIOS_COMPAT = {
    "RATE_LIMIT_MESSAGES": None,
    "MAX_SEND_BACKLOG": None if os.environ.get("BP_NO_LIMIT") else 256 * 1024,
}
