"""create_app(): the Starlette application — /graphql (HTTP and websocket), /healthz, /readyz, /metrics and the
/dashboard page."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.accounts.hashing import HolderHasher, load_holder_hasher
from app.auth.ratelimit import RateLimiter
from app.auth.tokens import ClientRegistry
from app.dashboard import page as dashboard_page
from app.db.migrate import head_revision
from app.db.server import asyncpg_dsn
from app.db.session import Database
from app.graphql.schema import build_schema, schema
from app.graphql.view import AuthenticatedGraphQL, GraphQLView
from app.ledger.chain import periodic_checkpoints
from app.ledger.expiry import periodic_expiry
from app.ledger.signing import load_signer
from app.live.hub import Hub
from app.live.listener import Listener
from app.logs import get_logger
from app.rewards import batching as redeem_batching
from app.settings import Settings

log = get_logger("app.http")

HTTP_REQUESTS = Counter("carbon_http_requests_total", "HTTP requests", ["path", "method", "status"])
HTTP_LATENCY = Histogram("carbon_http_request_seconds", "HTTP request latency", ["path", "method"])
_KNOWN_PATHS = {"/graphql", "/healthz", "/readyz", "/metrics"} | dashboard_page.PATHS


MAX_BODY_BYTES = 4 * 1024 * 1024  # a 1,000-record batch is about 250 KB


class BodySizeLimit:
    """HTTP 413 for a request body over `limit` bytes, before anything parses it (declared length or,
    for chunked bodies, counted as it arrives)."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _TooLarge()
            return message

        try:
            await self.app(scope, counting_receive, send)
        except _TooLarge:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = ('{"errors":[{"message":"request body over %d bytes","extensions":{"code":"PAYLOAD_TOO_LARGE"}}]}'
                % self.limit).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


