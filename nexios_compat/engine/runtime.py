"""The engine's entry points: this loop's hub, and cluster-wide sends that work with or without one."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import typing
import uuid
import weakref

from asgiref.sync import AsyncToSync, async_to_sync

from .. import metrics
from ..conf import get_config
from ..encoding import FrameCache, pack
from ..rooms import control_group, layer_group
from ..stores.history import PendingMessage, SavedMessage
from ..stores.services import HistoryService, MembershipService
from . import wire
from .hub import Hub
from .layer import get_layer

_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()
# The last (loop, hub) looked up: every broadcast asks for its loop's hub several times,
# and a weak-keyed lookup builds a weak reference each time. Reset by get_hub/stop_hub.
_last: tuple[weakref.ref[asyncio.AbstractEventLoop], Hub] | None = None


def _live_gauges() -> list[dict[str, float]]:
    return [hub.gauges() for hub in list(_hubs.values()) if hub.started and not hub.stopped]


metrics.bind_hubs(_live_gauges)


def current_hub() -> Hub | None:
    """Return this event loop's hub if it has been created, else ``None``."""
    global _last
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    last = _last
    if last is not None and last[0]() is loop:
        return last[1]
    hub = _hubs.get(loop)
    if hub is not None:
        _last = (weakref.ref(loop), hub)
    return hub


def live_hub() -> Hub | None:
    """Return this event loop's hub if it is running (started, not stopped)."""
    hub = current_hub()
    return hub if hub is not None and hub.started and not hub.stopped else None


async def get_hub() -> Hub:
    """Return this event loop's hub, creating and starting it on first use."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is not None and hub.shutdown.shut_down:
        raise RuntimeError("nexios_compat: the server is shutting down")
    if hub is None or hub.stopped:
        hub = _hubs[loop] = Hub()
        _forget_last()
    await hub.ensure_started()
    return hub


async def stop_hub(close_code: int | None = None) -> None:
    """Stop this event loop's hub (tests and graceful shutdown)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.pop(loop, None)
    _forget_last()
    if hub is not None:
        await hub.stop(close_code)


def _forget_last() -> None:
    global _last
    _last = None


def _sync_caller_waiting() -> bool:
    """Whether sync code waits on this call in ``async_to_sync`` (it may hold the ORM thread).

    Such a call must not wait for the hub's history writer: the writer's ORM
    work would queue behind the very thread that is waiting, a deadlock.
    """
    if _executors_var is None:
        return getattr(AsyncToSync.executors, "current", None) is not None
    # What ``Local.__getattr__`` reads, without its lock and the AttributeError it raises
    # when unset (the usual case): that miss cost ~5 us on every broadcast.
    storage = _executors_var.get(None)
    if storage is None or getattr(storage, "thread_id", None) != threading.get_ident():
        return False
    return getattr(storage, "data", {}).get("current") is not None


def _asgiref_executors_var() -> contextvars.ContextVar[typing.Any] | None:
    """The context variable behind ``AsyncToSync.executors`` (asgiref 3.9+), or None if it moved."""
    var = getattr(getattr(AsyncToSync.executors, "_storage", None), "_data", None)
    return var if isinstance(var, contextvars.ContextVar) else None


_executors_var = _asgiref_executors_var()


async def publish(message: PendingMessage, save: bool) -> None:
    """Send a broadcast to its room in every process, storing it first when ``save``.

    With a running hub, saved messages (and unsaved ones queued behind saved
    ones of the same room) go through its writer: accepted in order, delivered
    after their commit. Sync code waiting on this call (``async_to_sync``)
    stores in its own transaction and is delivered at its commit.
    """
    if _sync_caller_waiting():
        saved, deferred = await HistoryService().append_for_caller(message, save, _deliver_after_commit)
        if not deferred:
            await _deliver(message, saved)
        return
    hub = live_hub()
    if hub is None:
        saved = (await HistoryService().append([message]))[0] if save else None
        await publish_remote(message, saved)
    elif save or hub.writer.pending_in(message.room):
        wait = save and bool(get_config()["HISTORY_WAIT_FOR_COMMIT"])
        await hub.writer.submit(message, save=save, wait=wait)
    else:
        await hub.broadcast(message, None)


async def _deliver(message: PendingMessage, saved: SavedMessage | None) -> None:
    hub = live_hub()
    if hub is not None:
        await hub.broadcast(message, saved)
    else:
        await publish_remote(message, saved)


def _deliver_after_commit(message: PendingMessage, saved: SavedMessage | None) -> None:
    # The caller's transaction committed: from its (sync) thread, hand the
    # message to this process's hub, or to the layer where there is none.
    async_to_sync(_deliver)(message, saved)


async def flush_writes() -> None:
    """Wait until what this process accepted for history is stored (read your own writes)."""
    hub = live_hub()
    if hub is not None and not _sync_caller_waiting():
        await hub.writer.flush()


async def publish_remote(message: PendingMessage, saved: SavedMessage | None) -> None:
    """Publish a broadcast to every hub through the layer, as a process without a hub does.

    A retry of a message already stored (``saved.duplicate``) was published when
    it was first stored: it is not sent again.
    """
    if saved is not None and saved.duplicate:
        return
    seq, epoch = (saved.seq, saved.epoch) if saved is not None else (None, None)
    cache = FrameCache(message.room, message.kind, message.text, message.data, seq, epoch)
    await get_layer().group_send(layer_group(message.room), wire.fanout(message.room, [wire.item(cache)], ""))


async def room_has_members(room: str) -> bool:
    """Whether a room has members in any process."""
    hub = current_hub()
    if hub is not None and hub.has_members(room):
        return True
    try:
        return await MembershipService().count(room) > 0
    except Exception:
        # The database is down: the broadcast went out; do not fail its sender for a count.
        metrics.DB_FAILURES.labels("presence_count").inc()
        return True


async def send_to(channel_id: uuid.UUID, payload: typing.Any) -> bool:
    """Send a payload to one member, whichever process holds it; return whether it was found."""
    hub = current_hub()
    member = hub.registry.get(channel_id) if hub is not None else None
    if member is not None:
        frame = FrameCache("", *pack(payload), None).frame(member.payload_type, False)
        await member.send_frame(frame)
        return True
    layer_channel = await MembershipService().locate(channel_id)
    if layer_channel is None:
        return False
    await get_layer().send(layer_channel, wire.send_to(channel_id, payload))
    return True


async def close_all(room: str | None, code: int, reason: str) -> None:
    """Close every connection (of one room) in every process."""
    hub = current_hub()
    if hub is not None:
        await hub.close_local(room, code, reason)
    origin = hub.process_id if hub is not None else ""
    await get_layer().group_send(control_group(), wire.close(room, code, reason, origin))


async def flush_groups() -> None:
    """Take every member out of every room in every process; sockets stay open."""
    hub = current_hub()
    if hub is not None:
        await hub.flush_local()
    await get_layer().group_send(control_group(), wire.flush_groups(hub.process_id if hub else ""))
    await MembershipService().clear()
