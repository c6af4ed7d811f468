"""Schema extensions: the unit of work around each operation, and per-operation metrics."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from graphql import GraphQLError
from prometheus_client import Counter, Histogram
from strawberry.extensions import SchemaExtension

from app.db.session import apply_scope
from app.graphql.context import Context

GRAPHQL_REQUESTS = Counter(
    "carbon_graphql_operations_total", "GraphQL operations executed", ["operation", "type"])
GRAPHQL_ERRORS = Counter(
    "carbon_graphql_operation_errors_total", "GraphQL operations that returned top-level errors",
    ["operation", "type", "code"])
GRAPHQL_LATENCY = Histogram(
    "carbon_graphql_operation_seconds", "GraphQL operation latency", ["operation", "type"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))


class UnitOfWork(SchemaExtension):
    """One transaction per operation, scoped to the caller's tenant; commit once, or roll back.

    Any top-level error (authorisation, bad input, a bug) rolls the whole operation back, so a request
    never leaves half its writes behind. Business failures are `userErrors` and write nothing by the
    services' own rules.
    """

    async def on_operation(self) -> AsyncIterator[None]:  # type: ignore[override]
        context: Context = self.execution_context.context
        async with context.database.sessionmaker() as session:
            transaction = await session.begin()
            try:
                await apply_scope(session, context.principal.scope)
                context._session = session
                yield
            except BaseException:
                await transaction.rollback()
                raise
            finally:
                context._session = None
            result = self.execution_context.result
            if getattr(result, "errors", None) or getattr(self.execution_context, "errors", None):
                await transaction.rollback()
            else:
                await transaction.commit()


class OperationMetrics(SchemaExtension):
    """Prometheus counters and latency per operation name (anonymous operations count as `anonymous`)."""

    def on_operation(self):  # type: ignore[override]
        started = time.perf_counter()
        yield
        context = self.execution_context
        name = context.operation_name or "anonymous"
        try:
            kind = context.operation_type.value if context.operation_type else "unknown"
        except Exception:  # an unparsable document has no operation type
            kind = "invalid"
        GRAPHQL_REQUESTS.labels(name, kind).inc()
        GRAPHQL_LATENCY.labels(name, kind).observe(time.perf_counter() - started)
        errors = list(getattr(context, "errors", None) or []) + list(getattr(context.result, "errors", None) or [])
        for error in errors:
            code = (error.extensions or {}).get("code", "INTERNAL") if isinstance(error, GraphQLError) else "INTERNAL"
            GRAPHQL_ERRORS.labels(name, kind, str(code)).inc()
