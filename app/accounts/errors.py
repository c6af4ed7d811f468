"""Business failures of the accounts domain: returned as `userErrors`, never raised to the client."""

from __future__ import annotations

import enum

from app.errors import UserError


class AccountErrorCode(str, enum.Enum):
    AGREEMENT_REQUIRED = "AGREEMENT_REQUIRED"
    BANK_ACCOUNT_REQUIRED = "BANK_ACCOUNT_REQUIRED"
    BANK_ACCOUNT_NOT_ALLOWED = "BANK_ACCOUNT_NOT_ALLOWED"
    INVALID_BANK_ACCOUNT = "INVALID_BANK_ACCOUNT"
    INVALID_HOLDER_REF = "INVALID_HOLDER_REF"
    ACCOUNT_NOT_FOUND = "ACCOUNT_NOT_FOUND"
    ACCOUNT_CLOSED = "ACCOUNT_CLOSED"
    ALREADY_LINKED = "ALREADY_LINKED"
    PROVIDER_NOT_FOUND = "PROVIDER_NOT_FOUND"
    INVALID_CATEGORIES = "INVALID_CATEGORIES"
    CONSENT_NOT_FOUND = "CONSENT_NOT_FOUND"
    ACCOUNT_EXISTS = "ACCOUNT_EXISTS"


class AccountError(UserError):
    code: AccountErrorCode
    field: list[str] | None
