"""recordBehaviors through the API: every outcome, idempotency, windows, caps, versions, atomicity."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from app.db.session import NO_TENANT
from app.settings import PROJECT_ROOT
from app.tenants.config import load_city_files
from app.tenants.service import load_cities
from tests.factories import (
    RECORD,
    consenting_account,
    grant,
    local_time,
    open_account,
    recent,
    record,
    submit,
)

BALANCE = "query($id: ID!) { account(id: $id) { contribution { grams } balance { amount } } }"


async def _totals(api, account_id: str) -> tuple[str, str]:
    account = (await api.query(BALANCE, as_="wuhan-app", variables={"id": account_id}))["account"]
    return account["contribution"]["grams"], account["balance"]["amount"]


async def test_every_rejection_code_and_good_records_still_credited(api) -> None:
    account_id = await consenting_account(api)
    closed_id = await consenting_account(api)
    await api.query('mutation($id: ID!) { closeAccount(input: {accountId: $id}) { userErrors { code } } }',
                    as_="wuhan-app", variables={"id": closed_id})
    beijing_account = await open_account(api, app="beijing-app")
    naive = (datetime.now(UTC) - timedelta(hours=1)).replace(tzinfo=None).isoformat()
    batch = [
        record(account_id, "bus", 1, local_time(1), "good-1"),
        record(account_id, "online_living_payment", 1, local_time(1), "no-consent-for-provider"),
        record(account_id, "teleportation", 1, local_time(1), "unknown"),
        record("QWNjb3VudDoxMjM=", "bus", 1, local_time(1), "malformed-account"),
        record(beijing_account, "bus", 1, local_time(1), "other-city-account"),
        record(closed_id, "bus", 1, local_time(1), "closed"),
        record(account_id, "bus", 1, local_time(8), "too-old"),
        record(account_id, "bus", 1, (datetime.now(UTC) + timedelta(hours=1)).isoformat(), "future"),
        record(account_id, "walking", "0", local_time(1), "zero"),
        record(account_id, "walking", "-5", local_time(1), "negative"),
        record(account_id, "walking", "10.5", local_time(1), "half-step"),
        record(account_id, "walking", "1E+999999999", local_time(1), "huge-exponent"),  # froze the process
        record(account_id, "bus", "1E+5000", local_time(1), "long-message"),  # failed the whole batch
        record(account_id, "shared_bike", "1.2345", local_time(1), "sub-metre"),
        record(account_id, "bus", 1, naive, "naive-time"),
        record(account_id, "bus", 1, local_time(1), ""),
        record(account_id, "subway", 2, local_time(1), "good-2"),
    ]
    results = await submit(api, "wuhan-tong", batch)
    assert [(r["externalId"], r["status"], r["code"]) for r in results] == [
        ("good-1", "CREDITED", None),
        ("no-consent-for-provider", "REJECTED", "CONSENT_MISSING"),  # wuhan-tong holds TRAVEL only
        ("unknown", "REJECTED", "UNKNOWN_BEHAVIOR"),
        ("malformed-account", "REJECTED", "ACCOUNT_NOT_FOUND"),
        ("other-city-account", "REJECTED", "ACCOUNT_NOT_FOUND"),
        ("closed", "REJECTED", "ACCOUNT_CLOSED"),
        ("too-old", "REJECTED", "OUTSIDE_CLAIM_WINDOW"),
        ("future", "REJECTED", "FUTURE_TIMESTAMP"),
        ("zero", "REJECTED", "INVALID_QUANTITY"),
        ("negative", "REJECTED", "INVALID_QUANTITY"),
        ("half-step", "REJECTED", "INVALID_QUANTITY"),
        ("huge-exponent", "REJECTED", "INVALID_QUANTITY"),
        ("long-message", "REJECTED", "INVALID_QUANTITY"),
        ("sub-metre", "REJECTED", "INVALID_QUANTITY"),
        ("naive-time", "REJECTED", "INVALID_TIMESTAMP"),
        ("", "REJECTED", "INVALID_EXTERNAL_ID"),
        ("good-2", "CREDITED", None),
    ]
    for result in results:
        if result["status"] == "REJECTED":
            assert result["reductionGrams"] == "0" and result["points"] == "0" and result["reason"]
            assert result["recordId"] is None
    assert await _totals(api, account_id) == ("240", "24")  # 80 + 2 × 80


async def test_a_provider_without_consent_learns_nothing_more_about_the_account(api) -> None:
    """amap-travel holds no consent from these accounts: whether one was closed since, or what it sends,
    the answer is the same CONSENT_MISSING (a revoked partner may still hold the id)."""
    open_id, closed_id = await consenting_account(api), await consenting_account(api)
    await api.query('mutation($id: ID!) { closeAccount(input: {accountId: $id}) { userErrors { code } } }',
                    as_="wuhan-app", variables={"id": closed_id})
    results = await submit(api, "amap-travel", [
        record(open_id, "bus", 1, local_time(1)), record(closed_id, "bus", 1, local_time(1)),
        record(open_id, "teleportation", 1, local_time(1)), record(closed_id, "walking", "-5", local_time(1))])
    assert [r["code"] for r in results] == ["CONSENT_MISSING"] * 4


async def test_same_batch_twenty_times_has_one_effect(api) -> None:
    account_id = await consenting_account(api)
    batch = [record(account_id, "walking", 12000, local_time(1), "walk-1"),
             record(account_id, "walking", 9000, local_time(1, 18), "walk-2"),
             record(account_id, "bus", 1, local_time(2), "bus-1")]
    first = await submit(api, "wuhan-tong", batch)
    # 12,000 steps = 240 g, capped at 200 g; the second walk that day finds the cap used up.
    assert [(r["status"], r["reductionGrams"]) for r in first] == [
        ("CAPPED", "200"), ("CAPPED", "0"), ("CREDITED", "80")]
    totals = await _totals(api, account_id)
    for _ in range(19):
        again = await submit(api, "wuhan-tong", batch)
        assert [r["status"] for r in again] == ["DUPLICATE"] * 3
        assert [(r["reductionGrams"], r["points"], r["recordId"]) for r in again] == [
            (r["reductionGrams"], r["points"], r["recordId"]) for r in first]
    assert await _totals(api, account_id) == totals


async def test_walking_cap_is_per_local_day_in_shanghai(api) -> None:
    account_id = await consenting_account(api)
    results = await submit(api, "wuhan-tong", [
        record(account_id, "walking", 15000, local_time(2, 23, 59)),  # 15:59 UTC
        record(account_id, "walking", 15000, local_time(1, 0, 1)),  # 16:01 UTC the same UTC day
        record(account_id, "walking", 15000, local_time(1, 12)),
    ])
    assert [(r["status"], r["reductionGrams"]) for r in results] == [
        ("CAPPED", "200"), ("CAPPED", "200"), ("CAPPED", "0")]


async def test_cap_is_shared_across_batches_and_partial_credit_is_capped(api) -> None:
    account_id = await consenting_account(api)
    first = await submit(api, "wuhan-tong", [record(account_id, "walking", 6000, local_time(1))])
    assert (first[0]["status"], first[0]["reductionGrams"]) == ("CREDITED", "120")
    second = await submit(api, "wuhan-tong", [record(account_id, "walking", 6000, local_time(1, 15))])
    assert (second[0]["status"], second[0]["reductionGrams"]) == ("CAPPED", "80")


async def test_monthly_cap(api) -> None:
    account_id = await consenting_account(api)
    payments = [record(account_id, "online_living_payment", 1, local_time(1, 8 + i)) for i in range(6)]
    results = await submit(api, "hankou-bank", payments)
    assert [r["reductionGrams"] for r in results] == ["262"] * 5 + ["0"]
    assert results[-1]["status"] == "CAPPED"


async def test_today_shows_a_used_up_monthly_cap(api) -> None:
    """online_living_payment has no daily cap but 1,310 g a month: once the month's cap is used up,
    `remainingGrams` is 0, not null ("uncapped")."""
    account_id = await consenting_account(api)
    now = datetime.now(UTC)
    payments = [record(account_id, "online_living_payment", 1, (now - timedelta(seconds=10 - i)).isoformat())
                for i in range(6)]
    assert [r["status"] for r in await submit(api, "hankou-bank", payments)] == ["CREDITED"] * 5 + ["CAPPED"]
    query = """query($id: ID!) { account(id: $id) { today { behavior { code } creditedGrams capGrams
        monthCreditedGrams monthCapGrams remainingGrams } } }"""
    today = {t["behavior"]["code"]: t for t in (await api.query(query, as_="wuhan-app", variables={
        "id": account_id}))["account"]["today"]}
    assert today["online_living_payment"] == {
        "behavior": {"code": "online_living_payment"}, "creditedGrams": "1310", "capGrams": None,
        "monthCreditedGrams": "1310", "monthCapGrams": "1310", "remainingGrams": "0"}
    assert today["walking"]["remainingGrams"] == "200" and today["walking"]["monthCapGrams"] is None
    assert today["bus"]["remainingGrams"] == "800" and today["bus"]["monthCreditedGrams"] == "0"


async def test_per_distance_and_per_event_cap(api) -> None:
    account_id = await consenting_account(api)
    results = await submit(api, "wuhan-tong", [
        record(account_id, "shared_bike", "3.5", local_time(1, 8)),
        record(account_id, "shared_bike", "25", local_time(1, 9)),
    ])
    # 93.3 g/km × 3.5 km = 326.55 g; 25 km = 2332.5 g, capped at 1866 g per ride (and 2799 g a day).
    assert [(r["status"], r["reductionGrams"]) for r in results] == [("CREDITED", "326.55"), ("CAPPED", "1866")]


async def test_in_batch_repeat_is_a_duplicate_of_the_first(api) -> None:
    account_id = await consenting_account(api)
    results = await submit(api, "wuhan-tong", [
        record(account_id, "bus", 1, local_time(1), "same"),
        record(account_id, "bus", 1, local_time(1), "same"),
    ])
    assert [r["status"] for r in results] == ["CREDITED", "DUPLICATE"]
    assert results[1]["reductionGrams"] == "80" and results[1]["recordId"] == results[0]["recordId"]
    assert await _totals(api, account_id) == ("80", "8")


async def test_external_ids_are_per_provider(api) -> None:
    account_id = await consenting_account(api, providers={"wuhan-tong": ["TRAVEL"], "hankou-bank": ["TRAVEL", "LIFE"]})
    a = await submit(api, "wuhan-tong", [record(account_id, "bus", 1, local_time(1, 8), "shared-id")])
    b = await submit(api, "hankou-bank", [record(account_id, "bus", 1, local_time(1, 9), "shared-id")])
    assert a[0]["status"] == b[0]["status"] == "CREDITED"


async def test_a_rejected_record_can_be_sent_again_once_fixed(api) -> None:
    account_id = await open_account(api)
    first = await submit(api, "wuhan-tong", [record(account_id, "bus", 1, local_time(1), "retry-me")])
    assert first[0]["code"] == "CONSENT_MISSING"
    await grant(api, account_id, "wuhan-tong", ["TRAVEL"])
    second = await submit(api, "wuhan-tong", [record(account_id, "bus", 1, local_time(1), "retry-me")])
    assert second[0]["status"] == "CREDITED"


async def test_revoked_consent_stops_ingestion_and_history_is_kept(api) -> None:
    account_id = await consenting_account(api)
    await api.query('mutation($id: ID!) { revokeConsent(input: {accountId: $id, provider: "wuhan-tong"}) { userErrors { code } } }',
                    as_="wuhan-app", variables={"id": account_id})
    results = await submit(api, "wuhan-tong", [record(account_id, "bus", 1, local_time(1))])
    assert results[0]["code"] == "CONSENT_MISSING"
    consents = (await api.query('query($id: ID!) { account(id: $id) { consents { provider { slug } live revokedAt } } }',
                                as_="wuhan-app", variables={"id": account_id}))["account"]["consents"]
    tong = [c for c in consents if c["provider"]["slug"] == "wuhan-tong"]
    assert len(tong) == 1 and tong[0]["live"] is False and tong[0]["revokedAt"]


async def test_frozen_accounts_keep_earning(api) -> None:
    account_id = await consenting_account(api)
    await api.query('mutation($id: ID!) { freezeAccount(input: {accountId: $id}) { account { status } } }',
                    as_="wuhan-app", variables={"id": account_id})
    results = await submit(api, "wuhan-tong", [record(account_id, "bus", 1, recent())])
    assert results[0]["status"] == "CREDITED"


async def test_batch_over_a_thousand_is_refused_whole(api) -> None:
    account_id = await consenting_account(api)
    batch = [record(account_id, "walking", 1, local_time(1), f"bulk-{i}") for i in range(1001)]
    data = await api.query(RECORD, as_="wuhan-tong", variables={"input": {"records": batch}})
    payload = data["recordBehaviors"]
    assert payload["results"] == []
    assert payload["userErrors"][0]["code"] == "BATCH_TOO_LARGE"
    assert await _totals(api, account_id) == ("0", "0")


async def test_a_thousand_records_in_one_call(api) -> None:
    account_id = await consenting_account(api)
    batch = [record(account_id, "walking", 1, local_time(1), f"one-step-{i}") for i in range(1000)]
    results = await submit(api, "wuhan-tong", batch)
    assert len(results) == 1000 and {r["status"] for r in results} == {"CREDITED"}
    assert await _totals(api, account_id) == ("20", "2")  # 1000 × 20 mg


async def test_only_partners_record_behaviors(api) -> None:
    account_id = await consenting_account(api)
    for client in ("wuhan-app", "wuhan-admin", "regulator"):
        errors = await api.errors(RECORD, as_=client, variables={"input": {"records": [
            record(account_id, "bus", 1, local_time(1))]}})
        assert errors[0]["extensions"]["code"] == "FORBIDDEN"
    # A partner of another city cannot reach a Wuhan account.
    results = await submit(api, "anshun-bank", [record(account_id, "bus", 1, local_time(1))])
    assert results[0]["code"] == "ACCOUNT_NOT_FOUND"


async def test_failure_mid_batch_leaves_nothing_written(api, monkeypatch) -> None:
    account_id = await consenting_account(api)
    from app.ledger import service as ledger_service

    real_post = ledger_service.post

    async def failing_post(*args, **kwargs):
        await real_post(*args, **kwargs)
        raise RuntimeError("disk full after the postings")

    monkeypatch.setattr(ledger_service, "post", failing_post)
    response = await api.post(RECORD, as_="wuhan-tong", variables={"input": {"records": [
        record(account_id, "bus", 1, local_time(1), "atomic-1")]}})
    body = response.json()
    assert body["data"] is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["INTERNAL"]
    assert body["errors"][0]["message"] == "Unexpected error." and "disk full" not in response.text
    monkeypatch.setattr(ledger_service, "post", real_post)
    assert await _totals(api, account_id) == ("0", "0")
    again = await submit(api, "wuhan-tong", [record(account_id, "bus", 1, local_time(1), "atomic-1")])
    assert again[0]["status"] == "CREDITED", "nothing of the failed call may have used up the externalId"


async def test_pricing_uses_the_version_in_force_when_the_behaviour_happened(api, database, tmp_path) -> None:
    account_id = await consenting_account(api)
    config = tmp_path / "config"
    shutil.copytree(PROJECT_ROOT / "config", config)
    wuhan = config / "tenants" / "wuhan.toml"
    wuhan.write_text(wuhan.read_text(encoding="utf-8").replace(
        'code = "bus"\nname = ', 'code = "bus"\nname = ', 1).replace("factor_g = 80\n", "factor_g = 100\n", 1),
        encoding="utf-8")
    published = datetime.now(UTC) - timedelta(hours=2)
    async with database.transaction(NO_TENANT) as session:
        results = {r.slug: r for r in await load_cities(session, load_city_files(config), now=published)}
    assert results["wuhan"].version == 2
    before = (published - timedelta(hours=1)).isoformat()
    after = (published + timedelta(hours=1)).isoformat()
    outcome = await submit(api, "wuhan-tong", [record(account_id, "bus", 1, before), record(account_id, "bus", 1, after)])
    assert [r["reductionGrams"] for r in outcome] == ["80", "100"]
    activity = (await api.query('query($id: ID!) { account(id: $id) { activity(first: 5) { nodes { reductionGrams behavior { factorGrams } } } } }',
                                as_="wuhan-app", variables={"id": account_id}))["account"]["activity"]["nodes"]
    assert [(a["reductionGrams"], a["behavior"]["factorGrams"]) for a in activity] == [("100", "100"), ("80", "80")]


@pytest.mark.parametrize("quantity", ["NaN", "Infinity", "1e400"])
async def test_non_finite_quantities_are_rejected(api, quantity) -> None:
    account_id = await consenting_account(api)
    response = await api.post(RECORD, as_="wuhan-tong", variables={"input": {"records": [
        record(account_id, "walking", quantity, local_time(1))]}})
    body = response.json()
    if body.get("data") and body["data"]["recordBehaviors"]:
        assert body["data"]["recordBehaviors"]["results"][0]["code"] == "INVALID_QUANTITY"
    else:
        assert body["errors"] and "Unexpected" not in body["errors"][0]["message"]
    assert await _totals(api, account_id) == ("0", "0")


async def test_property_outcomes_of_each_batch_add_up_to_the_balance_change(api) -> None:
    """Seeded random batches (mixed behaviours, days, caps, repeats, bad records): after every batch the
    contribution and balance change by exactly what the new (non-duplicate) outcomes report."""
    import random

    rng = random.Random(20261129)
    account_id = await consenting_account(api)
    behaviors = (await api.query('{ tenant(slug: "wuhan") { behaviors { code category method } } }',
                                 as_="wuhan-app"))["tenant"]["behaviors"]
    travel = [b for b in behaviors if b["category"] == "TRAVEL"]
    sent: list[dict] = []
    contribution, balance = Decimal(0), Decimal(0)
    for batch_number in range(12):
        batch = []
        for _ in range(rng.randint(1, 25)):
            if sent and rng.random() < 0.15:
                batch.append(rng.choice(sent))  # a repeat
                continue
            behavior = rng.choice(travel)
            quantity = (str(Decimal(rng.randint(1, 20000)) / 1000) if behavior["method"] == "PER_DISTANCE"
                        else str(rng.choice([1, 2, rng.randint(1, 20000)]) if behavior["code"] == "walking"
                                 else rng.randint(0, 3)))
            batch.append(record(account_id, behavior["code"], quantity,
                                local_time(rng.randint(0, 3), rng.randint(0, 9), rng.randint(0, 59))))
        sent += batch
        results = await submit(api, "wuhan-tong", batch)
        new = [r for r in results if r["status"] in ("CREDITED", "CAPPED")]
        contribution += sum((Decimal(r["reductionGrams"]) for r in new), Decimal(0))
        balance += sum((Decimal(r["points"]) for r in new), Decimal(0))
        account = (await api.query(BALANCE, as_="wuhan-app", variables={"id": account_id}))["account"]
        assert Decimal(account["contribution"]["grams"]) == contribution, batch_number
        assert Decimal(account["balance"]["amount"]) == balance, batch_number
    assert contribution > 0
