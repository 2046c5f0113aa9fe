"""Prometheus metrics of this process, in the default registry (``/metrics`` shows them).

Counters and histograms are updated where things happen; the gauges read the
live hubs when scraped (``bind_hubs``), so they cannot drift from the truth.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

PREFIX = "nexios_compat"


class FrameCount:
    """A per-frame counter without a lock: frames are counted on the event loop's thread only.

    ``prometheus_client``'s ``Counter.inc()`` takes a lock on every call, which
    showed in profiles of broadcasts (one call per member per message); these
    are plain integers that ``FramesCollector`` reads when ``/metrics`` is scraped.
    """

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    def inc(self) -> None:
        """Count one frame."""
        self.count += 1


IN_TEXT, IN_BYTES, OUT_TEXT, OUT_BYTES = FrameCount(), FrameCount(), FrameCount(), FrameCount()
# Broadcast frames framed once, as bytes, for every member a server lets us write them to (daphne).
FRAMES_PREPARED = FrameCount()


class FramesCollector(Collector):
    """Exposes the frame counts: ``messages_in`` and ``messages_out`` by kind, and ``frames_prepared``."""

    def collect(self) -> Iterator[CounterMetricFamily]:
        """Yield both counters with their current values."""
        counts = {
            "messages_in": ("Frames received from clients, by kind", IN_TEXT, IN_BYTES),
            "messages_out": ("Frames sent to clients, by kind", OUT_TEXT, OUT_BYTES),
        }
        for name, (doc, text, binary) in counts.items():
            family = CounterMetricFamily(f"{PREFIX}_{name}", doc, labels=["kind"])
            family.add_metric(["text"], text.count)
            family.add_metric(["bytes"], binary.count)
            yield family
        yield CounterMetricFamily(
            f"{PREFIX}_frames_prepared",
            "Broadcast frames framed once for all of a room's members in this process (under daphne)",
            value=FRAMES_PREPARED.count,
        )


REGISTRY.register(FramesCollector())
SAVED = Counter(f"{PREFIX}_history_saved", "Messages stored in history")
HISTORY_UNAVAILABLE = Counter(
    f"{PREFIX}_history_unavailable", "Saved sends that failed with HistoryUnavailable"
)
BATCH_SIZE = Histogram(
    f"{PREFIX}_history_batch_size",
    "Messages stored per history transaction",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000),
)
SET_ASIDE = Counter(
    f"{PREFIX}_history_set_aside",
    "Rooms the history writer set aside because another transaction held their row past HISTORY_LOCK_TIMEOUT",
)
HELD_BACK = Counter(
    f"{PREFIX}_ordering_held_back",
    "Saved broadcasts held back because an earlier one of their room (another process's) had not arrived",
)
GAP_FILLS = Counter(f"{PREFIX}_ordering_gap_fills", "Gaps in a room's saved broadcasts filled from history")
DB_FAILURES = Counter(f"{PREFIX}_database_failures", "Database calls that failed, by operation", ["op"])
LAYER_FAILURES = Counter(f"{PREFIX}_layer_failures", "Channel layer calls that failed, by operation", ["op"])
RECOVERIES = Counter(f"{PREFIX}_recoveries", "Recoveries after a failure, by part", ["part"])
RECONCILED = Counter(
    f"{PREFIX}_members_reconciled", "Membership rows fixed to match live sockets, by action", ["action"]
)
ABANDONED = Counter(
    f"{PREFIX}_handshakes_abandoned", "Handshakes whose client was gone before accept (no side effects)"
)
OUTBOX_DROPPED = Counter(
    f"{PREFIX}_outbox_dropped",
    "Broadcasts dropped for the layer past OUTBOX_MAX_PENDING(_BYTES), saved (read from history) or not",
    ["kind"],
)
RATE_LIMITED = Counter(f"{PREFIX}_rate_limited", "Frames over the rate limit, by action", ["action"])
PRESENCE_FRAMES = Counter(f"{PREFIX}_presence_frames", "Presence events sent to clients, by type", ["type"])
PRESENCE_REPAIRS = Counter(
    f"{PREFIX}_presence_repairs",
    "Presence repairs: a peer's full entries asked after a gap, or a dead process forgotten",
    ["reason"],
)
SSE_STREAMS = Gauge(f"{PREFIX}_sse_streams", "Open Server-Sent Events streams (the WebSocket fallback)")
SSE_ENDED = Counter(f"{PREFIX}_sse_ended", "Server-Sent Events streams ended, by reason", ["reason"])
SSE_SENDS = Counter(
    f"{PREFIX}_sse_sends", "Sends over HTTP POST to a room's event stream URL, by outcome", ["outcome"]
)
# Latency buckets in seconds, from half a millisecond to ten seconds.
SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
FANOUT_LATENCY = Histogram(
    f"{PREFIX}_fanout_latency_seconds",
    "From a broadcast's acceptance to its delivery to this process's members",
    buckets=SECONDS_BUCKETS,
)
LAYER_ECHO = Histogram(
    f"{PREFIX}_layer_echo_seconds",
    "From publishing a fan-out to this process reading it back from the layer (how far its reader is behind)",
    buckets=SECONDS_BUCKETS,
)
FANOUT_MESSAGES = Counter(
    f"{PREFIX}_fanout_messages",
    "Layer messages the outbox published: to one room's group, or to every hub for many rooms at once",
    ["to"],
)

# What each live hub reports for the gauges (``Hub.gauges``).
HubGauges = typing.Mapping[str, float]
_sources: list[Callable[[], Iterable[HubGauges]]] = []


def _total(name: str) -> Callable[[], float]:
    def read() -> float:
        return float(sum(gauges.get(name, 0) for source in _sources for gauges in source()))

    return read


CONNECTIONS = Gauge(f"{PREFIX}_connections", "Open WebSocket connections served by this process")
ROOMS = Gauge(f"{PREFIX}_rooms", "Rooms with members in this process")
MEMBERS = Gauge(f"{PREFIX}_members", "Room memberships held by this process")
QUEUE_DEPTH = Gauge(f"{PREFIX}_history_queue_depth", "Messages accepted by the writer, not yet delivered")
DIRTY = Gauge(f"{PREFIX}_membership_dirty", "1 while this process's membership rows await reconciliation")
PRESENCE_ROOMS = Gauge(f"{PREFIX}_presence_rooms", "Rooms whose live presence this process tracks")
for _gauge, _name in (
    (CONNECTIONS, "connections"),
    (ROOMS, "rooms"),
    (MEMBERS, "members"),
    (QUEUE_DEPTH, "queue_depth"),
    (DIRTY, "dirty"),
    (PRESENCE_ROOMS, "presence_rooms"),
):
    _gauge.set_function(_total(_name))


def bind_hubs(source: Callable[[], Iterable[HubGauges]]) -> None:
    """Have the gauges read the live hubs that ``source`` returns (the engine calls this once)."""
    if source not in _sources:
        _sources.append(source)
