"""Active accounts for the dashboard: each account's active local days, and two rollups to count the
accounts active in any period exactly without scanning them

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-29

An account is *active* on a local day when it earned (`BEHAVIOR_CREDIT`) or spent (`REDEMPTION`,
`DONATION`) that day: the citizen acted. Reversals, cancellations and expiry are the platform's doing.

Distinct counts do not add up across days, so the dashboard cannot sum a per-day count over a period.
Instead, for each account, consecutive active days (p, d) form a *link*; an account active in [from, to]
is counted once, on its first active day in the period, and that is the only active day in the period
without a link from inside it:

    active(from, to) = Σ_{d in [from, to]} A(d) − #{links (p, d) : from ≤ p and d ≤ to}

where A(d) is the number of accounts active on day d. Both terms are small, bounded reads whatever the
volume: A over the period's days, and only the links that start inside the period (a period is at most
366 days, so links longer than that are never read and not kept).

Tables:
- `account_activity_days` (tenant, account, local day): personal, tenant-scoped; the source of truth
  both rollups are checked against (`verify-ledger`: `activity_days_match_ledger`,
  `active_rollups_match_days`).
- `active_account_rollups` (tenant, day, shard) → A(d); `active_account_links` (tenant, p, d, shard) →
  links. Aggregates only: regulators may read them.

A statement-level trigger on `ledger_transactions` keeps all three in step, in the writing transaction.
Only an account's first activity of a day writes anything beyond one index probe (`ON CONFLICT DO
NOTHING`); rows are sharded by `txid % 8` and upserted in key order (no hot rows, no deadlocks), as in
0011. Days may arrive out of order (late records): a new day between two known ones re-links the later
one. Correctness under concurrency rests on the platform's per-account lock: every write that creates a
citizen transaction has locked the citizen's ledger accounts first (`lock_citizen_ledger_accounts`, the
redemption functions), so two transactions never add days of one account at once.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

from app.db.rls import protect_tenant_table

revision: str = "0013"
down_revision: Union[str, None] = "0012"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

SHARDS = 8
ACTIVE_KINDS = "('BEHAVIOR_CREDIT', 'REDEMPTION', 'DONATION')"
MAX_LINK_DAYS = 366

_TIME_ZONES = """
    SELECT DISTINCT ON (v.tenant_id) v.tenant_id, v.timezone FROM tenant_config_versions v
     ORDER BY v.tenant_id, v.effective_from DESC, v.version DESC"""

# The active (tenant, account, local day) triples of the ledger rows in `source`.
_ACTIVE_DAYS = f"""
    SELECT DISTINCT n.tenant_id, n.account_id, (n.occurred_at AT TIME ZONE tz.timezone)::date
      FROM {{source}} n JOIN ({_TIME_ZONES}) tz ON tz.tenant_id = n.tenant_id
     WHERE n.account_id IS NOT NULL AND n.kind IN {ACTIVE_KINDS}
     ORDER BY 1, 2, 3"""

_PREVIOUS_DAY = """
    SELECT max(a.local_date) AS day FROM account_activity_days a
     WHERE a.tenant_id = {row}.tenant_id AND a.account_id = {row}.account_id AND a.local_date < {row}.local_date"""

TRIGGER_FUNCTION = f"""
CREATE OR REPLACE FUNCTION carbon_rollup_active_accounts() RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER AS $fn$
BEGIN
    -- Every part of this statement sees account_activity_days as it was before the statement's insert:
    -- `a` below holds the known days only, `fresh` the new ones.
    WITH fresh AS (
        INSERT INTO account_activity_days AS d (tenant_id, account_id, local_date)
        {_ACTIVE_DAYS.format(source="new_rows")}
        ON CONFLICT DO NOTHING
        RETURNING d.tenant_id, d.account_id, d.local_date
    ), fresh_linked AS (
        -- a new day's previous day: the latest known one before it, or a new one in between
        SELECT f.tenant_id, f.local_date,
               greatest(p.day, lag(f.local_date) OVER (PARTITION BY f.tenant_id, f.account_id
                                                        ORDER BY f.local_date)) AS previous
          FROM fresh f LEFT JOIN LATERAL ({_PREVIOUS_DAY.format(row="f")}) p ON true
    ), relinked AS (
        -- a known day right after a new day: its link now starts at the latest new day before it
        SELECT f.tenant_id, f.account_id, o.local_date, max(f.local_date) AS previous
          FROM fresh f CROSS JOIN LATERAL (
               SELECT a.local_date FROM account_activity_days a
                WHERE a.tenant_id = f.tenant_id AND a.account_id = f.account_id AND a.local_date > f.local_date
                ORDER BY a.local_date LIMIT 1) o
         GROUP BY 1, 2, 3
    ), links AS (
        SELECT tenant_id, previous, local_date, 1 AS delta FROM fresh_linked WHERE previous IS NOT NULL
        UNION ALL
        SELECT r.tenant_id, v.previous, r.local_date, v.delta
          FROM relinked r LEFT JOIN LATERAL ({_PREVIOUS_DAY.format(row="r")}) p ON true
         CROSS JOIN LATERAL (VALUES (p.day, -1), (r.previous, 1)) AS v(previous, delta)
         WHERE v.previous IS NOT NULL
    ), days AS (
        INSERT INTO active_account_rollups AS r (tenant_id, local_date, shard, accounts)
        SELECT tenant_id, local_date, (txid_current() % {SHARDS})::smallint, count(*)
          FROM fresh_linked GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (tenant_id, local_date, shard) DO UPDATE SET accounts = r.accounts + excluded.accounts
    )
    INSERT INTO active_account_links AS r (tenant_id, first_day, local_date, shard, accounts)
    SELECT tenant_id, previous, local_date, (txid_current() % {SHARDS})::smallint, sum(delta)
      FROM links WHERE local_date - previous <= {MAX_LINK_DAYS}
     GROUP BY 1, 2, 3 HAVING sum(delta) <> 0 ORDER BY 1, 2, 3
    ON CONFLICT (tenant_id, first_day, local_date, shard) DO UPDATE SET accounts = r.accounts + excluded.accounts;
    RETURN NULL;