_METHODS = frozenset({"GET", "POST", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"})


@functools.cache
def _metric_children(path: str, method: str, status: int) -> tuple[Any, Any]:
    return HTTP_REQUESTS.labels(path, method, str(status)), HTTP_LATENCY.labels(path, method)


def _http_metrics(path: str, method: str, status: int) -> tuple[Any, Any]:
    """The request's counter and histogram children (labelled once per kind of request, not per request;
    an unusual method is counted as OTHER, so a client cannot grow the label set)."""
    return _metric_children(path, method if method in _METHODS else "OTHER", status)


CLIENT_CLOSED_REQUEST = 499


class ServerErrors:
    """HTTP 500 for an exception that escapes the app before it answered, then re-raised for the server
    to log (what Starlette's ServerErrorMiddleware does for its routes, with a JSON body)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def watching_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watching_send)
        except ClientDisconnect:
            # The client went away while its request was read: nothing to answer, nothing went wrong here
            # (counted and logged as 499, nginx's "client closed request", not as a server error).
            scope.setdefault("state", {})["client_closed"] = True
        except Exception:
            if not started:
                body = b'{"errors":[{"message":"Internal server error.","extensions":{"code":"INTERNAL"}}]}'
                await send({"type": "http.response.start", "status": 500, "headers": [
                    (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
            raise


class _Application(Starlette):
    """Starlette with a short way in for HTTP requests to /graphql: the request-context and body-limit
    middlewares, a 500 guard and the GraphQL app, without Starlette's router and exception layers
    (nothing of theirs applies to it: it answers every error itself). Everything else, websockets on
    /graphql included, goes through the full stack."""

    def __init__(self, *, graphql: ASGIApp, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._graphql = graphql

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/graphql":
            scope["app"] = self
            await self._graphql(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


class RequestContextMiddleware:
    """A request id on every log line (honouring a sane incoming `X-Request-ID`), one access log line
    per request, HTTP metrics. Logs the path only: query strings may carry personal data."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else uuid.uuid4().hex
        if scope["type"] == "websocket":  # its lines (subscriptions, closing) carry one id for its life
            structlog.contextvars.bind_contextvars(request_id=request_id)
            try:
                await self.app(scope, receive, send)
            finally:
                structlog.contextvars.unbind_contextvars("request_id")
            return
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if scope.get("state", {}).get("client_closed"):
                status = CLIENT_CLOSED_REQUEST
            elapsed = time.perf_counter() - started
            path = scope["path"] if scope["path"] in _KNOWN_PATHS else "other"
            count, latency = _http_metrics(path, scope["method"], status)
            count.inc()
            latency.observe(elapsed)
            log.info("http_request", method=scope["method"], path=path, status=status,
                     duration_ms=round(elapsed * 1000, 2))
            structlog.contextvars.unbind_contextvars("request_id")


def create_app(settings: Settings, *, database: Database, registry: ClientRegistry,
               hasher: HolderHasher | None = None) -> Starlette:
    """Build the application around an open Database (the caller owns its lifetime)."""
    expected_revision = head_revision()

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        try:
            async with database.sessionmaker() as session:
                applied = (await session.execute(text("SELECT version_num FROM alembic_version"))).scalar()
        except Exception as error:  # any failure to reach the database means not ready
            log.warning("readiness_failed", error=type(error).__name__)
            return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
        if applied != expected_revision:
            return JSONResponse({"status": "unavailable", "database": "reachable",
                                 "migrations": {"applied": applied, "expected": expected_revision}}, status_code=503)
        live = "off" if listener is None else listener.state
        return JSONResponse({"status": "ready", "database": "reachable", "migrations": {"applied": applied},
                             "live": live})

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    served = schema if settings.introspection else build_schema(introspection=False)
    redeem_batching.configure(database, in_flight=settings.redeem_in_flight)
    signer = load_signer(settings)
    limiter = (RateLimiter(rate=settings.rate_limit_per_second, burst=settings.rate_limit_burst)
               if settings.rate_limit_per_second > 0 else None)
    hub = Hub(queue_size=settings.live_queue_size, tick_seconds=settings.live_dashboard_interval_seconds)
    # One dedicated LISTEN connection per process, beside the pool (none for a test's single connection).
    listener = (Listener(asyncpg_dsn(database.bind.url.render_as_string(hide_password=False))[1], hub,
                         linger_seconds=settings.live_linger_seconds)
                if isinstance(database.bind, AsyncEngine) else None)
    view = GraphQLView(served, database=database, hasher=hasher or load_holder_hasher(settings),
                       graphiql=settings.graphiql, registry=registry, limiter=limiter, hub=hub,
                       max_subscriptions=settings.websocket_max_subscriptions,
                       max_connections_per_client=settings.websocket_max_connections_per_client,
                       init_timeout_seconds=settings.websocket_init_timeout_seconds,
                       allowed_origins=settings.websocket_allowed_origins, signer=signer)
    graphql_app = AuthenticatedGraphQL(view, registry, graphiql=settings.graphiql, limiter=limiter)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        tasks = [task for task in (
            asyncio.create_task(periodic_expiry(database, settings.expiry_interval_seconds))
            if settings.expiry_interval_seconds > 0 else None,
            asyncio.create_task(periodic_checkpoints(database, signer,
                                                     settings.checkpoint_interval_seconds))
            if settings.checkpoint_interval_seconds > 0 else None) if task is not None]
        if listener is not None:
            await listener.start()
        try:
            yield
        finally:
            if listener is not None:
                await listener.stop()
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await database.dispose()

    app = _Application(
        # The same order as the full stack's (Starlette's own error layer outside the body limit, so a
        # 413 stays a 413); tests/graphql/test_http_conformance.py pins this list to `user_middleware`.
        graphql=RequestContextMiddleware(ServerErrors(BodySizeLimit(graphql_app))),
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/graphql", graphql_app, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql_app),
            *dashboard_page.routes(),
        ],
        lifespan=lifespan,
    )
    app.state.live_hub = hub
    app.add_middleware(BodySizeLimit)
    app.add_middleware(RequestContextMiddleware)
    return app
