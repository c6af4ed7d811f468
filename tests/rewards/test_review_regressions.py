"""Regressions found in review: FIFO counters across reversal, cancellation and expiry; cancellation
after the item changed; one mutation per operation."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import text

from app.db.session import TenantScope
from app.graphql.ids import from_global_id
from app.ledger.expiry import add_months, expire_tenant
from app.tenants.models import tenant_id_for
from tests.factories import CANCEL, REDEEM, consenting_account, earn, local_time, make_reward, record, redeem, submit

WUHAN = tenant_id_for("wuhan")
REVERSE = """mutation($input: ReverseBehaviorRecordInput!) { reverseBehaviorRecord(input: $input) {
    points shortfallPoints userErrors { code } } }"""
BALANCE = 'query($id: ID!) { account(id: $id) { balance { amount } } }'


async def _balance(api, account_id):
    return (await api.query(BALANCE, as_="wuhan-app", variables={"id": account_id}))["account"]["balance"]["amount"]


def _expiry_moment_for(days_ago: int) -> datetime:
    """Noon local on the day points earned `days_ago` local days ago expire (24 months later)."""
    shanghai = ZoneInfo("Asia/Shanghai")
    earned = datetime.now(shanghai).date() - timedelta(days=days_ago)
    day = add_months(earned, 24)
    return datetime(day.year, day.month, day.day, 12, tzinfo=shanghai)


async def test_reverse_then_cancel_does_not_give_fraudulent_points_back(api, database) -> None:
    account_id = await consenting_account(api)
    results = await submit(api, "wuhan-tong", [record(account_id, "bus", 1, local_time(1))])  # 8 coins
    spent = await redeem(api, account_id, await make_reward(database, cost=8, window=24))
    reversal = (await api.query(REVERSE, as_="wuhan-admin", variables={"input": {
        "recordId": results[0]["recordId"], "reason": "fraud"}}))["reverseBehaviorRecord"]
    assert reversal == {"points": "0", "shortfallPoints": "8", "userErrors": []}
    cancelled = (await api.query(CANCEL, as_="wuhan-app", variables={"input": {
        "redemptionId": spent["redemption"]["id"]}}))["cancelRedemption"]
    assert cancelled["userErrors"] == [] and cancelled["balance"] == {"amount": "0"}
    assert await _balance(api, account_id) == "0"


async def test_reversal_shortfall_does_not_let_later_points_escape_expiry(api, database) -> None:
    account_id = await consenting_account(api)
    results = await submit(api, "wuhan-tong", [record(account_id, "bus", 1, local_time(2))])  # 8 coins, older
    await redeem(api, account_id, await make_reward(database, cost=8))
    await api.query(REVERSE, as_="wuhan-admin", variables={"input": {"recordId": results[0]["recordId"], "reason": "x"}})
    await submit(api, "wuhan-tong", [record(account_id, "subway", 1, local_time(1))])  # 8 coins, newer
    await expire_tenant(database, WUHAN, "wuhan", _expiry_moment_for(0) + timedelta(days=1))
    assert await _balance(api, account_id) == "0", "the newer lot must expire in its turn"


async def test_cancellation_undoes_what_the_redemption_did_after_the_item_changed(api, database) -> None:
    first, second = await consenting_account(api), await consenting_account(api)
    for account_id in (first, second):
        await earn(api, account_id, 16)
    reward_id = await make_reward(database, cost=5, window=24)  # unlimited while the first redeems
    early = await redeem(api, first, reward_id)
    async with database.transaction(TenantScope.for_tenant(WUHAN)) as session:
        await session.execute(text("UPDATE rewards SET stock_total = 1 WHERE id = :id"),
                              {"id": from_global_id(reward_id)[1]})
    assert (await redeem(api, second, reward_id))["userErrors"] == []
    cancelled = (await api.query(CANCEL, as_="wuhan-app", variables={"input": {
        "redemptionId": early["redemption"]["id"]}}))["cancelRedemption"]
    assert cancelled["userErrors"] == []
    again = await redeem(api, second, reward_id)
    assert [e["code"] for e in again["userErrors"]] == ["OUT_OF_STOCK"], "the unit taken stays taken"


async def test_one_mutation_per_operation(api, database) -> None:
    account_id = await consenting_account(api)
    reward_id = await make_reward(database, cost=0)
    document = """mutation($a: ID!, $r: ID!) {
        x: redeemReward(input: {accountId: $a, rewardId: $r, idempotencyKey: "k1"}) { userErrors { code } }
        y: redeemReward(input: {accountId: $a, rewardId: $r, idempotencyKey: "k2"}) { userErrors { code } } }"""
    response = await api.post(document, as_="wuhan-app", variables={"a": account_id, "r": reward_id})
    body = response.json()
    assert body.get("data") is None
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    single = await api.query(REDEEM, as_="wuhan-app", variables={"input": {
        "accountId": account_id, "rewardId": reward_id, "idempotencyKey": "k3"}})
    assert single["redeemReward"]["userErrors"] == []


async def test_expiry_never_moves_the_maturity_cutoff_back(api, database) -> None:
    account_id = await consenting_account(api)
    await submit(api, "wuhan-tong", [record(account_id, "bus", 1, local_time(2)),
                                     record(account_id, "subway", 1, local_time(0, 0, 5))])
    later = _expiry_moment_for(2)
    await expire_tenant(database, WUHAN, "wuhan", later + timedelta(days=1))  # the newer cut-off first
    await expire_tenant(database, WUHAN, "wuhan", later)  # an older run arriving late changes nothing
    assert await _balance(api, account_id) == "8"
    await expire_tenant(database, WUHAN, "wuhan", later + timedelta(days=1))
    assert await _balance(api, account_id) == "8", "nothing may expire twice or early"
    await expire_tenant(database, WUHAN, "wuhan", later + timedelta(days=3))
    assert await _balance(api, account_id) == "0"
