"""Business failures of redemptions: returned as `userErrors`."""

from __future__ import annotations

import enum


class RewardErrorCode(str, enum.Enum):
    INSUFFICIENT_POINTS = "INSUFFICIENT_POINTS"
    OUT_OF_STOCK = "OUT_OF_STOCK"
    LIMIT_REACHED = "LIMIT_REACHED"
    NOT_ELIGIBLE = "NOT_ELIGIBLE"
    REWARD_UNAVAILABLE = "REWARD_UNAVAILABLE"
    ACCOUNT_FROZEN = "ACCOUNT_FROZEN"
    ACCOUNT_CLOSED = "ACCOUNT_CLOSED"
    ACCOUNT_NOT_FOUND = "ACCOUNT_NOT_FOUND"
    IDEMPOTENCY_CONFLICT = "IDEMPOTENCY_CONFLICT"
    INVALID_QUANTITY = "INVALID_QUANTITY"
    INVALID_IDEMPOTENCY_KEY = "INVALID_IDEMPOTENCY_KEY"
    REDEMPTION_NOT_FOUND = "REDEMPTION_NOT_FOUND"
    CANCELLATION_WINDOW_CLOSED = "CANCELLATION_WINDOW_CLOSED"


class RewardError(Exception):
    def __init__(self, code: RewardErrorCode, field: list[str] | None, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.field = field
        self.message = message
