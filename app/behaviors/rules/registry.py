"""Calculation methods by name. A new method is a module with `requested_mg(rule, quantity)` plus a line here."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from app.behaviors.rules import per_distance, per_event, per_unit
from app.behaviors.rules.base import InvalidQuantity, PricingRule

METHODS: dict[str, Callable[[PricingRule, Decimal], int]] = {
    "PER_UNIT": per_unit.requested_mg,
    "PER_EVENT": per_event.requested_mg,
    "PER_DISTANCE": per_distance.requested_mg,
}


def requested_mg(rule: PricingRule, quantity: Decimal) -> int:
    """Milligrams CO2e the quantity earns before caps; raises InvalidQuantity."""
    if not quantity.is_finite():
        raise InvalidQuantity("quantity must be a finite number")
    method = METHODS.get(rule.method)
    if method is None:
        raise InvalidQuantity(f"unknown calculation method {rule.method}")
    return method(rule, quantity)
