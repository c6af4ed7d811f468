"""Global object ids (Relay `Node.id`): opaque strings, stable for the object's life.

Encoding: base64url (no padding) of `<Type>:<uuid>`. The uuids are random (v4), so ids reveal no
sequence; clients must treat ids as opaque strings and never parse them.
"""

from __future__ import annotations

import base64
import binascii
import uuid

from app.graphql.errors import BadUserInput


def to_global_id(type_name: str, object_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{type_name}:{object_id}".encode()).decode().rstrip("=")


def from_global_id(global_id: str, *, expected: str | None = None, argument: str = "id") -> tuple[str, uuid.UUID]:
    """Decode a global id; a malformed one (or one of another type) is a BAD_USER_INPUT error."""
    try:
        padded = global_id + "=" * (-len(global_id) % 4)
        type_name, _, raw = base64.urlsafe_b64decode(padded.encode()).decode().partition(":")
        object_id = uuid.UUID(raw)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadUserInput(f"`{argument}` is not a valid id", argument=argument) from None
    if expected is not None and type_name != expected:
        article = "an" if expected[:1].upper() in "AEIOU" else "a"
        raise BadUserInput(f"`{argument}` is not the id of {article} {expected}", argument=argument)
    return type_name, object_id


def object_id_of(global_id: str, expected: str, argument: str) -> uuid.UUID:
    """The object id inside a query argument's global id; a malformed one, or the id of another type,
    is BAD_USER_INPUT naming `argument` (a well-formed id of nothing visible is the field's null)."""
    return from_global_id(global_id, expected=expected, argument=argument)[1]


def try_global_id(global_id: str, expected: str) -> uuid.UUID | None:
    """The object id inside `global_id` if it is a well-formed id of `expected`, else None.

    For inputs where a wrong id is a business outcome (ACCOUNT_NOT_FOUND), not a malformed request."""
    try:
        _, object_id = from_global_id(global_id, expected=expected)
    except BadUserInput:
        return None
    return object_id
