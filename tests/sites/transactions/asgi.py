"""The project's ASGI application, with the routes of ``tests/sites/transactions/app.py`` registered."""

# ruff: noqa: I001  (project.asgi sets Django up: it must be imported first)
from project.asgi import application

import tests.sites.transactions.app  # noqa: F401  (registers /tx-room/{room} on the chat app)

__all__ = ["application"]
