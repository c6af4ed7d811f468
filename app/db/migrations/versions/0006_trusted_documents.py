"""trusted documents registered per city

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29

`carbon-inclusive documents register FILE.graphql...` stores operation documents by the SHA-256 of their
text, per city. Clients send the hash instead of the text; a client configured with
`trusted_documents_only` may send nothing else. `carbon_trusted_document()` reads one in a single
round trip under the city's row-level security scope.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

from app.db.rls import protect_tenant_table

revision: str = "0006"
down_revision: Union[str, None] = "0005"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

LOOKUP = r"""
CREATE OR REPLACE FUNCTION carbon_trusted_document(p_tenant uuid, p_sha256 text) RETURNS text
LANGUAGE plpgsql STABLE SECURITY INVOKER AS $fn$
BEGIN
    IF coalesce(current_setting('app.tenant_id', true), '') NOT IN ('', p_tenant::text) THEN
        RAISE EXCEPTION 'carbon_trusted_document: the transaction is scoped to another tenant';
    END IF;
    PERFORM set_config('app.tenant_id', p_tenant::text, true);
    RETURN (SELECT text FROM trusted_documents WHERE tenant_id = p_tenant AND sha256 = p_sha256);
END
$fn$
"""


def upgrade() -> None:
    op.create_table(
        "trusted_documents",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("sha256", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("registered_by", sa.Text(), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("sha256 ~ '^[0-9a-f]{64}$'", name="sha256_hex"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("tenant_id", "sha256"),
    )
    for statement in protect_tenant_table("trusted_documents", app_privileges="SELECT, INSERT"):
        op.execute(statement)
    op.execute(LOOKUP)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS carbon_trusted_document(uuid, text)")
    op.drop_table("trusted_documents")
