"""Caps: per record, per account per local day, per account per local month (milligrams)."""

from __future__ import annotations

from app.behaviors.rules.base import PricingRule


def capped_mg(rule: PricingRule, requested_mg: int, day_so_far_mg: int, month_so_far_mg: int) -> int:
    """What may be credited of `requested_mg` given what this account already has today and this month.

    Never negative, never above any cap: credit <= cap_event, day_so_far + credit <= cap_day (when
    day_so_far is already at or over the cap, 0), likewise for the month.
    """
    credit = requested_mg
    if rule.cap_mg_per_event is not None:
        credit = min(credit, rule.cap_mg_per_event)
    if rule.cap_mg_per_day is not None:
        credit = min(credit, max(rule.cap_mg_per_day - day_so_far_mg, 0))
    if rule.cap_mg_per_month is not None:
        credit = min(credit, max(rule.cap_mg_per_month - month_so_far_mg, 0))
    return max(credit, 0)
