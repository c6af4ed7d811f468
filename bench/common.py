"""Shared benchmark set-up: a fresh database on the embedded (or given) server, migrated and seeded,
bulk-made accounts with consents, and a real `carbon-inclusive serve` process to send HTTP to."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar

import asyncpg

from app.accounts.hashing import HolderHasher
from app.db.provision import scratch_database
from app.db.server import DatabaseTarget, asyncpg_dsn
from app.settings import PROJECT_ROOT, Settings
from app.tenants.models import tenant_id_for

T = TypeVar("T")
BENCH_DATA_DIR = PROJECT_ROOT / ".data" / "bench-postgres"
# A benchmark's server with its hourly chores off: neither expiry nor the ledger checkpoints run their
# first pass (every account; every chain entry) as the server starts, during the measurement.
QUIET_SERVER = {"CARBON_EXPIRY_INTERVAL_SECONDS": "0", "CARBON_CHECKPOINT_INTERVAL_SECONDS": "0"}


def run(coroutine: Awaitable[T]) -> T:
    """`asyncio.run` on uvloop, the event loop the server itself runs on: every phase's clients (asyncpg
    and HTTP alike) get the same fast loop, so the load generator costs each phase as little as it can."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)  # type: ignore[arg-type]


@contextmanager
def bench_database(name: str, keep: Callable[[DatabaseTarget], Awaitable[bool]] | None = None):
    """A freshly created, migrated and seeded database (kept afterwards for inspection); with `keep`, an
    existing one it approves is reused as it is (see `scratch_database`)."""
    with scratch_database(Settings(), name, BENCH_DATA_DIR, drop=False, keep=keep) as target:
        yield target


async def app_connection(target: DatabaseTarget, tenant_slug: str) -> asyncpg.Connection:
    _, kwargs = asyncpg_dsn(target.app_url)
    connection = await asyncpg.connect(**kwargs)
    await connection.execute("SELECT set_config('app.tenant_id', $1, false)", str(tenant_id_for(tenant_slug)))
    return connection


async def make_accounts(target: DatabaseTarget, count: int, provider: str, categories: list[str],
                        tenant_slug: str = "wuhan") -> list[uuid.UUID]:
    """Bulk-create `count` guest accounts with their ledger accounts and a consent for `provider`."""
    tenant_id = tenant_id_for(tenant_slug)
    hasher = HolderHasher(secrets.token_bytes(32))
    ids = [uuid.uuid4() for _ in range(count)]
    connection = await app_connection(target, tenant_slug)
    try:
        async with connection.transaction():
            provider_id = await connection.fetchval(
                "SELECT id FROM issuers WHERE tenant_id = $1 AND slug = $2", tenant_id, provider)
            await connection.execute("""
                INSERT INTO accounts (id, tenant_id, holder_hash, kind, status, opened_by, agreement_accepted_at)
                SELECT id, $1, hash, 'GUEST', 'ACTIVE', 'bench', now() FROM unnest($2::uuid[], $3::bytea[]) AS a(id, hash)
            """, tenant_id, ids, [hasher.holder_hash(tenant_id, f"bench-{i}") for i in range(count)])
            await connection.execute("""
                INSERT INTO ledger_accounts (id, tenant_id, account_id, code, asset, balance, tracks_balance)
                SELECT gen_random_uuid(), $1, a.id, 'citizen', asset, 0, true
                FROM unnest($2::uuid[]) AS a(id) CROSS JOIN (VALUES ('CONTRIBUTION_MG'), ('POINTS')) AS s(asset)
            """, tenant_id, ids)
            await connection.execute("""
                INSERT INTO consents (id, tenant_id, account_id, provider_issuer_id, categories, granted_by, granted_at)
                SELECT gen_random_uuid(), $1, a.id, $2, $3::text[], 'bench', now() FROM unnest($4::uuid[]) AS a(id)
            """, tenant_id, provider_id, categories, ids)
    finally:
        await connection.close()
    return ids


async def points_ledgers(target: DatabaseTarget, accounts: list[uuid.UUID], tenant_slug: str = "wuhan") -> list[uuid.UUID]:
    """The POINTS ledger account of each account, in the same order."""
    connection = await app_connection(target, tenant_slug)
    try:
        rows = await connection.fetch("SELECT account_id, id FROM ledger_accounts WHERE asset = 'POINTS' "
                                      "AND account_id = ANY($1)", accounts)
    finally:
        await connection.close()
    by_account = {row["account_id"]: row["id"] for row in rows}
    return [by_account[account] for account in accounts]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class ServerProcess:
    base_url: str
    process: subprocess.Popen
    log: IO[str]  # the server's stderr (a file: a pipe nobody reads could fill and stall the server)

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://") + "/graphql"

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read()


