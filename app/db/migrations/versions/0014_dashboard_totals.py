"""the dashboard's headline figures in O(period): per-day flows and all-time totals, kept by triggers

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-29

Measured with `make bench-dashboard` (p95 194 ms at 1 million records): the headline read every row of
`ledger_daily_rollups` up to the period's end (points outstanding are all history: 121,000 rows, eight
shards per key, growing every day) and of `account_daily_rollups` (accounts at the period's end), and
the flows and series read the period's detailed rows twice more. Three narrow tables replace those reads:

* `ledger_day_flows` (city, local day, shard): the day's transactions, reduction, points issued,
  redeemed and expired (signs as the dashboard shows them). Flows and series read the period's days only.
* `ledger_flow_totals` (city, shard): the same, all time. Points outstanding at the end of day d = all
  time − the days after d (none when the period ends today).
* `account_event_totals` (city, event, shard): account events, all time; accounts at the end of d = all
  time − the days after d in `account_daily_rollups`.

The ledger's are kept by 0011's trigger function, extended: it sums the statement's rows once per
rollup key and upserts the rollups, the day flows and the totals from that sum (a second trigger cost
about 15% of one-row ledger transactions' throughput in `make bench-redeem` (a); this, about 10%).
The account totals get a trigger of their own on `account_events`. As in 0011 and 0012: rows of shard
`txid % 8`, upserted in key order (no hot rows, no deadlocks). `verify-ledger` checks them against the
rollups they summarise (`flows_match_rollups`, `account_totals_match_rollups`). Aggregates only:
regulators may read them.
"""
from importlib import import_module
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

from app.db.rls import protect_tenant_table

revision: str = "0014"
down_revision: Union[str, None] = "0013"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

SHARDS = 8
_TIME_ZONES = """
    SELECT DISTINCT ON (v.tenant_id) v.tenant_id, v.timezone FROM tenant_config_versions v
     ORDER BY v.tenant_id, v.effective_from DESC, v.version DESC"""
_FLOW_COLUMNS = "transactions, reduction_mg, issued, redeemed, expired"
# Points issued: credits net of reversals, and market lots' sale proceeds (a kind added by 0019), as the
# dashboard counts them.
_ISSUED = "'BEHAVIOR_CREDIT', 'BEHAVIOR_REVERSAL', 'LOT_PROCEEDS'"
# The ledger rows of `source` per city and local day, classified as the dashboard reads them.
_DAY_FLOWS = f"""
    SELECT n.tenant_id, (n.occurred_at AT TIME ZONE tz.timezone)::date, {{shard}}, count(*),
           coalesce(sum(n.reduction_mg) FILTER (WHERE n.kind IN ('BEHAVIOR_CREDIT', 'BEHAVIOR_REVERSAL')), 0),
           coalesce(sum(n.points) FILTER (WHERE n.kind IN ({_ISSUED})), 0),
           coalesce(-sum(n.points) FILTER (WHERE n.kind IN ('REDEMPTION', 'DONATION', 'REDEMPTION_CANCELLED')), 0),
           coalesce(-sum(n.points) FILTER (WHERE n.kind = 'EXPIRY'), 0)
      FROM {{source}} n JOIN ({_TIME_ZONES}) tz ON tz.tenant_id = n.tenant_id
     GROUP BY 1, 2, 3"""
_ADD_FLOWS = ", ".join(f"{c} = r.{c} + excluded.{c}" for c in _FLOW_COLUMNS.split(", "))
_SHARD = f"(txid_current() % {SHARDS})::smallint"

_ROLLUPS = import_module("app.db.migrations.versions.0011_ledger_daily_rollups")
_FLOWS_OF_SUMMED = f"""
    SELECT tenant_id, local_date, shard, sum(transactions),
           sum(reduction_mg) FILTER (WHERE kind IN ('BEHAVIOR_CREDIT', 'BEHAVIOR_REVERSAL')),
           sum(points) FILTER (WHERE kind IN ({_ISSUED})),
           -sum(points) FILTER (WHERE kind IN ('REDEMPTION', 'DONATION', 'REDEMPTION_CANCELLED')),
           -sum(points) FILTER (WHERE kind = 'EXPIRY')"""

