"""hot-path lookup indexes that no cached generic plan can confuse

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29

PL/pgSQL functions and prepared statements cache a *generic* plan after five executions, costed with
the statistics of that moment. On a new city the tables are empty, and two indexes that both lead with
`tenant_id` cost the same: the planner may pick `(tenant_id, account_id, ...)` for the idempotency
lookup `tenant_id = $1 AND idempotency_key = $2` and keep that plan, which then reads every redemption
of the tenant on every call (measured: 8,000 index tuples per redemption after a few minutes). The
per-account indexes therefore lead with the account (uuid4 ids are unique across tenants), so the only
index serving `tenant_id = $1 AND <unique key>` is the unique one, whatever the statistics say.
"""
from typing import Sequence, Union

from alembic import op

revision: str = "0003"
down_revision: Union[str, None] = "0002"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# name -> (table, old columns, new columns)
INDEXES = {
    "ix_redemptions_account": ("redemptions", None, ["account_id", "created_at", "id"]),
    "ix_redemptions_account_reward": ("redemptions", ["tenant_id", "account_id", "reward_id", "created_at"], None),
    "ix_ledger_transactions_activity": ("ledger_transactions", ["tenant_id", "account_id", "occurred_at", "id"],
                                        ["account_id", "occurred_at", "id"]),
    "ix_ledger_postings_account": ("ledger_postings", ["tenant_id", "ledger_account_id"], ["ledger_account_id"]),
    "ix_ledger_postings_transaction": ("ledger_postings", ["tenant_id", "transaction_id"], ["transaction_id"]),
    "ix_behavior_records_account": ("behavior_records", ["tenant_id", "account_id", "occurred_at"],
                                    ["account_id", "occurred_at"]),
}


def upgrade() -> None:
    for name, (table, old, new) in INDEXES.items():
        if old is not None:
            op.drop_index(name, table_name=table)
        if new is not None:
            op.create_index(name, table, new, unique=False)


def downgrade() -> None:
    for name, (table, old, new) in INDEXES.items():
        if new is not None:
            op.drop_index(name, table_name=table)
        if old is not None:
            op.create_index(name, table, old, unique=False)