@contextmanager
def server_process(target: DatabaseTarget, env: dict[str, str] | None = None):
    """`carbon-inclusive serve` as a separate process against `target` (extra `CARBON_*` settings in
    `env`), ready (`/readyz`) when yielded; terminated (SIGTERM, then killed after 30 s) afterwards."""
    port = free_port()
    variables = {key: value for key, value in os.environ.items() if not key.startswith("CARBON_")}
    variables |= {"CARBON_DATABASE_URL": target.owner_url, "CARBON_APP_DATABASE_URL": target.app_url,
                  "CARBON_PORT": str(port), "CARBON_LOG_LEVEL": "WARNING", "CARBON_SEED_ON_START": "false",
                  "CARBON_POOL_SIZE": "8", "CARBON_RATE_LIMIT_PER_SECOND": "0"} | (env or {})
    log = tempfile.TemporaryFile("w+", encoding="utf-8")
    process = subprocess.Popen([str(Path(sys.executable).parent / "carbon-inclusive"), "serve"], env=variables,
                               stdout=subprocess.DEVNULL, stderr=log, text=True)
    server = ServerProcess(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited: {server.stderr()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@contextmanager
def running_server(target: DatabaseTarget):
    """`carbon-inclusive serve` as a separate process against the bench database; yields its base URL."""
    with server_process(target) as server:
        yield server.base_url


class LightHttpClient:
    """A minimal HTTP/1.1 keep-alive client (one connection) for load generation.

    httpx spends about half a millisecond of CPU per request; on a 2-core machine shared with the
    server and PostgreSQL the load generator would then be the bottleneck of the measurement. This one
    writes the request bytes and reads `Content-Length` bodies, nothing else, on a bare asyncio
    protocol (no stream reader: one wake-up per answer)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._protocol: _AnswerProtocol | None = None

    async def __aenter__(self) -> LightHttpClient:
        loop = asyncio.get_running_loop()
        _, self._protocol = await loop.create_connection(_AnswerProtocol, self.host, self.port)
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._protocol is not None:
            self._protocol.close()
            self._protocol = None

    @staticmethod
    def request_bytes(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        """A whole HTTP/1.1 POST of a JSON body, ready to send (made before a benchmark's clock starts)."""
        head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json",
                f"Content-Length: {len(body)}", *(f"{key}: {value}" for key, value in headers.items()), "", ""]
        return "\r\n".join(head).encode() + body

    async def post_json(self, path: str, body: bytes, headers: dict[str, str],
                        timeout: float = 60) -> tuple[int, bytes]:
        """Status and body of a POST (see `exchange`)."""
        return await self.exchange(self.request_bytes(self.host, self.port, path, body, headers), timeout)

    async def exchange(self, request: bytes, timeout: float = 60) -> tuple[int, bytes]:
        """Status and body of the answer to `request` (from `request_bytes`). A connection the server closed
        meanwhile (its keep-alive timeout ends idle ones) is opened again and the request sent again,
        once: only for idempotent requests."""
        try:
            async with asyncio.timeout(timeout):
                if self._protocol is None or self._protocol.lost:  # closed meanwhile, or a reopen failed
                    await self._reopen()
                assert self._protocol is not None
                try:
                    return await self._protocol.exchange(request)
                except ConnectionError:  # closed before it answered
                    await self._reopen()
                    assert self._protocol is not None
                    return await self._protocol.exchange(request)
        except BaseException:
            if self._protocol is not None:  # an answer may still come: never pair it with the next request
                self._protocol.close()
            raise

    async def _reopen(self) -> None:
        await self.__aexit__()
        await self.__aenter__()


class _AnswerProtocol(asyncio.Protocol):
    """One request at a time: `exchange` writes it and returns (status, body) once the whole answer is in."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def exchange(self, request: bytes) -> asyncio.Future[tuple[int, bytes]]:
        assert self.transport is not None and (self.waiter is None or self.waiter.done()), "one request at a time"
        if self.lost:
            raise ConnectionResetError("the server closed the connection")
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self.waiter

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None or self.waiter.done():
            return
        status_line, *lines = self.buffer[:end].decode("latin-1").split("\r\n")
        length = 0
        for line in lines:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
        if len(self.buffer) < end + 4 + length:
            return  # the rest of the body is on its way
        body = bytes(self.buffer[end + 4:end + 4 + length])
        del self.buffer[:end + 4 + length]
        self.waiter.set_result((int(status_line.split()[1]), body))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionResetError("the server closed the connection without answering"))

    def close(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.close()


def migration_backfills() -> list[tuple[str, list[str], int | None]]:
    """(revision, statements, shards) of every migration that defines a module-level `BACKFILL` (one
    statement or a sequence of them, filling its rollups from the source tables from an empty start), in
    revision order. `shards`: the migration's `SHARDS`, when its rollups are sharded."""
    from alembic.script import ScriptDirectory

    from app.db.migrate import alembic_config

    found = []
    for revision in reversed(list(ScriptDirectory.from_config(alembic_config()).walk_revisions())):
        backfill = getattr(revision.module, "BACKFILL", None)
        if backfill is not None:
            statements = [backfill] if isinstance(backfill, str) else list(backfill)
            found.append((revision.revision, statements, getattr(revision.module, "SHARDS", None)))
    return found


def backfill_targets(statements: list[str]) -> list[str]:
    """The tables a backfill's statements insert into, in order."""
    targets = []
    for statement in statements:
        match = re.search(r"\bINSERT\s+INTO\s+([A-Za-z_][A-Za-z0-9_]*)", statement, re.IGNORECASE)
        if match is None:
            raise ValueError(f"a BACKFILL statement inserts into no table: {statement[:80]!r}")
        if match.group(1) not in targets:
            targets.append(match.group(1))
    return targets


async def rebuild_rollups(connection: asyncpg.Connection, *, spread: bool = True) -> list[tuple[str, float]]:
    """Empty the tables every migration's `BACKFILL` fills (rollups, active days, hash chains: what
    triggers keep) and fill them again with those backfills, on the owner's connection, in one
    transaction (after a bulk load that bypassed the triggers). Returns (revision, seconds) per
    migration. ANALYZE the tables afterwards.

    With `spread`, each sharded table's rows (a backfill writes shard 0) are spread over the migration's
    shards, split so that every sum stays exact: live writes leave a busy key with a row in every shard,
    and a benchmark that reads the rollups should read as many rows as production would."""
    timings = []
    async with connection.transaction():
        for revision, statements, shards in migration_backfills():
            started = time.perf_counter()
            targets = backfill_targets(statements)
            await connection.execute(f"TRUNCATE {', '.join(targets)}")
            for statement in statements:
                await connection.execute(statement)
            if spread and shards:
                for table in targets:
                    await spread_over_shards(connection, table, shards)
            timings.append((revision, time.perf_counter() - started))
    return timings


def rollup_tables() -> list[str]:
    """Every table a migration's backfill fills."""
    return [table for _, statements, _ in migration_backfills() for table in backfill_targets(statements)]


async def spread_over_shards(connection: asyncpg.Connection, table: str, shards: int) -> None:
    """Spread the rows of `table` (all in one shard) over `shards`: each integer non-key column split as
    ⌊v·(s+1)/n⌋ − ⌊v·s/n⌋ for shard s (the parts sum to v exactly, signs included); all-zero parts are
    not written. A table without a `shard` key column is left alone."""
    keys = [row[0] for row in await connection.fetch("""
        SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
         WHERE i.indrelid = $1::regclass AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)""", table)]
    if "shard" not in keys:
        return
    columns = await connection.fetch("""
        SELECT attname, format_type(atttypid, atttypmod) AS type FROM pg_attribute
         WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum""", table)
    others = [c["attname"] for c in columns if c["attname"] not in keys]
    if any(c["type"] not in ("bigint", "integer", "smallint") for c in columns if c["attname"] in others):
        raise ValueError(f"{table}: only integer sums can be spread over shards")
    grouping = [key for key in keys if key != "shard"]
    parts = [f"(floor({c}::numeric * (s + 1) / {shards}) - floor({c}::numeric * s / {shards}))::bigint AS {c}"
             for c in others]
    await connection.execute(f"CREATE TEMP TABLE spread_source AS SELECT * FROM {table}")
    await connection.execute(f"TRUNCATE {table}")
    await connection.execute(f"""
        INSERT INTO {table} ({', '.join(grouping)}, shard, {', '.join(others)})
        SELECT {', '.join(grouping)}, shard, {', '.join(others)} FROM (
            SELECT {', '.join(grouping)}, s::smallint AS shard, {', '.join(parts)}
              FROM spread_source CROSS JOIN generate_series(0, {shards - 1}) AS s) x
         WHERE {' OR '.join(f'{c} <> 0' for c in others)}
         ORDER BY {', '.join(keys)}""")  # in key order, as days are written one after the other
    await connection.execute("DROP TABLE spread_source")


async def drop_indexes(connection: asyncpg.Connection, tables: list[str]) -> list[str]:
    """Drop the indexes of `tables` that no foreign key relies on (primary keys, unique constraints and
    plain indexes), so that a bulk load writes the tables only; returns the statements that build them
    again, each from its own definition (a sorted build is much cheaper than row-by-row inserts)."""
    rows = await connection.fetch("""
        SELECT i.indrelid::regclass::text AS tab, i.indexrelid::regclass::text AS idx, c.conname,
               pg_get_constraintdef(c.oid) AS condef, pg_get_indexdef(i.indexrelid) AS indexdef
          FROM pg_index i LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.contype IN ('p', 'u')
               AND c.conrelid = i.indrelid
         WHERE i.indrelid = ANY($1::regclass[])
           AND NOT EXISTS (SELECT 1 FROM pg_constraint f WHERE f.contype = 'f' AND f.conindid = i.indexrelid)
         ORDER BY 1, 2""", tables)
    rebuild = []
    for row in rows:
        if row["conname"]:
            await connection.execute(f'ALTER TABLE {row["tab"]} DROP CONSTRAINT "{row["conname"]}"')
            rebuild.append(f'ALTER TABLE {row["tab"]} ADD CONSTRAINT "{row["conname"]}" {row["condef"]}')
        else:
            await connection.execute(f"DROP INDEX {row['idx']}")
            rebuild.append(row["indexdef"])
    return rebuild
