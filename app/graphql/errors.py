"""Top-level GraphQL errors: malformed requests, authentication, authorisation, and bugs.

Business failures are never these: they are `userErrors` in a mutation's payload (Shopify's rule).
Each error carries `extensions.code`, a stable machine-readable string.
"""

from __future__ import annotations

from graphql import GraphQLError


class BadUserInput(GraphQLError):
    def __init__(self, message: str, *, argument: str | None = None) -> None:
        extensions = {"code": "BAD_USER_INPUT"}
        if argument:
            extensions["argument"] = argument
        super().__init__(message, extensions=extensions)


class Forbidden(GraphQLError):
    def __init__(self, message: str = "this client's role may not use this field") -> None:
        super().__init__(message, extensions={"code": "FORBIDDEN"})


def error_code(error: GraphQLError) -> str:
    """The code an error is answered and counted with: a bug (an exception that is not a GraphQLError)
    is INTERNAL; otherwise the error's own code, or graphql-core's request error's by its message."""
    original = error.original_error
    if original is not None and not isinstance(original, GraphQLError):
        return "INTERNAL"
    return str((error.extensions or {}).get("code") or request_error_code(error.message))


def request_error_code(message: str) -> str:
    """The code of a GraphQL request error from graphql-core (which gives none), by its message."""
    if message.startswith("Syntax Error"):
        return "GRAPHQL_PARSE_FAILED"
    if message.startswith("Variable '$"):
        return "BAD_USER_INPUT"  # a variable that does not coerce to its type
    return "GRAPHQL_VALIDATION_FAILED"
