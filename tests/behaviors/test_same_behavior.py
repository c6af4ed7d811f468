"""The rule engine's recognition of one behaviour reported by two providers (unit tests)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from app.behaviors.rules.same_behavior import Report, SameBehavior, is_same

T = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
TRIP = SameBehavior.from_mapping({"match": "TRIP", "window_minutes": 10})


def report(at: datetime = T, day: date = date(2026, 11, 20), **evidence: str) -> Report:
    return Report(at, day, evidence or None)


@pytest.mark.parametrize(("a", "b", "same"), [
    (report(), report(T + timedelta(minutes=10)), True),  # the window's edge is inside
    (report(), report(T - timedelta(minutes=10)), True),  # either order
    (report(), report(T + timedelta(minutes=10, seconds=1)), False),
    (report(line="Line 2"), report(T + timedelta(minutes=3), line=" line 2 "), True),  # case and spaces
    (report(line="Line 2"), report(T + timedelta(minutes=3), line="Line 4"), False),  # another train
    (report(line="Line 2"), report(T + timedelta(minutes=3)), True),  # one side silent: time decides
    (report(origin_station="Hankou"), report(T, origin_station="Wuchang"), False),
    (report(destination_station="A", line="1"), report(T, destination_station="a", line="1"), True),
])
def test_trips(a: Report, b: Report, same: bool) -> None:
    assert TRIP is not None and is_same(TRIP, a, b) is same and is_same(TRIP, b, a) is same


def test_bills_need_biller_and_period_on_both_sides() -> None:
    bill = SameBehavior.from_mapping({"match": "BILL"})
    assert bill is not None
    paid = report(biller="Wuhan Water", bill_period="2026-10")
    assert is_same(bill, paid, report(T + timedelta(days=3), biller="wuhan water", bill_period="2026-10"))
    assert not is_same(bill, paid, report(biller="Wuhan Water", bill_period="2026-11"))
    assert not is_same(bill, paid, report(biller="Wuhan Water"))  # nothing proves it is the same bill
    assert not is_same(bill, report(), report())


def test_days_and_references() -> None:
    day = SameBehavior.from_mapping({"match": "DAY"})
    reference = SameBehavior.from_mapping({"match": "REFERENCE"})
    assert day is not None and reference is not None
    assert is_same(day, report(T), report(T + timedelta(hours=5)))
    assert not is_same(day, report(day=date(2026, 11, 20)), report(day=date(2026, 11, 21)))
    assert is_same(reference, report(reference="INV-1"), report(T + timedelta(days=1), reference="inv-1"))
    assert not is_same(reference, report(reference="INV-1"), report(reference="INV-2"))
    assert not is_same(reference, report(), report())


def test_rules_without_recognition_never_match() -> None:
    assert SameBehavior.from_mapping(None) is None and SameBehavior.from_mapping({"match": "NONE"}) is None
    assert TRIP is not None and TRIP.reach == timedelta(minutes=10)
