"""Settings for the security, fuzz and leak tests: the project's, plus one trusted origin."""

from project.settings import *  # noqa: F403

CSRF_TRUSTED_ORIGINS = ["https://trusted.example", "https://*.trusted-wildcard.example"]
