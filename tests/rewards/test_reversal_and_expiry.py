"""Admin reversals (with the spent-points policy) and FIFO expiry of earning lots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.ledger.expiry import add_months, cutoff, expire_tenant
from app.tenants.models import tenant_id_for
from tests.factories import consenting_account, earn, local_time, make_reward, record, redeem, submit

REVERSE = """mutation($input: ReverseBehaviorRecordInput!) { reverseBehaviorRecord(input: $input) {
    reductionGrams points shortfallPoints userErrors { code field message } } }"""
ACCOUNT = """query($id: ID!) { account(id: $id) { contribution { grams } balance { amount }
    today { behavior { code } creditedGrams }
    activity(first: 30) { nodes { kind status reductionGrams points shortfallPoints recordId } } } }"""
WUHAN = tenant_id_for("wuhan")


async def _account(api, account_id):
    return (await api.query(ACCOUNT, as_="wuhan-app", variables={"id": account_id}))["account"]


async def test_reversal_takes_back_contribution_and_points(api) -> None:
    account_id = await consenting_account(api)
    results = await submit(api, "wuhan-tong", [record(account_id, "bus", 1, local_time(1)),
                                               record(account_id, "subway", 1, local_time(1, 11))])
    payload = (await api.query(REVERSE, as_="wuhan-admin", variables={"input": {
        "recordId": results[0]["recordId"], "reason": "duplicate trip reported by the card company"}}))
    assert payload["reverseBehaviorRecord"] == {"reductionGrams": "80", "points": "8", "shortfallPoints": "0",
                                                "userErrors": []}
    account = await _account(api, account_id)
    assert account["contribution"] == {"grams": "80"} and account["balance"] == {"amount": "8"}
    reversal = account["activity"]["nodes"][0]
    assert (reversal["kind"], reversal["status"], reversal["reductionGrams"], reversal["points"]) == (
        "BEHAVIOR_REVERSAL", "REVERSED", "-80", "-8")
    again = (await api.query(REVERSE, as_="wuhan-admin", variables={"input": {
        "recordId": results[0]["recordId"], "reason": "again"}}))["reverseBehaviorRecord"]
    assert [e["code"] for e in again["userErrors"]] == ["ALREADY_REVERSED"]


async def test_a_reversed_records_unconverted_grams_earn_nothing_later(api) -> None:
    """Wuhan: 10 g a coin, walking 0.02 g a step. 450 steps (9 g) earn no coin: their grams wait in the
    carry. Reversed, they leave the carry too: a later 1 g earns nothing (it earned a coin before)."""
    account_id = await consenting_account(api)
    [walk] = await submit(api, "wuhan-tong", [record(account_id, "walking", 450, local_time(1, 7))])
    assert (walk["reductionGrams"], walk["points"]) == ("9", "0")
    await api.query(REVERSE, as_="wuhan-admin", variables={"input": {"recordId": walk["recordId"], "reason": "fraud"}})
    [later] = await submit(api, "wuhan-tong", [record(account_id, "walking", 50, local_time(1, 8))])
    assert (later["reductionGrams"], later["points"]) == ("1", "0")
    account = await _account(api, account_id)
    assert account["contribution"] == {"grams": "1"} and account["balance"] == {"amount": "0"}


async def test_grams_a_later_credit_already_converted_are_owed_by_the_carry(api) -> None:
    """9 g (no coin, carried), then 5 g: 14 g make a coin, 4 g carried. Reversing the 9 g leaves 5 g of
    contribution and the coin its 5 g could not have bought alone: the carry owes 5 g, and the next
    credits repay them before earning. In the end, coins = floor(contribution / 10 g) again."""
    account_id = await consenting_account(api)
    [first] = await submit(api, "wuhan-tong", [record(account_id, "walking", 450, local_time(2, 7))])
    [second] = await submit(api, "wuhan-tong", [record(account_id, "walking", 250, local_time(2, 8))])
    assert (first["points"], second["points"]) == ("0", "1")
    await api.query(REVERSE, as_="wuhan-admin", variables={"input": {"recordId": first["recordId"], "reason": "fraud"}})
    account = await _account(api, account_id)
    assert account["contribution"] == {"grams": "5"} and account["balance"] == {"amount": "1"}
    [repaying] = await submit(api, "wuhan-tong", [record(account_id, "walking", 500, local_time(1, 7))])
    assert repaying["points"] == "0"  # 10 g: 5 g repay the carry, 5 g carried
    [earning] = await submit(api, "wuhan-tong", [record(account_id, "walking", 250, local_time(1, 8))])
    assert earning["points"] == "1"
    account = await _account(api, account_id)
    assert account["contribution"] == {"grams": "20"} and account["balance"] == {"amount": "2"}


async def test_a_point_not_taken_back_keeps_the_grams_behind_it_converted(api, database) -> None:
    """9 g carried, then a fraudulent 1 g makes the coin (with the 9 g), which is spent. The reversal cannot
    take the coin back (a shortfall, owed): the 9 g behind it stay converted, not back in the carry, so a
    later 1 g earns nothing (giving them back let 10 g of real walking earn 2 coins)."""
    account_id = await consenting_account(api)
    [walk] = await submit(api, "wuhan-tong", [record(account_id, "walking", 450, local_time(2, 7))])
    [fraud] = await submit(api, "wuhan-tong", [record(account_id, "walking", 50, local_time(2, 8))])
    assert (walk["points"], fraud["points"]) == ("0", "1")
    assert (await redeem(api, account_id, await make_reward(database, cost=1)))["userErrors"] == []
    payload = (await api.query(REVERSE, as_="wuhan-admin", variables={"input": {
        "recordId": fraud["recordId"], "reason": "fraud"}}))["reverseBehaviorRecord"]
    assert (payload["points"], payload["shortfallPoints"]) == ("0", "1")
    [later] = await submit(api, "wuhan-tong", [record(account_id, "walking", 50, local_time(1, 7))])
    assert later["points"] == "0"
    account = await _account(api, account_id)
    assert account["contribution"] == {"grams": "10"} and account["balance"] == {"amount": "0"}


async def test_reversal_of_spent_points_keeps_the_floor_and_records_the_shortfall(api, database) -> None:
    account_id = await consenting_account(api)
    results = await submit(api, "wuhan-tong", [record(account_id, "bus", 1, local_time(1))])
    await redeem(api, account_id, await make_reward(database, cost=5))
    payload = (await api.query(REVERSE, as_="wuhan-admin", variables={"input": {
        "recordId": results[0]["recordId"], "reason": "fraud"}}))["reverseBehaviorRecord"]
    assert payload == {"reductionGrams": "80", "points": "3", "shortfallPoints": "5", "userErrors": []}
    account = await _account(api, account_id)
    assert account["balance"] == {"amount": "0"} and account["contribution"] == {"grams": "0"}
    assert account["activity"]["nodes"][0]["shortfallPoints"] == "5"


async def test_reversal_frees_the_daily_cap_and_is_admin_only(api) -> None:
    account_id = await consenting_account(api)
    walk = await submit(api, "wuhan-tong", [record(account_id, "walking", 15000, local_time(0, 0, 1))])
    errors = await api.errors(REVERSE, as_="wuhan-app", variables={"input": {
        "recordId": walk[0]["recordId"], "reason": "x"}})
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"
    other_city = (await api.query(REVERSE, as_="beijing-admin", variables={"input": {
        "recordId": walk[0]["recordId"], "reason": "x"}}))["reverseBehaviorRecord"]
    assert [e["code"] for e in other_city["userErrors"]] == ["RECORD_NOT_FOUND"]
    await api.query(REVERSE, as_="wuhan-admin", variables={"input": {"recordId": walk[0]["recordId"], "reason": "x"}})
    today = {t["behavior"]["code"]: t["creditedGrams"] for t in (await _account(api, account_id))["today"]}
    assert today["walking"] == "0"


def test_expiry_dates() -> None:
    assert add_months(datetime(2026, 1, 31).date(), 1).isoformat() == "2026-02-28"
    assert add_months(datetime(2024, 3, 31).date(), -1).isoformat() == "2024-02-29"
    # Earned 2024-11-29 with 24 months: expires at the start of 2026-11-29, so on 2026-11-29 it is gone.
    assert cutoff(datetime(2026, 11, 29).date(), 24).isoformat() == "2024-11-30"


async def test_expiry_consumes_the_oldest_lots_first_and_shows_in_activity(api, database) -> None:
    account_id = await consenting_account(api)
    await earn(api, account_id, 80)  # 10 rides yesterday: the older lot
    await submit(api, "wuhan-tong", [record(account_id, "subway", 1, local_time(0, 0, 5))])  # 8 today
    await redeem(api, account_id, await make_reward(database, cost=30))  # spends from the oldest lot
    # Noon local on the day yesterday's lot expires (24 months on): it has expired, today's has not.
    from zoneinfo import ZoneInfo

    shanghai = ZoneInfo("Asia/Shanghai")
    yesterday = datetime.now(shanghai).date() - timedelta(days=1)
    expiry_day = add_months(yesterday, 24)
    later = datetime(expiry_day.year, expiry_day.month, expiry_day.day, 12, tzinfo=shanghai)
    result = await expire_tenant(database, WUHAN, "wuhan", later)
    assert result.points >= 50, result  # other accounts of this database may expire too
    account = await _account(api, account_id)
    assert account["balance"] == {"amount": "8"}
    expiry = account["activity"]["nodes"][0]
    assert (expiry["kind"], expiry["status"], expiry["points"]) == ("EXPIRY", "EXPIRED", "-50")
    assert (await expire_tenant(database, WUHAN, "wuhan", later)).points == 0  # idempotent
    assert (await _account(api, account_id))["balance"] == {"amount": "8"}
    await expire_tenant(database, WUHAN, "wuhan", later + timedelta(days=2))
    assert (await _account(api, account_id))["balance"] == {"amount": "0"}


async def test_shanghai_points_do_not_expire(database) -> None:
    result = await expire_tenant(database, tenant_id_for("shanghai"), "shanghai", datetime.now(UTC) + timedelta(days=9999))
    assert result.cutoff is None and result.points == 0


async def test_expire_command_runs(database_target) -> None:
    import subprocess
    import sys
    from pathlib import Path

    env = {"CARBON_DATABASE_URL": database_target.owner_url, "CARBON_APP_DATABASE_URL": database_target.app_url,
           "PATH": str(Path(sys.executable).parent)}
    result = subprocess.run([str(Path(sys.executable).parent / "carbon-inclusive"), "expire"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "shanghai: points do not expire" in result.stdout and "wuhan:" in result.stdout
