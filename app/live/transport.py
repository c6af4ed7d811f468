"""graphql-transport-ws on /graphql: strawberry's protocol handler with our authentication and limits.

The order of decisions (close codes are the protocol's where it has one):

1. the handshake: only subprotocol `graphql-transport-ws` (any other: accepted, then closed 4406);
   a browser page from another origin is refused (HTTP 403) unless `CARBON_WEBSOCKET_ALLOWED_ORIGINS`
   names it (no token travels in cookies, so this is defence in depth, not the authentication);
2. `connection_init` within `CARBON_WEBSOCKET_INIT_TIMEOUT_SECONDS` (else 4408), with the bearer token
   in its payload (`{"authorization": "Bearer <jwt>"}`) or, failing that, in the upgrade request's
   `Authorization` header; a missing, invalid or expired token closes 4403 and sends nothing else. The
   connection is closed 4403 too when the token expires later. A client holding
   `CARBON_WEBSOCKET_MAX_CONNECTIONS_PER_CLIENT` connections on this process already is closed 1013;
3. each `subscribe`: at most `CARBON_WEBSOCKET_MAX_SUBSCRIPTIONS` running on the connection
   (TOO_MANY_SUBSCRIPTIONS), the client's rate limit (RATE_LIMITED, `retryAfter` seconds), trusted
   documents as over HTTP (`documentId`, `extensions.persistedQuery`; TRUSTED_DOCUMENT_REQUIRED,
   PERSISTED_QUERY_NOT_FOUND), subscriptions only: queries and mutations are served by HTTP
   (OPERATION_NOT_SUPPORTED), and the role's query cost budget as over HTTP (COST_LIMIT_EXCEEDED with
   `cost` and `budget`: every event runs the whole operation). Each refusal is an `error` message whose
   errors carry `extensions.code`; then permissions and arguments, as for any field (FORBIDDEN,
   ACCOUNT_NOT_FOUND, ...).

At any stage a message the protocol does not define closes 4400, as the reference server (graphql-ws)
checks them: not a JSON object (or nested deeper than the decoder follows), `type` not a string, a
`subscribe` or `complete` without a non-empty string `id`, a `subscribe` without a `payload` object, a
`payload` elsewhere neither an object nor null. Every close reason is cut to what a close frame carries.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from graphql import GraphQLError, OperationType, get_operation_ast, parse
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler
from strawberry.subscriptions.protocols.graphql_transport_ws.types import ConnectionInitMessage, Message, SubscribeMessage

from app.auth.ratelimit import retry_after_header
from app.auth.tokens import AuthenticationError
from app.graphql import http
from app.graphql.context import Context
from app.graphql.cost import BUDGETS, operation_cost, over_budget
from app.graphql.errors import request_error_code
from app.graphql.extensions import document_refusal, strings_in
from app.graphql.trusted import find_document
from app.live.hub import TRY_AGAIN_LATER
from app.logs import get_logger

if TYPE_CHECKING:
    from app.graphql.view import GraphQLView

log = get_logger("app.live")

FORBIDDEN = 4403
MAX_REASON_BYTES = 123  # a close frame's reason


class LiveTransport(BaseGraphQLTransportWSHandler[Context, None]):
    view: GraphQLView

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._closing: asyncio.Task[None] | None = None
        self._expiry: asyncio.Task[None] | None = None
        self._opened = time.monotonic()
        self._subscribed = 0
        self._held = False
        self._client: str | None = None  # counted in the view's ClientConnections

    # ---------------------------------------------------------------------------------- messages

    async def handle_message(self, message: Message) -> None:
        problem = _malformed(message)
        if problem is not None:
            await self.handle_invalid_message(problem)  # closes 4400, as the protocol says
            return
        await super().handle_message(message)

    # --------------------------------------------------------------------------- connection_init

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        if self.connection_timed_out:
            return
        if self.connection_init_timeout_task:
            self.connection_init_timeout_task.cancel()
        payload = message.get("payload") or {}  # an object or null (handle_message)
        if self.connection_init_received:
            await self.websocket.close(code=4429, reason="Too many initialisation requests")
            return
        self.connection_init_received = True
        given = next((value for key, value in payload.items() if key.lower() == "authorization"), None)
        request = self.context.request
        authorization = given if isinstance(given, str) else request.headers.get("authorization") if request else None
        try:
            principal, expires_at = self.view.registry.authenticate_until(authorization)
        except AuthenticationError as error:
            await self.websocket.close(code=FORBIDDEN, reason=f"Forbidden: {error}")
            return
        self.context.principal = principal
        self.context.disconnect = self.disconnect
        client, connections = principal.client.slug, self.view.connections
        if not connections.open(client):
            await self.websocket.close(code=TRY_AGAIN_LATER, reason=f"client {client} has {connections.limit} "
                                                                    "connections open on this server: close one")
            return
        self._client = client
        # Notifications reach this process before the client may subscribe (app.live.listener).
        hub = self.view.hub
        if hub is not None and not await hub.hold():
            await self.websocket.close(code=TRY_AGAIN_LATER, reason="live updates are not available right now: "
                                                                     "reconnect later")
            return
        self._held = hub is not None
        self._expiry = asyncio.create_task(self._close_at(expires_at))
        await self.send_message({"type": "connection_ack"})
        self.connection_acknowledged = True

    async def _close_at(self, expires_at: float) -> None:
        await asyncio.sleep(max(0.0, expires_at - time.time()))
        self.disconnect(FORBIDDEN, "Forbidden: token expired: get a new one")

    def disconnect(self, code: int, reason: str) -> None:
        """Close the connection from outside its message loop (token expiry, the hub); once."""
        if self._closing is None:
            self._closing = asyncio.create_task(self.websocket.close(code=code, reason=reason))
            self._closing.add_done_callback(self._task_done)

    async def shutdown(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        try:
            await super().shutdown()
        finally:
            if self._held:
                self._held = False
                self.view.hub.unhold()
            if self._client is not None:
                self.view.connections.close(self._client)
                self._client = None
        principal = self.context.principal
        log.info("websocket_closed", client=principal.client.slug if principal else None,
                 subscriptions=self._subscribed, duration_s=round(time.monotonic() - self._opened, 1))

    # --------------------------------------------------------------------------------- subscribe

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        if self.connection_acknowledged and message["id"] not in self.operations:
            try:
                refusal = await self._refusal(message)
            except http.RequestError as error:
                await self.websocket.close(code=4400, reason=error.message)
                return
            if refusal is not None:
                await self.send_message({"id": message["id"], "type": "error", "payload": [refusal.formatted]})
                return
            self._subscribed += 1
        await super().handle_subscribe(message)

    async def _refusal(self, message: SubscribeMessage) -> GraphQLError | None:
        """Why this subscribe is refused before it runs, or None. May replace a trusted document's id
        in the payload by its text."""
        principal = self.context.principal
        limit = self.view.max_subscriptions
        if len(self.operations) >= limit:
            return _error(f"at most {limit} subscriptions run on one connection: complete one first",
                          "TOO_MANY_SUBSCRIPTIONS")
        wait = self.view.limiter.acquire(principal.client.slug) if self.view.limiter else 0.0
        if wait:
            return _error("too many requests from this client; retry later", "RATE_LIMITED",
                          retryAfter=int(retry_after_header(wait)))
        payload = message["payload"]  # an object (handle_message)
        request = http.parse_object(payload)
        if request.document_id is not None:
            document_hash = request.document_id.removeprefix("sha256:")
            document = (await find_document(self.view.database, principal.tenant_id, document_hash)
                        if request.document_id.startswith("sha256:") else None)
            if document is None:
                return _error("PersistedQueryNotFound: no trusted document has this id in this city",
                              "PERSISTED_QUERY_NOT_FOUND")
            payload["query"] = document.text
        elif principal.client.trusted_documents_only:
            return _error(f"client {principal.client.slug} may only send trusted documents by id "
                          "(documentId: \"sha256:<hex>\")", "TRUSTED_DOCUMENT_REQUIRED")
        if any("\x00" in text for text in strings_in([payload.get("query"), payload.get("variables")])):
            return _error("strings must not contain NUL (\\u0000) characters", "BAD_USER_INPUT")  # as over HTTP
        try:
            document = parse(payload["query"])
        except GraphQLError as error:  # a syntax error closes the connection (4400), as the protocol says
            raise http.RequestError(error.message) from None
        refusal = document_refusal(document, request.operation_name)  # several operations, no name
        if refusal is not None:
            return _error(refusal, "GRAPHQL_VALIDATION_FAILED")
        operation = get_operation_ast(document, request.operation_name)
        if operation is None:
            return _error(f"unknown operation {request.operation_name!r}: send an operationName that the document "
                          "defines", "BAD_REQUEST")
        if operation.operation is not OperationType.SUBSCRIPTION:
            return _error(f"{operation.operation.value} operations are served over HTTP (POST /graphql); "
                          "this websocket serves subscriptions only", "OPERATION_NOT_SUPPORTED")
        # Before strawberry runs it: the cost extension refuses a subscription only by ending its stream.
        cost = operation_cost(self.schema._schema, document, request.operation_name, request.variables or {})
        return over_budget(cost, BUDGETS[principal.role])

    async def send_message(self, message: Message) -> None:
        if message.get("type") == "error":  # every error typed, as over HTTP
            for error in message.get("payload") or []:  # type: ignore[union-attr]
                extensions = error.setdefault("extensions", {})
                extensions.setdefault("code", request_error_code(error.get("message", "")))
        await super().send_message(message)


def _malformed(message: object) -> str | None:
    """Why a decoded message is not one the protocol defines (as the reference server, graphql-ws,
    validates it), or None. Strawberry's handler indexes, hashes and echoes these fields unchecked."""
    if not isinstance(message, dict):
        return "Invalid message: not a JSON object"
    kind = message.get("type")
    if not isinstance(kind, str):
        return "Invalid message: `type` must be a string"
    if kind in ("subscribe", "complete"):  # strawberry hashes the id and echoes it
        id_ = message.get("id")
        if not isinstance(id_, str) or not id_:
            return f"Invalid message: `{kind}` needs an `id` that is a non-empty string"
    payload = message.get("payload")
    if kind == "subscribe" and not isinstance(payload, dict):
        return "Invalid message: `subscribe` needs a `payload` object"
    if kind in ("connection_init", "ping", "pong") and payload is not None and not isinstance(payload, dict):
        return f"Invalid message: the `payload` of `{kind}` must be an object"
    return None