# 0011's function, extended: the ledger rows of the statement are summed once, per rollup key, and that
# sum feeds the three upserts (one trigger call per statement, as before 0014).
LEDGER_TRIGGER_FUNCTION = f"""
CREATE OR REPLACE FUNCTION carbon_rollup_ledger() RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER AS $fn$
BEGIN
    WITH summed (tenant_id, local_date, kind, behavior_code, provider, reward_code, shard, transactions, reduction_mg,
                 points) AS MATERIALIZED (
        {_ROLLUPS._SUMMED.format(shard=f"(txid_current() % {SHARDS})::smallint", source="new_rows")}
    ), rollups AS (
        {_ROLLUPS._COLUMNS}
        SELECT * FROM summed ORDER BY 1, 2, 3, 4, 5, 6, 7
        ON CONFLICT (tenant_id, local_date, kind, behavior_code, provider, reward_code, shard) DO UPDATE
           SET transactions = r.transactions + excluded.transactions,
               reduction_mg = r.reduction_mg + excluded.reduction_mg, points = r.points + excluded.points
    ), days AS (
        INSERT INTO ledger_day_flows AS r (tenant_id, local_date, shard, {_FLOW_COLUMNS})
        SELECT tenant_id, local_date, shard, n, coalesce(mg, 0), coalesce(issued, 0), coalesce(redeemed, 0),
               coalesce(expired, 0)
          FROM ({_FLOWS_OF_SUMMED} FROM summed GROUP BY 1, 2, 3)
               x(tenant_id, local_date, shard, n, mg, issued, redeemed, expired)
         ORDER BY 1, 2, 3
        ON CONFLICT (tenant_id, local_date, shard) DO UPDATE SET {_ADD_FLOWS}
    )
    INSERT INTO ledger_flow_totals AS r (tenant_id, shard, {_FLOW_COLUMNS})
    SELECT tenant_id, shard, n, coalesce(mg, 0), coalesce(issued, 0), coalesce(redeemed, 0), coalesce(expired, 0)
      FROM ({_FLOWS_OF_SUMMED.replace("local_date, ", "")} FROM summed GROUP BY 1, 2)
           x(tenant_id, shard, n, mg, issued, redeemed, expired)
     ORDER BY 1, 2
    ON CONFLICT (tenant_id, shard) DO UPDATE SET {_ADD_FLOWS};
    RETURN NULL;
END
$fn$
"""

ACCOUNT_TRIGGER_FUNCTION = f"""
CREATE OR REPLACE FUNCTION carbon_rollup_account_totals() RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER AS $fn$
BEGIN
    INSERT INTO account_event_totals AS r (tenant_id, event, shard, events)
    SELECT tenant_id, kind, {_SHARD}, count(*) FROM new_rows GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (tenant_id, event, shard) DO UPDATE SET events = r.events + excluded.events;
    RETURN NULL;
END
$fn$
"""

# From an empty start (the tables truncated); ledger_day_flows straight from the ledger, like the rollups.
BACKFILL = (
    f"INSERT INTO ledger_day_flows (tenant_id, local_date, shard, {_FLOW_COLUMNS})"
    + _DAY_FLOWS.format(shard="0::smallint", source="ledger_transactions"),
    f"INSERT INTO ledger_flow_totals (tenant_id, shard, {_FLOW_COLUMNS}) SELECT tenant_id, 0, sum(transactions), "
    "sum(reduction_mg), sum(issued), sum(redeemed), sum(expired) FROM ledger_day_flows GROUP BY tenant_id",
    "INSERT INTO account_event_totals (tenant_id, event, shard, events) "
    "SELECT tenant_id, kind, 0, count(*) FROM account_events GROUP BY 1, 2",
)



def _flows() -> list[sa.Column]:
    return [sa.Column(name, sa.BigInteger(), nullable=False) for name in _FLOW_COLUMNS.split(", ")]


def upgrade() -> None:
    op.create_table(
        "ledger_day_flows",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("local_date", sa.Date(), nullable=False),
        sa.Column("shard", sa.SmallInteger(), nullable=False),
        *_flows(),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("tenant_id", "local_date", "shard"),
    )
    op.create_table(
        "ledger_flow_totals",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("shard", sa.SmallInteger(), nullable=False),
        *_flows(),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("tenant_id", "shard"),
    )
    op.create_table(
        "account_event_totals",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("shard", sa.SmallInteger(), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("tenant_id", "event", "shard"),
    )
    for table in ("ledger_day_flows", "ledger_flow_totals", "account_event_totals"):
        for statement in protect_tenant_table(table, app_privileges="SELECT, INSERT, UPDATE", regulator_read=True):
            op.execute(statement)
    op.execute(LEDGER_TRIGGER_FUNCTION)
    op.execute(ACCOUNT_TRIGGER_FUNCTION)
    op.execute("CREATE TRIGGER account_total_rollup AFTER INSERT ON account_events REFERENCING NEW TABLE AS "
               "new_rows FOR EACH STATEMENT EXECUTE FUNCTION carbon_rollup_account_totals()")
    for statement in BACKFILL:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS account_total_rollup ON account_events")
    op.execute("DROP FUNCTION IF EXISTS carbon_rollup_account_totals()")
    op.execute(_ROLLUPS.TRIGGER_FUNCTION)
    for table in ("account_event_totals", "ledger_flow_totals", "ledger_day_flows"):
        op.drop_table(table)
