"""Business failures: what a mutation answers as a `userErrors` entry, never a top-level error
(Shopify's rule; top-level errors are in `app.graphql.errors`)."""

from __future__ import annotations

import enum


class UserError(Exception):
    """A stable machine-readable `code` (each domain has its own enum of them), the input `field` it
    concerns (a path, a name or None) and a message for people. Nothing has been written when it is
    raised."""

    def __init__(self, code: enum.Enum | str, field: list[str] | str | None, message: str) -> None:
        super().__init__(message)
        self.code, self.field, self.message = code, field, message
