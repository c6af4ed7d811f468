"""Expiry meeting refunds and reversals, from a review of the first fixes: the order of reversals, a
changed expiry period, and the consumption counter the refund range is reckoned from (every kind of
transaction between a redemption and its cancellation)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from app.db.session import TenantScope
from app.graphql.ids import from_global_id
from app.ledger import service as ledger
from app.ledger.expiry import add_months, expire_tenant
from app.ledger.models import POINTS
from app.rewards import repository as rewards_repo
from app.rewards import service as rewards_service
from app.rewards.batching import REDEEM_MANY
from tests.factories import consenting_account, local_time, make_reward, record, redeem, submit
from tests.rewards.test_expiry_with_reversal_and_cancellation import _reverse
from tests.rewards.test_review_regressions import WUHAN, _balance, _expiry_moment_for

YEARS = 24 * 366 * 3  # a cancellation window long enough to cancel at an expiry moment chosen years ahead


async def _cancel_at(database, redemption_gid: str, now: datetime):
    async with database.transaction(TenantScope.for_tenant(WUHAN)) as session:
        return await rewards_service.cancel(session, WUHAN, from_global_id(redemption_gid)[1], "test", now)


async def _row(database, account_gid: str):
    account = from_global_id(account_gid)[1]
    async with database.transaction(TenantScope.for_tenant(WUHAN)) as session:
        return (await ledger.lock_citizen_ledger_accounts(session, WUHAN, [account]))[(account, POINTS)]


async def test_two_expired_fraud_records_reversed_oldest_first_leave_the_later_points_alone(api, database) -> None:
    """Two fraudulent records of two days, both expired in their runs; 8 legitimate coins later. Removing
    both, nothing would have expired and the 8 stay. Reversed youngest first or oldest first, the same (oldest
    first, the first reversal's give-back used to be subtracted from the second's window)."""
    outcomes = {}
    for order in ("youngest first", "oldest first"):
        account_id = await consenting_account(api)
        older = await submit(api, "wuhan-tong", [record(account_id, "bus", 1, local_time(3))])
        younger = await submit(api, "wuhan-tong", [record(account_id, "subway", 1, local_time(2))])
        await expire_tenant(database, WUHAN, "wuhan", _expiry_moment_for(3))  # the older 8 expire
        await expire_tenant(database, WUHAN, "wuhan", _expiry_moment_for(2))  # the younger 8 expire
        await submit(api, "wuhan-tong", [record(account_id, "bus", 1, local_time(1))])  # legitimate 8
        first, second = (younger, older) if order == "youngest first" else (older, younger)
        results = [await _reverse(api, first[0]["recordId"]), await _reverse(api, second[0]["recordId"])]
        outcomes[order] = ([r["expiredPoints"] for r in results], await _balance(api, account_id))
    assert outcomes["youngest first"] == (["8", "8"], "8")
    assert outcomes["oldest first"] == (["8", "8"], "8"), outcomes


async def test_a_shortened_expiry_period_still_gives_back_the_records_expiry(api, database) -> None:
    """The city shortens expiry from 24 to 12 months after the record. A run under 12 months expires the
    record's 8; its reversal reckons the day's expiry under the policy in force when the record occurred
    (24 months: years ahead) found no expiry since, and took the later, legitimate 8 instead."""
    account_id = await consenting_account(api)
    fraud = await submit(api, "wuhan-tong", [record(account_id, "bus", 1, local_time(2))])
    await submit(api, "wuhan-tong", [record(account_id, "subway", 1, local_time(1))])  # legitimate 8
    async with database.transaction(TenantScope.for_tenant(WUHAN)) as session:
        await session.execute(text("""
            INSERT INTO tenant_config_versions (id, tenant_id, version, effective_from, content_hash, name_en, name_zh,
                timezone, claim_window_days, point_expiry_months, unit_name_en, unit_name_zh, unit_singular_en,
                unit_singular_zh, unit_decimals, grams_per_point, source, document)
            SELECT gen_random_uuid(), tenant_id, version + 1000, now(), content_hash || '-12', name_en, name_zh,
                   timezone, claim_window_days, 12, unit_name_en, unit_name_zh, unit_singular_en, unit_singular_zh,
                   unit_decimals, grams_per_point, source, document
              FROM tenant_config_versions WHERE tenant_id = :t ORDER BY effective_from DESC, version DESC LIMIT 1
        """), {"t": WUHAN})
    earned = datetime.fromisoformat(local_time(2)).date()
    moment = _expiry_moment_for(0).replace(year=add_months(earned, 12).year, month=add_months(earned, 12).month,
                                           day=add_months(earned, 12).day)
    result = await expire_tenant(database, WUHAN, "wuhan", moment)
    assert result.points >= 8 and await _balance(api, account_id) == "8"  # the fraudulent 8 expired
    reversal = await _reverse(api, fraud[0]["recordId"])
    assert (reversal["expiredPoints"], await _balance(api, account_id)) == ("8", "8"), reversal


async def test_consumed_before_matches_the_counter_before_each_redemption(api, database) -> None:
    account_gid = await consenting_account(api)
    account = from_global_id(account_gid)[1]
    recs = {}
    for days_ago in (6, 5, 4, 3, 2, 1):
        recs[days_ago] = await submit(api, "wuhan-tong", [record(account_gid, "bus", 1, local_time(days_ago))])
    before: dict[uuid.UUID, int] = {}  # redemption -> counter just before

    async def single(cost: int) -> str:
        c = (await _row(database, account_gid)).points_consumed
        done = await redeem(api, account_gid, await make_reward(database, cost=cost, window=YEARS))
        assert done["userErrors"] == [], done
        before[from_global_id(done["redemption"]["id"])[1]] = c
        return done["redemption"]["id"]

    r1 = await single(5)
    # A batch of three for the one account (one statement: chain order by posted_at, occurred_at, id).
    c = (await _row(database, account_gid)).points_consumed
    rewards = [from_global_id(await make_reward(database, cost=cost, window=YEARS))[1] for cost in (3, 4, 1)]
    now = datetime.now(UTC)
    calls = [(account, reward, 1, f"k-{uuid.uuid4().hex}", f"h-{i}", "test", now, f"V{i}", uuid.uuid4(), uuid.uuid4())
             for i, reward in enumerate(rewards)]
    verdicts = await database.fetchval(REDEEM_MANY, WUHAN, *[list(col) for col in zip(*calls, strict=True)])
    assert len(verdicts) == 3
    batch = [call[8] for call in calls]
    await expire_tenant(database, WUHAN, "wuhan", _expiry_moment_for(5))  # EXPIRY of what days 6, 5 still hold
    await _reverse(api, recs[6][0]["recordId"])  # matured
    await _reverse(api, recs[1][0]["recordId"])  # not matured
    r5 = await single(2)
    await _cancel_at(database, r1, _expiry_moment_for(5) + timedelta(hours=1))  # refund (+ its expiry)
    await submit(api, "wuhan-tong", [record(account_gid, "subway", 1, local_time(6))])  # late: expires at once
    await single(3)
    await _cancel_at(database, r5, _expiry_moment_for(5) + timedelta(hours=2))

    async with database.transaction(TenantScope.for_tenant(WUHAN)) as session:
        row = (await ledger.lock_citizen_ledger_accounts(session, WUHAN, [account]))[(account, POINTS)]
        found = {}
        for redemption in list(before) + batch:
            tx = await rewards_repo.spending_transaction(session, WUHAN, redemption)
            found[redemption] = await ledger.consumed_before(session, WUHAN, account, tx, row.points_consumed)
    assert {r: found[r] for r in before} == before
    starts = sorted((found[r], cost) for r, cost in zip(batch, (3, 4, 1), strict=True))
    assert starts[0][0] == c and all(a[0] + a[1] == b[0] for a, b in zip(starts, starts[1:])), (c, starts)
