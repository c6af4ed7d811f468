"""Group commit of redemptions (app.rewards.batching): one request's trouble is never another's."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from app.db.session import Database
from app.graphql.ids import from_global_id
from app.rewards.batching import RedeemBatcher, RedeemCall, batcher_for, configure
from app.tenants.models import tenant_id_for
from bench.common import make_accounts
from tests.factories import make_reward
from tests.rewards.test_concurrency import _retire

WUHAN = tenant_id_for("wuhan")


def _call(account: uuid.UUID, reward: uuid.UUID, key: str | None = None) -> RedeemCall:
    return RedeemCall(account_id=account, reward_id=reward, quantity=1, key=key or uuid.uuid4().hex,
                      request_hash=uuid.uuid4().hex, client="test", now=datetime.now(UTC), voucher="V",
                      redemption_id=uuid.uuid4(), transaction_id=uuid.uuid4())


async def _setup(database_target, app_engine, count: int) -> tuple[Database, list[uuid.UUID], str]:
    accounts = await make_accounts(database_target, count, "wuhan-tong", ["TRAVEL"])
    return Database(app_engine), accounts, await make_reward(Database(app_engine), cost=0)


async def test_one_bad_item_fails_only_its_own_request(database_target, app_engine) -> None:
    database, accounts, reward_id = await _setup(database_target, app_engine, 6)
    reward = from_global_id(reward_id)[1]
    batcher = RedeemBatcher(database, in_flight=1)
    calls = [_call(account, reward) for account in accounts]
    calls[2] = _call(accounts[2], reward, key="bad\ud800key")  # the database cannot take this string
    try:
        results = await asyncio.wait_for(
            asyncio.gather(*(batcher.redeem(WUHAN, call) for call in calls), return_exceptions=True), 30)
    finally:
        await _retire(app_engine, reward_id)
        await database.dispose_pool()
    assert isinstance(results[2], Exception)
    assert [r["status"] for i, r in enumerate(results) if i != 2] == ["FULFILLED"] * 5


async def test_a_cancelled_request_does_not_strand_the_others_of_its_batch(database_target, app_engine) -> None:
    database, accounts, reward_id = await _setup(database_target, app_engine, 3)
    reward = from_global_id(reward_id)[1]
    batcher = RedeemBatcher(database, in_flight=1)
    tasks = [asyncio.create_task(batcher.redeem(WUHAN, _call(account, reward))) for account in accounts]
    await asyncio.sleep(0)
    tasks[0].cancel()  # the first to arrive goes away while its batch is under way
    try:
        others = await asyncio.wait_for(asyncio.gather(*tasks[1:]), 30)
    finally:
        await _retire(app_engine, reward_id)
        await database.dispose_pool()
    assert [r["status"] for r in others] == ["FULFILLED", "FULFILLED"]


async def _run_counted(database: Database, batcher: RedeemBatcher, calls: list[RedeemCall]) -> tuple[list, int, list]:
    """The verdicts, the most database calls at once, and each call's size (1: a single redemption)."""
    running, peak, sizes = 0, 0, []
    send = database.fetchval

    async def counted(sql: str, tenant: uuid.UUID, *args: object) -> object:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        sizes.append(len(args[0]) if isinstance(args[0], list) else 1)
        try:
            return await send(sql, tenant, *args)
        finally:
            running -= 1

    database.fetchval = counted  # type: ignore[method-assign]
    results = await asyncio.wait_for(asyncio.gather(*(batcher.redeem(WUHAN, call) for call in calls)), 30)
    return results, peak, sizes


@pytest.mark.parametrize(("in_flight", "connections", "count", "at_once"), [
    (2, 8, 10, 2),  # two go at once; what queues meanwhile goes in a batch
    (4, 8, 4, 4),  # below the limit each goes alone, at once
    (8, 2, 10, 2),  # many cities on few connections: the waiting is done in the queue, where they batch
])
async def test_calls_at_once_and_what_queues_goes_together(database_target, app_engine, in_flight: int,
                                                           connections: int, count: int, at_once: int) -> None:
    database, accounts, reward_id = await _setup(database_target, app_engine, count)
    reward = from_global_id(reward_id)[1]
    batcher = RedeemBatcher(database, in_flight=in_flight, connections=connections)
    try:
        results, peak, sizes = await _run_counted(database, batcher, [_call(account, reward) for account in accounts])
    finally:
        await _retire(app_engine, reward_id)
        await database.dispose_pool()
    assert [r["status"] for r in results] == ["FULFILLED"] * count
    # The first go alone at once; everything that queued meanwhile goes as one batch, taken when a
    # connection came free (not one by one as each call got a connection).
    assert peak == at_once
    assert sizes == [1] * min(count, at_once) + ([count - at_once] if count > at_once else [])


def test_the_server_takes_the_limit_from_its_settings(settings, app_engine, registry) -> None:
    from app.main import create_app

    database = Database(app_engine)
    create_app(settings.model_copy(update={"redeem_in_flight": 3}), database=database, registry=registry)
    assert batcher_for(database).in_flight == 3
    assert configure(database, in_flight=5) is batcher_for(database) and batcher_for(database).in_flight == 5
    assert database.fetchval_connections == 4  # the test engine's pool: the batcher's connections


async def test_a_request_cancelled_while_queued_is_withdrawn(database_target, app_engine) -> None:
    from sqlalchemy import text

    from app.db.session import TenantScope

    database, accounts, reward_id = await _setup(database_target, app_engine, 3)
    reward = from_global_id(reward_id)[1]
    batcher = RedeemBatcher(database, in_flight=1, connections=8)
    calls = [_call(account, reward) for account in accounts]
    send = database.fetchval
    sizes: list[int] = []

    async def counted(sql: str, tenant: uuid.UUID, *args: object) -> object:
        sizes.append(len(args[0]) if isinstance(args[0], list) else 1)
        return await send(sql, tenant, *args)

    database.fetchval = counted  # type: ignore[method-assign]
    tasks = [asyncio.create_task(batcher.redeem(WUHAN, call)) for call in calls]
    await asyncio.sleep(0)  # the first is at the database; the other two wait in the queue
    tasks[1].cancel()
    try:
        first, third = await asyncio.wait_for(asyncio.gather(tasks[0], tasks[2]), 30)
        async with Database(app_engine).transaction(TenantScope.for_tenant(WUHAN)) as session:
            written = (await session.execute(text("SELECT id FROM redemptions WHERE id = ANY(:ids)"),
                                             {"ids": [call.redemption_id for call in calls]})).scalars().all()
    finally:
        await _retire(app_engine, reward_id)
        await database.dispose_pool()
    assert tasks[1].cancelled()
    assert first["status"] == third["status"] == "FULFILLED"
    assert sorted(written) == sorted([calls[0].redemption_id, calls[2].redemption_id])  # never sent
    assert sizes == [1, 1]
