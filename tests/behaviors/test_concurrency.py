"""Parallel requests on real connections: caps and idempotency stay exact under concurrency."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from tests.factories import consenting_account, local_time, record, submit

BALANCE = "query($id: ID!) { account(id: $id) { contribution { grams } balance { amount } } }"


async def test_parallel_batches_for_one_account_respect_the_daily_cap_exactly(committed_api) -> None:
    api = committed_api
    account_id = await consenting_account(api)
    batches = [[record(account_id, "walking", 3000 + 100 * i, local_time(1, 7 + i % 12, i))] for i in range(12)]
    results = await asyncio.gather(*(submit(api, "wuhan-tong", batch) for batch in batches))
    credited = sum(Decimal(r[0]["reductionGrams"]) for r in results)
    assert credited == Decimal(200), [r[0] for r in results]
    account = (await api.query(BALANCE, as_="wuhan-app", variables={"id": account_id}))["account"]
    assert account == {"contribution": {"grams": "200"}, "balance": {"amount": "20"}}


async def test_the_same_batch_sent_concurrently_is_credited_once(committed_api) -> None:
    api = committed_api
    account_id = await consenting_account(api)
    batch = [record(account_id, "bus", 1, local_time(1, 8), "c-bus"),
             record(account_id, "subway", 1, local_time(1, 9), "c-subway")]
    results = await asyncio.gather(*(submit(api, "wuhan-tong", batch) for _ in range(10)))
    statuses = sorted(tuple(r["status"] for r in result) for result in results)
    assert statuses.count(("CREDITED", "CREDITED")) == 1
    assert statuses.count(("DUPLICATE", "DUPLICATE")) == 9
    account = (await api.query(BALANCE, as_="wuhan-app", variables={"id": account_id}))["account"]
    assert account["contribution"] == {"grams": "160"}


async def test_one_external_id_for_two_accounts_at_once_is_credited_once(committed_api) -> None:
    """A provider bug: the same externalId for different accounts. The accounts' locks do not serialise
    them; the unique key does, and the loser re-evaluates and reports DUPLICATE."""
    api = committed_api
    first, second = await consenting_account(api), await consenting_account(api)
    for _ in range(3):
        external = f"shared-{first[-6:]}-{_}"
        a, b = await asyncio.gather(submit(api, "wuhan-tong", [record(first, "bus", 1, local_time(1), external)]),
                                    submit(api, "wuhan-tong", [record(second, "bus", 1, local_time(1), external)]))
        assert sorted([a[0]["status"], b[0]["status"]]) == ["CREDITED", "DUPLICATE"]
