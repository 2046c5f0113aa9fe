"""Settings for the transaction tests: the project's, with the view of ``tests/tx_app.py``."""

from project.settings import *  # noqa: F403

ROOT_URLCONF = "tests.tx_app"
DEBUG_PROPAGATE_EXCEPTIONS = False
