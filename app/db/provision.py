"""Scratch databases for the test suite and the benchmarks: created fresh, migrated, seeded, dropped.

On the embedded server (its own data directory) or, with `CARBON_DATABASE_URL`, on that server (the
URL's user needs CREATEDB and CREATEROLE, e.g. a superuser of a local test cluster).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from app.db import migrate
from app.db.rls import APP_ROLE
from app.db.server import DatabaseTarget, asyncpg_dsn, derive_app_url, embedded_url, start_embedded, with_database
from app.db.session import NO_TENANT, Database, create_engine
from app.settings import Settings
from app.tenants.config import load_city_files
from app.tenants.service import load_cities


async def _maintenance(owner_url: str, *statements: str) -> None:
    _, kwargs = asyncpg_dsn(owner_url)
    kwargs.pop("database")
    connection = await asyncpg.connect(database="postgres", **kwargs)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


async def set_app_role_password(owner_url: str, password: str) -> None:
    _, kwargs = asyncpg_dsn(owner_url)
    connection = await asyncpg.connect(**kwargs)
    try:
        statement = await connection.fetchval("SELECT format('ALTER ROLE %I PASSWORD %L', $1::text, $2::text)",
                                              APP_ROLE, password)
        for attempt in range(5):  # the role is cluster-wide: parallel test workers may alter it at once
            try:
                await connection.execute(statement)
                return
            except asyncpg.exceptions.InternalServerError as error:
                if attempt == 4 or "concurrently" not in str(error):
                    raise
                await asyncio.sleep(0.05 * (attempt + 1))
    finally:
        await connection.close()


async def seed(app_url: str, config_dir: Path) -> list:
    database = Database(create_engine(app_url, pool_size=1))
    try:
        async with database.transaction(NO_TENANT) as session:
            return await load_cities(session, load_city_files(config_dir), now=datetime.now(UTC))
    finally:
        await database.dispose()


@contextmanager
def scratch_database(settings: Settings, name: str, data_dir: Path, *, drop: bool = True,
                     keep: Callable[[DatabaseTarget], Awaitable[bool]] | None = None) -> Iterator[DatabaseTarget]:
    """A freshly created, migrated and seeded database named `name`. The app role (cluster-wide) gets the
    configured password, else one derived from the server's location, so parallel scratch databases
    on one server (test workers) agree on it.

    With `keep`: when the database already exists and `await keep(target)` is true, it is kept as it is
    (only migrated to head), not created and seeded again (a benchmark's expensive data set)."""
    location = settings.database_url.get_secret_value() if settings.database_url else str(data_dir)
    password = (settings.app_database_password.get_secret_value() if settings.app_database_password
                else hashlib.sha256(f"carbon-scratch:{location}".encode()).hexdigest()[:32])
    if settings.database_url is not None:
        owner_url = with_database(settings.database_url.get_secret_value(), name)
        target = DatabaseTarget(owner_url=owner_url, app_url=derive_app_url(owner_url, password))
    else:
        server = start_embedded(data_dir)
        owner_url = embedded_url(server, name)
        target = DatabaseTarget(owner_url=owner_url, app_url=derive_app_url(owner_url, password), embedded=server)
    try:
        if keep is not None and asyncio.run(_exists(owner_url, name)) and asyncio.run(keep(target)):
            migrate.upgrade(owner_url)
            asyncio.run(set_app_role_password(owner_url, password))  # for servers with password authentication
            yield target
        else:
            with _fresh(target, name, password, settings.config_dir, drop=drop):
                yield target
    finally:
        target.close()


@contextmanager
def sibling_database(target: DatabaseTarget, name: str, config_dir: Path, *, drop: bool = True) -> Iterator[DatabaseTarget]:
    """Another fresh database named `name` on `target`'s server, with the same app role password. The
    server stays `target`'s to stop: a process holds one handle on an embedded server, and closing a
    second one would stop it under the first."""
    password = make_url(target.app_url).password
    sibling = DatabaseTarget(owner_url=with_database(target.owner_url, name), app_url=with_database(target.app_url, name))
    with _fresh(sibling, name, password, config_dir, drop=drop):
        yield sibling


@contextmanager
def _fresh(target: DatabaseTarget, name: str, password: str | None, config_dir: Path, *, drop: bool) -> Iterator[None]:
    drop_statement = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
    asyncio.run(_maintenance(target.owner_url, drop_statement, f'CREATE DATABASE "{name}"'))
    migrate.upgrade(target.owner_url)
    if password is not None:
        asyncio.run(set_app_role_password(target.owner_url, password))  # for servers with password authentication
    asyncio.run(seed(target.app_url, config_dir))
    yield
    if drop:
        asyncio.run(_maintenance(target.owner_url, drop_statement))


async def _exists(owner_url: str, name: str) -> bool:
    _, kwargs = asyncpg_dsn(owner_url)
    kwargs.pop("database")
    connection = await asyncpg.connect(database="postgres", **kwargs)
    try:
        return bool(await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))
    finally:
        await connection.close()
