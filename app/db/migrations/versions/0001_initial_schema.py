"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-29 09:17:51.502463
"""
from typing import Sequence, Union

import sqlalchemy as sa
import sqlmodel  # noqa: F401  (autogenerate renders sqlmodel types)
from alembic import op

from app.db.rls import APP_ROLE, create_roles_sql, protect_tenant_table
from sqlalchemy.dialects import postgresql

revision: str = '0001'
down_revision: Union[str, None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


# Table -> (privileges of carbon_app, regulator may read across tenants).
# Append-only tables get SELECT and INSERT only: history is never edited, not even by a buggy resolver.
# Regulators read public configuration only; everything about accounts is personal.
TENANT_TABLES = {
    "tenant_config_versions": ("SELECT, INSERT", True),
    "behavior_rules": ("SELECT, INSERT", True),
    "issuers": ("SELECT, INSERT, UPDATE", True),
    "rewards": ("SELECT, INSERT, UPDATE", True),
    "accounts": ("SELECT, INSERT, UPDATE", False),
    "account_events": ("SELECT, INSERT", False),
    "consents": ("SELECT, INSERT, UPDATE", False),
    "behavior_records": ("SELECT, INSERT, UPDATE", False),
    "behavior_rejections": ("SELECT, INSERT", False),
    "daily_behavior_totals": ("SELECT, INSERT, UPDATE", False),
    "ledger_accounts": ("SELECT, INSERT, UPDATE", False),
    "ledger_transactions": ("SELECT, INSERT", False),
    "ledger_postings": ("SELECT, INSERT", False),
    "redemptions": ("SELECT, INSERT, UPDATE", False),
    "entitlements": ("SELECT, INSERT, UPDATE", False),
}


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
    op.create_table('accounts',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('holder_hash', sa.LargeBinary(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('status', sa.Text(), server_default='ACTIVE', nullable=False),
    sa.Column('bank_account_hash', sa.LargeBinary(), nullable=True),
    sa.Column('bank_account_mask', sa.Text(), nullable=True),
    sa.Column('opened_by', sa.Text(), nullable=False),
    sa.Column('agreement_accepted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('opened_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('bank_linked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("(kind = 'BANK_LINKED') = (bank_account_hash IS NOT NULL)", name='bank_link_consistent'),
    sa.CheckConstraint("kind IN ('GUEST', 'BANK_LINKED')", name='kind_known'),
    sa.CheckConstraint("status IN ('ACTIVE', 'FROZEN', 'CLOSED')", name='status_known'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tenant_id', 'holder_hash', name='uq_accounts_holder'),
    sa.UniqueConstraint('tenant_id', 'id')
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
    sa.UniqueConstraint('tenant_id', 'id'),
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
    sa.Column('point_expiry_months', sa.Integer(), nullable=True),
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
    sa.UniqueConstraint('tenant_id', 'id'),
    sa.UniqueConstraint('tenant_id', 'version')
    )
    op.create_index('ix_tenant_config_versions_effective', 'tenant_config_versions', ['tenant_id', 'effective_from', 'version'], unique=False)
    op.create_table('account_events',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('by_client', sa.Text(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'account_id'], ['accounts.tenant_id', 'accounts.id'], ),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_account_events_account', 'account_events', ['tenant_id', 'account_id', 'at'], unique=False)
    op.create_table('behavior_rejections',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('provider_issuer_id', sa.Uuid(), nullable=False),
    sa.Column('external_id', sa.Text(), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=True),
    sa.Column('behavior_code', sa.Text(), nullable=True),
    sa.Column('code', sa.Text(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'account_id'], ['accounts.tenant_id', 'accounts.id'], ),
    sa.ForeignKeyConstraint(['tenant_id', 'provider_issuer_id'], ['issuers.tenant_id', 'issuers.id'], ),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_behavior_rejections_provider', 'behavior_rejections', ['tenant_id', 'provider_issuer_id', 'received_at'], unique=False)
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
    sa.ForeignKeyConstraint(['tenant_id', 'config_version_id'], ['tenant_config_versions.tenant_id', 'tenant_config_versions.id'], ),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('config_version_id', 'code'),
    sa.UniqueConstraint('tenant_id', 'id')
    )
    op.create_index('ix_behavior_rules_tenant_version', 'behavior_rules', ['tenant_id', 'config_version_id', 'position'], unique=False)
    op.create_table('consents',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('provider_issuer_id', sa.Uuid(), nullable=False),
    sa.Column('categories', postgresql.ARRAY(sa.Text()), nullable=False),
    sa.Column('granted_by', sa.Text(), nullable=False),
    sa.Column('granted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_by', sa.Text(), nullable=True),
    sa.CheckConstraint('cardinality(categories) > 0', name='categories_not_empty'),
    sa.ForeignKeyConstraint(['tenant_id', 'account_id'], ['accounts.tenant_id', 'accounts.id'], ),
    sa.ForeignKeyConstraint(['tenant_id', 'provider_issuer_id'], ['issuers.tenant_id', 'issuers.id'], ),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_consents_account', 'consents', ['tenant_id', 'account_id', 'granted_at'], unique=False)
    op.create_index('uq_consents_live', 'consents', ['tenant_id', 'account_id', 'provider_issuer_id'], unique=True, postgresql_where=sa.text('revoked_at IS NULL'))
    op.create_table('daily_behavior_totals',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('behavior_code', sa.Text(), nullable=False),
    sa.Column('local_date', sa.Date(), nullable=False),
    sa.Column('credited_mg', sa.BigInteger(), nullable=False),
    sa.Column('credited_points', sa.BigInteger(), server_default='0', nullable=False),
    sa.CheckConstraint('credited_mg >= 0', name='credited_non_negative'),
    sa.CheckConstraint('credited_points >= 0', name='credited_points_non_negative'),
    sa.ForeignKeyConstraint(['tenant_id', 'account_id'], ['accounts.tenant_id', 'accounts.id'], ),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ),
    sa.PrimaryKeyConstraint('tenant_id', 'account_id', 'behavior_code', 'local_date')
    )
    op.create_index('ix_daily_behavior_totals_day', 'daily_behavior_totals', ['tenant_id', 'local_date'], unique=False)
    op.create_table('ledger_accounts',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=True),
    sa.Column('code', sa.Text(), nullable=False),
    sa.Column('asset', sa.Text(), nullable=False),
    sa.Column('balance', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('tracks_balance', sa.Boolean(), server_default='true', nullable=False),
    sa.Column('unconverted_mg', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('points_consumed', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('earned_matured', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('matured_through', sa.Date(), nullable=True),
    sa.Column('points_owed', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("asset IN ('CONTRIBUTION_MG', 'POINTS')", name='asset_known'),
    sa.CheckConstraint('account_id IS NULL OR balance >= 0', name='citizen_balance_non_negative'),
    sa.CheckConstraint('points_consumed >= 0 AND earned_matured >= 0 AND points_owed >= 0', name='lots_non_negative'),
    sa.CheckConstraint('tracks_balance OR balance = 0', name='untracked_balance_zero'),
    sa.CheckConstraint('unconverted_mg >= 0', name='unconverted_non_negative'),
    sa.ForeignKeyConstraint(['tenant_id', 'account_id'], ['accounts.tenant_id', 'accounts.id'], ),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tenant_id', 'id')
    )
    op.create_index('uq_ledger_accounts_citizen', 'ledger_accounts', ['tenant_id', 'account_id', 'asset'], unique=True, postgresql_where=sa.text('account_id IS NOT NULL'))
    op.create_index('uq_ledger_accounts_system', 'ledger_accounts', ['tenant_id', 'code', 'asset'], unique=True, postgresql_where=sa.text('account_id IS NULL'))
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
    sa.Column('stock_taken', sa.BigInteger(), server_default='0', nullable=False),
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
    sa.CheckConstraint('cost_points >= 0', name='cost_non_negative'),
    sa.CheckConstraint('stock_taken >= 0', name='stock_taken_non_negative'),
    sa.CheckConstraint('stock_total >= 0', name='stock_total_non_negative'),
    sa.ForeignKeyConstraint(['tenant_id', 'sponsor_issuer_id'], ['issuers.tenant_id', 'issuers.id'], ),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tenant_id', 'code'),
    sa.UniqueConstraint('tenant_id', 'id')
    )
    op.create_index('ix_rewards_page', 'rewards', ['tenant_id', 'position', 'id'], unique=False)
    op.create_table('behavior_records',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('provider_issuer_id', sa.Uuid(), nullable=False),
    sa.Column('external_id', sa.Text(), nullable=False),
    sa.Column('behavior_code', sa.Text(), nullable=False),
    sa.Column('rule_id', sa.Uuid(), nullable=False),
    sa.Column('config_version', sa.Integer(), nullable=False),
    sa.Column('quantity', sa.Numeric(precision=18, scale=3), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('local_date', sa.Date(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('requested_mg', sa.BigInteger(), nullable=False),
    sa.Column('reduction_mg', sa.BigInteger(), nullable=False),
    sa.Column('points', sa.BigInteger(), nullable=False),
    sa.Column('evidence', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('reversed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reversal_reason', sa.Text(), nullable=True),
    sa.CheckConstraint("status IN ('CREDITED', 'CAPPED')", name='status_known'),
    sa.CheckConstraint('quantity > 0', name='quantity_positive'),
    sa.CheckConstraint('reduction_mg >= 0 AND reduction_mg <= requested_mg', name='credit_within_request'),
    sa.CheckConstraint('reversed_at IS NULL OR reversal_reason IS NOT NULL', name='reversal_has_reason'),
    sa.ForeignKeyConstraint(['tenant_id', 'account_id'], ['accounts.tenant_id', 'accounts.id'], ),
    sa.ForeignKeyConstraint(['tenant_id', 'provider_issuer_id'], ['issuers.tenant_id', 'issuers.id'], ),
    sa.ForeignKeyConstraint(['tenant_id', 'rule_id'], ['behavior_rules.tenant_id', 'behavior_rules.id'], ),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tenant_id', 'id'),
    sa.UniqueConstraint('tenant_id', 'provider_issuer_id', 'external_id', name='uq_behavior_records_external')
    )
    op.create_index('ix_behavior_records_account', 'behavior_records', ['tenant_id', 'account_id', 'occurred_at'], unique=False)
    op.create_table('redemptions',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('reward_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('points', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('voucher_code', sa.Text(), nullable=True),
    sa.Column('stock_units', sa.Integer(), server_default='0', nullable=False),
    sa.Column('counterparty_ledger_id', sa.Uuid(), nullable=True),
    sa.Column('idempotency_key', sa.Text(), nullable=False),
    sa.Column('request_hash', sa.Text(), nullable=False),
    sa.Column('by_client', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('cancellable_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancelled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancel_reason', sa.Text(), nullable=True),
    sa.CheckConstraint("status IN ('FULFILLED', 'CANCELLED')", name='status_known'),
    sa.CheckConstraint('quantity > 0 AND points >= 0 AND stock_units >= 0', name='amounts_valid'),
    sa.ForeignKeyConstraint(['tenant_id', 'account_id'], ['accounts.tenant_id', 'accounts.id'], ),
    sa.ForeignKeyConstraint(['tenant_id', 'reward_id'], ['rewards.tenant_id', 'rewards.id'], ),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tenant_id', 'id'),
    sa.UniqueConstraint('tenant_id', 'idempotency_key', name='uq_redemptions_idempotency')
    )
    op.create_index('ix_redemptions_account_reward', 'redemptions', ['tenant_id', 'account_id', 'reward_id', 'created_at'], unique=False)
    op.create_table('entitlements',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('reward_id', sa.Uuid(), nullable=False),
    sa.Column('sponsor_issuer_id', sa.Uuid(), nullable=False),
    sa.Column('redemption_id', sa.Uuid(), nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('granted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('valid_to', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('ACTIVE', 'CANCELLED')", name='status_known'),
    sa.ForeignKeyConstraint(['tenant_id', 'account_id'], ['accounts.tenant_id', 'accounts.id'], ),
    sa.ForeignKeyConstraint(['tenant_id', 'redemption_id'], ['redemptions.tenant_id', 'redemptions.id'], ),
    sa.ForeignKeyConstraint(['tenant_id', 'reward_id'], ['rewards.tenant_id', 'rewards.id'], ),
    sa.ForeignKeyConstraint(['tenant_id', 'sponsor_issuer_id'], ['issuers.tenant_id', 'issuers.id'], ),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tenant_id', 'id')
    )
    op.create_index('ix_entitlements_sponsor', 'entitlements', ['tenant_id', 'sponsor_issuer_id', 'granted_at', 'id'], unique=False)
    op.create_table('ledger_transactions',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=True),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('posted_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('behavior_record_id', sa.Uuid(), nullable=True),
    sa.Column('behavior_code', sa.Text(), nullable=True),
    sa.Column('reduction_mg', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('points', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('converted_mg', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('redemption_id', sa.Uuid(), nullable=True),
    sa.Column('shortfall_points', sa.BigInteger(), server_default='0', nullable=False),
    sa.CheckConstraint("kind IN ('BEHAVIOR_CREDIT', 'BEHAVIOR_REVERSAL', 'REDEMPTION', 'DONATION', 'REDEMPTION_CANCELLED', 'EXPIRY')", name='kind_known'),
    sa.CheckConstraint('shortfall_points >= 0', name='shortfall_non_negative'),
    sa.ForeignKeyConstraint(['tenant_id', 'account_id'], ['accounts.tenant_id', 'accounts.id'], ),
    sa.ForeignKeyConstraint(['tenant_id', 'behavior_record_id'], ['behavior_records.tenant_id', 'behavior_records.id'], ),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tenant_id', 'id')
    )
    op.create_index('ix_ledger_transactions_activity', 'ledger_transactions', ['tenant_id', 'account_id', 'occurred_at', 'id'], unique=False)
    op.create_index('uq_ledger_transactions_record_kind', 'ledger_transactions', ['tenant_id', 'behavior_record_id', 'kind'], unique=True, postgresql_where=sa.text('behavior_record_id IS NOT NULL'))
    op.create_index('uq_ledger_transactions_redemption_kind', 'ledger_transactions', ['tenant_id', 'redemption_id', 'kind'], unique=True, postgresql_where=sa.text('redemption_id IS NOT NULL'))
    op.create_table('ledger_postings',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=True), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('transaction_id', sa.Uuid(), nullable=False),
    sa.Column('ledger_account_id', sa.Uuid(), nullable=False),
    sa.Column('asset', sa.Text(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('posted_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("asset IN ('CONTRIBUTION_MG', 'POINTS')", name='asset_known'),
    sa.CheckConstraint('amount <> 0', name='amount_not_zero'),
    sa.ForeignKeyConstraint(['tenant_id', 'ledger_account_id'], ['ledger_accounts.tenant_id', 'ledger_accounts.id'], ),
    sa.ForeignKeyConstraint(['tenant_id', 'transaction_id'], ['ledger_transactions.tenant_id', 'ledger_transactions.id'], ),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_ledger_postings_account', 'ledger_postings', ['tenant_id', 'ledger_account_id'], unique=False)
    op.create_index('ix_ledger_postings_transaction', 'ledger_postings', ['tenant_id', 'transaction_id'], unique=False)
    # The tenants row is its own tenant: its key column is `id`.
    for statement in protect_tenant_table("tenants", tenant_column="id", app_privileges="SELECT, INSERT",
                                          regulator_read=True):
        op.execute(statement)
    for table, (privileges, regulator_read) in TENANT_TABLES.items():
        for statement in protect_tenant_table(table, app_privileges=privileges, regulator_read=regulator_read):
            op.execute(statement)
    # /readyz (run as the app role) compares the applied revision with the code's head.
    op.execute(f"GRANT SELECT ON alembic_version TO {APP_ROLE}")




def downgrade() -> None:
    # Roles are shared by every database of the cluster, so they are left in place.
    op.drop_index('ix_ledger_postings_transaction', table_name='ledger_postings')
    op.drop_index('ix_ledger_postings_account', table_name='ledger_postings')
    op.drop_table('ledger_postings')
    op.drop_index('uq_ledger_transactions_redemption_kind', table_name='ledger_transactions', postgresql_where=sa.text('redemption_id IS NOT NULL'))
    op.drop_index('uq_ledger_transactions_record_kind', table_name='ledger_transactions', postgresql_where=sa.text('behavior_record_id IS NOT NULL'))
    op.drop_index('ix_ledger_transactions_activity', table_name='ledger_transactions')
    op.drop_table('ledger_transactions')
    op.drop_index('ix_entitlements_sponsor', table_name='entitlements')
    op.drop_table('entitlements')
    op.drop_index('ix_redemptions_account_reward', table_name='redemptions')
    op.drop_table('redemptions')
    op.drop_index('ix_behavior_records_account', table_name='behavior_records')
    op.drop_table('behavior_records')
    op.drop_index('ix_rewards_page', table_name='rewards')
    op.drop_table('rewards')
    op.drop_index('uq_ledger_accounts_system', table_name='ledger_accounts', postgresql_where=sa.text('account_id IS NULL'))
    op.drop_index('uq_ledger_accounts_citizen', table_name='ledger_accounts', postgresql_where=sa.text('account_id IS NOT NULL'))
    op.drop_table('ledger_accounts')
    op.drop_index('ix_daily_behavior_totals_day', table_name='daily_behavior_totals')
    op.drop_table('daily_behavior_totals')
    op.drop_index('uq_consents_live', table_name='consents', postgresql_where=sa.text('revoked_at IS NULL'))
    op.drop_index('ix_consents_account', table_name='consents')
    op.drop_table('consents')
    op.drop_index('ix_behavior_rules_tenant_version', table_name='behavior_rules')
    op.drop_table('behavior_rules')
    op.drop_index('ix_behavior_rejections_provider', table_name='behavior_rejections')
    op.drop_table('behavior_rejections')
    op.drop_index('ix_account_events_account', table_name='account_events')
    op.drop_table('account_events')
    op.drop_index('ix_tenant_config_versions_effective', table_name='tenant_config_versions')
    op.drop_table('tenant_config_versions')
    op.drop_table('issuers')
    op.drop_table('accounts')
    op.drop_table('tenants')
