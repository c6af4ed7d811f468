"""Behaviour records submitted by partners, their outcomes, and the running totals caps are applied to.

Only accepted records (CREDITED or CAPPED) live in `behavior_records`, unique per provider and
`external_id` (the idempotency key). Rejections are logged in `behavior_rejections` and do not use up
the `external_id`: a partner can fix the cause (e.g. obtain consent) and send the record again.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    Numeric,
    PrimaryKeyConstraint,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel


class BehaviorRecord(SQLModel, table=True):
    __tablename__ = "behavior_records"
    __table_args__ = (
        UniqueConstraint("tenant_id", "provider_issuer_id", "external_id", name="uq_behavior_records_external"),
        UniqueConstraint("tenant_id", "id"),
        ForeignKeyConstraint(["tenant_id", "account_id"], ["accounts.tenant_id", "accounts.id"]),
        ForeignKeyConstraint(["tenant_id", "provider_issuer_id"], ["issuers.tenant_id", "issuers.id"]),
        ForeignKeyConstraint(["tenant_id", "rule_id"], ["behavior_rules.tenant_id", "behavior_rules.id"]),
        Index("ix_behavior_records_account", "account_id", "occurred_at"),
        CheckConstraint("status IN ('CREDITED', 'CAPPED')", name="status_known"),
        CheckConstraint("reversed_at IS NULL OR reversal_reason IS NOT NULL", name="reversal_has_reason"),
        CheckConstraint("reduction_mg >= 0 AND reduction_mg <= requested_mg", name="credit_within_request"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenants.id", nullable=False)
    account_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False))
    provider_issuer_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False))
    external_id: str = Field(sa_column=Column(Text, nullable=False))
    behavior_code: str = Field(sa_column=Column(Text, nullable=False))
    rule_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False))
    config_version: int = Field(sa_column=Column(Integer, nullable=False))
    quantity: Decimal = Field(sa_column=Column(Numeric(18, 3), nullable=False))
    occurred_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    local_date: date = Field(sa_column=Column(Date, nullable=False))
    received_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    status: str = Field(sa_column=Column(Text, nullable=False))
    requested_mg: int = Field(sa_column=Column(BigInteger, nullable=False))
    reduction_mg: int = Field(sa_column=Column(BigInteger, nullable=False))
    points: int = Field(sa_column=Column(BigInteger, nullable=False))
    evidence: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB))
    reversed_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    reversal_reason: str | None = Field(default=None, sa_column=Column(Text))


class BehaviorRejection(SQLModel, table=True):
    """Append-only log of rejected records (for partners' and operators' diagnostics)."""

    __tablename__ = "behavior_rejections"
    __table_args__ = (
        Index("ix_behavior_rejections_provider", "tenant_id", "provider_issuer_id", "received_at"),
        ForeignKeyConstraint(["tenant_id", "provider_issuer_id"], ["issuers.tenant_id", "issuers.id"]),
        ForeignKeyConstraint(["tenant_id", "account_id"], ["accounts.tenant_id", "accounts.id"]),
        ForeignKeyConstraint(["tenant_id", "duplicate_of_record_id"], ["behavior_records.tenant_id", "behavior_records.id"]),
        Index("ix_behavior_rejections_duplicates", "tenant_id", "received_at", "id",
              postgresql_where=text("duplicate_of_record_id IS NOT NULL")),
        Index("ix_behavior_rejections_duplicate_of", "tenant_id", "duplicate_of_record_id", "provider_issuer_id",
              postgresql_where=text("duplicate_of_record_id IS NOT NULL")),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenants.id", nullable=False)
    provider_issuer_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False))
    external_id: str = Field(sa_column=Column(Text, nullable=False))
    account_id: uuid.UUID | None = Field(default=None, sa_column=Column(Uuid))
    behavior_code: str | None = Field(default=None, sa_column=Column(Text))
    code: str = Field(sa_column=Column(Text, nullable=False))
    received_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()))
    # DUPLICATE_ACROSS_PROVIDERS: the record already credited for the same behaviour (another provider's),
    # and what this report said, for the operators (migration 0016).
    duplicate_of_record_id: uuid.UUID | None = Field(default=None, sa_column=Column(Uuid))
    occurred_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    evidence: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB))


class DailyBehaviorTotal(SQLModel, table=True):
    """Milligrams credited per account, behaviour and local day (the tenant's time zone).

    Monthly caps sum these rows over the local month (at most 31 rows per key, one index range), so a
    monthly cap introduced mid-month counts the whole month, and no second running total is written."""

    __tablename__ = "daily_behavior_totals"
    __table_args__ = (
        PrimaryKeyConstraint("tenant_id", "account_id", "behavior_code", "local_date"),
        CheckConstraint("credited_mg >= 0", name="credited_non_negative"),
        CheckConstraint("credited_points >= 0", name="credited_points_non_negative"),
        Index("ix_daily_behavior_totals_day", "tenant_id", "local_date"),
        ForeignKeyConstraint(["tenant_id", "account_id"], ["accounts.tenant_id", "accounts.id"]),
    )

    tenant_id: uuid.UUID = Field(foreign_key="tenants.id")
    account_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False))
    behavior_code: str = Field(sa_column=Column(Text, nullable=False))
    local_date: date = Field(sa_column=Column(Date, nullable=False))
    credited_mg: int = Field(sa_column=Column(BigInteger, nullable=False))
    # Points earned that day: the account's earning lot for that day (expiry consumes lots oldest first).
    credited_points: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))
