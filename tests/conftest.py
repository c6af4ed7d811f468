"""Test set-up: real PostgreSQL, one database per xdist worker, migrated once, every test rolled back.

Without CARBON_DATABASE_URL the suite starts the embedded server in `.data/test-postgres` (apart from
`make run`'s data); with it, each worker creates `carbon_test_<worker>` on that server (the URL's
user needs CREATEDB and CREATEROLE, e.g. a superuser of a local test cluster).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.tokens import ClientRegistry
from app.cli import _registry
from app.db.provision import scratch_database
from app.db.server import DatabaseTarget
from app.db.session import Database, create_engine
from app.ledger.invariants import verify_all_tenants
from app.main import create_app
from app.settings import PROJECT_ROOT, Settings
from app.tenants.config import load_city_files

TEST_DATA_DIR = PROJECT_ROOT / ".data" / "test-postgres"


def make_test_settings() -> Settings:
    # No rate limit by default: concurrency tests fire hundreds of requests at once (the limiter has its own tests).
    # Dashboard ticks every 50 ms, not every second: walks deliver several to one subscriber.
    return Settings(environment="test", config_dir=PROJECT_ROOT / "config", data_dir=TEST_DATA_DIR,
                    rate_limit_per_second=0, live_dashboard_interval_seconds=0.05)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return make_test_settings()


@pytest.fixture(scope="session")
def database_target(settings: Settings) -> Iterator[DatabaseTarget]:
    """A migrated, seeded database for this worker; dropped (and the embedded server stopped) at the end.

    The pid keeps two runs in one checkout (or on one server) out of each other's database."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with scratch_database(settings, f"carbon_test_{worker}_{os.getpid()}", TEST_DATA_DIR) as target:
        yield target


@pytest.fixture(scope="session")
async def app_engine(database_target: DatabaseTarget) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_target.app_url, pool_size=4)
    yield engine
    await engine.dispose()


@pytest.fixture
async def database(app_engine: AsyncEngine) -> AsyncIterator[Database]:
    """The app's Database bound to one connection in a transaction that is rolled back after the test."""
    async with app_engine.connect() as connection:
        transaction = await connection.begin()
        try:
            yield Database(connection)
        finally:
            await transaction.rollback()


@pytest.fixture(scope="session")
def registry(settings: Settings) -> ClientRegistry:
    return _registry(settings, load_city_files(settings.config_dir))


@dataclass
class Api:
    """Calls /graphql as a configured client, the way a client would (bearer token over HTTP)."""

    http: AsyncClient
    registry: ClientRegistry
    app: Any = None  # the ASGI app, for in-process websocket sessions (tests.live.wsclient.AsgiClient)

    def headers(self, client: str | None, language: str | None = None) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if client is not None:
            headers["authorization"] = f"Bearer {self.registry.issue(client, 3600)}"
        if language is not None:
            headers["accept-language"] = language
        return headers

    async def post(self, query: str, *, as_: str | None, variables: dict | None = None,
                   language: str | None = None, operation_name: str | None = None):
        body: dict = {"query": query}
        if variables is not None:
            body["variables"] = variables
        if operation_name is not None:
            body["operationName"] = operation_name
        return await self.http.post("/graphql", json=body, headers=self.headers(as_, language))

    async def query(self, query: str, *, as_: str, variables: dict | None = None, language: str | None = None,
                    operation_name: str | None = None) -> dict:
        """Run an operation that must succeed; returns `data`."""
        response = await self.post(query, as_=as_, variables=variables, language=language,
                                   operation_name=operation_name)
        assert response.status_code == 200, response.text
        body = response.json()
        assert "errors" not in body, body["errors"]
        return body["data"]

    async def errors(self, query: str, *, as_: str, variables: dict | None = None) -> list[dict]:
        """Run an operation that must fail with top-level errors; returns them."""
        body = (await self.post(query, as_=as_, variables=variables)).json()
        assert body.get("errors"), body
        return body["errors"]


@pytest.fixture
async def api(settings: Settings, database: Database, registry: ClientRegistry) -> AsyncIterator[Api]:
    """The API over the test's rolled-back connection. After the test, the ledger invariants must hold
    for everything the test wrote (checked before the rollback)."""
    app = create_app(settings, database=database, registry=registry)
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://testserver") as http:
        yield Api(http=http, registry=registry, app=app)
    report = await verify_all_tenants(database)
    assert report and all(not violations for violations in report.values()), report


@pytest.fixture
async def committed_api(settings: Settings, app_engine: AsyncEngine, registry: ClientRegistry) -> AsyncIterator[Api]:
    """The API over a real connection pool: every request commits, requests run truly concurrently.

    For concurrency and crash tests. What such tests write stays in this worker's database, so they
    use fresh accounts, and the ledger invariants must still hold afterwards."""
    database = Database(app_engine)
    app = create_app(settings, database=database, registry=registry)
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://testserver", timeout=60) as http:
        yield Api(http=http, registry=registry)
    report = await verify_all_tenants(database)
    assert report and all(not violations for violations in report.values()), report
