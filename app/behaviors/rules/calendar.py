"""Local days and months in a tenant's time zone, and the claim window. Pure functions."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

CLOCK_SKEW = timedelta(minutes=5)  # a partner's clock may run this far ahead of ours


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local_date(moment: datetime, timezone: str) -> date:
    """The tenant-local calendar day of an aware instant (23:59 and 00:01 local are different days)."""
    return moment.astimezone(zone(timezone)).date()


def month_of(day: date) -> date:
    return day.replace(day=1)


def timing_problem(occurred_at: datetime, now: datetime, claim_window_days: int) -> str | None:
    """FUTURE_TIMESTAMP, OUTSIDE_CLAIM_WINDOW, or None when the record may be claimed now."""
    if occurred_at > now + CLOCK_SKEW:
        return "FUTURE_TIMESTAMP"
    if occurred_at < now - timedelta(days=claim_window_days):
        return "OUTSIDE_CLAIM_WINDOW"
    return None