def _error(message: str, code: str, **extensions: Any) -> GraphQLError:
    return GraphQLError(message, extensions={"code": code, **extensions})


class ClientConnections:
    """The websockets each client holds on this process once authenticated, at most `limit` (0: no limit).

    Each may run `CARBON_WEBSOCKET_MAX_SUBSCRIPTIONS`, every one executed at each of its events; the
    client's rate limit only slows how fast it opens them, so without this a client could keep any number
    running. Per process, like the rate limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    def open(self, client: str) -> bool:
        """Count one more connection of `client`; False (nothing counted) when it has `limit` already."""
        held = self._open.get(client, 0)
        if self.limit and held >= self.limit:
            return False
        self._open[client] = held + 1
        return True

    def close(self, client: str) -> None:
        held = self._open.pop(client) - 1
        if held:
            self._open[client] = held


class LiveWebSocket(ASGIWebSocketAdapter):
    """Every close (ours and strawberry's, whose reasons quote the client's `type` and `id`) sends a
    reason a close frame can carry: UTF-8, at most 123 bytes. Else the server failed to send the close
    frame at all (the client saw 1006) and logged an error."""

    async def close(self, code: int, reason: str) -> None:
        await super().close(code, _reason(reason))


def _reason(text: str) -> str:
    encoded = text.encode("utf-8", errors="replace")[:MAX_REASON_BYTES]
    return encoded.decode("utf-8", errors="ignore")
