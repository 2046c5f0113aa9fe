"""Settings for the multi-process tests: the project's, with NEXIOS_COMPAT from ``$MP_NEXIOS_COMPAT``.

Tests that need the defaults (the 15 s SIGKILL bound) leave the variable unset.
``$MP_LAYER_LAG`` (seconds) makes this process publish its broadcasts that late.
"""

import json
import os

from project.settings import *  # noqa: F403

NEXIOS_COMPAT = json.loads(os.environ.get("MP_NEXIOS_COMPAT") or "{}")

if os.environ.get("MP_LAYER_LAG"):
    CHANNEL_LAYERS["default"]["BACKEND"] = "tests.layers.LaggingRedisChannelLayer"  # noqa: F405
    CHANNEL_LAYERS["default"]["CONFIG"]["lag"] = float(os.environ["MP_LAYER_LAG"])  # noqa: F405
