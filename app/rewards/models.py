"""Redemptions (rewards, donations, financial services) and the entitlements financial services grant."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    Text,
    UniqueConstraint,
    Uuid,
    func,
)
from sqlmodel import Field, SQLModel


class Redemption(SQLModel, table=True):
    """One redemption request's result. `idempotency_key` is unique per tenant: a replay returns this row;
    `request_hash` tells a replay from a different request reusing the key."""

    __tablename__ = "redemptions"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key", name="uq_redemptions_idempotency"),
        UniqueConstraint("tenant_id", "id"),
        Index("ix_redemptions_account", "account_id", "created_at", "id"),
        ForeignKeyConstraint(["tenant_id", "account_id"], ["accounts.tenant_id", "accounts.id"]),
        ForeignKeyConstraint(["tenant_id", "reward_id"], ["rewards.tenant_id", "rewards.id"]),
        CheckConstraint("status IN ('FULFILLED', 'CANCELLED')", name="status_known"),
        CheckConstraint("quantity > 0 AND points >= 0 AND stock_units >= 0", name="amounts_valid"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenants.id", nullable=False)
    account_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False))
    reward_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False))
    kind: str = Field(sa_column=Column(Text, nullable=False))
    quantity: int = Field(sa_column=Column(Integer, nullable=False))
    points: int = Field(sa_column=Column(BigInteger, nullable=False))
    status: str = Field(sa_column=Column(Text, nullable=False))
    voucher_code: str | None = Field(default=None, sa_column=Column(Text))
    # What this redemption did, so a cancellation undoes exactly that whatever the item became since:
    # units taken from the item's stock counter, and the ledger account the points went to.
    stock_units: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    counterparty_ledger_id: uuid.UUID | None = Field(default=None, sa_column=Column(Uuid))
    idempotency_key: str = Field(sa_column=Column(Text, nullable=False))
    request_hash: str = Field(sa_column=Column(Text, nullable=False))
    by_client: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()))
    cancellable_until: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    cancelled_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    cancel_reason: str | None = Field(default=None, sa_column=Column(Text))


class Entitlement(SQLModel, table=True):
    """A financial-service right an account holds (e.g. a preferential loan-rate tier), visible to the
    sponsoring bank's partner client."""

    __tablename__ = "entitlements"
    __table_args__ = (
        UniqueConstraint("tenant_id", "id"),
        Index("ix_entitlements_sponsor", "tenant_id", "sponsor_issuer_id", "granted_at", "id"),
        ForeignKeyConstraint(["tenant_id", "account_id"], ["accounts.tenant_id", "accounts.id"]),
        ForeignKeyConstraint(["tenant_id", "reward_id"], ["rewards.tenant_id", "rewards.id"]),
        ForeignKeyConstraint(["tenant_id", "sponsor_issuer_id"], ["issuers.tenant_id", "issuers.id"]),
        ForeignKeyConstraint(["tenant_id", "redemption_id"], ["redemptions.tenant_id", "redemptions.id"]),
        CheckConstraint("status IN ('ACTIVE', 'CANCELLED')", name="status_known"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenants.id", nullable=False)
    account_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False))
    reward_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False))
    sponsor_issuer_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False))
    redemption_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False))
    status: str = Field(sa_column=Column(Text, nullable=False))
    granted_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    valid_to: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
