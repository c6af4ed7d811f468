"""Active accounts: each account counted once per period whatever its days, equal to a scan of the ledger
for every period; days arriving out of order relink correctly (the suite's invariant check,
`active_rollups_match_days`, runs after each test too); small counts are suppressed."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta

from sqlalchemy import text

from app.dashboard import repository
from app.db.session import TenantScope
from app.tenants.models import tenant_id_for
from tests.factories import SHANGHAI, consenting_account, local_time, open_account, record, submit

QUERY = """query($from: Date!, $to: Date!, $g: Granularity!) { crossCityDashboard(from: $from, to: $to,
    granularity: $g) {
  cities { tenant { slug } activeAccounts accountsOpened guestAccounts bankLinkedAccounts
           series { start activeAccounts } }
  totals { activeAccounts accountsOpened guestAccounts bankLinkedAccounts } } }"""

DAYS = range(1, 7)  # local days ago, inside Wuhan's 7-day claim window


def _day(days_ago: int) -> date:
    return datetime.now(SHANGHAI).date() - timedelta(days=days_ago)


async def _scanned(database, start: date, end: date) -> int:
    """Accounts that earned or spent in [start, end], straight from the ledger."""
    async with database.transaction(TenantScope.for_tenant(tenant_id_for("wuhan"))) as session:
        return int(await session.scalar(text("""
            SELECT count(DISTINCT account_id) FROM ledger_transactions
             WHERE kind IN ('BEHAVIOR_CREDIT', 'REDEMPTION', 'DONATION')
               AND (occurred_at AT TIME ZONE 'Asia/Shanghai')::date BETWEEN :s AND :e"""), {"s": start, "e": end}))


async def _active(database, start: date, end: date) -> int:
    async with database.transaction(TenantScope.for_tenant(tenant_id_for("wuhan"))) as session:
        return (await repository.headline(session, [tenant_id_for("wuhan")], start, end))[tenant_id_for("wuhan")][
            "active"]


async def test_every_period_counts_each_account_once(api, database) -> None:
    rng = random.Random(6)
    accounts = [await consenting_account(api) for _ in range(7)]
    # Each account active on a random set of days; the days sent in a random order, in mixed batches, so
    # that days arrive before, after and between days already known.
    pending = [(account, day) for account in accounts for day in rng.sample(list(DAYS), rng.randint(1, 5))]
    rng.shuffle(pending)
    while pending:
        batch = pending[:rng.randint(1, 6)]
        pending = pending[len(batch):]
        await submit(api, "wuhan-tong", [record(account, "bus", 1, local_time(day, 9)) for account, day in batch])
    for newest in DAYS:
        for oldest in range(newest, max(DAYS) + 2):
            start, end = _day(oldest), _day(newest)
            assert await _active(database, start, end) == await _scanned(database, start, end), (start, end)


async def test_active_accounts_through_the_api(api, database) -> None:
    accounts = [await consenting_account(api) for _ in range(6)]
    # Day 5: all six; day 3: the first three (again); day 1: a redemption-free bus ride by one.
    await submit(api, "wuhan-tong", [record(account, "bus", 1, local_time(3, 9)) for account in accounts[:3]])
    await submit(api, "wuhan-tong", [record(account, "bus", 1, local_time(5, 9)) for account in accounts])
    await submit(api, "wuhan-tong", [record(accounts[0], "bus", 1, local_time(1, 9))])
    period = {"from": _day(6).isoformat(), "to": _day(0).isoformat(), "g": "DAY"}
    data = (await api.query(QUERY, as_="regulator", variables=period))["crossCityDashboard"]
    wuhan = next(city for city in data["cities"] if city["tenant"]["slug"] == "wuhan")
    expected = await _scanned(database, _day(6), _day(0))
    assert expected >= 6 and int(wuhan["activeAccounts"]) == expected
    series = {bucket["start"]: bucket["activeAccounts"] for bucket in wuhan["series"]}
    assert int(series[_day(5).isoformat()]) == await _scanned(database, _day(5), _day(5))
    assert series[_day(1).isoformat()] is None or int(series[_day(1).isoformat()]) >= 5  # one account: suppressed
    weekly = (await api.query(QUERY, as_="wuhan-app", variables={**period, "g": "WEEK"}))["crossCityDashboard"]
    assert sum(int(b["activeAccounts"] or 0) for b in weekly["cities"][0]["series"]) >= expected


async def test_small_account_counts_are_suppressed(api, database) -> None:
    """Beijing with two accounts: its counts are null, and so is any total that would give them away."""
    accounts = [await open_account(api, app="beijing-app") for _ in range(2)]
    period = {"from": _day(1).isoformat(), "to": _day(-1).isoformat(), "g": "DAY"}
    data = (await api.query(QUERY, as_="regulator", variables=period))["crossCityDashboard"]
    cities = {city["tenant"]["slug"]: city for city in data["cities"]}
    opened = {slug: await _opened(database, slug, period) for slug in cities}
    assert opened["beijing"] == len(accounts) < 5
    assert cities["beijing"]["accountsOpened"] is None and cities["beijing"]["guestAccounts"] is None
    hidden = sum(n for n in opened.values() if 0 < n < 5)
    total = data["totals"]["accountsOpened"]
    assert total is None if hidden < 5 else int(total) == sum(opened.values())
    for slug, n in opened.items():
        shown = cities[slug]["accountsOpened"]
        assert (shown is None) if 0 < n < 5 else int(shown) == n


async def test_guest_and_bank_linked_are_suppressed_together(api) -> None:
    """Six guests and two bank-linked: the two would be the opened count minus the guests."""
    for _ in range(6):
        await open_account(api, app="guizhou-app")
    for n in range(2):
        await open_account(api, app="guizhou-app", kind="BANK_LINKED", bank=f"622202020000{n:04d}")
    period = {"from": _day(364).isoformat(), "to": _day(-1).isoformat(), "g": "MONTH"}
    data = (await api.query(QUERY, as_="regulator", variables=period))["crossCityDashboard"]
    for figures in [*data["cities"], data["totals"]]:
        assert (figures["guestAccounts"] is None) == (figures["bankLinkedAccounts"] is None), figures
    guizhou = next(city for city in data["cities"] if city["tenant"]["slug"] == "guizhou")
    if int(guizhou["accountsOpened"]) == 8:  # nothing else opened there: the pair is hidden
        assert guizhou["guestAccounts"] is None and guizhou["bankLinkedAccounts"] is None


async def _opened(database, slug: str, period: dict) -> int:
    async with database.transaction(TenantScope.for_tenant(tenant_id_for(slug))) as session:
        return int(await session.scalar(text("""
            SELECT count(*) FROM account_events e, (SELECT timezone FROM tenant_config_versions
                                                    ORDER BY effective_from DESC, version DESC LIMIT 1) tz
             WHERE e.kind = 'OPENED' AND (e.at AT TIME ZONE tz.timezone)::date BETWEEN :s AND :e"""),
            {"s": date.fromisoformat(period["from"]), "e": date.fromisoformat(period["to"])}))
