"""Expiry meeting reversals and cancellations (found by a QA pass): a matured record's reversal must not
take the citizen's later points a second time, and points given back by a cancellation after their lot
matured expire at once. Expiry runs at a chosen moment (as in test_review_regressions); the consumption
bookkeeping does not depend on when the requests themselves run."""

from __future__ import annotations

from datetime import timedelta

from app.ledger.expiry import expire_tenant
from tests.factories import CANCEL, consenting_account, local_time, make_reward, record, redeem, submit
from tests.rewards.test_review_regressions import WUHAN, _balance, _expiry_moment_for

REVERSE = """mutation($input: ReverseBehaviorRecordInput!) { reverseBehaviorRecord(input: $input) {
    points shortfallPoints expiredPoints userErrors { code } } }"""
ACTIVITY = 'query($id: ID!) { account(id: $id) { activity(first: 10) { nodes { kind points } } } }'


async def _reverse(api, record_id: str) -> dict:
    return (await api.query(REVERSE, as_="wuhan-admin", variables={"input": {"recordId": record_id,
                                                                              "reason": "fraud"}}))["reverseBehaviorRecord"]


async def _cancel(api, redemption_id: str) -> dict:
    return (await api.query(CANCEL, as_="wuhan-app", variables={"input": {"redemptionId": redemption_id}}))[
        "cancelRedemption"]


async def test_reversing_an_expired_record_leaves_later_points_alone(api, database) -> None:
    account_id = await consenting_account(api)
    old = await submit(api, "wuhan-tong", [record(account_id, "bus", 1, local_time(2))])  # 8 coins
    await expire_tenant(database, WUHAN, "wuhan", _expiry_moment_for(2))  # those 8 expire
    assert await _balance(api, account_id) == "0"
    await submit(api, "wuhan-tong", [record(account_id, "subway", 1, local_time(1))])  # 8 legitimate coins, a younger lot

    reversal = await _reverse(api, old[0]["recordId"])
    assert reversal == {"points": "0", "shortfallPoints": "0", "expiredPoints": "8", "userErrors": []}
    assert await _balance(api, account_id) == "8", "the later, legitimate coins stay"


async def test_an_expired_records_reversal_owes_nothing_a_refund_must_repay(api, database) -> None:
    account_id = await consenting_account(api)
    old = await submit(api, "wuhan-tong", [record(account_id, "bus", 1, local_time(2))])
    await expire_tenant(database, WUHAN, "wuhan", _expiry_moment_for(2))
    await submit(api, "wuhan-tong", [record(account_id, "subway", 1, local_time(1))])
    spent = await redeem(api, account_id, await make_reward(database, cost=8, window=24))
    assert spent["userErrors"] == []

    assert await _reverse(api, old[0]["recordId"]) == {
        "points": "0", "shortfallPoints": "0", "expiredPoints": "8", "userErrors": []}
    cancelled = await _cancel(api, spent["redemption"]["id"])
    assert cancelled["userErrors"] == [] and cancelled["balance"] == {"amount": "8"}
    assert await _balance(api, account_id) == "8"


async def test_a_partly_spent_expired_record_is_reversed_like_any_other_for_what_was_spent(api, database) -> None:
    """16 coins: 8 spent before expiry, 8 expired. The 8 that expired would never have existed: given back
    by the expired account. The 8 spent are taken back from the balance as far as it goes, as for any
    reversal (the same facts give the same answer whether or not an expiry run has passed)."""
    account_id = await consenting_account(api)
    old = await submit(api, "wuhan-tong", [record(account_id, "bus", 1, local_time(2, 8)),
                                           record(account_id, "subway", 1, local_time(2, 9))])
    assert (await redeem(api, account_id, await make_reward(database, cost=8)))["userErrors"] == []
    await expire_tenant(database, WUHAN, "wuhan", _expiry_moment_for(2))
    await submit(api, "wuhan-tong", [record(account_id, "bus", 1, local_time(1))])

    first, second = (await _reverse(api, old[0]["recordId"])), (await _reverse(api, old[1]["recordId"]))
    assert first == {"points": "0", "shortfallPoints": "0", "expiredPoints": "8", "userErrors": []}
    assert second == {"points": "8", "shortfallPoints": "0", "expiredPoints": "0", "userErrors": []}
    assert await _balance(api, account_id) == "0"


