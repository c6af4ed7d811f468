"""One behaviour, one credit across providers: rules declare how to recognise the same behaviour, and a
rejected duplicate keeps its link to the record credited first

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-29

`behavior_rules.same_behavior` ({"match": ..., "window_minutes": ...}) is null in versions published
before it existed: those rules recognise nothing across providers (history is never rewritten; a city
file that declares it publishes a new version). `behavior_rejections` gains the link
(`duplicate_of_record_id`, to the credited record) and what the rejected report said (`occurred_at`,
`evidence`), with a partial index for the operators' list of cross-provider duplicates.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0016"
down_revision: Union[str, None] = "0015"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column("behavior_rules", sa.Column("same_behavior", postgresql.JSONB(), nullable=True))
    op.add_column("behavior_rejections", sa.Column("duplicate_of_record_id", sa.Uuid(), nullable=True))
    op.add_column("behavior_rejections", sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("behavior_rejections", sa.Column("evidence", postgresql.JSONB(), nullable=True))
    op.create_foreign_key(None, "behavior_rejections", "behavior_records", ["tenant_id", "duplicate_of_record_id"],
                          ["tenant_id", "id"])
    op.create_index("ix_behavior_rejections_duplicates", "behavior_rejections", ["tenant_id", "received_at", "id"],
                    postgresql_where=sa.text("duplicate_of_record_id IS NOT NULL"))
    op.create_index("ix_behavior_rejections_duplicate_of", "behavior_rejections",
                    ["tenant_id", "duplicate_of_record_id", "provider_issuer_id"],
                    postgresql_where=sa.text("duplicate_of_record_id IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_behavior_rejections_duplicate_of", table_name="behavior_rejections")
    op.drop_index("ix_behavior_rejections_duplicates", table_name="behavior_rejections")
    op.drop_constraint("behavior_rejections_tenant_id_duplicate_of_record_id_fkey", "behavior_rejections",
                       type_="foreignkey")
    for column in ("evidence", "occurred_at", "duplicate_of_record_id"):
        op.drop_column("behavior_rejections", column)
    op.drop_column("behavior_rules", "same_behavior")
