"""Relay cursor connections with opaque keyset cursors.

A cursor encodes the row's sort key (here `(position, id)`), so a page starts exactly after the last
row seen, whatever was inserted before it, and costs an index range scan, never an OFFSET. Page size
is `first` or `last`, at most `MAX_PAGE_SIZE`; asking for more is an error, as on GitHub and Shopify,
rather than a silently shorter page.

A cursor is also bound to the list it came from: its connection and the owner of the list (the city,
the account, the partner), as a short hash (`CursorScope`). A cursor from another list is refused
(`BAD_USER_INPUT`) instead of quietly positioning this one; it could never show anything the caller may
not read (the keyset only positions a query that is already scoped), so the binding is about clear
errors for a client's mistakes, not secrecy.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from datetime import UTC, datetime
from typing import Any

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


@dataclass(frozen=True)
class CursorScope:
    """The list a cursor belongs to: a connection and what owns it (e.g. ("activity", account id))."""

    connection: str
    owner: object

    @cached_property  # once per list, not once per edge
    def tag(self) -> str:
        return hashlib.sha256(f"{self.connection}:{self.owner}".encode()).hexdigest()[:12]


def encode_cursor(*key: object, scope: CursorScope) -> str:
    """An opaque cursor for a row's sort key, e.g. (position, id) or (occurred_at, id), in `scope`."""
    values = [scope.tag, *(value.isoformat() if isinstance(value, datetime) else
                           str(value) if isinstance(value, uuid.UUID) else value for value in key)]
    payload = json.dumps(values, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


def _row_id(raw_id: object) -> uuid.UUID:
    if not isinstance(raw_id, str):
        raise ValueError
    return uuid.UUID(raw_id)


def _decode_position_key(values: list) -> tuple[int, uuid.UUID]:
    position, raw_id = values
    if not isinstance(position, int) or isinstance(position, bool) or not -(2**31) <= position < 2**31:
        raise ValueError
    return position, _row_id(raw_id)


def _decode_time_key(values: list) -> tuple[datetime, uuid.UUID]:
    raw_time, raw_id = values
    if not isinstance(raw_time, str):
        raise ValueError
    moment = datetime.fromisoformat(raw_time)
    if moment.tzinfo is None:
        raise ValueError
    try:
        moment.astimezone(UTC)  # a moment outside years 1-9999 in UTC cannot reach the database
    except OverflowError:
        raise ValueError from None
    return moment, _row_id(raw_id)


POSITION_KEY = _decode_position_key
TIME_KEY = _decode_time_key


def decode_cursor(cursor: str, argument: str, scope: CursorScope, key: Callable[[list], Any] = POSITION_KEY) -> Any:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(values, list) or not values:
            raise ValueError
        tag, *sort_key = values
        if tag != scope.tag:
            raise BadUserInput(f"`{argument}` is a cursor of another list (connection, city or account); use a "
                               "cursor this list returned", argument=argument)
        return key(sort_key)
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError, RecursionError):
        raise BadUserInput(f"`{argument}` is not a cursor returned by this connection", argument=argument) from None


@dataclass(frozen=True)
class PageRequest:
    after: Any
    before: Any
    size: int
    backwards: bool


def page_request(first: int | None, after: str | None, last: int | None, before: str | None, *,
                 scope: CursorScope, key: Callable[[list], Any] = POSITION_KEY) -> PageRequest:
    """Validate Relay arguments (cursors must be of `scope`); raises BAD_USER_INPUT with the argument's name."""
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
        after=decode_cursor(after, "after", scope, key) if after is not None else None,
        before=decode_cursor(before, "before", scope, key) if before is not None else None,
        size=size,
        backwards=backwards,
    )


def page_info(rows_found: int, page: PageRequest, cursors: list[str]) -> PageInfo:
    """PageInfo for a page fetched with `size + 1` rows (the extra row proves another page exists)."""
    has_more = rows_found > page.size
    return PageInfo(
        has_next_page=has_more if not page.backwards else page.before is not None,
        has_previous_page=has_more if page.backwards else page.after is not None,
        start_cursor=cursors[0] if cursors else None,
        end_cursor=cursors[-1] if cursors else None,
    )
