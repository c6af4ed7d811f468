"""The cross-city dashboard through the API: figures equal the ledger, per city and in total; each
reader sees what it may. Small groups: test_suppression.py."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text

from app.db.session import TenantScope
from app.tenants.models import tenant_id_for
from tests.factories import consenting_account, earn, local_time, make_reward, record, redeem, submit

QUERY = """query($from: Date!, $to: Date!, $g: Granularity!) { crossCityDashboard(from: $from, to: $to,
    granularity: $g) {
  minimumGroupSize
  cities { tenant { slug } accountsOpened guestAccounts bankLinkedAccounts reductionGrams pointsIssued
           pointsRedeemed pointsExpired pointsOutstanding series { start pointsIssued reductionGrams }
           byBehavior { behavior category transactions reductionGrams points } byCategory { name points }
           byIssuer { name transactions points } donations { name points } redemptionsByKind { name points } }
  totals { accountsOpened reductionGrams pointsIssued pointsRedeemed pointsExpired pointsOutstanding } } }"""


def _period(days: int = 30) -> dict:
    today = datetime.now(UTC).date()
    return {"from": (today - timedelta(days=days)).isoformat(), "to": (today + timedelta(days=1)).isoformat(),
            "g": "DAY"}


async def _ledger(database, slug: str, start: str, end: str) -> dict[str, int]:
    """The same figures straight from the ledger (a scan: what the rollups spare the dashboard)."""
    async with database.transaction(TenantScope.for_tenant(tenant_id_for(slug))) as session:
        row = (await session.execute(text("""
            WITH tz AS (SELECT timezone FROM tenant_config_versions ORDER BY effective_from DESC, version DESC
                         LIMIT 1)
            SELECT
              coalesce(sum(reduction_mg) FILTER (WHERE kind LIKE 'BEHAVIOR_%' AND d BETWEEN :s AND :e), 0) AS mg,
              coalesce(sum(points) FILTER (WHERE (kind LIKE 'BEHAVIOR_%' OR kind = 'LOT_PROCEEDS')
                                           AND d BETWEEN :s AND :e), 0) AS issued,
              coalesce(sum(points) FILTER (WHERE kind = 'LOT_PROCEEDS' AND d BETWEEN :s AND :e), 0) AS proceeds,
              coalesce(-sum(points) FILTER (WHERE kind IN ('REDEMPTION', 'DONATION', 'REDEMPTION_CANCELLED')
                                            AND d BETWEEN :s AND :e), 0) AS redeemed,
              coalesce((SELECT sum(balance) FROM ledger_accounts WHERE account_id IS NOT NULL AND asset = 'POINTS'),
                       0) AS balances
            FROM (SELECT t.*, (t.occurred_at AT TIME ZONE tz.timezone)::date AS d FROM ledger_transactions t, tz) x
        """), {"s": date.fromisoformat(start), "e": date.fromisoformat(end)})).mappings().one()
    return {key: int(value) for key, value in row.items()}


async def test_figures_equal_the_ledger(api, database) -> None:
    # Five accounts behind every figure and every behaviour: nothing is suppressed.
    reward = await make_reward(database, cost=5)
    for _ in range(5):
        account = await consenting_account(api)
        await submit(api, "wuhan-tong", [record(account, "bus", 1, local_time(1)),
                                         record(account, "subway", 1, local_time(2)),
                                         record(account, "walking", 6000, local_time(1))])
        await earn(api, account, 16)
        await redeem(api, account, reward)
    period = _period()
    data = (await api.query(QUERY, as_="regulator", variables=period))["crossCityDashboard"]
    cities = {city["tenant"]["slug"]: city for city in data["cities"]}
    assert sorted(cities) == ["beijing", "guizhou", "shanghai", "wuhan"]
    wuhan, ledger = cities["wuhan"], await _ledger(database, "wuhan", period["from"], period["to"])
    assert Decimal(wuhan["reductionGrams"]) == Decimal(ledger["mg"]).scaleb(-3)
    assert Decimal(wuhan["pointsIssued"]) == ledger["issued"] and Decimal(wuhan["pointsRedeemed"]) == ledger["redeemed"]
    assert Decimal(wuhan["pointsOutstanding"]) == ledger["balances"]  # issued − redeemed − expired, ever
    assert Decimal(wuhan["pointsOutstanding"]) == (Decimal(wuhan["pointsIssued"]) - Decimal(wuhan["pointsRedeemed"])
                                                   - Decimal(wuhan["pointsExpired"]))
    assert int(wuhan["accountsOpened"]) >= 5
    assert sum(Decimal(b["pointsIssued"]) for b in wuhan["series"]) == Decimal(wuhan["pointsIssued"])
    # Behaviours account for every point issued but a market lot sale's proceeds (of no behaviour).
    assert sum(Decimal(b["points"]) for b in wuhan["byBehavior"]) == Decimal(wuhan["pointsIssued"]) - ledger["proceeds"]
    assert Decimal(data["totals"]["pointsIssued"]) == sum(Decimal(c["pointsIssued"]) for c in cities.values())


async def test_each_reader_sees_what_it_may(api) -> None:
    for client, slugs in (("wuhan-app", ["wuhan"]), ("wuhan-admin", ["wuhan"]), ("beijing-app", ["beijing"])):
        data = (await api.query(QUERY, as_=client, variables=_period()))["crossCityDashboard"]
        assert [city["tenant"]["slug"] for city in data["cities"]] == slugs
    refused = (await api.post(QUERY, as_="wuhan-tong", variables=_period())).json()
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"


@pytest.mark.parametrize(("start", "end"), [("2026-11-30", "2026-11-01"), ("2024-01-01", "2026-01-01")])
async def test_periods_are_validated(api, start, end) -> None:
    body = (await api.post(QUERY, as_="regulator", variables={"from": start, "to": end, "g": "MONTH"})).json()
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
