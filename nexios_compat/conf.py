"""Settings for nexios_compat: one ``NEXIOS_COMPAT`` dict merged over defaults."""

from __future__ import annotations

import functools
import os
import warnings
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

CONFIG_DEFAULTS: dict[str, Any] = {
    # Channel layer alias used for fan-out (a key of CHANNEL_LAYERS).
    "LAYER_ALIAS": "default",
    # Prefix of every layer group name we create.
    "GROUP_PREFIX": "nexios",
    # Longest group (room) name accepted, in characters.
    "MAX_GROUP_NAME_LENGTH": 500,
    # Seconds between sweeps that close channels idle for longer than ``expires``.
    "EXPIRE_SWEEP_INTERVAL": 2.0,
    # Dotted paths of the storage classes: saved messages, and which channel is in which
    # room in which process (membership rows; live presence is built on them).
    "HISTORY_STORE": "nexios_compat.stores.history.DatabaseHistoryStore",
    "MEMBERSHIP_STORE": "nexios_compat.stores.membership.DatabaseMembershipStore",
    # Retention: messages kept per room (None: unlimited) and their age in seconds.
    "HISTORY_MAX_MESSAGES": 1000,
    "HISTORY_MAX_AGE": None,
    # Seconds between retention passes run by each process (None: only the command).
    "HISTORY_PRUNE_INTERVAL": 60.0,
    # Largest number of saved messages written in one database transaction.
    "HISTORY_BATCH_SIZE": 500,
    # group_send(save_history=True) returns once this process's writer has accepted
    # the message (False), or only after its transaction committed (True).
    "HISTORY_WAIT_FOR_COMMIT": False,
    # Bound on what waits to be saved per process: past either, group_send waits.
    "HISTORY_MAX_PENDING": 10000,
    "HISTORY_MAX_PENDING_BYTES": 16 * 1024 * 1024,
    # Seconds a saved send may wait while the database is unreachable or stalled
    # (the writer retries meanwhile); past it the send fails with HistoryUnavailable.
    # While the writer is failing, saved sends wait for their commit.
    "HISTORY_WRITE_TIMEOUT": 10.0,
    # PostgreSQL statement_timeout, in seconds, on the writer's own connection (None: none),
    # so one locked row cannot hold every room's saves for long.
    "HISTORY_STATEMENT_TIMEOUT": 5.0,
    # PostgreSQL: seconds the writer waits for a room's row that another transaction
    # holds before it sets that room aside and commits the other rooms of the batch.
    "HISTORY_LOCK_TIMEOUT": 0.1,
    # Seconds between full reconciliations of this process's membership rows with its
    # live sockets (after a failed write they are reconciled at every heartbeat).
    "RECONCILE_INTERVAL": 60.0,
    # Cluster membership: seconds between a process's heartbeats, and silence after
    # which the survivors delete a process and its members.
    "HEARTBEAT_INTERVAL": 3.0,
    "PROCESS_TIMEOUT": 10.0,
    # Live presence (endpoints with ``presence = True``): at most one presence_diff per
    # room per interval on each connection; above PRESENCE_MAX_LIST keys, counts only.
    "PRESENCE_INTERVAL": 0.5,
    "PRESENCE_MAX_LIST": 1000,
    # Seconds a hub holds back a saved broadcast that arrived ahead of a missing
    # one before it fills the gap from history.
    "REORDER_TIMEOUT": 1.0,
    # Limits. The defaults never close a socket that Nexios would keep open, so a
    # ported app works unchanged; sites opt into stricter ones (check --deploy warns).
    # Frames larger than MAX_MESSAGE_SIZE bytes close the socket with 1009; the
    # default is daphne's own limit (--websocket_max_message_size, 1 MiB).
    "MAX_MESSAGE_SIZE": 1024 * 1024,
    # Incoming frames per connection: RATE_LIMIT_MESSAGES per second sustained,
    # bursts of RATE_LIMIT_BURST; over it, "close" (1008) or "drop" (an error frame).
    # None: no rate limit (Nexios has none).
    "RATE_LIMIT_MESSAGES": None,
    "RATE_LIMIT_BURST": 40,
    "RATE_LIMIT_POLICY": "close",
    # Joins over these close with 4409 / 4413 (None: no limit, as in Nexios).
    "MAX_MEMBERS_PER_ROOM": None,
    "MAX_ROOMS_PER_CONNECTION": None,
    # Room policy: a dotted path to a ``nexios_compat.policy.RoomPolicy`` (or a list of
    # ``RoomRule``) saying who may join, publish and read which rooms, checked on every
    # path (docs/policy.md). None: every room is open to everyone, as in Nexios.
    "ROOM_POLICY": None,
    # Largest payload, in bytes, that group_send(save_history=True) accepts: by
    # default whatever one frame can carry, so saving what a client sent never fails.
    "MAX_HISTORY_PAYLOAD": 1024 * 1024,
    # Bytes that may wait in daphne's buffer for one client to read them. A client
    # that stops reading is closed with 1008 "Send backlog exceeded" (and its TCP
    # connection dropped) once its backlog passes this, instead of holding memory
    # while its room keeps sending (None: no limit; only checked under daphne).
    "MAX_SEND_BACKLOG": 4 * 1024 * 1024,
    # Bounds on what clients can make the server hold (docs/bounds.md). Past the
    # resume bounds a client is told ``recovered: false``, never replayed part.
    # Most saved messages, and payload bytes, that one resume (?since=&epoch=) replays;
    # a ?since= without epoch replays the newest RESUME_MAX_MESSAGES (None: no bound).
    "RESUME_MAX_MESSAGES": 10000,
    "RESUME_MAX_BYTES": 32 * 1024 * 1024,
    # Live broadcasts, and their bytes, held for one member while its replay is read
    # and sent. Past them before the resume frame: ``recovered: false``; after it
    # (or without epoch): the error frame and close 1013, so the client resumes again.
    "RESUME_MAX_BUFFERED": 10000,
    "RESUME_MAX_BUFFERED_BYTES": 32 * 1024 * 1024,
    # Frames one connection may have waiting for its handler (judged against
    # MAX_MESSAGE_SIZE and the rate limit as they arrive). Past it the socket is
    # closed with 1008 "Too many queued frames" (None: no bound, as in Nexios).
    "MAX_QUEUED_FRAMES": None,
    # Live presence metas: the metadata fields every member of a room is sent (None:
    # all of them, as before), and the JSON bytes of one meta past which it carries
    # only channel_id and online_at.
    "PRESENCE_META_FIELDS": None,
    "PRESENCE_MAX_META_BYTES": 8 * 1024,
    # Metas (tabs) per key that members are shown, the oldest first; the others
    # appear as earlier ones leave (None: all).
    "PRESENCE_MAX_METAS_PER_KEY": 100,
    # Broadcasts, and their bytes, waiting in a process's outbox for a slow layer.
    # Past either the oldest are not published: other processes read the saved ones
    # from history, unsaved ones reach only this process (None: no bound).
    "OUTBOX_MAX_PENDING": 100000,
    "OUTBOX_MAX_PENDING_BYTES": 64 * 1024 * 1024,
    # Seconds daphne, on SIGTERM/SIGINT, waits for handlers to finish after closing
    # every socket with 1001 (on_disconnect, leaving rooms, saving history).
    "SHUTDOWN_TIMEOUT": 5.0,
    # Operations (/metrics, /health, retention). ---------------------------------
    # Bearer token that lets a scraper read /metrics (``Authorization: Bearer <token>``).
    # With neither this nor METRICS_ALLOWED_IPS set, /metrics answers only under DEBUG.
    "METRICS_TOKEN": None,
    # Addresses or networks ("10.0.0.0/8") allowed to read /metrics, by REMOTE_ADDR.
    "METRICS_ALLOWED_IPS": None,
    # Proxies (addresses or networks) whose X-Forwarded-For is believed for
    # METRICS_ALLOWED_IPS; from anyone else the header is ignored (it is the client's).
    "METRICS_TRUSTED_PROXIES": (),
    # Each process's periodic retention pass only examines rooms saved to since its
    # last pass; every this many seconds it examines all rooms, so that age limits
    # (HISTORY_MAX_AGE, a room's max_age) and lowered limits reach idle rooms too
    # (None: only ``manage.py prune_history`` does full passes).
    "HISTORY_PRUNE_FULL_INTERVAL": 3600.0,
    # Tickets for clients without cookies (docs/tickets.md). ----------------------
    # Seconds a ticket from ``TicketView`` stays valid; it opens one socket (?ticket=).
    "TICKET_MAX_AGE": 30,
    # Cache alias that remembers issued tickets until they are used or expire. Every
    # process must share it (Redis or the database cache): a process-local cache
    # refuses tickets issued by another process.
    "TICKET_CACHE": "default",
    # Origins ("https://app.example.com") besides the site's own from which sockets
    # carrying a ticket are accepted, and to which TicketView answers with CORS
    # headers. Empty: same origin only, as before. Sessions never count from them.
    "ALLOWED_ORIGINS": (),
    # Rolling deploys (docs/rolling.md). -------------------------------------------
    # Seconds over which the clients of a process that shuts down should spread
    # their reconnections: the 1001 close reason becomes "Server shutting down;
    # retry-after=N" and rooms.js waits a random delay in [0, N] s. 0: the reason
    # stays "Server shutting down" and clients use their own backoff.
    "SHUTDOWN_RETRY_AFTER": 0.0,
    # Server-Sent Events fallback (docs/fallback.md). ------------------------------
    # Seconds between keep-alive comments on an idle event stream (proxies close
    # silent responses), frames one stream may have waiting for its client before
    # it is ended (as MAX_SEND_BACKLOG closes a socket), and seconds a send over
    # POST waits for its message to be stored before answering 504.
    "SSE_KEEPALIVE": 15.0,
    "SSE_MAX_QUEUED": 1000,
    "SSE_SEND_TIMEOUT": 30.0,
}


