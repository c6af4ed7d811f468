"""An administrator's change to an item and the redemptions running at the same moment: each
redemption sees the item wholly before or wholly after the change (migration 0009)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

import asyncpg

from app.db.server import asyncpg_dsn
from app.graphql.ids import from_global_id
from app.rewards.batching import REDEEM_MANY, REDEEM_ONE
from app.tenants.models import tenant_id_for
from bench.common import app_connection, make_accounts
from tests.factories import make_reward
from tests.rewards.test_concurrency import _retire

WUHAN = tenant_id_for("wuhan")


def _args(account: uuid.UUID, reward: uuid.UUID) -> tuple:
    return (account, reward, 1, uuid.uuid4().hex, uuid.uuid4().hex, "test", datetime.now(UTC), "V", uuid.uuid4(),
            uuid.uuid4())


async def _admin_holds(target, reward: uuid.UUID, change: str) -> asyncpg.Connection:
    """An administrator's transaction that has locked and changed the item, not yet committed."""
    admin = await app_connection(target, "wuhan")
    await admin.execute("BEGIN")
    await admin.execute("SELECT set_config('app.tenant_id', $1, true)", str(WUHAN))
    # As app.tenants.catalogue does: the item's advisory lock, then its row.
    await admin.execute("SELECT pg_advisory_xact_lock(hashtextextended('carbon-item:' || $1::uuid::text, 0))", reward)
    await admin.execute("SELECT 1 FROM rewards WHERE id = $1 FOR UPDATE", reward)
    await admin.execute(f"UPDATE rewards SET {change} WHERE id = $1", reward)
    return admin


async def test_a_redemption_waiting_on_a_retirement_sees_the_item_retired(database_target, app_engine) -> None:
    from app.db.session import Database

    [account] = await make_accounts(database_target, 1, "wuhan-tong", ["TRAVEL"])
    reward_id = await make_reward(Database(app_engine), cost=0)
    reward = from_global_id(reward_id)[1]
    admin = await _admin_holds(database_target, reward, "active = false")
    _, kwargs = asyncpg_dsn(database_target.app_url)
    citizen = await asyncpg.connect(**kwargs)
    try:
        pending = asyncio.create_task(citizen.fetchval(REDEEM_ONE, WUHAN, *_args(account, reward)))
        await asyncio.sleep(0.3)
        assert not pending.done(), "the redemption must wait for the administrator's change"
        await admin.execute("COMMIT")
        verdict = json.loads(await asyncio.wait_for(pending, 10))
    finally:
        await admin.close()
        await citizen.close()
        await _retire(app_engine, reward_id)
    assert verdict["error"] == "REWARD_UNAVAILABLE"


async def test_a_batch_never_takes_stock_from_an_item_that_became_finite_under_it(database_target,
                                                                                  app_engine) -> None:
    from app.db.session import Database

    accounts = await make_accounts(database_target, 2, "wuhan-tong", ["TRAVEL"])
    reward_id = await make_reward(Database(app_engine), cost=0)  # unlimited
    reward = from_global_id(reward_id)[1]
    admin = await _admin_holds(database_target, reward, "stock_total = 1")
    _, kwargs = asyncpg_dsn(database_target.app_url)
    citizen = await asyncpg.connect(**kwargs)
    try:
        columns = [list(column) for column in zip(*(_args(a, reward) for a in accounts), strict=True)]
        pending = asyncio.create_task(citizen.fetchval(REDEEM_MANY, WUHAN, *columns))
        await asyncio.sleep(0.3)
        assert not pending.done(), "the batch must wait for the administrator's change"
        await admin.execute("COMMIT")
        verdicts = [json.loads(v) for v in await asyncio.wait_for(pending, 10)]
        reader = await app_connection(database_target, "wuhan")
        taken = await reader.fetchval("SELECT stock_taken FROM rewards WHERE id = $1", reward)
        await reader.close()
    finally:
        await admin.close()
        await citizen.close()
        await _retire(app_engine, reward_id)
    assert sorted(v.get("error", v.get("status")) for v in verdicts) == ["FULFILLED", "OUT_OF_STOCK"]
    assert taken == 1
