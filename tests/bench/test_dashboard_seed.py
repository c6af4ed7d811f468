"""The dashboard bench's generated history is what the platform would have written: copied into the
test database (triggers and foreign keys on), every ledger invariant holds, and the rollups rebuilt by
the migrations' backfills (spread over shards) still equal the ledger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from app.db.server import DatabaseTarget, asyncpg_dsn
from app.ledger.invariants import CHECKS
from app.settings import Settings
from app.tenants.config import Role, load_city_files
from bench import dashboard_seed as seeding
from bench.common import rebuild_rollups
from bench.dashboard_history import CityHistory
from bench.dashboard_load import city_plan


async def _violations(connection: asyncpg.Connection) -> dict[str, list]:
    found = {}
    for name, sql in CHECKS.items():
        rows = await connection.fetch(sql.replace(":limit", "5"))
        if rows:
            found[name] = [tuple(row) for row in rows]
    return found


async def test_generated_history_passes_every_ledger_check(database_target: DatabaseTarget, settings: Settings) -> None:
    configs = load_city_files(settings.config_dir)
    partners = {c.slug: [(client.issuer, next(i.kind.value for i in c.issuers if i.slug == client.issuer))
                         for client in c.clients if client.role == Role.PARTNER] for c in configs}
    apps = {c.slug: next(client.slug for client in c.clients if client.role == Role.CITY_APP) for c in configs}
    end = datetime.now(UTC).replace(microsecond=0)
    _, kwargs = asyncpg_dsn(database_target.owner_url)
    connection = await asyncpg.connect(**kwargs)
    try:
        transaction = connection.transaction()
        await transaction.start()
        cities = await seeding.load_cities(connection, partners, apps, end)
        await seeding.use_bulk_codecs(connection)  # from here on, timestamps and numerics as the generator's
        plan = city_plan([city.slug for city in cities], 400, 8_000)
        shared, records = [], 0
        for worker in range(2):
            for city in cities:
                history = CityHistory(city, seeding.Calendar.build(city, end - timedelta(days=400), end),
                                              worker, 2, 7, end)
                history.redeem_try, history.cancel_share = 0.3, 0.5  # exercise redemptions and cancellations
                accounts, count = plan[city.slug]
                for rows in history.chunks(accounts // 2, count // 2, 2000):
                    await seeding.copy_rows(connection, rows)
                    records += rows.records
                shared.append(history.shared)
        await seeding.apply_shared(connection, shared)
        assert records == 8_000
        await connection.execute("ANALYZE")  # the checks' plans at this size
        kinds = {row[0] for row in await connection.fetch("SELECT DISTINCT kind FROM ledger_transactions")}
        assert {"BEHAVIOR_CREDIT", "REDEMPTION", "DONATION", "REDEMPTION_CANCELLED", "EXPIRY"} <= kinds
        statuses = {row[0] for row in await connection.fetch("SELECT DISTINCT status FROM behavior_records")}
        assert statuses == {"CREDITED", "CAPPED"}
        assert not await connection.fetchval(
            "SELECT count(*) FROM rewards WHERE stock_total IS NOT NULL AND stock_taken > stock_total")
        assert await _violations(connection) == {}  # the triggers kept the rollups during the copy
        await rebuild_rollups(connection)
        assert await _violations(connection) == {}
        assert await connection.fetchval("SELECT count(DISTINCT shard) FROM ledger_daily_rollups") == 8
        await transaction.rollback()
    finally:
        await connection.close()
