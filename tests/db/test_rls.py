"""Row-level security: the mechanism every tenant-owned table gets from its first migration.

(The exhaustive, generated isolation tests over every field and role come with the public-clients work;
these prove the mechanism itself.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from sqlalchemy import text

from app.db.metadata import metadata
from app.db.rls import APP_ROLE
from app.db.server import asyncpg_dsn
from app.db.session import NO_TENANT, TenantScope
from app.tenants.models import tenant_id_for

WUHAN = tenant_id_for("wuhan")
BEIJING = tenant_id_for("beijing")


async def _tables(session) -> list[str]:
    rows = await session.execute(text(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"))
    return sorted(row[0] for row in rows)


async def test_every_table_has_forced_rls_and_both_policies(database) -> None:
    async with database.transaction(NO_TENANT) as session:
        tables = await _tables(session)
        assert set(tables) == set(metadata.tables), "a table exists that the models do not declare (or v.v.)"
        rows = (await session.execute(text("""
            SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, pg_get_userbyid(c.relowner) AS owner,
                   array(SELECT polname::text FROM pg_policy p WHERE p.polrelid = c.oid ORDER BY polname) AS policies
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname <> 'alembic_version'
        """))).mappings().all()
    assert len(rows) == len(tables)
    regulator_readable = {"tenants", "tenant_config_versions", "behavior_rules", "issuers", "rewards",
                          "ledger_daily_rollups", "account_daily_rollups", "active_account_rollups",
                          "active_account_links", "market_lots", "ledger_day_flows", "ledger_flow_totals",
                          "account_event_totals"}  # aggregates, no personal data
    for row in rows:
        assert row["relrowsecurity"] and row["relforcerowsecurity"], row["relname"]
        expected = ["regulator_read", "tenant_isolation"] if row["relname"] in regulator_readable else ["tenant_isolation"]
        assert row["policies"] == expected, row["relname"]
        assert row["owner"] != APP_ROLE, f"{row['relname']} is owned by the app role, which would bypass RLS"


async def test_every_tenant_owned_table_has_a_tenant_id(database) -> None:
    for name, table in metadata.tables.items():
        assert "tenant_id" in table.c or name == "tenants", name


async def test_app_role_with_no_tenant_sees_no_rows(database) -> None:
    async with database.transaction(NO_TENANT) as session:
        assert (await session.execute(text("SELECT current_user"))).scalar() == APP_ROLE
        for table in await _tables(session):
            assert (await session.execute(text(f"SELECT count(*) FROM {table}"))).scalar() == 0, table


async def test_app_role_with_a_tenant_sees_only_that_tenant(database) -> None:
    async with database.transaction(TenantScope.for_tenant(WUHAN)) as session:
        for table in ("tenant_config_versions", "behavior_rules", "issuers", "rewards"):
            tenants = (await session.execute(text(f"SELECT DISTINCT tenant_id FROM {table}"))).scalars().all()
            assert tenants == [WUHAN], table
        assert (await session.execute(text("SELECT slug FROM tenants"))).scalars().all() == ["wuhan"]


async def test_app_role_cannot_write_into_another_tenant(database) -> None:
    async with database.transaction(TenantScope.for_tenant(WUHAN)) as session:
        changed = await session.execute(text("UPDATE rewards SET cost_points = 0 WHERE tenant_id = :t"), {"t": BEIJING})
        assert changed.rowcount == 0
        with pytest.raises(Exception, match="row-level security"):
            async with session.begin_nested():
                await session.execute(text(
                    "INSERT INTO issuers (id, tenant_id, slug, kind, name_en, name_zh, position, active) "
                    "VALUES (gen_random_uuid(), :t, 'intruder', 'BANK', 'x', 'x', 99, true)"), {"t": BEIJING})


async def test_regulator_reads_configuration_across_tenants_and_cannot_write(database) -> None:
    async with database.transaction(TenantScope.regulator()) as session:
        slugs = (await session.execute(text("SELECT slug FROM tenants ORDER BY slug"))).scalars().all()
        assert slugs == ["beijing", "guizhou", "shanghai", "wuhan"]
        with pytest.raises(Exception, match="permission denied"):
            async with session.begin_nested():
                await session.execute(text("UPDATE rewards SET cost_points = 0"))


@pytest.mark.parametrize("table", ["accounts", "account_events", "consents", "behavior_records",
                                   "behavior_rejections", "daily_behavior_totals", "ledger_accounts",
                                   "ledger_transactions", "ledger_postings", "redemptions", "entitlements"])
async def test_regulator_cannot_read_personal_tables(database, table) -> None:
    async with database.transaction(TenantScope.regulator()) as session:
        with pytest.raises(Exception, match="permission denied"):
            async with session.begin_nested():
                await session.execute(text(f"SELECT count(*) FROM {table}"))


async def test_scope_of_a_request_cannot_be_changed(database) -> None:
    from app.db.session import ScopeLocked, apply_scope

    async with database.sessionmaker() as session, session.begin():
        await apply_scope(session, TenantScope.regulator(), lock=True)
        with pytest.raises(ScopeLocked):
            await apply_scope(session, TenantScope.for_tenant(WUHAN))


async def test_settings_do_not_leak_between_transactions(database_target) -> None:
    """The scope is transaction-local: a pooled connection reused afterwards sees nothing."""
    _, kwargs = asyncpg_dsn(database_target.app_url)
    connection = await asyncpg.connect(**kwargs)
    try:
        async with connection.transaction():
            await connection.execute("SELECT set_config('app.tenant_id', $1, true)", str(WUHAN))
            assert await connection.fetchval("SELECT count(*) FROM tenants") == 1
        assert await connection.fetchval("SELECT count(*) FROM tenants") == 0
        assert await connection.fetchval("SELECT count(*) FROM rewards") == 0
    finally:
        await connection.close()


async def test_rls_alone_hides_and_protects_every_table_of_another_tenant(api, database, settings) -> None:
    """Bypassing the resolvers: as the app role scoped to Beijing, no statement sees or changes Wuhan."""
    from app.graphql.trusted import compile_document, register_documents
    from app.ledger.chain import checkpoint
    from app.ledger.signing import load_signer
    from tests.factories import SHANGHAI, consenting_account, local_time, make_reward, record, redeem, submit

    account_id = await consenting_account(api)  # Wuhan rows in the personal tables too
    await submit(api, "wuhan-tong", [record(account_id, "bus", 1, local_time(1)),
                                     record(account_id, "teleport", 1, local_time(1))])
    await redeem(api, account_id, await make_reward(database, cost=1))
    created = await api.query("""mutation { createReward(input: {code: "rls-item", kind: REWARD, fields: {
        name: {en: "RLS", zh: "RLS"}, cost: "1", sponsor: "hankou-bank"}}) { userErrors { code } } }""",
                              as_="wuhan-admin")  # an audit event
    assert created["createReward"]["userErrors"] == []
    async with database.transaction(TenantScope.for_tenant(WUHAN)) as session:
        await register_documents(session, [WUHAN], [compile_document("{ tenants { slug } }", "Slugs")], "test")
    await submit(api, "wuhan-tong", [record(account_id, "shared_bike", 20, local_time(5))])  # a market lot:
    day = (datetime.now(SHANGHAI) - timedelta(days=5)).date().isoformat()
    lot = (await api.query(f"""mutation {{ issueMarketLot(input: {{tenant: "wuhan", periodFrom: "{day}",
        periodTo: "{day}", idempotencyKey: "rls"}}) {{ lot {{ id }} }} }}""", as_="wuhan-admin"))["issueMarketLot"]["lot"]["id"]
    for step in (f'listMarketLot(input: {{lotId: "{lot}", venue: "v"}})',
                 f'sellMarketLot(input: {{lotId: "{lot}", buyer: "b", priceYuan: "1"}})',
                 f'retireCredits(input: {{lotId: "{lot}", kilograms: 1, beneficiary: "b", reason: "r", idempotencyKey: "k"}})'):
        assert (await api.query(f"mutation {{ {step} {{ userErrors {{ code }} }} }}", as_="wuhan-admin"))
    async with database.transaction(TenantScope.for_tenant(WUHAN)) as session:  # a ledger checkpoint
        assert await checkpoint(session, WUHAN, load_signer(settings), datetime.now(UTC)) is not None
    async with database.transaction(TenantScope.for_tenant(WUHAN)) as session:
        wuhan_rows = {table: (await session.execute(text(f"SELECT count(*) FROM {table}"))).scalar()
                      for table in metadata.tables}
    assert all(count > 0 for table, count in wuhan_rows.items() if table != "entitlements"), wuhan_rows
    async with database.transaction(TenantScope.for_tenant(BEIJING)) as session:
        for table in metadata.tables:
            key = "id" if table == "tenants" else "tenant_id"
            seen = (await session.execute(text(f"SELECT count(*) FROM {table} WHERE {key} = :w"), {"w": WUHAN})).scalar()
            assert seen == 0, table
            try:
                async with session.begin_nested():
                    changed = await session.execute(text(f"UPDATE {table} SET {key} = {key} WHERE {key} = :w"),
                                                    {"w": WUHAN})
                    assert changed.rowcount == 0, table
            except AssertionError:
                raise
            except Exception as error:  # append-only tables: no UPDATE grant at all
                assert "permission denied" in str(error), (table, error)
