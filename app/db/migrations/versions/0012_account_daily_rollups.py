"""account_daily_rollups: accounts' lifecycle events per city, local day and event, kept by a trigger

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29

The dashboard's account figures come from `account_events` (append-only: OPENED, BANK_LINKED, FROZEN,
UNFROZEN, CLOSED), summed per (city, local day, event) by a statement-level trigger into sharded rows,
as migration 0011 does for the ledger: accounts opened in a period = Σ OPENED; bank-linked accounts at
a day's end = Σ BANK_LINKED up to it; guests = opened − bank-linked. `verify-ledger` checks the rollups
against the events (`account_rollups_match_events`). Aggregates only: regulators may read them.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

from app.db.rls import protect_tenant_table

revision: str = "0012"
down_revision: Union[str, None] = "0011"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

SHARDS = 8
_SUMMED = """
    SELECT n.tenant_id, (n.at AT TIME ZONE tz.timezone)::date, n.kind, {shard}, count(*)
      FROM {source} n
      JOIN (SELECT DISTINCT ON (v.tenant_id) v.tenant_id, v.timezone FROM tenant_config_versions v
             ORDER BY v.tenant_id, v.effective_from DESC, v.version DESC) tz ON tz.tenant_id = n.tenant_id
     GROUP BY 1, 2, 3, 4
"""

TRIGGER_FUNCTION = f"""
CREATE OR REPLACE FUNCTION carbon_rollup_account_events() RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER AS $fn$
BEGIN
    INSERT INTO account_daily_rollups AS r (tenant_id, local_date, event, shard, events)
    {_SUMMED.format(shard=f"(txid_current() % {SHARDS})::smallint", source="new_rows")}
     ORDER BY 1, 2, 3, 4
    ON CONFLICT (tenant_id, local_date, event, shard) DO UPDATE SET events = r.events + excluded.events;
    RETURN NULL;
END
$fn$
"""

BACKFILL = ("INSERT INTO account_daily_rollups (tenant_id, local_date, event, shard, events)"
            + _SUMMED.format(shard="0::smallint", source="account_events"))


def upgrade() -> None:
    op.create_table(
        "account_daily_rollups",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("local_date", sa.Date(), nullable=False),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("shard", sa.SmallInteger(), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("tenant_id", "local_date", "event", "shard"),
    )
    for statement in protect_tenant_table("account_daily_rollups", app_privileges="SELECT, INSERT, UPDATE",
                                          regulator_read=True):
        op.execute(statement)
    op.execute(TRIGGER_FUNCTION)
    op.execute("CREATE TRIGGER account_daily_rollup AFTER INSERT ON account_events REFERENCING NEW TABLE AS "
               "new_rows FOR EACH STATEMENT EXECUTE FUNCTION carbon_rollup_account_events()")
    op.execute(BACKFILL)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS account_daily_rollup ON account_events")
    op.execute("DROP FUNCTION IF EXISTS carbon_rollup_account_events()")
    op.drop_table("account_daily_rollups")
