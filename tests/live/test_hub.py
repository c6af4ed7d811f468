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
        await asyncio.sleep(0.01)
        assert _running("accountActivity") == before + 2 and not drop
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
    async with aclosing(hub.dashboard_ticks(None, drop)) as ticks:
        task = await _started(ticks)
        await asyncio.sleep(0.01)
        assert [code for code, _ in drop] == [TRY_AGAIN_LATER] and "not available" in drop[0][1]
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_the_listener_listens_only_while_someone_subscribes(database_target) -> None:
    """Connected from the start; LISTEN with the first subscriber, UNLISTEN a linger after the last left."""
    import asyncpg
    from prometheus_client import REGISTRY

    from app.db.server import asyncpg_dsn
    from app.live.notices import CHANNEL

    _, kwargs = asyncpg_dsn(database_target.app_url)
    hub = Hub(tick_seconds=0.01)
    listener = Listener(kwargs, hub, linger_seconds=0.2)
    notifier = await asyncpg.connect(**kwargs)

    def received() -> float:
        return REGISTRY.get_sample_value("carbon_live_notifications_total", {"kind": "A"}) or 0.0

    async def notify_and_settle() -> None:
        await notifier.execute("SELECT pg_notify($1, $2)", CHANNEL, f"A|{WUHAN}|OPENED|")
        await asyncio.sleep(0.2)

    await listener.start()
    try:
        assert listener.state == "standby"
        before = received()
        await notify_and_settle()
        assert received() == before  # not listening: PostgreSQL does not even signal it
        drop = Disconnects()
        running = _running("dashboardTick")
        async with aclosing(hub.dashboard_ticks(None, drop)) as ticks:
            tick = asyncio.create_task(anext(ticks))
            for _ in range(100):
                if _running("dashboardTick") > running:
                    break
                await asyncio.sleep(0.02)
            assert listener.state == "listening"
            await notify_and_settle()
            assert [t.kinds for t in await asyncio.wait_for(tick, 5)] == [{"ACCOUNT_OPENED"}]
        assert listener.state == "listening"  # the linger
        for _ in range(100):
            if listener.state == "standby":
                break
            await asyncio.sleep(0.02)
        assert listener.state == "standby" and not drop
        after = received()
        await notify_and_settle()
        assert received() == after
    finally:
        await notifier.close()
        await listener.stop()
