"""No oversell, no overspend, ever: hundreds of concurrent redemptions on real connections."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import pytest

from app.db.session import Database, TenantScope
from app.graphql.ids import to_global_id
from app.tenants.models import tenant_id_for
from bench.common import make_accounts
from tests.factories import REDEEM, local_time, make_reward, record, submit
from tests.graphql.test_trusted_documents import REDEEM_DOCUMENT

WUHAN = tenant_id_for("wuhan")


async def _retire(app_engine, reward_id: str) -> None:
    """Committed test items leave the catalogue afterwards, so other tests see only configured items."""
    from sqlalchemy import text

    from app.graphql.ids import from_global_id

    async with Database(app_engine).transaction(TenantScope.for_tenant(WUHAN)) as session:
        await session.execute(text("UPDATE rewards SET active = false WHERE id = :id"),
                              {"id": from_global_id(reward_id)[1]})


async def _redeem(api, variables: dict, transport: str) -> dict:
    """`text`: the query through full GraphQL execution; `trusted`: the trusted document by hash (the fast
    path, where concurrent redemptions are grouped into batches: app.rewards.batching)."""
    if transport == "text":
        return (await api.query(REDEEM, as_="wuhan-app", variables=variables))["redeemReward"]
    response = await api.http.post("/graphql", headers=api.headers("wuhan-app"), json={
        "documentId": f"sha256:{REDEEM_DOCUMENT.sha256}", "variables": variables})
    assert response.status_code == 200, response.text
    return response.json()["data"]["redeemReward"]


async def _fire(api, account_ids: list[str], reward_id: str, transport: str = "text") -> Counter:
    async def one(account_id: str) -> str:
        payload = await _redeem(api, {"input": {"accountId": account_id, "rewardId": reward_id,
                                                "idempotencyKey": uuid.uuid4().hex}}, transport)
        return payload["userErrors"][0]["code"] if payload["userErrors"] else payload["redemption"]["status"]
    return Counter(await asyncio.gather(*(one(account_id) for account_id in account_ids)))


async def _sixteen_coins_and_an_item_of_five(api, database_target, app_engine) -> tuple[str, str]:
    raw_ids = await make_accounts(database_target, 1, "wuhan-tong", ["TRAVEL"])
    account_id = to_global_id("Account", raw_ids[0])
    await submit(api, "wuhan-tong", [record(account_id, "bus", 1, local_time(1)),
                                     record(account_id, "subway", 1, local_time(1, 12))])
    return account_id, await make_reward(Database(app_engine), cost=5)


TRANSPORTS = pytest.mark.parametrize("transport", ["text", "trusted"])


@TRANSPORTS
async def test_five_hundred_concurrent_redemptions_of_ten_units(committed_api, database_target, app_engine,
                                                                transport) -> None:
    api = committed_api
    raw_ids = await make_accounts(database_target, 500, "wuhan-tong", ["TRAVEL"])
    account_ids = [to_global_id("Account", account_id) for account_id in raw_ids]
    results = await submit(api, "wuhan-tong", [record(a, "bus", 1, local_time(1)) for a in account_ids])
    assert {r["points"] for r in results} == {"8"}
    reward_id = await make_reward(Database(app_engine), cost=5, stock=10)
    try:
        outcomes = await _fire(api, account_ids, reward_id, transport)
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


@TRANSPORTS
async def test_one_account_cannot_overspend_under_concurrency(committed_api, database_target, app_engine,
                                                              transport) -> None:
    api = committed_api
    account_id, reward_id = await _sixteen_coins_and_an_item_of_five(api, database_target, app_engine)
    try:
        outcomes = await _fire(api, [account_id] * 60, reward_id, transport)
    finally:
        await _retire(app_engine, reward_id)
    assert outcomes == Counter({"FULFILLED": 3, "INSUFFICIENT_POINTS": 57})
    balance = (await api.query('query($id: ID!) { account(id: $id) { balance { amount } } }', as_="wuhan-app",
                               variables={"id": account_id}))["account"]["balance"]
    assert balance == {"amount": "1"}


async def test_one_key_sent_concurrently_redeems_once_and_others_conflict(committed_api, database_target,
                                                                          app_engine) -> None:
    """Through the batching fast path: forty requests with one idempotency key for one account (some in
    the same batch) give one redemption, and the same key with another quantity is a conflict."""
    api = committed_api
    account_id, reward_id = await _sixteen_coins_and_an_item_of_five(api, database_target, app_engine)
    key = uuid.uuid4().hex
    same = {"input": {"accountId": account_id, "rewardId": reward_id, "idempotencyKey": key}}
    other = {"input": {"accountId": account_id, "rewardId": reward_id, "idempotencyKey": key, "quantity": 2}}
    try:
        payloads = await asyncio.gather(*(_redeem(api, same if i % 4 else other, "trusted") for i in range(40)))
    finally:
        await _retire(app_engine, reward_id)
    winners = {p["redemption"]["id"] for p in payloads if p["redemption"]}
    assert len(winners) == 1
    codes = Counter(p["userErrors"][0]["code"] if p["userErrors"] else "OK" for p in payloads)
    # Whichever request came first decides: the others with its quantity replay it, the rest conflict.
    assert codes in (Counter({"OK": 30, "IDEMPOTENCY_CONFLICT": 10}), Counter({"OK": 10, "IDEMPOTENCY_CONFLICT": 30}))
    balance = (await api.query('query($id: ID!) { account(id: $id) { balance { amount } } }', as_="wuhan-app",
                               variables={"id": account_id}))["account"]["balance"]
    assert balance == ({"amount": "11"} if codes["OK"] == 30 else {"amount": "6"})
