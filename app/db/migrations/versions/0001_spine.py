"""spine: tenants, configuration versions, issuers, behaviour rules, catalogue

Revision ID: 0001
Revises:
Create Date: 2026-11-29 08:25:39.476579
"""
from typing import Sequence, Union

import sqlalchemy as sa
import sqlmodel  # noqa: F401  (autogenerate renders sqlmodel types)
from alembic import op
from sqlalchemy.dialects import postgresql

from app.db.rls import APP_ROLE, create_roles_sql, protect_tenant_table

revision: str = '0001'
down_revision: Union[str, None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


TENANT_TABLES = ("tenant_config_versions", "behavior_rules", "issuers", "rewards")


def upgrade() -> None:
    for statement in create_roles_sql():
        op.execute(statement)
    op.create_table('tenants',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('slug', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('slug')
    )
    op.create_table('issuers',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('slug', sa.Text(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('name_en', sa.Text(), nullable=False),
    sa.Column('name_zh', sa.Text(), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tenant_id', 'slug')
    )
    op.create_table('tenant_config_versions',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('effective_from', sa.DateTime(timezone=True), nullable=False),
    sa.Column('content_hash', sa.Text(), nullable=False),
    sa.Column('name_en', sa.Text(), nullable=False),
    sa.Column('name_zh', sa.Text(), nullable=False),
    sa.Column('timezone', sa.Text(), nullable=False),
    sa.Column('claim_window_days', sa.Integer(), nullable=False),
    sa.Column('unit_name_en', sa.Text(), nullable=False),
    sa.Column('unit_name_zh', sa.Text(), nullable=False),
    sa.Column('unit_singular_en', sa.Text(), nullable=False),
    sa.Column('unit_singular_zh', sa.Text(), nullable=False),
    sa.Column('unit_decimals', sa.Integer(), nullable=False),
    sa.Column('grams_per_point', sa.Integer(), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('document', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('grams_per_point > 0', name='grams_per_point_positive'),
    sa.CheckConstraint('unit_decimals BETWEEN 0 AND 4', name='unit_decimals_range'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tenant_id', 'version')
    )
    op.create_index('ix_tenant_config_versions_effective', 'tenant_config_versions', ['tenant_id', 'effective_from', 'version'], unique=False)
    op.create_table('behavior_rules',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('config_version_id', sa.Uuid(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('code', sa.Text(), nullable=False),
    sa.Column('name_en', sa.Text(), nullable=False),
    sa.Column('name_zh', sa.Text(), nullable=False),
    sa.Column('category', sa.Text(), nullable=False),
    sa.Column('method', sa.Text(), nullable=False),
    sa.Column('unit', sa.Text(), nullable=False),
    sa.Column('factor_mg', sa.BigInteger(), nullable=False),
    sa.Column('baseline_mg_per_km', sa.BigInteger(), nullable=True),
    sa.Column('mode_mg_per_km', sa.BigInteger(), nullable=True),
    sa.Column('cap_mg_per_day', sa.BigInteger(), nullable=True),
    sa.Column('cap_mg_per_month', sa.BigInteger(), nullable=True),
    sa.Column('cap_mg_per_event', sa.BigInteger(), nullable=True),
    sa.Column('source', sa.Text(), nullable=False),
    sa.CheckConstraint("category IN ('TRAVEL', 'CONSUMPTION', 'LIFE')", name='category_known'),
    sa.CheckConstraint("method IN ('PER_UNIT', 'PER_EVENT', 'PER_DISTANCE')", name='method_known'),
    sa.CheckConstraint('factor_mg > 0', name='factor_positive'),
    sa.ForeignKeyConstraint(['config_version_id'], ['tenant_config_versions.id'], ),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('config_version_id', 'code')
    )
    op.create_index('ix_behavior_rules_tenant_version', 'behavior_rules', ['tenant_id', 'config_version_id', 'position'], unique=False)
    op.create_table('rewards',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('code', sa.Text(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('name_en', sa.Text(), nullable=False),
    sa.Column('name_zh', sa.Text(), nullable=False),
    sa.Column('description_en', sa.Text(), nullable=True),
    sa.Column('description_zh', sa.Text(), nullable=True),
    sa.Column('cost_points', sa.BigInteger(), nullable=False),
    sa.Column('stock_total', sa.BigInteger(), nullable=True),
    sa.Column('stock_remaining', sa.BigInteger(), nullable=True),
    sa.Column('per_account_limit', sa.Integer(), nullable=True),
    sa.Column('limit_period', sa.Text(), nullable=False),
    sa.Column('valid_from', sa.DateTime(timezone=True), nullable=True),
    sa.Column('valid_to', sa.DateTime(timezone=True), nullable=True),
    sa.Column('sponsor_issuer_id', sa.Uuid(), nullable=False),
    sa.Column('cancellation_window_hours', sa.Integer(), nullable=False),
    sa.Column('bank_linked_only', sa.Boolean(), nullable=False),
    sa.Column('min_contribution_mg', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("kind IN ('REWARD', 'DONATION', 'FINANCIAL_SERVICE')", name='kind_known'),
    sa.CheckConstraint('(stock_total IS NULL) = (stock_remaining IS NULL)', name='stock_both_or_neither'),
    sa.CheckConstraint('cost_points >= 0', name='cost_non_negative'),
    sa.CheckConstraint('stock_remaining >= 0', name='stock_non_negative'),
    sa.ForeignKeyConstraint(['sponsor_issuer_id'], ['issuers.id'], ),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tenant_id', 'code')
    )
    op.create_index('ix_rewards_page', 'rewards', ['tenant_id', 'position', 'id'], unique=False)
    # The tenants row is its own tenant: its key column is `id`.
    for statement in protect_tenant_table("tenants", tenant_column="id"):
        op.execute(statement)
    for table in TENANT_TABLES:
        for statement in protect_tenant_table(table):
            op.execute(statement)
    # /readyz (run as the app role) compares the applied revision with the code's head.
    op.execute(f"GRANT SELECT ON alembic_version TO {APP_ROLE}")


def downgrade() -> None:
    # Roles are shared by every database of the cluster, so they are left in place.
    op.drop_index('ix_rewards_page', table_name='rewards')
    op.drop_table('rewards')
    op.drop_index('ix_behavior_rules_tenant_version', table_name='behavior_rules')
    op.drop_table('behavior_rules')
    op.drop_index('ix_tenant_config_versions_effective', table_name='tenant_config_versions')
    op.drop_table('tenant_config_versions')
    op.drop_table('issuers')
    op.drop_table('tenants')
