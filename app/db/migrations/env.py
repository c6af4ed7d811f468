"""Alembic environment (async). The owner URL comes from `app.db.migrate` or `CARBON_DATABASE_URL`."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from app.db.metadata import metadata

config = context.config
target_metadata = metadata


def _owner_url() -> str:
    url = config.attributes.get("owner_url")
    if url:
        return url
    from app.db.server import open_database
    from app.settings import get_settings

    return open_database(get_settings()).owner_url


def run_migrations_offline() -> None:
    context.configure(url=_owner_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


# Several servers starting at once must not run the same migration concurrently.
MIGRATION_LOCK = 0x63617262  # "carb"


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        context.run_migrations()


async def run_migrations_online() -> None:
    engine = create_async_engine(_owner_url(), poolclass=pool.NullPool)
    async with engine.connect() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
