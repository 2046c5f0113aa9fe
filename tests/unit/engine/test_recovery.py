"""Layer recovery: lost subscriptions are noticed by probes, re-added, and history is read."""

from __future__ import annotations

import asyncio
import typing

from nexios_compat.engine import wire
from nexios_compat.engine.recovery import LayerRecovery
from nexios_compat.rooms import control_group, layer_group
from tests.support.fakes import FlakyLayer, until


async def make(rooms: list[str]) -> tuple[FlakyLayer, LayerRecovery, list[int]]:
    layer = FlakyLayer()
    caught_up: list[int] = []

    async def catch_up() -> None:
        caught_up.append(1)

    recovery = LayerRecovery(layer, "p1", "nexios.probe.test", lambda: rooms, catch_up)
    recovery.channel = await layer.new_channel()
    await recovery.resubscribe()
    return layer, recovery, caught_up


async def test_a_probe_that_never_comes_back_triggers_resubscription_and_catch_up() -> None:
    layer, recovery, caught_up = await make(["a", "b"])
    await recovery.probe()
    message = await layer.receive(recovery.channel)
    recovery.probe_seen(wire.parse(message).number)  # type: ignore[union-attr]
    await recovery.probe()  # the first came back: nothing to do
    assert recovery.recoveries == 0
    layer.forget_subscriptions()  # Redis restarted
    await layer.receive(recovery.channel)  # the second probe was already queued; the third is lost
    recovery.probe_seen(2)
    await recovery.probe()
    await recovery.probe()  # probe 3 never came back
    await until(lambda: recovery.recoveries == 1, "the recovery")
    assert caught_up == [1]
    for group in (control_group(), "nexios.probe.test", layer_group("a"), layer_group("b")):
        assert recovery.channel in layer.groups[group]


async def test_recovery_retries_until_the_layer_answers() -> None:
    layer, recovery, caught_up = await make(["a"])
    layer.broken = True
    recovery.failed()
    recovery.failed()  # while one runs, another failure only asks for one more round
    assert recovery.recovering
    layer.forget_subscriptions()
    layer.broken = False
    await until(lambda: recovery.recoveries >= 1, "the layer to answer")
    assert recovery.channel in layer.groups[layer_group("a")]
    assert caught_up


async def test_unpublished_saved_messages_make_every_hub_resync() -> None:
    layer, recovery, _ = await make([])
    layer.broken = True
    recovery.publish_failed(saved=True)
    layer.broken = False
    await until(lambda: recovery.recoveries == 1, "the recovery")
    assert (control_group(), wire.resync("p1")) in layer.sent
    assert recovery.resync_needed is False


async def test_stop_drops_every_subscription() -> None:
    layer, recovery, _ = await make(["a"])
    await recovery.stop()
    assert {group for group, _ in layer.discarded} == {control_group(), "nexios.probe.test", layer_group("a")}
    recovery.failed()  # stopped: no new recovery
    assert not recovery.recovering


async def test_a_probe_whose_send_hangs_is_noticed_after_two_intervals_and_a_slow_one_is_not() -> None:
    layer, recovery, _ = await make(["a"])
    hang = asyncio.Event()
    real_send = layer.group_send

    async def held_send(group: str, message: dict[str, typing.Any]) -> None:
        await hang.wait()  # a saturated Redis (released), or a link whose packets vanish (never)
        await real_send(group, message)

    layer.group_send = held_send  # type: ignore[method-assign]
    await asyncio.wait_for(recovery.probe(), 5)  # the scheduler is held for a bounded time
    await asyncio.wait_for(recovery.probe(), 5)  # in flight for one interval: maybe just slow
    assert recovery.recoveries == 0
    hang.set()  # slow, not lost: the probe comes back
    recovery.probe_seen((await asyncio.wait_for(layer.receive(recovery.channel), 5))["n"])
    await asyncio.wait_for(recovery.probe(), 5)
    recovery.probe_seen((await asyncio.wait_for(layer.receive(recovery.channel), 5))["n"])
    assert recovery.recoveries == 0 and not recovery.recovering
    hang.clear()  # lost: the next send hangs
    await asyncio.wait_for(recovery.probe(), 5)
    await asyncio.wait_for(recovery.probe(), 5)
    assert recovery.recoveries == 0
    await asyncio.wait_for(recovery.probe(), 5)  # in flight for two intervals: the link is lost
    layer.group_send = real_send  # type: ignore[method-assign]
    await until(lambda: recovery.recoveries == 1, "a recovery")
    hang.set()
    await recovery.stop()


async def test_a_probe_lost_on_one_server_of_a_sharded_layer_triggers_recovery() -> None:
    """A restarted shard loses only its own groups: the probes through the others still come back."""
    layer, recovery, caught_up = await make(["a"])
    recovery.probe_groups = ["nexios.probe.test.0", "nexios.probe.test.1", "nexios.probe.test.2"]
    await recovery.resubscribe()
    await recovery.probe()
    for _ in range(3):
        parsed = wire.parse(await layer.receive(recovery.channel))
        assert isinstance(parsed, wire.Probe)
        recovery.probe_seen(parsed.number, parsed.shard)
    await layer.group_discard("nexios.probe.test.1", recovery.channel)  # that server restarted
    await recovery.probe()
    assert recovery.recoveries == 0
    for _ in range(2):
        parsed = wire.parse(await layer.receive(recovery.channel))
        assert isinstance(parsed, wire.Probe) and parsed.shard != 1
        recovery.probe_seen(parsed.number, parsed.shard)
    await recovery.probe()
    await until(lambda: recovery.recoveries == 1, "the recovery")
    assert recovery.channel in layer.groups["nexios.probe.test.1"]
    assert caught_up == [1]


async def test_a_reader_that_runs_behind_is_not_taken_for_a_lost_layer() -> None:
    # Under load the hub reads its layer messages late: probes come back, but two intervals
    # after they were sent. Until the first late one is back they look lost; after that the
    # reader's lag is known, and recovering again (every subscription re-added, every
    # room's history read) would only put it further behind: before, it recovered at
    # every interval.
    layer, recovery, caught_up = await make(["a"])
    queued: list[int] = []
    learnt = 0
    for interval in range(14):
        await recovery.probe()
        queued.append(wire.parse(await layer.receive(recovery.channel)).number)  # type: ignore[union-attr]
        if len(queued) > 2:
            recovery.probe_seen(queued.pop(0))  # read two intervals late
        if interval == 3:
            await until(lambda: not recovery.recovering, "the early recoveries to end")
            learnt = recovery.recoveries
    await until(lambda: not recovery.recovering, "any recovery to end")
    assert recovery.lag == 2 and learnt <= 2
    assert recovery.recoveries == learnt  # none in the ten intervals once the lag was known
    # Then the layer does lose the subscriptions: noticed within PROBE_PATIENCE x lag intervals.
    layer.forget_subscriptions()
    for _ in range(3 * recovery.lag + 2):
        await recovery.probe()
        if recovery.recovering:
            break
    await until(lambda: recovery.recoveries == learnt + 1, "the recovery")
    assert recovery.channel in layer.groups[layer_group("a")] and len(caught_up) == learnt + 1
