"""Relay cursor connections with opaque keyset cursors.

A cursor encodes the row's sort key (here `(position, id)`), so a page starts exactly after the last
row seen, whatever was inserted before it, and costs an index range scan, never an OFFSET. Page size
is `first` or `last`, at most `MAX_PAGE_SIZE`; asking for more is an error, as on GitHub and Shopify,
rather than a silently shorter page.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass

import strawberry

from app.graphql.errors import BadUserInput

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20


@strawberry.type(description="Relay page information.")
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


def encode_cursor(position: int, row_id: uuid.UUID) -> str:
    payload = json.dumps([position, str(row_id)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


def decode_cursor(cursor: str, argument: str) -> tuple[int, uuid.UUID]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        position, raw_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(position, int):
            raise ValueError
        return position, uuid.UUID(raw_id)
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError):
        raise BadUserInput(f"`{argument}` is not a cursor returned by this connection", argument=argument) from None


@dataclass(frozen=True)
class PageRequest:
    after: tuple[int, uuid.UUID] | None
    before: tuple[int, uuid.UUID] | None
    size: int
    backwards: bool


def page_request(first: int | None, after: str | None, last: int | None, before: str | None) -> PageRequest:
    """Validate Relay arguments; raises BAD_USER_INPUT with the argument's name."""
    if first is not None and last is not None:
        raise BadUserInput("pass `first` or `last`, not both", argument="last")
    for name, value in (("first", first), ("last", last)):
        if value is not None and value < 0:
            raise BadUserInput(f"`{name}` must not be negative", argument=name)
        if value is not None and value > MAX_PAGE_SIZE:
            raise BadUserInput(f"`{name}` is {value}, above the maximum page size of {MAX_PAGE_SIZE}", argument=name)
    backwards = last is not None
    size = last if backwards else (first if first is not None else DEFAULT_PAGE_SIZE)
    return PageRequest(
        after=decode_cursor(after, "after") if after is not None else None,
        before=decode_cursor(before, "before") if before is not None else None,
        size=size,
        backwards=backwards,
    )
