"""Custom scalars, registered in the schema's `scalar_map`."""

from __future__ import annotations

from typing import NewType

import strawberry

LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1


def _parse_long(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("Long must be an integer")
    number = int(value)
    if not LONG_MIN <= number <= LONG_MAX:
        raise ValueError("Long is outside the signed 64-bit range")
    return number


Long = NewType("Long", int)

LONG_SCALAR = strawberry.scalar(
    name="Long",
    serialize=int,
    parse_value=_parse_long,
    description=(
        "A signed 64-bit integer, for amounts and counts that can pass GraphQL Int's 32 bits "
        "(milligrams, point balances, stock). Serialised as a JSON number; values stay below 2^53 in "
        "practice, the limit of exact integers in JavaScript."
    ),
)

SCALAR_MAP = {Long: LONG_SCALAR}
