"""Transactions with a tenant scope: the unit of work every request and command runs in.

`Database.transaction(scope)` opens one transaction, applies the scope with `set_config(..., true)`
(transaction-local, so nothing leaks to the next user of a pooled connection) and commits once at the
end, or rolls back on any exception. Services never commit (Polar's rule): what one request writes
lands together or not at all.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from app.db.connections import StatementConnections
from app.db.rls import REGULATOR_ROLE


@dataclass(frozen=True)
class TenantScope:
    """What rows a transaction may touch: one tenant's, or (read-only) every tenant's, or none."""

    tenant_id: uuid.UUID | None = None
    cross_tenant_read: bool = False

    @classmethod
    def for_tenant(cls, tenant_id: uuid.UUID) -> TenantScope:
        return cls(tenant_id=tenant_id)

    @classmethod
    def regulator(cls) -> TenantScope:
        return cls(cross_tenant_read=True)


NO_TENANT = TenantScope()

_APPLY_SCOPE = text("SELECT set_config('app.tenant_id', :tenant, true), set_config('role', :role, true)")


class ScopeLocked(RuntimeError):
    """Code tried to change the tenant scope of a request's transaction."""


async def apply_scope(session: AsyncSession, scope: TenantScope, *, lock: bool = False) -> None:
    """Set the transaction's tenant and role. Both are always set, so a scope never inherits another's.

    `lock=True` (used for every API request) makes any later change of scope on this session an error:
    a request runs in its caller's scope from start to end, whatever the code it calls does.
    """
    if session.info.get("scope_locked"):
        raise ScopeLocked("the tenant scope of this transaction is fixed for the request")
    if lock:
        session.info["scope_locked"] = True
    await session.execute(_APPLY_SCOPE, {
        "tenant": str(scope.tenant_id) if scope.tenant_id else "",
        "role": REGULATOR_ROLE if scope.cross_tenant_read else "none",
    })


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        # A statement never runs longer than this: a request's unit of work waits for its resolvers'
        # statements before it ends (app.graphql.extensions.UnitOfWork), so this bounds that wait too.
        connect_args={"server_settings": {"application_name": "carbon-inclusive", "statement_timeout": "30s"}},
    )


class Database:
    """The app's connection to PostgreSQL as `carbon_app`.

    Bound to an engine in production; tests bind it to one connection inside an outer transaction
    (`join_transaction_mode="create_savepoint"`) so every test is rolled back.
    """

    def __init__(self, bind: AsyncEngine | AsyncConnection) -> None:
        self.bind = bind
        self._pool: StatementConnections | None = None
        self.sessionmaker = async_sessionmaker(
            bind,
            expire_on_commit=False,
            join_transaction_mode="create_savepoint",
        )

    @asynccontextmanager
    async def transaction(self, scope: TenantScope) -> AsyncIterator[AsyncSession]:
        async with self.sessionmaker() as session:
            async with session.begin():
                await apply_scope(session, scope)
                yield session

    @property
    def fetchval_connections(self) -> int:
        """How many `fetchval` statements can run at once: the size of its pool (1 on a test's connection)."""
        return 1 if isinstance(self.bind, AsyncConnection) else self.bind.pool.size()

    async def fetchval(self, sql: str, *args: object) -> object:
        """One statement straight on asyncpg, outside SQLAlchemy: the hot paths of trusted documents.

        On an engine it runs in its own implicit transaction on one of a few connections kept for these
        statements (`app.db.connections`); the statement must set its own tenant scope,
        transaction-locally. On a test's connection it runs in a
        savepoint of the test's transaction, so it sees and is rolled back with the test's data.
        """
        if isinstance(self.bind, AsyncConnection):
            raw = (await self.bind.get_raw_connection()).driver_connection
            async with raw.transaction():
                await raw.execute("SELECT set_config('role', 'none', true), set_config('app.tenant_id', '', true)")
                result = await raw.fetchval(sql, *args)
            # Leave the test's transaction unscoped, as a fresh pooled connection would be.
            await raw.execute("SELECT set_config('app.tenant_id', '', true)")
            return result
        if self._pool is None:
            self._pool = StatementConnections(self._connect_fast, self.fetchval_connections)
        return await self._pool.fetchval(sql, *args)

    async def _connect_fast(self) -> object:
        import asyncpg

        from app.db.server import asyncpg_dsn

        _, kwargs = asyncpg_dsn(self.bind.url.render_as_string(hide_password=False))  # type: ignore[union-attr]
        # The time limit of a statement is the server's, as for the engine's connections.
        return await asyncpg.connect(timeout=10, server_settings={
            "application_name": "carbon-inclusive-fast", "statement_timeout": "30s"}, **kwargs)

    async def dispose_pool(self) -> None:
        """Close the connections of `fetchval` (the engine stays open)."""
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def dispose(self) -> None:
        if self._pool is not None:
            await self._pool.close()
        if isinstance(self.bind, AsyncEngine):
            await self.bind.dispose()
