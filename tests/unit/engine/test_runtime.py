"""The engine's entry points find the right hub and tell a sync caller from async code, cheaply."""

from __future__ import annotations

import asyncio
import threading

import pytest
from asgiref.sync import AsyncToSync, async_to_sync, sync_to_async

from nexios_compat.engine import current_hub, get_hub, runtime, stop_hub


def asgiref_says() -> bool:
    """What asgiref's own (slow) lookup answers: the reference the fast path must agree with."""
    return getattr(AsyncToSync.executors, "current", None) is not None


async def both() -> tuple[bool, bool]:
    return runtime._sync_caller_waiting(), asgiref_says()


def from_sync_code() -> tuple[bool, bool]:
    return async_to_sync(both)()


@pytest.fixture(params=["fast", "fallback"])
def lookup(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run each test with the context-variable read, and with asgiref's attribute lookup."""
    if request.param == "fallback":
        monkeypatch.setattr(runtime, "_executors_var", None)
    else:
        assert runtime._executors_var is not None  # the pinned asgiref has the variable
    return str(request.param)


async def test_async_code_is_not_a_waiting_sync_caller(lookup: str) -> None:
    assert await both() == (False, False)


async def test_async_to_sync_from_an_orm_thread_is_a_waiting_sync_caller(lookup: str) -> None:
    # A handler's sync_to_async code calling back into async code: the deadlock case.
    assert await sync_to_async(from_sync_code)() == (True, True)


def test_async_to_sync_from_a_plain_thread_is_a_waiting_sync_caller(lookup: str) -> None:
    assert from_sync_code() == (True, True)


async def test_after_async_to_sync_returns_the_caller_is_no_longer_waiting(lookup: str) -> None:
    await sync_to_async(from_sync_code)()
    assert await both() == (False, False)


@pytest.mark.django_db(transaction=True)
async def test_current_hub_follows_a_new_hub_and_is_none_on_another_loop() -> None:
    first = await get_hub()
    assert current_hub() is first
    await stop_hub()
    assert current_hub() is None  # a stopped hub is not remembered
    second = await get_hub()
    assert second is not first and current_hub() is second
    seen: list[object] = []
    # Another event loop (another thread) has no hub, whatever this loop's lookups left behind.
    thread = threading.Thread(target=lambda: seen.append(asyncio.run(_current())))
    thread.start()
    thread.join()
    assert seen == [None]
    assert current_hub() is second
    await stop_hub()


async def _current() -> object:
    return current_hub()
