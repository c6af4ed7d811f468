"""The hub alone: filtering, bounded queues, dashboard coalescing, listener outages, notice parsing."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import aclosing

from app.live.hub import TRY_AGAIN_LATER, Hub
from app.live.listener import Listener
from app.live.notices import AccountEventsNotice, LedgerNotice, OutcomeNotice, parse

WUHAN, BEIJING = uuid.uuid4(), uuid.uuid4()


class Disconnects(list):
    def __call__(self, code: int, reason: str) -> None:
        self.append((code, reason))


async def _started(stream) -> asyncio.Task:  # type: ignore[no-untyped-def]
    """The stream's first item as a task; the stream is registered once this returns."""
    task = asyncio.create_task(anext(stream))
    await asyncio.sleep(0)
    return task


async def test_each_subscriber_gets_only_its_own_account_provider_and_cities() -> None:
    hub = Hub(tick_seconds=0.01)
    mine, other = uuid.uuid4(), uuid.uuid4()
    provider, other_provider = uuid.uuid4(), uuid.uuid4()
    drop = Disconnects()
    async with (aclosing(hub.account_activity(WUHAN, mine, drop)) as activity,
                aclosing(hub.behavior_outcomes(WUHAN, provider, drop)) as outcomes,
                aclosing(hub.dashboard_ticks(frozenset({WUHAN}), drop)) as ticks):
        first_activity, first_outcomes, first_tick = (await _started(activity), await _started(outcomes),
                                                      await _started(ticks))
        t1, t2, t3 = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        hub.deliver(LedgerNotice(BEIJING, frozenset({"BEHAVIOR_CREDIT"}), ((mine, t3),)))  # same id, other city
        hub.deliver(LedgerNotice(WUHAN, frozenset({"BEHAVIOR_CREDIT"}), ((other, t1), (mine, t2))))
        hub.deliver(OutcomeNotice("R", WUHAN, other_provider, (t1,)))
        hub.deliver(OutcomeNotice("R", BEIJING, provider, (t3,)))
        hub.deliver(OutcomeNotice("J", WUHAN, provider, (t2,)))
        assert await asyncio.wait_for(first_activity, 5) == [t2]
        assert await asyncio.wait_for(first_outcomes, 5) == [("J", (t2,))]
        tick = (await asyncio.wait_for(first_tick, 5))[0]
        assert tick.tenant_id == WUHAN and tick.kinds == {"BEHAVIOR_CREDIT"}
    assert list(hub.subscribers()) == [] and drop == []


async def test_payloads_as_the_triggers_send_them_are_dispatched() -> None:
    hub = Hub()
    account, transaction = uuid.uuid4(), uuid.uuid4()
    hub.dispatch(f"L|{WUHAN}|REDEMPTION|{account}:{transaction}")  # nobody subscribed: dropped unparsed
    async with aclosing(hub.account_activity(WUHAN, account, Disconnects())) as activity:
        first = await _started(activity)
        hub.dispatch("L|garbage")  # logged and dropped, never raised
        hub.dispatch(f"L|{WUHAN}|REDEMPTION,DONATION|{uuid.uuid4()}:{uuid.uuid4()},{account}:{transaction}")
        assert await asyncio.wait_for(first, 5) == [transaction]


async def test_a_slow_consumer_is_disconnected_not_buffered() -> None:
    hub = Hub(queue_size=3)
    account, drop = uuid.uuid4(), Disconnects()
    async with aclosing(hub.account_activity(WUHAN, account, drop)) as activity:
        first = await _started(activity)
        hub.deliver(LedgerNotice(WUHAN, frozenset({"REDEMPTION"}), ((account, uuid.uuid4()),)))
        await asyncio.wait_for(first, 5)  # the consumer holds this item and takes no more
        for _ in range(5):
            hub.deliver(LedgerNotice(WUHAN, frozenset({"REDEMPTION"}), ((account, uuid.uuid4()),)))
        assert [code for code, _ in drop] == [TRY_AGAIN_LATER]  # once, however many more arrive
        assert "slow consumer" in drop[0][1]


async def test_dashboard_ticks_are_coalesced_per_city() -> None:
    clock = [100.0]
    hub = Hub(tick_seconds=0.2, clock=lambda: clock[0])
    async with aclosing(hub.dashboard_ticks(None, Disconnects())) as ticks:
        first = await _started(ticks)
        hub.deliver(AccountEventsNotice(WUHAN, frozenset({"OPENED"})))
        assert [tick.kinds for tick in await asyncio.wait_for(first, 5)] == [{"ACCOUNT_OPENED"}]
        second = await _started(ticks)
        for kind in ("BEHAVIOR_CREDIT", "REDEMPTION", "BEHAVIOR_CREDIT"):  # within the interval: one tick
            hub.deliver(LedgerNotice(WUHAN, frozenset({kind}), ((uuid.uuid4(), uuid.uuid4()),)))
        hub.deliver(AccountEventsNotice(BEIJING, frozenset({"OPENED"})))  # another city: not held back
        got = await asyncio.wait_for(second, 5)
        assert [(tick.tenant_id, tick.kinds) for tick in got] == [(BEIJING, {"ACCOUNT_OPENED"})]
        third = await asyncio.wait_for(anext(ticks), 5)  # after the interval (0.2 s)
        assert [(tick.tenant_id, tick.kinds) for tick in third] == [(WUHAN, {"BEHAVIOR_CREDIT", "REDEMPTION"})]


