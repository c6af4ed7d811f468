"""PER_UNIT: a factor per counted unit, e.g. 0.02 g CO2e per step (20 mg)."""

from __future__ import annotations

from decimal import Decimal

from app.behaviors.rules.base import PricingRule, whole_count


def requested_mg(rule: PricingRule, quantity: Decimal) -> int:
    return whole_count(quantity, rule.unit) * rule.factor_mg