async def test_expiries_before_the_records_day_expired_are_not_given_back(api, database) -> None:
    """Review: an older, legitimate lot expired; a fraudulent record was credited and spent; its day
    matured in a run that expired nothing. The old expiry did not happen because of the record: the
    spent points are a shortfall, not 'expired'."""
    account_id = await consenting_account(api)
    await submit(api, "wuhan-tong", [record(account_id, "bus", 1, local_time(6))])  # legitimate, 8
    await expire_tenant(database, WUHAN, "wuhan", _expiry_moment_for(6))  # those 8 expire
    fraud = await submit(api, "wuhan-tong", [record(account_id, "subway", 1, local_time(3))])
    assert (await redeem(api, account_id, await make_reward(database, cost=8)))["userErrors"] == []
    await expire_tenant(database, WUHAN, "wuhan", _expiry_moment_for(3))  # matures it; nothing due
    assert await _reverse(api, fraud[0]["recordId"]) == {
        "points": "0", "shortfallPoints": "8", "expiredPoints": "0", "userErrors": []}


async def test_the_same_facts_give_the_same_reversal_whether_or_not_a_run_passed(api, database) -> None:
    results = {}
    for run in (False, True):
        account_id = await consenting_account(api)
        fraud = await submit(api, "wuhan-tong", [record(account_id, "bus", 1, local_time(3))])
        assert (await redeem(api, account_id, await make_reward(database, cost=8)))["userErrors"] == []
        await submit(api, "wuhan-tong", [record(account_id, "subway", 1, local_time(1))])  # legitimate
        if run:
            await expire_tenant(database, WUHAN, "wuhan", _expiry_moment_for(3))  # expires nothing
        results[run] = (await _reverse(api, fraud[0]["recordId"]), await _balance(api, account_id))
    assert results[False] == results[True] == (
        {"points": "8", "shortfallPoints": "0", "expiredPoints": "0", "userErrors": []}, "0")


async def test_points_refunded_after_their_lot_matured_expire_at_once(api, database) -> None:
    account_id = await consenting_account(api)
    await submit(api, "wuhan-tong", [record(account_id, "bus", 1, local_time(2, 8)),
                                     record(account_id, "subway", 1, local_time(2, 9))])  # 16 coins
    spent = await redeem(api, account_id, await make_reward(database, cost=8, window=24))
    await expire_tenant(database, WUHAN, "wuhan", _expiry_moment_for(2))  # the other 8 expire
    assert await _balance(api, account_id) == "0"

    cancelled = await _cancel(api, spent["redemption"]["id"])
    assert cancelled["userErrors"] == [] and cancelled["balance"] == {"amount": "0"}
    assert await _balance(api, account_id) == "0", "refunded coins of an expired lot are not spendable"
    kinds = [(n["kind"], n["points"]) for n in (await api.query(ACTIVITY, as_="wuhan-app", variables={
        "id": account_id}))["account"]["activity"]["nodes"]]
    # The run's expiry (dated at its chosen moment, ahead of now), the refund, and its expiry right after it.
    assert kinds[:3] == [("EXPIRY", "-8"), ("EXPIRY", "-8"), ("REDEMPTION_CANCELLED", "8")], kinds
    # A later run finds nothing more to expire, and a new lot is untouched by all this.
    await submit(api, "wuhan-tong", [record(account_id, "bus", 1, local_time(1))])
    await expire_tenant(database, WUHAN, "wuhan", _expiry_moment_for(2) + timedelta(hours=2))
    assert await _balance(api, account_id) == "8"


async def test_a_refund_parked_across_its_lots_expiry_expires_whole(api, database) -> None:
    """QA: points parked in a cancellable item the evening before their lot expired, younger points spent
    meanwhile, then the parking cancelled: the single FIFO counter moved the refund into the younger lot
    and it lived on. The redemption's own range of the lots decides: all of it had matured."""
    account_id = await consenting_account(api)
    await submit(api, "wuhan-tong", [record(account_id, "bus", 1, local_time(2))])  # the older lot, 8
    parked = await redeem(api, account_id, await make_reward(database, cost=8, window=24))
    await expire_tenant(database, WUHAN, "wuhan", _expiry_moment_for(2))  # its lot matures; nothing left
    await submit(api, "wuhan-tong", [record(account_id, "subway", 1, local_time(1))])  # younger, 8
    assert (await redeem(api, account_id, await make_reward(database, cost=8)))["userErrors"] == []
    cancelled = await _cancel(api, parked["redemption"]["id"])
    assert cancelled["userErrors"] == [] and cancelled["balance"] == {"amount": "0"}
    assert await _balance(api, account_id) == "0", "the parked 8 expired with their lot"


