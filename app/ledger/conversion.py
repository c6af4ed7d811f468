"""Contribution → points: floor with carry, so no remainder is ever lost (ADR 0004).

The smallest point unit is worth `mg_per_minor_point` milligrams (grams_per_point × 1000 / 10^decimals,
a whole number by configuration validation). Each credit adds its milligrams to the account's
unconverted carry; as many whole smallest units as the sum buys are issued; the rest stays in the carry
(below one unit). A reversal takes its record's unconverted grams back out of the carry (ADR 0005); where
later credits have converted them already, the carry goes below zero: grams owed, which the next credits
repay before they earn points. Over any sequence of credits and reversals:

    Σ credited mg = Σ converted mg + carry,  converted mg = Σ points × mg per point (at each credit's rate)
                                             + what reversals took from the carry
"""

from __future__ import annotations

from dataclasses import dataclass


def mg_per_minor_point(grams_per_point: int, decimals: int) -> int:
    value, remainder = divmod(grams_per_point * 1000, 10 ** decimals)
    if remainder or value <= 0:
        raise ValueError("the smallest point unit must be a whole, positive number of milligrams")
    return value


@dataclass(frozen=True)
class Conversion:
    points: int
    converted_mg: int
    carry_mg: int


def convert(carry_mg: int, credit_mg: int, mg_per_point: int) -> Conversion:
    """Credit `credit_mg` on top of the carry (negative: grams owed, repaid first)."""
    if credit_mg < 0 or mg_per_point <= 0:
        raise ValueError("the credit must be non-negative and the rate positive")
    available = carry_mg + credit_mg
    if available < 0:  # still owing
        return Conversion(points=0, converted_mg=0, carry_mg=available)
    points, carry = divmod(available, mg_per_point)
    return Conversion(points=points, converted_mg=points * mg_per_point, carry_mg=carry)
