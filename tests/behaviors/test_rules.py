"""The rule engine, unit-tested directly: methods, caps, conversion, with hypothesis properties."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.behaviors.rules.base import InvalidQuantity, PricingRule
from app.behaviors.rules.caps import capped_mg
from app.behaviors.rules.registry import requested_mg
from app.ledger.conversion import convert, mg_per_minor_point


def rule(method: str = "PER_UNIT", factor_mg: int = 20, day: int | None = None, month: int | None = None,
         event: int | None = None, unit: str = "step") -> PricingRule:
    return PricingRule(id=uuid.uuid4(), code="x", category="TRAVEL", method=method, unit=unit, factor_mg=factor_mg,
                       cap_mg_per_day=day, cap_mg_per_month=month, cap_mg_per_event=event, config_version=1)


def test_per_unit_walking() -> None:
    assert requested_mg(rule(factor_mg=20), Decimal(15000)) == 300_000  # 300 g before the cap


def test_per_event_bus() -> None:
    assert requested_mg(rule("PER_EVENT", 80_000, unit="ride"), Decimal(2)) == 160_000


def test_per_distance_floors_to_whole_milligrams() -> None:
    bike = rule("PER_DISTANCE", 93_300, unit="km")
    assert requested_mg(bike, Decimal("3.5")) == 326_550
    assert requested_mg(bike, Decimal("0.001")) == 93
    beijing_rail = rule("PER_DISTANCE", 220_000 - 31_000, unit="km")
    assert requested_mg(beijing_rail, Decimal("12.345")) == 2_333_205


@pytest.mark.parametrize(("method", "quantity"), [
    ("PER_UNIT", "0"), ("PER_UNIT", "-1"), ("PER_UNIT", "1.5"), ("PER_UNIT", "10000001"),
    ("PER_EVENT", "0.5"), ("PER_DISTANCE", "0"), ("PER_DISTANCE", "1.0001"), ("PER_DISTANCE", "10000.001"),
    ("PER_UNIT", "NaN"), ("PER_DISTANCE", "Infinity"), ("PER_EVENT", "-Infinity"),
    # Huge exponents: refused from the Decimal (int() of 1E+999999999 never finishes).
    ("PER_UNIT", "1E+999999999"), ("PER_EVENT", "1E+400000"), ("PER_EVENT", "-1E+999999999"),
    ("PER_DISTANCE", "1E+999999999"), ("PER_UNIT", "1E-999999999"),
])
def test_invalid_quantities(method, quantity) -> None:
    with pytest.raises(InvalidQuantity):
        requested_mg(rule(method), Decimal(quantity))


def test_a_negative_carry_is_repaid_before_points_are_earned() -> None:
    from app.ledger.conversion import Conversion

    assert convert(-5_000, 3_000, 10_000) == Conversion(points=0, converted_mg=0, carry_mg=-2_000)  # still owing
    assert convert(-5_000, 5_000, 10_000) == Conversion(points=0, converted_mg=0, carry_mg=0)
    assert convert(-5_000, 26_000, 10_000) == Conversion(points=2, converted_mg=20_000, carry_mg=1_000)


def test_caps_each_kind() -> None:
    assert capped_mg(rule(event=50), 80, 0, 0) == 50
    assert capped_mg(rule(day=200_000), 300_000, 0, 0) == 200_000
    assert capped_mg(rule(day=200_000), 300_000, 150_000, 0) == 50_000
    assert capped_mg(rule(day=200_000), 300_000, 250_000, 0) == 0  # already over: never negative
    assert capped_mg(rule(month=1_310_000), 262_000, 1_200_000, 0) == 262_000
    assert capped_mg(rule(month=1_310_000), 262_000, 0, 1_200_000) == 110_000
    assert capped_mg(rule(), 123, 10**12, 10**12) == 123  # uncapped


@settings(max_examples=300, deadline=None)
@given(requests=st.lists(st.integers(min_value=0, max_value=500_000), max_size=40),
       day=st.one_of(st.none(), st.integers(min_value=0, max_value=1_000_000)),
       month=st.one_of(st.none(), st.integers(min_value=0, max_value=3_000_000)),
       event=st.one_of(st.none(), st.integers(min_value=0, max_value=300_000)))
def test_never_credits_above_any_cap(requests, day, month, event) -> None:
    pricing = rule(day=day, month=month, event=event)
    total = 0
    for requested in requests:
        credit = capped_mg(pricing, requested, total, total)
        assert 0 <= credit <= requested
        if event is not None:
            assert credit <= event
        total += credit
        if day is not None:
            assert total <= max(day, 0)
        if month is not None:
            assert total <= max(month, 0)


@settings(max_examples=300, deadline=None)
@given(credits=st.lists(st.tuples(st.integers(min_value=0, max_value=10**9),
                                  st.sampled_from([(10, 0), (1, 0), (10, 2), (7, 1), (3, 3)])), max_size=50))
def test_conversion_loses_nothing(credits) -> None:
    carry = credited = converted = 0
    for credit, (grams_per_point, decimals) in credits:
        rate = mg_per_minor_point(grams_per_point, decimals)
        result = convert(carry, credit, rate)
        assert result.converted_mg == result.points * rate
        assert 0 <= result.carry_mg < rate
        carry = result.carry_mg
        credited += credit
        converted += result.converted_mg
    assert credited == converted + carry


def test_conversion_example_742_grams_is_74_coins_and_2_grams_carried() -> None:
    carry, points = 0, 0
    for grams in (200, 200, 80, 262):
        result = convert(carry, grams * 1000, mg_per_minor_point(10, 0))
        carry, points = result.carry_mg, points + result.points
    assert (points, carry) == (74, 2000)


def test_rates_that_are_not_whole_milligrams_are_refused() -> None:
    with pytest.raises(ValueError):
        mg_per_minor_point(1, 4)


# --------------------------------------------------------------- time zones, claim window, versions

from datetime import UTC, date, datetime, timedelta, timezone  # noqa: E402

from app.behaviors.ingestion import Versions  # noqa: E402
from app.behaviors.repository import VersionRow  # noqa: E402
from app.behaviors.rules.calendar import local_date, month_of, timing_problem  # noqa: E402

SHANGHAI_OFFSET = timezone(timedelta(hours=8))


def test_local_day_boundaries_in_shanghai() -> None:
    before_midnight = datetime(2026, 11, 27, 23, 59, tzinfo=SHANGHAI_OFFSET)
    after_midnight = datetime(2026, 11, 28, 0, 1, tzinfo=SHANGHAI_OFFSET)
    assert before_midnight.astimezone(UTC).date() == after_midnight.astimezone(UTC).date()  # same UTC day
    assert local_date(before_midnight, "Asia/Shanghai") == date(2026, 11, 27)
    assert local_date(after_midnight, "Asia/Shanghai") == date(2026, 11, 28)
    # 16:30 UTC on the last day of the month is already the 1st in Shanghai.
    assert month_of(local_date(datetime(2026, 11, 30, 16, 30, tzinfo=UTC), "Asia/Shanghai")) == date(2026, 12, 1)


def test_claim_window_and_future() -> None:
    now = datetime(2026, 11, 29, 12, tzinfo=UTC)
    assert timing_problem(now - timedelta(days=7) + timedelta(seconds=1), now, 7) is None
    assert timing_problem(now - timedelta(days=7, seconds=1), now, 7) == "OUTSIDE_CLAIM_WINDOW"
    assert timing_problem(now + timedelta(minutes=4), now, 7) is None  # clock skew tolerated
    assert timing_problem(now + timedelta(minutes=6), now, 7) == "FUTURE_TIMESTAMP"
    assert timing_problem(now - timedelta(days=20), now, 30) is None


def _version(number: int, start: datetime) -> VersionRow:
    return VersionRow(id=uuid.uuid4(), version=number, effective_from=start, timezone="Asia/Shanghai",
                      claim_window_days=7, grams_per_point=10, unit_decimals=0)


def test_version_in_force_at_an_instant() -> None:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    v1, v2, v3 = _version(1, t0), _version(2, t0 + timedelta(days=10)), _version(3, t0 + timedelta(days=20))
    v4_same_start = _version(4, t0 + timedelta(days=20))  # a later publication for the same instant wins
    versions = Versions([v1, v2, v3, v4_same_start])
    assert versions.at(t0 - timedelta(seconds=1)) is None
    assert versions.at(t0) is v1
    assert versions.at(t0 + timedelta(days=10) - timedelta(microseconds=1)) is v1
    assert versions.at(t0 + timedelta(days=10)) is v2
    assert versions.at(t0 + timedelta(days=25)) is v4_same_start
