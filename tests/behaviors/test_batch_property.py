"""Hypothesis property through the API: the outcomes of a batch add up to the account's change."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import consenting_account, local_time, record, submit

BALANCE = "query($id: ID!) { account(id: $id) { contribution { grams } balance { amount } } }"

records_strategy = st.lists(
    st.tuples(
        st.sampled_from(["walking", "bus", "subway", "shared_bike", "teleport"]),
        st.one_of(st.integers(min_value=-2, max_value=25_000), st.decimals(min_value=0, max_value=40, places=3)),
        st.integers(min_value=1, max_value=9),  # days ago (9: outside the 7-day window)
        st.integers(min_value=0, max_value=23),  # local hour
        st.integers(min_value=0, max_value=6),  # external id (small range: repeats happen)
    ),
    min_size=1, max_size=30)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=records_strategy)
async def test_batch_outcomes_add_up_to_the_balance_change(api, batch) -> None:
    account_id = await consenting_account(api)
    prefix = account_id[-8:]
    results = await submit(api, "wuhan-tong", [
        record(account_id, code, quantity, local_time(days, hour), f"{prefix}-{external}")
        for code, quantity, days, hour, external in batch])
    accepted = [r for r in results if r["status"] in ("CREDITED", "CAPPED")]
    account = (await api.query(BALANCE, as_="wuhan-app", variables={"id": account_id}))["account"]
    assert Decimal(account["contribution"]["grams"]) == sum((Decimal(r["reductionGrams"]) for r in accepted), Decimal(0))
    assert Decimal(account["balance"]["amount"]) == sum((Decimal(r["points"]) for r in accepted), Decimal(0))
    walking_by_day: dict[int, Decimal] = {}
    for (code, _, days, _, _), result in zip(batch, results, strict=True):
        if code == "walking" and result["status"] in ("CREDITED", "CAPPED"):
            walking_by_day[days] = walking_by_day.get(days, Decimal(0)) + Decimal(result["reductionGrams"])
    assert all(total <= 200 for total in walking_by_day.values())
