"""PER_EVENT: a factor per event, e.g. 80 g CO2e per bus ride, 262 g per online living payment."""

from __future__ import annotations

from decimal import Decimal

from app.behaviors.rules.base import PricingRule, whole_count


def requested_mg(rule: PricingRule, quantity: Decimal) -> int:
    return whole_count(quantity, rule.unit) * rule.factor_mg
