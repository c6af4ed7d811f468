"""Schema extensions: the unit of work around each operation, and per-operation metrics."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator
from typing import Any

from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import GraphQLError
from prometheus_client import Counter, Histogram
from strawberry.extensions import MaskErrors, SchemaExtension
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from app.db.session import apply_scope
from app.graphql.context import Context
from app.graphql.errors import error_code
from app.logs import get_logger

log = get_logger("app.graphql")

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
    never leaves half its writes behind; a mutation's `data` is then withheld, so a client is never told
    of a change that was not committed. Business failures are `userErrors`: each mutation runs its
    service in a savepoint, so a failed one writes nothing. Database failures while opening or
    committing the transaction are logged and reported as a bare `Unexpected error.`.

    The transaction ends only when no resolver of the operation is running. When a field error nulls a
    parent, graphql-core cancels the sibling resolvers still running; a resolver cancelled while a
    statement is on the wire would leave the connection in an unknown state (and its transaction
    invalid). So every awaitable resolver runs as a task shielded from that cancellation, execution's
    end waits for those tasks, and the session is withdrawn from the context in the same step (a
    resolver starting later fails instead of touching the database). Their results are discarded.

    A subscription holds no transaction while it waits: its set-up (the root resolver) runs its own
    short one, and each event runs in its own unit of work (`EventExecutor`).
    """

    def resolve(self, _next, root, info, *args, **kwargs):  # type: ignore[no-untyped-def]
        result = _next(root, info, *args, **kwargs)
        return _shielded(info.context, result) if inspect.isawaitable(result) else result

    async def on_execute(self) -> AsyncIterator[None]:  # type: ignore[override]
        """Around execution only: a request refused before it (parse, validation, cost, NUL) never
        touches the database."""
        context: Context = self.execution_context.context
        if self.execution_context.result is not None or _is_subscription(self.execution_context):
            yield  # refused by an earlier extension, or a subscription: nothing to open here
            return
        async with context.database.sessionmaker() as session:
            try:
                transaction = await session.begin()
                await apply_scope(session, context.principal.scope, lock=True)
            except Exception as error:
                log.error("transaction_open_failed", error=type(error).__name__)
                raise _internal() from None
            context._session = session
            try:
                yield
            except BaseException:
                await _withdraw_session(context)
                await _quietly(transaction.rollback())
                raise
            await _withdraw_session(context)
            result = self.execution_context.result
            if not (getattr(result, "errors", None) or getattr(self.execution_context, "errors", None)):
                try:
                    await transaction.commit()
                except Exception as error:
                    log.error("commit_failed", error=type(error).__name__)
                    raise _internal() from None
                return
            await _quietly(transaction.rollback())
            if result is not None and _is_mutation(self.execution_context) and result.data is not None:
                result.data = None
                result.errors = [*(result.errors or []), GraphQLError(
                    "the mutation was rolled back: nothing it reported was saved",
                    extensions={"code": "ROLLED_BACK"})]


class EventExecutor(StrawberryGraphQLCoreExecutionContext):
    """Executes each subscription event like one HTTP request of the subscriber: with its own context
    (`Context.for_event`: fresh DataLoaders and time) in its own read-only transaction under the
    subscriber's tenant scope, which ends (rolled back: events only read) before the result is sent,
    so a slow client never holds a database connection. Other operations execute unchanged."""

    is_event = False  # set on the per-event copies

    def build_per_event_executor(self, payload: Any) -> EventExecutor:
        executor = super().build_per_event_executor(payload)
        if isinstance(self.context_value, Context):
            executor.context_value = self.context_value.for_event()
            executor.is_event = True
        return executor  # type: ignore[return-value]

    def execute_operation(self, serially: bool | None = None) -> Any:
        if not self.is_event:
            return super().execute_operation(serially)
        return self._in_unit_of_work(super().execute_operation, serially)

    async def _in_unit_of_work(self, execute: Any, serially: bool | None) -> Any:
        # Shielded like a resolver: a subscriber leaving mid-event (complete, disconnect) must not cancel
        # a statement on the wire; the event finishes, rolls back, and only then does the cancellation go on.
        work = asyncio.ensure_future(self._event(execute, serially))
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            await asyncio.wait([work])
            raise

    async def _event(self, execute: Any, serially: bool | None) -> Any:
        context: Context = self.context_value
        async with context.database.sessionmaker() as session:
            try:
                transaction = await session.begin()
                await apply_scope(session, context.principal.scope, lock=True)
            except Exception as error:
                log.error("transaction_open_failed", error=type(error).__name__)
                return GraphQLExecutionResult(data=None, errors=[_internal()])
            context._session = session
            try:
                result = execute(serially)
                return await result if self.is_awaitable(result) else result
            finally:
                await _withdraw_session(context)
                await _quietly(transaction.rollback())


