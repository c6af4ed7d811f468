"""The /graphql endpoint: bearer-token authentication in front of strawberry's ASGI view.

Every GraphQL request must carry a valid token (HTTP 401 otherwise, with a GraphQL-shaped error body
and `WWW-Authenticate`). The GraphiQL page itself (a browser GET with no `query`) loads without one;
the token goes into GraphiQL's Headers tab.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from strawberry.asgi import GraphQL

from app.accounts.hashing import HolderHasher
from app.auth.principals import Principal
from app.auth.ratelimit import RateLimiter, retry_after_header
from app.auth.tokens import AuthenticationError, ClientRegistry
from app.db.session import Database
from app.graphql.context import Context, negotiate_language
from app.graphql.trusted import DOCUMENTS, requested_hash, run_fast_path


class GraphQLView(GraphQL):
    def __init__(self, schema: Any, *, database: Database, hasher: HolderHasher, graphiql: bool) -> None:
        super().__init__(schema, graphql_ide="graphiql" if graphiql else None)
        self.database = database
        self.hasher = hasher

    async def get_context(self, request: Request, response: Any) -> Context:  # type: ignore[override]
        return Context(
            request=request,
            response=response,
            # Absent only for the GraphiQL page itself, which executes nothing.
            principal=request.scope.get("state", {}).get("principal"),
            database=self.database,
            hasher=self.hasher,
            language=negotiate_language(request.headers.get("accept-language")),
        )


def _rate_limited(wait: float) -> Response:
    response = _json({"errors": [{"message": "too many requests from this client; retry later",
                                  "extensions": {"code": "RATE_LIMITED"}}]}, 429)
    response.headers["Retry-After"] = retry_after_header(wait)
    return response


def _json(body: dict, status: int) -> Response:
    return Response(json.dumps(body, separators=(",", ":")), status_code=status, media_type="application/json")


def _replay(body: bytes) -> Receive:
    """A `receive` that hands the (already read) body to the next app once."""
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def unauthenticated(message: str) -> Response:
    body = {"errors": [{"message": message, "extensions": {"code": "UNAUTHENTICATED"}}]}
    return Response(
        json.dumps(body), status_code=401, media_type="application/json",
        headers={"WWW-Authenticate": 'Bearer realm="carbon-inclusive", error="invalid_token"'},
    )


class AuthenticatedGraphQL:
    """ASGI app: authenticate, then hand over to the strawberry view."""

    def __init__(self, view: GraphQLView, registry: ClientRegistry, *, graphiql: bool,
                 limiter: RateLimiter | None = None) -> None:
        self.view = view
        self.registry = registry
        self.graphiql = graphiql
        self.limiter = limiter

    def _is_ide_page(self, request: Request) -> bool:
        return self.graphiql and self.view.should_render_graphql_ide(request)  # type: ignore[arg-type]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            request = Request(scope, receive)
            if not self._is_ide_page(request):
                try:
                    principal = self.registry.authenticate(request.headers.get("authorization"))
                except AuthenticationError as error:
                    await unauthenticated(str(error))(scope, receive, send)
                    return
                scope.setdefault("state", {})["principal"] = principal
                wait = self.limiter.acquire(principal.client.slug) if self.limiter else 0.0
                if wait:
                    await _rate_limited(wait)(scope, receive, send)
                    return
                media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
                if request.method == "POST" and media_type == "application/json":
                    receive = await self._trusted(request, principal, scope, send)
                    if receive is None:
                        return
        await self.view(scope, receive, send)

    async def _trusted(self, request: Request, principal: Principal, scope: Scope, send: Send) -> Receive | None:
        """Serve a trusted document by hash (fast path, or its text through full execution). Returns the
        `receive` for strawberry, or None when the response has been sent."""
        raw = await request.body()
        if b"documentId" not in raw and b"persistedQuery" not in raw:
            return _replay(raw)  # an ordinary request: strawberry parses it (once)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        document_hash = requested_hash(body) if isinstance(body, dict) else None
        if document_hash is not None:
            document = DOCUMENTS.get(document_hash)
            if document is None:
                await _json({"errors": [{"message": "PersistedQueryNotFound: no trusted document has this hash",
                                         "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"}}]}, 200)(scope, _replay(b""), send)
                return None
            variables = body.get("variables") or {}
            operation = body.get("operationName")
            answer = (await run_fast_path(document, self.view.database, principal, variables)
                      if isinstance(variables, dict) and operation in (None, document.name) else None)
            if answer is not None:
                await _json(answer, 200)(scope, _replay(b""), send)
                return None
            raw = json.dumps(body | {"query": document.text}).encode()
        return _replay(raw)
