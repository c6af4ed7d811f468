"""Market lots: pooled verified reductions with serial numbers, their lifecycle and retirements

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-29

A milligram enters at most one lot, ever, by the database: `market_lot_records.record_id` is the
primary key, and a record's reduction is pooled whole (records are credited and reversed whole). Serial
numbers are one per kilogram CO2e, consecutive per city across lots (`serial_start` unique; lot n
starts where lot n−1 ends, checked by `verify-ledger`); the CHECKs keep every lot's books inside its
serials and pooled milligrams. Lots are aggregates without personal data: regulators may read them;
which records a lot holds, and retirements (their beneficiaries), are the city's. Issuing and retiring
are idempotent per key.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from app.db.rls import protect_tenant_table

revision: str = "0018"
down_revision: Union[str, None] = "0017"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "market_lots",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("period_from", sa.Date(), nullable=False),
        sa.Column("period_to", sa.Date(), nullable=False),
        sa.Column("vintage", sa.Integer(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("records", sa.BigInteger(), nullable=False),
        sa.Column("pooled_mg", sa.BigInteger(), nullable=False),
        sa.Column("buffer_mg", sa.BigInteger(), nullable=False),
        sa.Column("reversed_mg", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("serial_start", sa.BigInteger(), nullable=False),
        sa.Column("serial_kg", sa.BigInteger(), nullable=False),
        sa.Column("retired_kg", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cancelled_kg", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("shortfall_mg", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("composition", postgresql.JSONB(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("issued_by", sa.Text(), nullable=False),
        sa.Column("idempotency_key", sa.Text(), nullable=True),
        sa.Column("listed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("venue", sa.Text(), nullable=True),
        sa.Column("sold_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("buyer", sa.Text(), nullable=True),
        sa.Column("price_fen", sa.BigInteger(), nullable=True),
        sa.CheckConstraint("status IN ('ISSUED', 'LISTED', 'SOLD', 'RETIRED')", name="status_known"),
        sa.CheckConstraint("period_from <= period_to", name="period_ordered"),
        sa.CheckConstraint("serial_kg > 0 AND serial_kg * 1000000 + buffer_mg = pooled_mg AND buffer_mg >= 0",
                           name="serials_within_pool"),
        sa.CheckConstraint("retired_kg >= 0 AND cancelled_kg >= 0 AND retired_kg + cancelled_kg <= serial_kg",
                           name="retired_within_serials"),
        sa.CheckConstraint("reversed_mg >= 0 AND reversed_mg <= pooled_mg AND shortfall_mg >= 0",
                           name="reversed_within_pool"),
        sa.CheckConstraint("price_fen IS NULL OR price_fen >= 0", name="price_not_negative"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "id"),
        sa.UniqueConstraint("tenant_id", "number"),
        sa.UniqueConstraint("tenant_id", "serial_start"),
        sa.UniqueConstraint("tenant_id", "idempotency_key"),
    )
    op.create_table(
        "market_lot_records",
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("lot_id", sa.Uuid(), nullable=False),
        sa.Column("reduction_mg", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("reduction_mg > 0", name="reduction_positive"),
        sa.ForeignKeyConstraint(["tenant_id", "record_id"], ["behavior_records.tenant_id", "behavior_records.id"]),
        # Deferred: a lot's records are pooled first (one INSERT ... SELECT), then the lot is written.
        sa.ForeignKeyConstraint(["tenant_id", "lot_id"], ["market_lots.tenant_id", "market_lots.id"],
                                deferrable=True, initially="DEFERRED"),
        sa.PrimaryKeyConstraint("record_id"),
    )
    op.create_index("ix_market_lot_records_lot", "market_lot_records", ["tenant_id", "lot_id"])

    op.create_table(
        "market_retirements",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("lot_id", sa.Uuid(), nullable=False),
        sa.Column("kilograms", sa.BigInteger(), nullable=False),
        sa.Column("serial_from", sa.BigInteger(), nullable=False),
        sa.Column("beneficiary", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("by_client", sa.Text(), nullable=False),
        sa.Column("document", postgresql.JSONB(), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.Column("idempotency_key", sa.Text(), nullable=True),
        sa.Column("request_hash", sa.Text(), nullable=True),
        sa.CheckConstraint("kilograms > 0", name="kilograms_positive"),
        sa.ForeignKeyConstraint(["tenant_id", "lot_id"], ["market_lots.tenant_id", "market_lots.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "serial_from"),
        sa.UniqueConstraint("tenant_id", "idempotency_key"),
    )
    op.create_index("ix_market_retirements_lot", "market_retirements", ["tenant_id", "lot_id", "retired_at"])
    for statement in protect_tenant_table("market_lots", app_privileges="SELECT, INSERT, UPDATE", regulator_read=True):
        op.execute(statement)
    for statement in protect_tenant_table("market_lot_records", app_privileges="SELECT, INSERT"):
        op.execute(statement)
    # Retirements name beneficiaries (possibly people): the city's only. Regulators see the lots' totals.
    for statement in protect_tenant_table("market_retirements", app_privileges="SELECT, INSERT"):
        op.execute(statement)


def downgrade() -> None:
    op.drop_table("market_retirements")
    op.drop_table("market_lot_records")
    op.drop_table("market_lots")