async def _shielded(context: Context, awaitable):  # type: ignore[no-untyped-def]
    work = asyncio.ensure_future(awaitable)
    context.pending.add(work)
    work.add_done_callback(_settle_work(context.pending))
    return await asyncio.shield(work)


async def _withdraw_session(context: Context) -> None:
    while context.pending:
        await asyncio.wait(list(context.pending))
    context._session = None


def _settle_work(pending: set[asyncio.Future[object]]):  # type: ignore[no-untyped-def]
    def done(work: asyncio.Future[object]) -> None:
        pending.discard(work)
        if not work.cancelled():
            work.exception()  # retrieved: an abandoned resolver's error is not logged as unhandled
    return done


def _internal() -> GraphQLError:
    return GraphQLError("Unexpected error.", extensions={"code": "INTERNAL"})


def _is_mutation(execution_context) -> bool:  # type: ignore[no-untyped-def]
    return _operation_type(execution_context) == "mutation"


def _is_subscription(execution_context) -> bool:  # type: ignore[no-untyped-def]
    return _operation_type(execution_context) == "subscription"


def _operation_type(execution_context) -> str | None:  # type: ignore[no-untyped-def]
    try:
        return execution_context.operation_type.value
    except Exception:  # an unparsable document has no operation type
        return None


async def _quietly(awaitable) -> None:  # type: ignore[no-untyped-def]
    try:
        await awaitable
    except Exception as error:  # the connection is gone; the transaction is rolled back with it
        log.warning("rollback_failed", error=type(error).__name__)


MAX_OPERATION_LABELS = 500
_operation_labels: set[str] = set()


def _operation_label(name: str | None) -> str:
    """Operation names are client-chosen: bound the label set so no client can flood the metrics."""
    if not name:
        return "anonymous"
    if name in _operation_labels:
        return name
    if len(name) <= 64 and len(_operation_labels) < MAX_OPERATION_LABELS and name.isidentifier():
        _operation_labels.add(name)
        return name
    return "other"


class OperationMetrics(SchemaExtension):
    """Prometheus counters and latency per operation name (anonymous operations count as `anonymous`)."""

    def on_operation(self):  # type: ignore[override]
        started = time.perf_counter()
        refused: list[GraphQLError] = []
        try:
            yield
        except GraphQLError as error:  # refused by an extension (a parse error from the parser cache, a limit)
            refused.append(error)
            raise
        finally:
            self._count(started, refused)

    def _count(self, started: float, refused: list[GraphQLError]) -> None:
        context = self.execution_context
        name = _operation_label(context.operation_name)
        try:
            kind = context.operation_type.value if context.operation_type else "unknown"
        except Exception:  # an unparsable document has no operation type
            kind = "invalid"
        GRAPHQL_REQUESTS.labels(name, kind).inc()
        GRAPHQL_LATENCY.labels(name, kind).observe(time.perf_counter() - started)
        # The errors answered, each once, by its code: an extension's refusal; else the result's (masked
        # by now: a bug is INTERNAL); else those found before execution (a parse or validation error).
        errors = refused or list(getattr(context.result, "errors", None) or context.pre_execution_errors or [])
        for error in errors:
            code = error_code(error) if isinstance(error, GraphQLError) else "INTERNAL"
            GRAPHQL_ERRORS.labels(name, kind, code).inc()


