"""What pricing needs to know about a behaviour rule, and the one error a quantity can raise."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from app.behaviors.rules.same_behavior import SameBehavior

# Generous upper bounds: a record beyond them is a data error, not a behaviour.
MAX_COUNT = 10_000_000  # steps, rides, payments in one record
MAX_KM = Decimal("10000")  # kilometres in one record


class InvalidQuantity(ValueError):
    """The quantity cannot be priced by this rule; the message says why."""


@dataclass(frozen=True)
class PricingRule:
    id: uuid.UUID
    code: str
    category: str
    method: str
    unit: str
    factor_mg: int
    cap_mg_per_day: int | None
    cap_mg_per_month: int | None
    cap_mg_per_event: int | None
    config_version: int
    same_behavior: SameBehavior | None = None

    @classmethod
    def from_mapping(cls, row: Mapping[str, Any], config_version: int) -> PricingRule:
        """From a `behavior_rules` row."""
        return cls(
            id=row["id"], code=row["code"], category=row["category"], method=row["method"], unit=row["unit"],
            factor_mg=row["factor_mg"], cap_mg_per_day=row["cap_mg_per_day"],
            cap_mg_per_month=row["cap_mg_per_month"], cap_mg_per_event=row["cap_mg_per_event"],
            config_version=config_version, same_behavior=SameBehavior.from_mapping(row.get("same_behavior")),
        )


def whole_count(quantity: Decimal, unit: str) -> int:
    """The quantity as a count, bounds checked on the Decimal first: `int()` of `1E+999999999` builds a
    billion-digit integer (the process stops answering), and a message quoting one over 4,300 digits
    fails to format."""
    if quantity <= 0:
        raise InvalidQuantity("quantity must be positive")
    if quantity > MAX_COUNT:
        raise InvalidQuantity(f"quantity is above the limit of {MAX_COUNT} {unit}s in one record")
    if quantity != quantity.to_integral_value():
        raise InvalidQuantity(f"quantity must be a whole number of {unit}s")
    return int(quantity)