END
$fn$
"""

# From an empty start (the tables truncated): every active day of the ledger, then both rollups.
BACKFILL = (
    "INSERT INTO account_activity_days (tenant_id, account_id, local_date)"
    + _ACTIVE_DAYS.format(source="ledger_transactions"),
    "INSERT INTO active_account_rollups (tenant_id, local_date, shard, accounts) "
    "SELECT tenant_id, local_date, 0, count(*) FROM account_activity_days GROUP BY 1, 2",
    f"""INSERT INTO active_account_links (tenant_id, first_day, local_date, shard, accounts)
    SELECT tenant_id, previous, local_date, 0, count(*) FROM (
        SELECT tenant_id, local_date,
               lag(local_date) OVER (PARTITION BY tenant_id, account_id ORDER BY local_date) AS previous
          FROM account_activity_days) x
     WHERE local_date - previous <= {MAX_LINK_DAYS} GROUP BY 1, 2, 3""",
)


def upgrade() -> None:
    op.create_table(
        "account_activity_days",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("local_date", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("tenant_id", "account_id", "local_date"),
    )
    op.create_table(
        "active_account_rollups",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("local_date", sa.Date(), nullable=False),
        sa.Column("shard", sa.SmallInteger(), nullable=False),
        sa.Column("accounts", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("tenant_id", "local_date", "shard"),
    )
    op.create_table(
        "active_account_links",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("first_day", sa.Date(), nullable=False),
        sa.Column("local_date", sa.Date(), nullable=False),
        sa.Column("shard", sa.SmallInteger(), nullable=False),
        sa.Column("accounts", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("tenant_id", "first_day", "local_date", "shard"),
    )
    for statement in protect_tenant_table("account_activity_days", app_privileges="SELECT, INSERT"):
        op.execute(statement)
    for table in ("active_account_rollups", "active_account_links"):
        for statement in protect_tenant_table(table, app_privileges="SELECT, INSERT, UPDATE", regulator_read=True):
            op.execute(statement)
    op.execute(TRIGGER_FUNCTION)
    op.execute("CREATE TRIGGER active_account_rollup AFTER INSERT ON ledger_transactions REFERENCING NEW TABLE AS "
               "new_rows FOR EACH STATEMENT EXECUTE FUNCTION carbon_rollup_active_accounts()")
    for statement in BACKFILL:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS active_account_rollup ON ledger_transactions")
    op.execute("DROP FUNCTION IF EXISTS carbon_rollup_active_accounts()")
    for table in ("active_account_links", "active_account_rollups", "account_activity_days"):
        op.drop_table(table)
