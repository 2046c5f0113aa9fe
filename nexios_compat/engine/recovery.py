"""Layer recovery: notice lost subscriptions (a restarted Redis has none), re-add them, catch up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable

from channels.layers import BaseChannelLayer

from .. import metrics
from ..rooms import control_group, layer_group
from . import wire

logger = logging.getLogger("nexios_compat.engine")

# Longest pause between attempts to reach the layer again after it failed.
MAX_RETRY_DELAY = 1.0
# Longest time a probe's send holds the scheduler's probe job.
PROBE_SEND_WAIT = 1.0
# Probe intervals a send may stay in flight before the link counts as lost.
PROBE_STALL_RUNS = 2
# A probe not back is lost only once more probes were sent after it than this many times
# the most a recent one needed to come back: a reader that is behind is not a lost layer.
PROBE_PATIENCE = 3
# The most lag that counts (probes): a lost layer is noticed within PROBE_PATIENCE times it.
PROBE_MAX_LAG = 10


class LayerRecovery:
    """Keeps one layer channel subscribed to the control, probe and room groups."""

    def __init__(
        self,
        layer: BaseChannelLayer,
        process_id: str,
        probe_group: str,
        rooms: Callable[[], Iterable[str]],
        catch_up: Callable[[], Awaitable[None]],
    ) -> None:
        self.layer = layer
        self.process_id = process_id
        self.probe_group = probe_group
        # One per Redis server of a sharded layer (``layer.probe_groups``); the hub sets them.
        self.probe_groups = [probe_group]
        self.rooms = rooms
        self.catch_up = catch_up
        self.channel = ""  # set by the hub once the layer gave it one
        # Saved messages could not be published: tell every hub to read history.
        self.resync_needed = False
        self.recoveries = 0
        self.stopped = False
        self._task: asyncio.Task[None] | None = None
        self._again = False
        self._probes_sent = 0
        self._probes_seen: dict[int, int] = {}  # by index in probe_groups
        self._probe_send: asyncio.Task[None] | None = None
        self._stalled = 0
        # Probes sent after a probe before it came back, at most, recently (halved
        # by each probe back sooner): how far behind the reader runs.
        self.lag = 0

    @property
    def recovering(self) -> bool:
        """Whether a recovery is under way."""
        return self._task is not None and not self._task.done()

    def failed(self) -> None:
        """Note that the layer failed; re-add subscriptions and catch up once it answers."""
        if self.stopped:
            return
        metrics.LAYER_FAILURES.labels("layer").inc()
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.create_task(self._recover(), name="nexios_compat.hub-recovery")

    def publish_failed(self, saved: bool) -> None:
        """A batch could not be published; ``saved``: it held messages the others must read."""
        if saved:
            self.resync_needed = True
        self.failed()

    async def _recover(self) -> None:
        delay = 0.1
        while True:
            self._again = False
            try:
                await self.resubscribe()
                await self._send_resync()
            except Exception:
                logger.debug("Channel layer still unreachable", exc_info=True)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_DELAY)
                continue
            self.recoveries += 1
            metrics.RECOVERIES.labels("layer").inc()
            logger.warning("Channel layer subscriptions re-added")
            await self.catch_up()
            if not self._again:
                return

    async def _send_resync(self) -> None:
        if not self.resync_needed:
            return
        # Cleared first: a publish failing while this is sent sets it again.
        self.resync_needed = False
        try:
            await self.layer.group_send(control_group(), wire.resync(self.process_id))
        except BaseException:
            self.resync_needed = True
            raise

    def groups(self) -> list[str]:
        """Every layer group this process's channel belongs in."""
        return [control_group(), *self.probe_groups, *(layer_group(room) for room in self.rooms())]

    async def resubscribe(self) -> None:
        """Re-add layer subscriptions (after a layer outage or before they expire)."""
        for group in self.groups():
            await self.layer.group_add(group, self.channel)

    async def probe(self) -> None:
        """Send this hub a message through its probe group; recover if earlier ones never came."""
        # Awaited for a bounded time only: over a link whose packets vanish the send hangs
        # until the socket times out (15 s), and awaiting it would hide the loss for that
        # long. A send still in flight is not repeated; one in flight for PROBE_STALL_RUNS
        # intervals is a lost link. One merely slow (a saturated Redis) is not: recovering
        # then (re-adding subscriptions, reading every room's history) only adds load.
        if self._probe_send is not None and not self._probe_send.done():
            self._stalled += 1
            if self._stalled >= PROBE_STALL_RUNS:
                logger.warning(
                    "A layer probe has hung for %d intervals; re-adding subscriptions", self._stalled
                )
                self._stalled = 0
                self.failed()
            return
        self._stalled = 0
        # The previous probe was sent and had a whole interval to come back: if it did
        # not, the layer lost our subscriptions (a restarted Redis has none), or the
        # reader is that far behind. Recent probes that came back late tell the second:
        # a probe then gets PROBE_PATIENCE times their lag (in probes sent since) before
        # it counts as lost (recovering, which re-adds every subscription and reads every
        # room's history, would only put the reader further behind).
        missing = [
            shard
            for shard in range(len(self.probe_groups))
            if self._probes_sent - self._probes_seen.get(shard, 0)
            > PROBE_PATIENCE * min(self.lag, PROBE_MAX_LAG)
        ]
        if missing:
            logger.warning(
                "Layer probes are not coming back (through %s); re-adding subscriptions",
                ", ".join(self.probe_groups[shard] for shard in missing),
            )
            self._probes_seen = dict.fromkeys(range(len(self.probe_groups)), self._probes_sent)
            self.failed()
        self._probes_sent += 1
        self._probe_send = asyncio.create_task(self._send_probe(self._probes_sent))
        await asyncio.wait([self._probe_send], timeout=PROBE_SEND_WAIT)

    async def _send_probe(self, number: int) -> None:
        try:
            # One after another: a server that hangs holds the rest, and the stall is noticed.
            for shard, group in enumerate(self.probe_groups):
                await self.layer.group_send(group, wire.probe(number, shard))
        except Exception:
            self.failed()

    def probe_seen(self, number: int, shard: int = 0) -> None:
        """A probe came back through ``probe_groups[shard]``."""
        # Also for a probe a recovery stopped waiting for: it tells how far behind the reader was.
        self.lag = max(self._probes_sent - number, self.lag // 2)
        self._probes_seen[shard] = max(self._probes_seen.get(shard, 0), number)

    async def stop(self) -> None:
        """Stop recovering and drop every subscription (bounded: the layer may hang)."""
        self.stopped = True
        if self._probe_send is not None:
            self._probe_send.cancel()
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=2.0)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                for group in self.groups():
                    await self.layer.group_discard(group, self.channel)