# Names of the previous release, accepted for one more with a DeprecationWarning.
RENAMED_SETTINGS = {"PRESENCE_STORE": "MEMBERSHIP_STORE"}
RENAMED_PATHS = {
    "nexios_compat.history.DatabaseHistoryStore": "nexios_compat.stores.history.DatabaseHistoryStore",
    "nexios_compat.presence.DatabasePresenceStore": "nexios_compat.stores.membership.DatabaseMembershipStore",
}


@functools.cache
def get_config() -> dict[str, Any]:
    """Return the defaults merged with ``settings.NEXIOS_COMPAT``."""
    user = dict(getattr(settings, "NEXIOS_COMPAT", {}) or {})
    for old, new in RENAMED_SETTINGS.items():
        if old in user:
            warnings.warn(
                f"NEXIOS_COMPAT[{old!r}] is deprecated; call it {new!r}.", DeprecationWarning, stacklevel=2
            )
            user.setdefault(new, user.pop(old))
    for key in ("HISTORY_STORE", "MEMBERSHIP_STORE"):
        path = user.get(key)
        if path in RENAMED_PATHS:
            warnings.warn(
                f"NEXIOS_COMPAT[{key!r}] = {path!r} is deprecated; use {RENAMED_PATHS[path]!r}.",
                DeprecationWarning,
                stacklevel=2,
            )
            user[key] = RENAMED_PATHS[path]
    return {**CONFIG_DEFAULTS, **user}


def history_size_bytes() -> int | None:
    """Return Nexios's ``CHANNEL_BOX_HISTORY_SIZE`` bound on a room's payload bytes."""
    raw = os.environ.get("CHANNEL_BOX_HISTORY_SIZE")
    if raw is None or raw.strip() == "":
        return None
    return int(raw)


@receiver(setting_changed)
def _reset_config(*, setting: str, **kwargs: Any) -> None:
    if setting == "NEXIOS_COMPAT":
        get_config.cache_clear()