class MaskUnexpectedErrors(MaskErrors):
    """Errors we raise on purpose (GraphQLError with a code) are shown; anything else is a bug: the
    client sees only `Unexpected error.` with `extensions.code = INTERNAL`, the log has the details."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=_unexpected)

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        return GraphQLError(message=self.error_message, nodes=error.nodes, source=error.source,
                            positions=error.positions, path=error.path, original_error=None,
                            extensions={"code": "INTERNAL"})


def _unexpected(error: GraphQLError) -> bool:
    original = error.original_error
    return original is not None and not isinstance(original, GraphQLError)


def strings_in(value: object):  # type: ignore[no-untyped-def]
    """Every string inside a JSON-like value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings_in(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from strings_in(item)


class RefuseNul(SchemaExtension):
    """PostgreSQL text cannot hold NUL: a string with one (in the document or the variables, however it
    was escaped) is refused with BAD_USER_INPUT before execution, instead of failing in the database."""

    def on_execute(self):  # type: ignore[no-untyped-def, override]
        from graphql import ExecutionResult as GraphQLExecutionResult
        from graphql import StringValueNode, visit
        from graphql.language import Visitor

        context = self.execution_context
        found = any("\x00" in text for text in strings_in(context.variables or {}))
        if not found and context.graphql_document is not None:
            hits: list[bool] = []

            class _Find(Visitor):
                def enter_string_value(self, node: StringValueNode, *_: object) -> None:
                    hits.append("\x00" in node.value)

            visit(context.graphql_document, _Find())
            found = any(hits)
        if found and context.result is None:
            context.result = GraphQLExecutionResult(data=None, errors=[GraphQLError(
                "strings must not contain NUL (\\u0000) characters", extensions={"code": "BAD_USER_INPUT"})])
        yield


MAX_EXPANDED_SELECTIONS = 20_000  # what the token limit lets a document spell out without fragments


class DocumentShape(SchemaExtension):
    """Refuse, before validation, a document that validation or the cost analysis would take too long
    over, or that does not say which operation to run (GRAPHQL_VALIDATION_FAILED).

    * **Fragment expansion.** Each spread of a fragment repeats its fields, so 21 fragments each
      spreading the next twice spell a million fields in 860 bytes; validation and the cost analysis
      walk every one (11 s a request, doubling with each fragment, with the event loop blocked). The
      selections (fields and spreads) a document expands to are counted here, each fragment once (linear
      in the document, no recursion), and more than `MAX_EXPANDED_SELECTIONS` — what the token limit
      lets a document write out in full — is refused. So is a spread of a fragment the document does
      not define, or of one that spreads itself: validation refuses both, but strawberry's depth limiter
      walks the document before it does, along every path of a cycle.
    * **Several operations and no `operationName`.** The spec makes that a request error; strawberry
      would run the first one (a mutation, even over a websocket)."""

    def on_validate(self):  # type: ignore[no-untyped-def, override]
        context = self.execution_context
        document = context.graphql_document
        if document is not None:
            # The name the client sent (strawberry's `operation_name` falls back to the first operation's).
            refusal = document_refusal(document, context._provided_operation_name)  # noqa: SLF001
            if refusal is not None:
                raise GraphQLError(refusal, extensions={"code": "GRAPHQL_VALIDATION_FAILED"})
        yield


def document_refusal(document: Any, operation_name: str | None) -> str | None:
    from graphql import OperationDefinitionNode

    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is None and len(operations) > 1:
        return "the document defines several operations: send `operationName` to say which one to run"
    size = expanded_size(document)
    if size is None:  # validation would refuse it too, but the depth limiter walks it first, without end
        return "the document spreads a fragment it does not define, or a fragment that spreads itself"
    if size > MAX_EXPANDED_SELECTIONS:
        return (f"the document expands to more than {MAX_EXPANDED_SELECTIONS:,} selections through its fragments: "
                "ask for less, or spread each fragment fewer times")
    return None


def expanded_size(document: Any, cap: int = MAX_EXPANDED_SELECTIONS + 1) -> int | None:
    """The selections (fields and spreads) of the document's operations with every fragment spread
    written out, at most `cap`; None if a spread names no fragment of the document or a fragment
    spreads itself, directly or not (each would make the expansion endless)."""
    from graphql import FragmentDefinitionNode, FragmentSpreadNode, InlineFragmentNode, OperationDefinitionNode

    def direct(selection_set: Any) -> tuple[int, dict[str, int]]:
        selections, spreads, stack = 0, {}, [selection_set]
        while stack:
            current = stack.pop()
            for selection in current.selections if current is not None else ():
                if isinstance(selection, FragmentSpreadNode):
                    spreads[selection.name.value] = spreads.get(selection.name.value, 0) + 1
                    selections += 1
                    continue
                if not isinstance(selection, InlineFragmentNode):
                    selections += 1  # a field
                stack.append(selection.selection_set)  # a field's, or an inline fragment's
        return selections, spreads

    fragments = {d.name.value: direct(d.selection_set) for d in document.definitions
                 if isinstance(d, FragmentDefinitionNode)}
    if any(name not in fragments for _, spreads in fragments.values() for name in spreads):
        return None
    sizes: dict[str, int] = {}

    def size_of(name: str) -> int | None:  # iterative depth-first, each fragment once
        if name in sizes:
            return sizes[name]
        visiting, stack = {name}, [(name, iter(fragments[name][1]))]
        while stack:
            current, pending = stack[-1]
            child = next(pending, None)
            if child is None:
                own, spreads = fragments[current]
                sizes[current] = min(cap, own + sum(count * sizes[spread] for spread, count in spreads.items()))
                visiting.discard(current)
                stack.pop()
            elif child in visiting:
                return None  # a cycle
            elif child not in sizes:
                visiting.add(child)
                stack.append((child, iter(fragments[child][1])))
        return sizes[name]

    total = 0
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            own, spreads = direct(definition.selection_set)
            for spread, count in spreads.items():
                if spread not in fragments:
                    return None
                size = size_of(spread)
                if size is None:
                    return None
                own = min(cap, own + count * size)
            total = min(cap, total + own)
    return total
