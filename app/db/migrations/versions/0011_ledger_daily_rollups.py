"""ledger_daily_rollups: the ledger summed per city, local day and dimension, kept in step by a trigger

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29

The regulators' dashboard (issue 6) reads figures that must equal the ledger exactly without scanning
it per request. Every insert statement on `ledger_transactions` (ingestion's set-based batch, a
redemption, a batch of them, a cancellation, a reversal, an expiry run) adds its rows, summed per
(city, local day of `occurred_at`, kind, behaviour, provider, catalogue item), to this table in the
same transaction, by a statement-level trigger: one upsert per statement, whatever its size.

No hot rows: each transaction writes the shard `txid % 8` of each row it touches, so concurrent
ingestion batches of one city rarely touch the same rows; readers sum the shards. Rows are upserted in
key order, so two writers of one shard cannot deadlock. The local day uses the city's time zone of its
latest configuration version (the time zone is set by the city file). `verify-ledger` checks that the
rollups equal the ledger (check `rollups_match_ledger`). Aggregates only: regulators may read them.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

from app.db.rls import protect_tenant_table

revision: str = "0011"
down_revision: Union[str, None] = "0010"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

SHARDS = 8

# The ledger rows of `source` summed per rollup key: the trigger's statement and the backfill.
_SUMMED = """
    SELECT n.tenant_id, (n.occurred_at AT TIME ZONE tz.timezone)::date, n.kind, coalesce(n.behavior_code, ''),
           coalesce(b.provider_issuer_id::text, ''), coalesce(rw.code, ''), {shard},
           count(*), sum(n.reduction_mg), sum(n.points)
      FROM {source} n
      JOIN (SELECT DISTINCT ON (v.tenant_id) v.tenant_id, v.timezone FROM tenant_config_versions v
             WHERE v.tenant_id IN (SELECT DISTINCT tenant_id FROM {source})
             ORDER BY v.tenant_id, v.effective_from DESC, v.version DESC) tz ON tz.tenant_id = n.tenant_id
      LEFT JOIN behavior_records b ON b.tenant_id = n.tenant_id AND b.id = n.behavior_record_id
      LEFT JOIN redemptions rd ON rd.tenant_id = n.tenant_id AND rd.id = n.redemption_id
      LEFT JOIN rewards rw ON rw.tenant_id = rd.tenant_id AND rw.id = rd.reward_id
     GROUP BY 1, 2, 3, 4, 5, 6, 7
"""
_COLUMNS = ("INSERT INTO ledger_daily_rollups AS r (tenant_id, local_date, kind, behavior_code, provider, reward_code, "
            "shard, transactions, reduction_mg, points)")

TRIGGER_FUNCTION = f"""
CREATE OR REPLACE FUNCTION carbon_rollup_ledger() RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER AS $fn$
BEGIN
    {_COLUMNS}
    {_SUMMED.format(shard=f"(txid_current() % {SHARDS})::smallint", source="new_rows")}
     ORDER BY 1, 2, 3, 4, 5, 6, 7
    ON CONFLICT (tenant_id, local_date, kind, behavior_code, provider, reward_code, shard) DO UPDATE
       SET transactions = r.transactions + excluded.transactions, reduction_mg = r.reduction_mg + excluded.reduction_mg,
           points = r.points + excluded.points;
    RETURN NULL;
END
$fn$
"""

BACKFILL = _COLUMNS + _SUMMED.format(shard="0::smallint", source="ledger_transactions")


def upgrade() -> None:
    op.create_table(
        "ledger_daily_rollups",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("local_date", sa.Date(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("behavior_code", sa.Text(), nullable=False),
        sa.Column("provider", sa.Text(), nullable=False),
        sa.Column("reward_code", sa.Text(), nullable=False),
        sa.Column("shard", sa.SmallInteger(), nullable=False),
        sa.Column("transactions", sa.BigInteger(), nullable=False),
        sa.Column("reduction_mg", sa.BigInteger(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("tenant_id", "local_date", "kind", "behavior_code", "provider", "reward_code", "shard"),
    )
    for statement in protect_tenant_table("ledger_daily_rollups", app_privileges="SELECT, INSERT, UPDATE",
                                          regulator_read=True):
        op.execute(statement)
    op.execute(TRIGGER_FUNCTION)
    op.execute("CREATE TRIGGER ledger_daily_rollup AFTER INSERT ON ledger_transactions REFERENCING NEW TABLE AS "
               "new_rows FOR EACH STATEMENT EXECUTE FUNCTION carbon_rollup_ledger()")
    op.execute(BACKFILL)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS ledger_daily_rollup ON ledger_transactions")
    op.execute("DROP FUNCTION IF EXISTS carbon_rollup_ledger()")
    op.drop_table("ledger_daily_rollups")
