"""catalogue administration: who manages an item, and the audit log of administrators' changes

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29

`rewards.managed_by` is FILE (declared in the city's configuration file) or ADMIN (created through the
API). `rewards.file_hash` is the hash of the file's declaration of a FILE item when it was last applied:
a restart re-applies a declaration only when the file's text for that item changed, so an
administrator's edit survives restarts until the file itself changes that item (docs/adr/0007).
`admin_audit_events` is append-only: who, when, what, and the values before and after.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from app.db.rls import protect_tenant_table

revision: str = "0008"
down_revision: Union[str, None] = "0007"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column("rewards", sa.Column("managed_by", sa.Text(), server_default="FILE", nullable=False))
    op.add_column("rewards", sa.Column("file_hash", sa.Text(), nullable=True))
    op.create_check_constraint("managed_by_known", "rewards", "managed_by IN ('FILE', 'ADMIN')")
    op.create_table(
        "admin_audit_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("by_client", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("target_type", sa.Text(), nullable=False),
        sa.Column("target_id", sa.Uuid(), nullable=False),
        sa.Column("changes", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_admin_audit_events_at", "admin_audit_events", ["tenant_id", "at", "id"])
    for statement in protect_tenant_table("admin_audit_events", app_privileges="SELECT, INSERT"):
        op.execute(statement)


def downgrade() -> None:
    op.drop_table("admin_audit_events")
    op.drop_constraint("managed_by_known", "rewards")
    op.drop_column("rewards", "file_hash")
    op.drop_column("rewards", "managed_by")
