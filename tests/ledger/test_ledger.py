"""The ledger's own guarantees: balanced transactions, non-negative citizen balances in the database,
append-only postings, and an invariant check that finds a direct SQL edit."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text

from app.db.server import asyncpg_dsn
from app.db.session import TenantScope
from app.ledger.models import CONTRIBUTION, POINTS
from app.ledger.service import NewTransaction, Posting, UnbalancedTransaction
from app.tenants.models import tenant_id_for
from tests.factories import consenting_account, local_time, record, submit

WUHAN = tenant_id_for("wuhan")


def test_an_unbalanced_transaction_is_refused_before_the_database() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    transaction = NewTransaction(tenant_id=WUHAN, kind="BEHAVIOR_CREDIT", status="CREDITED",
                                 occurred_at=datetime.now(UTC),
                                 postings=[Posting(a, CONTRIBUTION, -100), Posting(b, CONTRIBUTION, 99)])
    with pytest.raises(UnbalancedTransaction):
        transaction.check_balanced()
    balanced_per_asset_only = NewTransaction(tenant_id=WUHAN, kind="BEHAVIOR_CREDIT", status="CREDITED",
                                             occurred_at=datetime.now(UTC),
                                             postings=[Posting(a, CONTRIBUTION, -5), Posting(b, POINTS, 5)])
    with pytest.raises(UnbalancedTransaction):
        balanced_per_asset_only.check_balanced()


async def test_the_database_refuses_a_negative_citizen_balance(api, database) -> None:
    await consenting_account(api)
    async with database.transaction(TenantScope.for_tenant(WUHAN)) as session:
        with pytest.raises(Exception, match="citizen_balance_non_negative"):
            async with session.begin_nested():
                await session.execute(text(
                    "UPDATE ledger_accounts SET balance = -1 WHERE account_id IS NOT NULL AND asset = 'POINTS'"))


async def test_postings_and_transactions_are_append_only_for_the_app(api, database) -> None:
    account_id = await consenting_account(api)
    await submit(api, "wuhan-tong", [record(account_id, "bus", 1, local_time(1))])
    async with database.transaction(TenantScope.for_tenant(WUHAN)) as session:
        for statement in ("UPDATE ledger_postings SET amount = amount * 2", "DELETE FROM ledger_postings",
                          "UPDATE ledger_transactions SET points = 0", "DELETE FROM ledger_transactions"):
            with pytest.raises(Exception, match="permission denied"):
                async with session.begin_nested():
                    await session.execute(text(statement))


async def test_verify_finds_and_locates_a_direct_sql_edit(committed_api, database_target) -> None:
    account_id = await consenting_account(committed_api)
    await submit(committed_api, "wuhan-tong", [record(account_id, "bus", 1, local_time(1))])
    _, kwargs = asyncpg_dsn(database_target.owner_url)
    owner = await asyncpg.connect(**kwargs)  # the table owner: what someone with database access could do
    try:
        posting_id = await owner.fetchval(
            "SELECT p.id FROM ledger_postings p JOIN ledger_accounts la ON la.id = p.ledger_account_id "
            "JOIN accounts a ON a.id = la.account_id WHERE p.asset = 'POINTS' ORDER BY p.id DESC LIMIT 1")
        transaction_id = await owner.fetchval("SELECT transaction_id FROM ledger_postings WHERE id = $1", posting_id)
        await owner.execute("UPDATE ledger_postings SET amount = amount + 1000 WHERE id = $1", posting_id)
        try:
            result = _verify(database_target)
            assert result.returncode == 1
            assert "wuhan: " in result.stdout and "violation" in result.stdout
            assert f"transaction_balances: {transaction_id}" in result.stdout
            assert "balance_equals_postings" in result.stdout and "activity_matches_postings" in result.stdout
            assert result.stdout.strip().endswith("ledger FAILED verification")
        finally:
            await owner.execute("UPDATE ledger_postings SET amount = amount - 1000 WHERE id = $1", posting_id)
    finally:
        await owner.close()
    assert _verify(database_target).returncode == 0


def _verify(database_target, *arguments: str) -> subprocess.CompletedProcess:
    env = {"CARBON_DATABASE_URL": database_target.owner_url, "PATH": str(Path(sys.executable).parent),
           "CARBON_APP_DATABASE_URL": database_target.app_url}
    return subprocess.run([str(Path(sys.executable).parent / "carbon-inclusive"), "verify-ledger", *arguments],
                          capture_output=True, text=True, env=env, timeout=120)


def test_verify_ledger_command_passes_on_a_sound_ledger(database_target) -> None:
    result = _verify(database_target)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "wuhan: ok" in result.stdout and result.stdout.strip().endswith("ledger verified")


@pytest.mark.parametrize(("anchor", "says"), [
    ("WUHAN:1:" + "ab" * 32, "no city 'WUHAN' (the cities are beijing, guizhou, shanghai, wuhan)"),
    ("nocity:1:" + "ab" * 32, "no city 'nocity'"),
    ("wuhan:1:ab", "a 64-digit hex root"),
    ("wuhan:0:" + "ab" * 32, "a checkpoint number from 1"),
    ("wuhan:1", "expected SLUG:NUMBER:ROOT"),
])
def test_an_anchor_that_names_no_city_or_no_root_is_refused_not_ignored(database_target, anchor, says) -> None:
    result = _verify(database_target, "--anchor", anchor)
    assert result.returncode == 2 and says in result.stderr, result.stdout + result.stderr
    assert "ledger verified" not in result.stdout


async def test_the_daily_rollups_follow_the_ledger_and_an_edit_is_found(committed_api, database_target) -> None:
    """The dashboard's rollups (migration 0011) are written with every ledger statement; verify-ledger
    finds a rollup that no longer equals the ledger."""
    account_id = await consenting_account(committed_api)
    await submit(committed_api, "wuhan-tong", [record(account_id, "bus", 1, local_time(1)),
                                               record(account_id, "subway", 1, local_time(2))])
    _, kwargs = asyncpg_dsn(database_target.owner_url)
    owner = await asyncpg.connect(**kwargs)
    try:
        key = await owner.fetchrow(
            "SELECT tenant_id, local_date, kind, behavior_code, provider, reward_code, shard FROM ledger_daily_rollups "
            "WHERE behavior_code = 'subway' ORDER BY local_date DESC LIMIT 1")
        assert key is not None, "a credit must leave its rollup"
        opened = await owner.fetchval("SELECT sum(events) FROM account_daily_rollups WHERE event = 'OPENED'")
        assert opened == await owner.fetchval("SELECT count(*) FROM account_events WHERE kind = 'OPENED'") > 0
        where = ("tenant_id = $1 AND local_date = $2 AND kind = $3 AND behavior_code = $4 AND provider = $5 "
                 "AND reward_code = $6 AND shard = $7")
        await owner.execute(f"UPDATE ledger_daily_rollups SET points = points + 5 WHERE {where}", *key.values())
        try:
            result = _verify(database_target)
            assert result.returncode == 1 and "rollups_match_ledger" in result.stdout, result.stdout
            assert "subway" in result.stdout
        finally:
            await owner.execute(f"UPDATE ledger_daily_rollups SET points = points - 5 WHERE {where}", *key.values())
    finally:
        await owner.close()
    assert _verify(database_target).returncode == 0


async def test_the_ledger_audit_is_not_cut_off_by_the_request_statement_timeout(app_engine) -> None:
    """Each check reads a city's whole ledger; under the connections' 30 s request timeout a large city's
    `verify-ledger` (and a busy test run's teardown check) was cancelled. Only the audit's transaction
    lifts it."""
    from sqlalchemy import text as sql

    from app.db.session import Database, TenantScope
    from app.ledger.invariants import verify_ledger
    from app.tenants.models import tenant_id_for

    database = Database(app_engine)
    async with database.transaction(TenantScope.for_tenant(tenant_id_for("wuhan"))) as session:
        assert (await session.execute(sql("SHOW statement_timeout"))).scalar() == "30s"
        assert await verify_ledger(session) == []
        assert (await session.execute(sql("SHOW statement_timeout"))).scalar() == "0"
    async with database.transaction(TenantScope.for_tenant(tenant_id_for("wuhan"))) as session:
        assert (await session.execute(sql("SHOW statement_timeout"))).scalar() == "30s"
