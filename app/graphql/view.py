"""The /graphql endpoint: GraphQL over HTTP in front of the strawberry schema.

Order of decisions for a request (each refusal is a GraphQL-shaped JSON error with a `code`):
1. the GraphiQL page (a browser GET with no `query`, when enabled) loads without a token;
2. method: GET or POST (405 otherwise);
3. the bearer token (401 with `WWW-Authenticate`), then the client's rate limit (429 with `Retry-After`),
   then the response media type (406 if none is acceptable);
4. the request: Content-Type (415), JSON and parameter types (request errors: `app.graphql.http`);
5. trusted documents by hash, and the client's `trusted_documents_only` restriction;
6. execution: parsing, validation, limits and cost are request errors (400 under
   `application/graphql-response+json`, no `data`); a mutation by GET is 405 and never runs; a
   subscription is OPERATION_NOT_SUPPORTED (it is served over the websocket: `app.live.transport`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from strawberry.types.graphql import OperationType
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from strawberry.asgi import GraphQL
from strawberry.exceptions import MissingQueryError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types.execution import PreExecutionError

from app.accounts.hashing import HolderHasher
from app.auth.principals import Principal
from app.auth.ratelimit import RateLimiter, retry_after_header
from app.auth.tokens import AuthenticationError, ClientRegistry
from app.db.session import Database
from app.graphql import http
from app.graphql.context import Context, negotiate_language
from app.graphql.errors import request_error_code
from app.graphql.trusted import find_document, run_fast_path
from app.ledger.signing import Signer
from app.live.hub import Hub
from app.live.transport import ClientConnections, LiveTransport, LiveWebSocket

_QUERIES_ONLY = frozenset({OperationType.QUERY})
_QUERIES_AND_MUTATIONS = frozenset({OperationType.QUERY, OperationType.MUTATION})


GRAPHIQL_HEADERS = {
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class GraphQLView(GraphQL):
    """Strawberry's ASGI view, kept for the GraphiQL page and the websocket transport of subscriptions
    (`app.live.transport`); HTTP execution is ours."""

    graphql_transport_ws_handler_class = LiveTransport
    websocket_adapter_class = LiveWebSocket  # type: ignore[assignment]

    def __init__(self, schema: Any, *, database: Database, hasher: HolderHasher, graphiql: bool,
                 registry: ClientRegistry | None = None, limiter: RateLimiter | None = None, hub: Hub | None = None,
                 max_subscriptions: int = 20, max_connections_per_client: int = 0,
                 init_timeout_seconds: float = 10, allowed_origins: Sequence[str] = (),
                 signer: Signer | None = None) -> None:
        super().__init__(schema, graphql_ide="graphiql" if graphiql else None,
                         subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
                         connection_init_wait_timeout=timedelta(seconds=init_timeout_seconds),
                         max_subscriptions_per_connection=None, allowed_origins=allowed_origins)
        self.database = database
        self.hasher = hasher
        self.signer = signer
        self.registry = registry
        self.limiter = limiter
        self.hub = hub
        self.max_subscriptions = max_subscriptions
        self.connections = ClientConnections(max_connections_per_client)

    def decode_json(self, data: str | bytes) -> object:
        """A websocket message (HTTP bodies are decoded by `app.graphql.http`). Nesting deeper than the
        decoder recurses, or a number too long to convert, is refused like any text that is not JSON:
        the transport closes 4400 (they raised past strawberry's handler, which then sent no close)."""
        try:
            return json.loads(data)
        except json.JSONDecodeError:
            raise
        except (RecursionError, ValueError):
            raise json.JSONDecodeError("nested too deeply, or a number too long", "", 0) from None

    async def render_graphql_ide(self, request: Request) -> Response:
        """GraphiQL, never inside another site's frame (where a page could trick a developer into sending
        requests with a pasted token). Only framing is restricted: the page's own scripts come from unpkg
        with integrity hashes, and a stricter policy could not be checked against it here."""
        response = await super().render_graphql_ide(request)
        response.headers.update(GRAPHIQL_HEADERS)
        return response

    async def get_context(self, request: Request, response: Any) -> Context:  # type: ignore[override]
        return Context(
            request=request,
            response=response,
            # Absent for the GraphiQL page, which executes nothing, and on a websocket until its
            # connection_init authenticates (app.live.transport).
            principal=request.scope.get("state", {}).get("principal"),
            database=self.database,
            hasher=self.hasher,
            signer=self.signer,
            language=negotiate_language(request.headers.get("accept-language")),
            hub=self.hub,
        )


# An answer depends on who asks and in which language, and is personal: no cache keeps it (a GET's URL
# alone would otherwise key a browser's or a proxy's copy).
_NOT_CACHED = [(b"cache-control", b"no-store"), (b"vary", b"Authorization, Accept-Language")]


async def _send_json(send: Send, status: int, body: dict[str, Any], media_type: str,
                     headers: dict[str, str] | None = None) -> None:
    payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raw_headers = [(b"content-type", http.content_type(media_type).encode()),
                   (b"content-length", str(len(payload)).encode()), *_NOT_CACHED]
    raw_headers += [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": payload})


def _wants_graphiql(request: Request) -> bool:
    """A browser asking for the page: GET, HTML accepted, no operation in the URL."""
    return (request.method == "GET" and "text/html" in request.headers.get("accept", "")
            and not any(name in request.query_params for name in ("query", "documentId", "extensions")))


def unauthenticated_headers() -> dict[str, str]:
    return {"WWW-Authenticate": 'Bearer realm="carbon-inclusive", error="invalid_token"'}


class AuthenticatedGraphQL:
    """ASGI app for /graphql (see the module docstring for the order of decisions)."""

    def __init__(self, view: GraphQLView, registry: ClientRegistry, *, graphiql: bool,
                 limiter: RateLimiter | None = None) -> None:
        self.view = view
        self.registry = registry
        self.graphiql = graphiql
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # websockets: graphql-transport-ws (app.live.transport)
            await self.view(scope, receive, send)
            return
        request = Request(scope, receive)
        if self.graphiql and _wants_graphiql(request):
            await self.view(scope, receive, send)
            return
        try:
            media_type = http.negotiate(request.headers.get("accept"))
        except http.HttpProblem as problem:  # answered after authentication: a stranger learns nothing
            media_type, unacceptable = http.JSON, problem
        else:
            unacceptable = None
        try:
            await self._serve(request, media_type, unacceptable, send)
        except http.HttpProblem as problem:
            await _send_json(send, problem.status, http.error_body(problem.message, problem.code), media_type,
                             problem.headers)
        except http.RequestError as error:
            status = http.request_error_status(media_type) if error.well_formed else 400
            await _send_json(send, status, http.error_body(error.message, error.code), media_type)

    async def _serve(self, request: Request, media_type: str, unacceptable: http.HttpProblem | None,
                     send: Send) -> None:
        if request.method not in ("GET", "POST"):
            raise http.HttpProblem(405, f"method {request.method} not allowed: use POST (or GET for queries)",
                                   "METHOD_NOT_ALLOWED", {"Allow": "GET, POST"})
        try:
            principal = self.registry.authenticate(request.headers.get("authorization"))
        except AuthenticationError as error:
            raise http.HttpProblem(401, str(error), "UNAUTHENTICATED", unauthenticated_headers()) from None
        request.scope.setdefault("state", {})["principal"] = principal
        wait = self.limiter.acquire(principal.client.slug) if self.limiter else 0.0
        if wait:
            raise http.HttpProblem(429, "too many requests from this client; retry later", "RATE_LIMITED",
                                   {"Retry-After": retry_after_header(wait)})
        if unacceptable is not None:
            raise unacceptable
        if request.method == "POST":
            http.check_content_type(request.headers.get("content-type"))
            graphql_request = http.parse_post(await request.body())
        else:
            graphql_request = http.parse_get(request.query_params)
        query = graphql_request.query
        if graphql_request.document_id is not None:
            document_hash = graphql_request.document_id.removeprefix("sha256:")
            document = (await find_document(self.view.database, principal.tenant_id, document_hash)
                        if graphql_request.document_id.startswith("sha256:") else None)
            if document is None:
                raise http.RequestError("PersistedQueryNotFound: no trusted document has this id in this city",
                                        "PERSISTED_QUERY_NOT_FOUND", well_formed=True)
            if request.method == "POST" and graphql_request.operation_name in (None, document.name):
                answer = await run_fast_path(document, self.view.database, principal, graphql_request.variables or {})
                if answer is not None:
                    await _send_json(send, 200, answer, media_type)
                    return
            query = document.text
        elif principal.client.trusted_documents_only:
            raise http.RequestError(f"client {principal.client.slug} may only send trusted documents by id "
                                    "(documentId: \"sha256:<hex>\"); register them with `carbon-inclusive "
                                    "documents register`", "TRUSTED_DOCUMENT_REQUIRED", well_formed=True)
        status, body = await self._execute(request, principal, query, graphql_request, media_type)
        headers = {"Allow": "POST"} if status == 405 else None
        await _send_json(send, status, body, media_type, headers)

    async def _execute(self, request: Request, principal: Principal, query: str | None,
                       graphql_request: http.GraphQLRequest, media_type: str) -> tuple[int, dict[str, Any]]:
        context = await self.view.get_context(request, None)
        try:
            result = await self.view.schema.execute(
                query, variable_values=graphql_request.variables, context_value=context,
                operation_name=graphql_request.operation_name,
                allowed_operation_types=_QUERIES_ONLY if request.method == "GET" else _QUERIES_AND_MUTATIONS)
        except InvalidOperationTypeError as error:
            if request.method == "GET" and error.operation_type is OperationType.MUTATION:
                return 405, http.error_body("mutations are not allowed by GET: send them by POST",
                                            "METHOD_NOT_ALLOWED")
            raise http.RequestError("subscription operations are served over websocket only: connect to "
                                    "ws(s)://<host>/graphql with subprotocol graphql-transport-ws",
                                    "OPERATION_NOT_SUPPORTED", well_formed=True) from None
        except MissingQueryError:
            raise http.RequestError("missing `query`") from None
        except CannotGetOperationTypeError:
            raise http.RequestError(f"unknown operation {graphql_request.operation_name!r}: send an operationName "
                                    "that the document defines (required when it defines several)",
                                    well_formed=True) from None
        errors = [error.formatted for error in result.errors or []]
        # A request error happened before execution: every such error is without a `path`.
        request_error = isinstance(result, PreExecutionError) or (
            result.data is None and bool(errors) and all("path" not in error for error in errors))
        if request_error:
            for error in errors:  # every error typed: graphql-core's own carry no code
                extensions = error.setdefault("extensions", {})
                extensions.setdefault("code", request_error_code(error.get("message", "")))
        body: dict[str, Any] = {} if request_error else {"data": result.data}
        if errors:
            body["errors"] = errors
        if result.extensions:
            body["extensions"] = result.extensions
        if request_error and any((error.get("extensions") or {}).get("code") == "INTERNAL" for error in errors):
            return 500, body  # the server failed (e.g. the database at the transaction's start or commit)
        return (http.request_error_status(media_type) if request_error else 200), body