async def test_a_refund_from_lots_not_yet_matured_stays_spendable(api, database) -> None:
    account_id = await consenting_account(api)
    await submit(api, "wuhan-tong", [record(account_id, "bus", 1, local_time(1))])
    spent = await redeem(api, account_id, await make_reward(database, cost=8, window=24))
    await expire_tenant(database, WUHAN, "wuhan", _expiry_moment_for(2))  # yesterday's lot is not due
    cancelled = await _cancel(api, spent["redemption"]["id"])
    assert cancelled["balance"] == {"amount": "8"} and await _balance(api, account_id) == "8"


async def test_a_late_record_for_a_matured_day_expires_at_once(api, database) -> None:
    account_id = await consenting_account(api)
    await submit(api, "wuhan-tong", [record(account_id, "bus", 1, local_time(2))])
    await expire_tenant(database, WUHAN, "wuhan", _expiry_moment_for(2))  # days before yesterday matured
    late = await submit(api, "wuhan-tong", [record(account_id, "subway", 1, local_time(3))])  # within the window
    assert late[0]["status"] == "CREDITED" and late[0]["points"] == "8"
    assert await _balance(api, account_id) == "0", "points of a day past its expiry are not spendable"
    kinds = [(n["kind"], n["points"]) for n in (await api.query(ACTIVITY, as_="wuhan-app", variables={
        "id": account_id}))["account"]["activity"]["nodes"]]
    assert ("EXPIRY", "-8") in kinds[:2] and kinds.count(("EXPIRY", "-8")) == 2, kinds
    await submit(api, "wuhan-tong", [record(account_id, "bus", 1, local_time(1))])  # yesterday: not matured
    assert await _balance(api, account_id) == "8"


async def test_an_expiry_run_repairs_matured_lots_left_unexpired_by_earlier_code(api, database) -> None:
    """Before these fixes a refund into a matured lot stayed spendable (consumed < matured). The next run,
    even at the same cut-off, expires what such a lot holds, so `matured_lots_expired` holds again."""
    from sqlalchemy import text

    from app.db.session import TenantScope
    from app.graphql.ids import from_global_id
    from app.ledger import service as ledger
    from app.ledger.models import POINTS

    account_id = await consenting_account(api)
    await submit(api, "wuhan-tong", [record(account_id, "bus", 1, local_time(2))])
    spent = await redeem(api, account_id, await make_reward(database, cost=8, window=24))
    moment = _expiry_moment_for(2)
    await expire_tenant(database, WUHAN, "wuhan", moment)  # matures the lot; all of it spent
    account, redemption = from_global_id(account_id)[1], from_global_id(spent["redemption"]["id"])[1]
    async with database.transaction(TenantScope.for_tenant(WUHAN)) as session:  # the old cancellation
        rows = await ledger.lock_citizen_ledger_accounts(session, WUHAN, [account])
        counterparty = (await session.execute(text(
            "UPDATE redemptions SET status = 'CANCELLED', cancelled_at = now() WHERE id = :r "
            "RETURNING counterparty_ledger_id"), {"r": redemption})).scalar()
        points = rows[(account, POINTS)].id
        await ledger.post(session, [ledger.NewTransaction(
            tenant_id=WUHAN, kind="REDEMPTION_CANCELLED", status="CANCELLED", occurred_at=moment,
            account_id=account, points=8, redemption_id=redemption,
            postings=[ledger.Posting(counterparty, POINTS, -8), ledger.Posting(points, POINTS, 8)])],
            tracked={points, counterparty}, consumed={points: -8})
    assert await _balance(api, account_id) == "8"  # spendable, though its lot has matured

    await expire_tenant(database, WUHAN, "wuhan", moment + timedelta(minutes=5))  # the same cut-off
    assert await _balance(api, account_id) == "0"
