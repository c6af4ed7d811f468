"""A reversal gives back its record's unconverted grams from the conversion carry, which may owe them

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-29

Reversing a credited record took back its contribution and its points but left the carry untouched, so
the record's grams that were still unconverted stayed there and earned a point later (walk 9 g, reverse
it, walk 1 g: one 10 g coin). Now the reversal also takes them out of the carry (ADR 0005): the carry
falls by the record's grams less those its credit converted, and where later credits have converted
them already the carry goes below zero, grams the account owes, repaid by its next credits before they
earn points. So the carry can be negative; the ledger's conversion check (credited = converted + carry)
holds with the reversal's `converted_mg` counting the grams it took from the carry.
"""
from typing import Sequence, Union

from alembic import op

revision: str = "0020"
down_revision: Union[str, None] = "0019"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.drop_constraint("unconverted_non_negative", "ledger_accounts", type_="check")


def downgrade() -> None:
    # Zeroing a carry that owes grams would forgive them and break the ledger's conversion check: refuse.
    op.execute("""
        DO $$ BEGIN
            IF EXISTS (SELECT 1 FROM ledger_accounts WHERE unconverted_mg < 0) THEN
                RAISE EXCEPTION 'accounts owe grams in their conversion carry (unconverted_mg < 0): '
                                'revision 0019 cannot hold them';
            END IF;
        END $$""")
    op.create_check_constraint("unconverted_non_negative", "ledger_accounts", "unconverted_mg >= 0")
