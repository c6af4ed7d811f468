"""Market lots (migration 0018): a city's verified reductions pooled into serial-numbered credits, one
serial per kilogram CO2e, with their lifecycle ISSUED → LISTED → SOLD → RETIRED (ADR 0011)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Date, DateTime, Integer, Text, UniqueConstraint, Uuid
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel


class MarketLot(SQLModel, table=True):
    __tablename__ = "market_lots"
    __table_args__ = (UniqueConstraint("tenant_id", "id"), UniqueConstraint("tenant_id", "number"),
                      UniqueConstraint("tenant_id", "serial_start"), UniqueConstraint("tenant_id", "idempotency_key"))

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenants.id", nullable=False)
    number: int = Field(sa_column=Column(Integer, nullable=False))
    period_from: date = Field(sa_column=Column(Date, nullable=False))
    period_to: date = Field(sa_column=Column(Date, nullable=False))
    vintage: int = Field(sa_column=Column(Integer, nullable=False))
    status: str = Field(sa_column=Column(Text, nullable=False))
    records: int = Field(sa_column=Column(BigInteger, nullable=False))
    # Distinct accounts whose records the lot pools (migration 0022): its group, for the small-group rule.
    contributors: int = Field(sa_column=Column(BigInteger, nullable=False))
    pooled_mg: int = Field(sa_column=Column(BigInteger, nullable=False))
    buffer_mg: int = Field(sa_column=Column(BigInteger, nullable=False))
    reversed_mg: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))
    serial_start: int = Field(sa_column=Column(BigInteger, nullable=False))
    serial_kg: int = Field(sa_column=Column(BigInteger, nullable=False))
    retired_kg: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))
    cancelled_kg: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))
    shortfall_mg: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))
    composition: list[dict[str, Any]] = Field(sa_column=Column(JSONB, nullable=False))
    issued_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    issued_by: str = Field(sa_column=Column(Text, nullable=False))
    idempotency_key: str | None = Field(default=None, sa_column=Column(Text))
    listed_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    venue: str | None = Field(default=None, sa_column=Column(Text))
    sold_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    buyer: str | None = Field(default=None, sa_column=Column(Text))
    price_fen: int | None = Field(default=None, sa_column=Column(BigInteger))
    proceeds_points: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))


class MarketLotRecord(SQLModel, table=True):
    """A record pooled into a lot: its primary key is the record, so a record (and each of its
    milligrams) is in at most one lot, ever."""

    __tablename__ = "market_lot_records"

    record_id: uuid.UUID = Field(primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenants.id", nullable=False)
    lot_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False))
    reduction_mg: int = Field(sa_column=Column(BigInteger, nullable=False))


class MarketRetirement(SQLModel, table=True):
    __tablename__ = "market_retirements"
    __table_args__ = (UniqueConstraint("tenant_id", "serial_from"), UniqueConstraint("tenant_id", "idempotency_key"))

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenants.id", nullable=False)
    lot_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False))
    kilograms: int = Field(sa_column=Column(BigInteger, nullable=False))
    serial_from: int = Field(sa_column=Column(BigInteger, nullable=False))
    beneficiary: str = Field(sa_column=Column(Text, nullable=False))
    reason: str = Field(sa_column=Column(Text, nullable=False))
    retired_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    by_client: str = Field(sa_column=Column(Text, nullable=False))
    document: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    signature: str = Field(sa_column=Column(Text, nullable=False))
    idempotency_key: str | None = Field(default=None, sa_column=Column(Text))
    request_hash: str | None = Field(default=None, sa_column=Column(Text))


class MarketLotPayout(SQLModel, table=True):
    """A contributor's share of a lot's sale proceeds: its LOT_PROCEEDS ledger transaction (migration 0019)."""

    __tablename__ = "market_lot_payouts"
    __table_args__ = (UniqueConstraint("tenant_id", "lot_id", "account_id"),)

    transaction_id: uuid.UUID = Field(primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenants.id", nullable=False)
    lot_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False))
    account_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False))
    points: int = Field(sa_column=Column(BigInteger, nullable=False))
