"""Custom scalars, registered in the schema's `scalar_map`."""

from __future__ import annotations

import datetime as dt
from typing import NewType

import dateutil.parser
import strawberry
from strawberry.schema.types.base_scalars import DateTimeDefinition, wrap_parser

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



def _parse_datetime(value: str) -> dt.datetime:
    """strawberry's DateTime (ISO 8601), refusing a moment that has no UTC equivalent in Python's years
    1 to 9999 (`0001-01-01T00:00:00+14:00` is in year 0 in UTC): it reached the database and failed there
    as an unexpected error."""
    try:
        moment = dateutil.parser.isoparse(value)
    except OverflowError:  # e.g. 9999-12-31T24:00:00, in year 10000
        raise ValueError("it is outside the years 1 to 9999") from None
    if moment.utcoffset() is not None:
        try:
            moment.astimezone(dt.UTC)
        except OverflowError:
            raise ValueError("it is outside the years 1 to 9999 in UTC") from None
    return moment


DATETIME_SCALAR = strawberry.scalar(
    name="DateTime",
    description=DateTimeDefinition.description,
    serialize=DateTimeDefinition.serialize,
    parse_value=wrap_parser(_parse_datetime, "DateTime"),
)

SCALAR_MAP = {Long: LONG_SCALAR, dt.datetime: DATETIME_SCALAR}
