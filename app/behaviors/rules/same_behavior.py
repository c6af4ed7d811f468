"""One real-world behaviour reported by two providers is credited once (issue 7, ADR 0009).

Each rule declares how the same behaviour is recognised (`app.tenants.config.SameBehaviorMatch`). This
module only compares two reports; ingestion fetches the records already credited from other providers
under the per-account lock, so two providers sending the same trip at the same instant are serialised
and exactly one is credited. Within one provider, `externalId` decides (DUPLICATE), never this.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

TRIP_FIELDS = ("line", "origin_station", "destination_station")


@dataclass(frozen=True)
class SameBehavior:
    match: str  # TRIP | BILL | DAY | REFERENCE | NONE
    window: timedelta = timedelta(0)

    @classmethod
    def from_mapping(cls, value: Mapping[str, Any] | None) -> SameBehavior | None:
        """From `behavior_rules.same_behavior`; None (nothing recognised) for rules without one."""
        if not value or value.get("match") in (None, "NONE"):
            return None
        return cls(match=value["match"], window=timedelta(minutes=value.get("window_minutes") or 0))

    @property
    def reach(self) -> timedelta:
        """How far apart two reports of one behaviour can be in time: a trip's window, a day, or a month
        for a payment or purchase reported late (reports further apart are not compared)."""
        return {"TRIP": self.window, "DAY": timedelta(days=1)}.get(self.match, timedelta(days=31))


@dataclass(frozen=True)
class Report:
    """What a record says about the behaviour: its time, local day and evidence (keys snake_case)."""

    occurred_at: datetime
    local_date: date
    evidence: Mapping[str, str] | None


def _value(report: Report, key: str) -> str | None:
    value = (report.evidence or {}).get(key)
    value = value.strip().casefold() if isinstance(value, str) else None
    return value or None


def is_same(rule: SameBehavior, a: Report, b: Report) -> bool:
    """Whether two reports (same account and behaviour, different providers) are one behaviour."""
    if rule.match == "TRIP":
        if abs(a.occurred_at - b.occurred_at) > rule.window:
            return False
        # Where both give a line or station, they must agree; where one is silent, time decides.
        return all(x is None or y is None or x == y
                   for x, y in ((_value(a, key), _value(b, key)) for key in TRIP_FIELDS))
    if rule.match == "BILL":
        keys = ("biller", "bill_period")
    elif rule.match == "REFERENCE":
        keys = ("reference",)
    elif rule.match == "DAY":
        return a.local_date == b.local_date
    else:
        return False
    # Without the identifying fields on both sides nothing proves they are one payment or purchase.
    return all(_value(a, key) is not None and _value(a, key) == _value(b, key) for key in keys)
