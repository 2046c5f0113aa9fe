"""Shared fixtures: a fresh channel layer and hub per test, and real services."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from channels.layers import channel_layers

from nexios_compat.engine import stop_hub

pytest_plugins = ["tests.support.fixtures"]


@pytest.fixture(autouse=True)
def fresh_layer() -> Iterator[None]:
    """Give each test its own in-memory layer (its queues belong to one event loop)."""
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture
async def hub_cleanup() -> AsyncIterator[None]:
    """Stop this test's hub (flushing history writes) before the database is reset."""
    yield
    await stop_hub()