async def test_a_listener_outage_disconnects_every_subscriber() -> None:
    hub = Hub()
    drop = Disconnects()
    async with (aclosing(hub.account_activity(WUHAN, uuid.uuid4(), drop)) as activity,
                aclosing(hub.dashboard_ticks(None, drop)) as ticks):
        tasks = [await _started(activity), await _started(ticks)]
        hub.listening_lost()
        assert [code for code, _ in drop] == [TRY_AGAIN_LATER] * 2
        hub.listening_resumed()  # whoever subscribed during the outage may have missed events too
        assert len(drop) == 4 and "resumed" in drop[-1][1]
        hub.listening_resumed()  # no outage: nobody is disconnected
        assert len(drop) == 4
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_listener_that_cannot_connect_keeps_trying_and_stops_cleanly() -> None:
    from bench.common import free_port

    hub = Hub()
    listener = Listener({"host": "127.0.0.1", "port": free_port(), "user": "nobody"}, hub, backoff=(0.01, 0.02))
    await listener.start(wait_seconds=0.3)  # start-up does not wait longer than this
    assert not listener.listening.is_set()
    assert listener._task is not None and not listener._task.done()  # still trying
    await listener.stop()
    assert listener._task is None


def test_notices_parse_and_bad_ones_are_dropped() -> None:
    account, transaction, provider = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    assert parse(f"L|{WUHAN}|REDEMPTION,DONATION|{account}:{transaction}") == LedgerNotice(
        WUHAN, frozenset({"REDEMPTION", "DONATION"}), ((account, transaction),))
    assert parse(f"V|{WUHAN}|{provider}|{transaction}") == OutcomeNotice("V", WUHAN, provider, (transaction,))
    assert parse(f"A|{WUHAN}|OPENED|") == AccountEventsNotice(WUHAN, frozenset({"OPENED"}))
    for bad in ("", "L|nope", f"X|{WUHAN}|a|b", f"L|{WUHAN}|K|{account}", f"R|{WUHAN}|{provider}|not-a-uuid"):
        assert parse(bad) is None


