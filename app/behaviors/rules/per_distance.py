"""PER_DISTANCE: (baseline − mode) emission factor per km, the methodologies' reduction formula.

`factor_mg` already holds baseline − mode (mg per km). Distance may have up to three decimals
(metres); the product is rounded down to a whole milligram: the platform never credits a fraction of a
milligram that was not earned.
"""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal

from app.behaviors.rules.base import MAX_KM, InvalidQuantity, PricingRule


def requested_mg(rule: PricingRule, quantity: Decimal) -> int:
    if quantity <= 0:
        raise InvalidQuantity("distance must be positive")
    if quantity > MAX_KM:
        raise InvalidQuantity(f"distance {quantity} km is above the limit of {MAX_KM} km in one record")
    if quantity != quantity.quantize(Decimal("0.001"), rounding=ROUND_FLOOR):
        raise InvalidQuantity("distance may have at most three decimals (metres)")
    return int((quantity * rule.factor_mg).to_integral_value(rounding=ROUND_FLOOR))
