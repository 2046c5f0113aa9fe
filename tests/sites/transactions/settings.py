"""Settings for the transaction tests: the project's, with the view of ``tests/sites/transactions/app.py``."""

from project.settings import *  # noqa: F403

ROOT_URLCONF = "tests.sites.transactions.app"
DEBUG_PROPAGATE_EXCEPTIONS = False
