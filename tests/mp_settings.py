"""Settings for the multi-process tests: the project's, with NEXIOS_COMPAT from ``$MP_NEXIOS_COMPAT``.

Tests that need the defaults (the 15 s SIGKILL bound) leave the variable unset.
"""

import json
import os

from project.settings import *  # noqa: F403

NEXIOS_COMPAT = json.loads(os.environ.get("MP_NEXIOS_COMPAT") or "{}")
