"""Market lot proceeds back to contributors as points: a LOT_PROCEEDS ledger kind and the payouts

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-29

Where a city shares its sale proceeds (`[market]` in its file), selling a lot credits every contributor
a LOT_PROCEEDS transaction (issuance → citizen points), pro rata to the contributor's pooled reduction,
largest remainder so the shares add up to the lot's `proceeds_points` exactly. `market_lot_payouts`
ties each transaction to its lot (one per lot and account); `verify-ledger` reconciles them.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

from app.db.rls import protect_tenant_table

revision: str = "0019"
down_revision: Union[str, None] = "0018"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

KINDS = ("'BEHAVIOR_CREDIT', 'BEHAVIOR_REVERSAL', 'REDEMPTION', 'DONATION', 'REDEMPTION_CANCELLED', 'EXPIRY'")


def upgrade() -> None:
    op.drop_constraint("kind_known", "ledger_transactions", type_="check")
    op.create_check_constraint("kind_known", "ledger_transactions", f"kind IN ({KINDS}, 'LOT_PROCEEDS')")
    op.add_column("market_lots", sa.Column("proceeds_points", sa.BigInteger(), server_default="0", nullable=False))
    op.create_table(
        "market_lot_payouts",
        sa.Column("transaction_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("lot_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("points > 0", name="points_positive"),
        sa.ForeignKeyConstraint(["tenant_id", "transaction_id"], ["ledger_transactions.tenant_id",
                                                                  "ledger_transactions.id"]),
        sa.ForeignKeyConstraint(["tenant_id", "lot_id"], ["market_lots.tenant_id", "market_lots.id"]),
        sa.PrimaryKeyConstraint("transaction_id"),
        sa.UniqueConstraint("tenant_id", "lot_id", "account_id"),
    )
    for statement in protect_tenant_table("market_lot_payouts", app_privileges="SELECT, INSERT"):
        op.execute(statement)


def downgrade() -> None:
    op.drop_table("market_lot_payouts")
    op.drop_column("market_lots", "proceeds_points")
    op.drop_constraint("kind_known", "ledger_transactions", type_="check")
    op.create_check_constraint("kind_known", "ledger_transactions", f"kind IN ({KINDS})")
