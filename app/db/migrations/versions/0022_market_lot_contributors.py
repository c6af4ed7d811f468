"""A market lot's contributors: the distinct accounts whose records it pools

Revision ID: 0022
Revises: 0021
Create Date: 2026-11-30

Regulators read every city's lots (0018), and a lot pooled from one citizen's records showed that
citizen's records, behaviours, exact grams and sale proceeds. The small-group rule (ADR 0015) needs the
number of accounts behind a lot, which only the city's `market_lot_records` and `behavior_records` know:
it is counted once, when the lot is issued, and kept on the lot, so the regulator reads a number, not the
records. Backfilled from the pooled records; `verify-ledger` (`market_lots_reconcile`) checks it.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: Union[str, None] = "0021"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column("market_lots", sa.Column("contributors", sa.BigInteger(), server_default="0", nullable=False))
    op.execute("""
        UPDATE market_lots l SET contributors = c.n
          FROM (SELECT m.tenant_id, m.lot_id, count(DISTINCT b.account_id) AS n
                  FROM market_lot_records m JOIN behavior_records b ON b.tenant_id = m.tenant_id AND b.id = m.record_id
                 GROUP BY 1, 2) c
         WHERE c.tenant_id = l.tenant_id AND c.lot_id = l.id
    """)
    op.alter_column("market_lots", "contributors", server_default=None)
    op.create_check_constraint("contributors_positive", "market_lots", "contributors > 0")


def downgrade() -> None:
    op.drop_constraint("contributors_positive", "market_lots", type_="check")
    op.drop_column("market_lots", "contributors")
