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
from app.auth.tokens import AuthenticationError, ClientRegistry
from app.db.session import Database
from app.graphql.context import Context, negotiate_language


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


def unauthenticated(message: str) -> Response:
    body = {"errors": [{"message": message, "extensions": {"code": "UNAUTHENTICATED"}}]}
    return Response(
        json.dumps(body), status_code=401, media_type="application/json",
        headers={"WWW-Authenticate": 'Bearer realm="carbon-inclusive", error="invalid_token"'},
    )


class AuthenticatedGraphQL:
    """ASGI app: authenticate, then hand over to the strawberry view."""

    def __init__(self, view: GraphQLView, registry: ClientRegistry, *, graphiql: bool) -> None:
        self.view = view
        self.registry = registry
        self.graphiql = graphiql

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
        await self.view(scope, receive, send)