def _running(field: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("carbon_live_subscriptions", {"field": field}) or 0.0


async def test_a_subscription_runs_only_once_the_listener_listens_and_its_end_is_reported() -> None:
    hub = Hub()
    listening, released = asyncio.Event(), []

    async def demand() -> bool:
        await listening.wait()
        return True

    hub.attach(demand, lambda: released.append(True))
    drop = Disconnects()
    before = _running("accountActivity")
    async with (aclosing(hub.account_activity(WUHAN, uuid.uuid4(), drop)) as first,
                aclosing(hub.account_activity(WUHAN, uuid.uuid4(), drop)) as second):
        tasks = [await _started(first), await _started(second)]
        assert hub.has_subscribers() and _running("accountActivity") == before  # registered, not yet running
        listening.set()
        await _until(lambda: _running("accountActivity") == before + 2, "both running")
        assert not drop
        tasks[0].cancel()
        await asyncio.gather(tasks[0], return_exceptions=True)
        await first.aclose()
        assert released == []  # one subscriber left: the listener keeps listening
        tasks[1].cancel()
        await asyncio.gather(tasks[1], return_exceptions=True)
    assert released == [True] and not hub.has_subscribers() and _running("accountActivity") == before


async def test_a_subscription_the_listener_cannot_serve_is_closed_1013() -> None:
    hub = Hub()

    async def unavailable() -> bool:
        return False

    hub.attach(unavailable, lambda: None)
    drop = Disconnects()
    running = _running("dashboardTick")
    async with aclosing(hub.dashboard_ticks(None, drop)) as ticks:
        task = await _started(ticks)
        await _until(lambda: drop, "the disconnect")
        assert [code for code, _ in drop] == [TRY_AGAIN_LATER] and "not available" in drop[0][1]
        assert _running("dashboardTick") == running  # refused: never counted as running
        assert not await hub.hold()  # nor is a websocket acknowledged
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _until(condition, what: str) -> None:  # type: ignore[no-untyped-def]
    for _ in range(250):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not reached: {what}")


async def _listener(database_target, **options):  # type: ignore[no-untyped-def]
    import asyncpg

    from app.db.server import asyncpg_dsn

    _, kwargs = asyncpg_dsn(database_target.app_url)
    hub = Hub(tick_seconds=0.01)
    listener = Listener(kwargs, hub, **options)
    await listener.start()
    return hub, listener, await asyncpg.connect(**kwargs)


async def _notify(notifier, tenant: uuid.UUID) -> None:  # type: ignore[no-untyped-def]
    from app.live.notices import CHANNEL

    await notifier.execute("SELECT pg_notify($1, $2)", CHANNEL, f"A|{tenant}|OPENED|")


async def test_the_listener_listens_only_while_the_hub_is_in_use(database_target) -> None:
    """Connected from the start; LISTEN while someone subscribes (or a websocket holds it), UNLISTEN a
    linger after. What was sent while it did not listen never arrives: notifications come in commit
    order, so a notice sent before a later marker would have arrived before it."""
    hub, listener, notifier = await _listener(database_target, linger_seconds=0.2)
    try:
        assert listener.state == "standby"
        await _notify(notifier, BEIJING)  # nobody listens
        drop = Disconnects()
        async with aclosing(hub.dashboard_ticks(None, drop)) as ticks:
            tick = await _started(ticks)
            await _until(lambda: listener.state == "listening", "LISTEN")
            await _notify(notifier, WUHAN)  # the marker
            assert [(t.tenant_id, t.kinds) for t in await asyncio.wait_for(tick, 5)] == [(WUHAN, {"ACCOUNT_OPENED"})]
        assert listener.state == "listening"  # the linger
        await _until(lambda: listener.state == "standby", "UNLISTEN after the linger")
        await _notify(notifier, BEIJING)  # nobody listens again
        assert await hub.hold()  # a websocket about to be acknowledged: LISTEN before it returns
        assert listener.state == "listening"
        async with aclosing(hub.dashboard_ticks(None, drop)) as ticks:
            tick = await _started(ticks)
            await _notify(notifier, WUHAN)
            assert [t.tenant_id for t in await asyncio.wait_for(tick, 5)] == [WUHAN]
        hub.unhold()
        await _until(lambda: listener.state == "standby", "UNLISTEN once the websocket went")
        assert not drop
    finally:
        await notifier.close()
        await listener.stop()


async def test_a_subscriber_arriving_during_the_unlisten_is_listened_for(database_target, monkeypatch) -> None:
    """The UNLISTEN round trip is under way when a subscriber comes: it must wait for the LISTEN that
    follows, not be told at once that the process listens (a review found that, with a 15 s gap)."""
    import asyncpg

    original = asyncpg.connection.Connection.remove_listener
    unlistening = asyncio.Event()

    async def slow_remove(self, channel, callback):  # type: ignore[no-untyped-def]
        unlistening.set()
        await original(self, channel, callback)
        await asyncio.sleep(0.3)

    monkeypatch.setattr(asyncpg.connection.Connection, "remove_listener", slow_remove)
    hub, listener, notifier = await _listener(database_target, linger_seconds=0, probe_seconds=30)
    try:
        drop = Disconnects()
        async with aclosing(hub.dashboard_ticks(None, drop)) as first:
            task = await _started(first)
            await _until(lambda: listener.state == "listening", "LISTEN")
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await asyncio.wait_for(unlistening.wait(), 5)
        running = _running("dashboardTick")
        async with aclosing(hub.dashboard_ticks(None, drop)) as second:
            tick = await _started(second)
            await _until(lambda: _running("dashboardTick") > running, "the subscription running")
            assert listener.state == "listening"
            await _notify(notifier, WUHAN)
            assert [t.tenant_id for t in await asyncio.wait_for(tick, 5)] == [WUHAN]
        assert not drop
    finally:
        await notifier.close()
        await listener.stop()


async def test_the_probe_runs_on_time_however_often_clients_come_and_go(database_target, monkeypatch) -> None:
    """Each client that leaves wakes the listener's loop; the health probe must not be put off by that
    (a silently dead connection would never be noticed)."""
    import asyncpg

    probes = []
    original = asyncpg.connection.Connection.fetchval

    async def counting(self, query, *args, **kwargs):  # type: ignore[no-untyped-def]
        if query == "SELECT 1":
            probes.append(query)
        return await original(self, query, *args, **kwargs)

    monkeypatch.setattr(asyncpg.connection.Connection, "fetchval", counting)
    hub, listener, notifier = await _listener(database_target, linger_seconds=5, probe_seconds=0.3)
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 1.5
        while loop.time() < deadline:  # a client every 0.1 s: more often than the probe interval
            assert await hub.hold()
            hub.unhold()
            await asyncio.sleep(0.1)
        assert len(probes) >= 3
    finally:
        await notifier.close()
        await listener.stop()


async def test_a_refused_client_leaves_nothing_to_linger_for_and_a_stopped_listener_refuses_at_once() -> None:
    from bench.common import free_port

    hub = Hub()
    listener = Listener({"host": "127.0.0.1", "port": free_port(), "user": "nobody"}, hub, backoff=(0.01, 0.02))
    await listener.start(wait_seconds=0.1)
    try:
        assert listener.state == "reconnecting"
        assert not await asyncio.wait_for(hub.hold(), 1)  # down: refused at once, not after 10 s
        assert listener._linger_until == 0.0  # nothing was listened for: no linger after the outage
    finally:
        await listener.stop()
    assert listener.state == "reconnecting" and not await asyncio.wait_for(listener.demand(), 1)


async def test_a_stopped_listener_no_longer_looks_connected(database_target) -> None:
    hub, listener, notifier = await _listener(database_target)
    await notifier.close()
    assert listener.state == "standby"
    await listener.stop()
    assert listener.state == "reconnecting" and not await asyncio.wait_for(listener.demand(), 1)
