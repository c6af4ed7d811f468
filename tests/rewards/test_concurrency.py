"""No oversell, no overspend, ever: hundreds of concurrent redemptions on real connections."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

from app.db.session import Database, TenantScope
from app.graphql.ids import to_global_id
from app.tenants.models import tenant_id_for
from bench.common import make_accounts
from tests.factories import REDEEM, local_time, make_reward, record, submit

WUHAN = tenant_id_for("wuhan")


async def _retire(app_engine, reward_id: str) -> None:
    """Committed test items leave the catalogue afterwards, so other tests see only configured items."""
    from sqlalchemy import text

    from app.graphql.ids import from_global_id

    async with Database(app_engine).transaction(TenantScope.for_tenant(WUHAN)) as session:
        await session.execute(text("UPDATE rewards SET active = false WHERE id = :id"),
                              {"id": from_global_id(reward_id)[1]})


async def _fire(api, account_ids: list[str], reward_id: str) -> Counter:
    async def one(account_id: str) -> str:
        data = await api.query(REDEEM, as_="wuhan-app", variables={"input": {
            "accountId": account_id, "rewardId": reward_id, "idempotencyKey": uuid.uuid4().hex}})
        payload = data["redeemReward"]
        return payload["userErrors"][0]["code"] if payload["userErrors"] else payload["redemption"]["status"]
    return Counter(await asyncio.gather(*(one(account_id) for account_id in account_ids)))


async def test_five_hundred_concurrent_redemptions_of_ten_units(committed_api, database_target, app_engine) -> None:
    api = committed_api
    raw_ids = await make_accounts(database_target, 500, "wuhan-tong", ["TRAVEL"])
    account_ids = [to_global_id("Account", account_id) for account_id in raw_ids]
    results = await submit(api, "wuhan-tong", [record(a, "bus", 1, local_time(1)) for a in account_ids])
    assert {r["points"] for r in results} == {"8"}
    reward_id = await make_reward(Database(app_engine), cost=5, stock=10)
    try:
        outcomes = await _fire(api, account_ids, reward_id)
    finally:
        await _retire(app_engine, reward_id)
    assert outcomes == Counter({"FULFILLED": 10, "OUT_OF_STOCK": 490})
    node = await api.query('query($id: ID!) { node(id: $id) { ... on Reward { remainingStock totalStock } } }',
                           as_="wuhan-app", variables={"id": reward_id})
    assert node["node"] == {"remainingStock": 0, "totalStock": 10}
    async with Database(app_engine).transaction(TenantScope.for_tenant(WUHAN)) as session:
        from sqlalchemy import text

        spent = (await session.execute(text(
            "SELECT sum(8 - balance) FROM ledger_accounts WHERE asset = 'POINTS' AND account_id = ANY(:ids)"),
            {"ids": raw_ids})).scalar()
    assert spent == 50


async def test_one_account_cannot_overspend_under_concurrency(committed_api, database_target, app_engine) -> None:
    api = committed_api
    raw_ids = await make_accounts(database_target, 1, "wuhan-tong", ["TRAVEL"])
    account_id = to_global_id("Account", raw_ids[0])
    await submit(api, "wuhan-tong", [record(account_id, "bus", 1, local_time(1)),
                                     record(account_id, "subway", 1, local_time(1, 12))])  # 16 coins
    reward_id = await make_reward(Database(app_engine), cost=5)
    try:
        outcomes = await _fire(api, [account_id] * 60, reward_id)
    finally:
        await _retire(app_engine, reward_id)
    assert outcomes == Counter({"FULFILLED": 3, "INSUFFICIENT_POINTS": 57})
    balance = (await api.query('query($id: ID!) { account(id: $id) { balance { amount } } }', as_="wuhan-app",
                               variables={"id": account_id}))["account"]["balance"]
    assert balance == {"amount": "1"}
