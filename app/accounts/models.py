"""Personal carbon accounts and the consents citizens give data providers.

No personal data in clear: the holder's reference (the city app's id for the citizen) and the bank
account reference are stored only as keyed hashes (HMAC-SHA256 with a per-tenant key), the bank
account also as a mask showing its last four characters.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKeyConstraint,
    Index,
    LargeBinary,
    SmallInteger,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel


class Account(SQLModel, table=True):
    __tablename__ = "accounts"
    __table_args__ = (
        UniqueConstraint("tenant_id", "holder_hash", name="uq_accounts_holder"),
        UniqueConstraint("tenant_id", "id"),
        CheckConstraint("kind IN ('GUEST', 'BANK_LINKED')", name="kind_known"),
        CheckConstraint("status IN ('ACTIVE', 'FROZEN', 'CLOSED')", name="status_known"),
        CheckConstraint("(kind = 'BANK_LINKED') = (bank_account_hash IS NOT NULL)", name="bank_link_consistent"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenants.id", nullable=False)
    holder_hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    kind: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(sa_column=Column(Text, nullable=False, server_default="ACTIVE"))
    bank_account_hash: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
    bank_account_mask: str | None = Field(default=None, sa_column=Column(Text))
    opened_by: str = Field(sa_column=Column(Text, nullable=False))
    agreement_accepted_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    opened_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()))
    bank_linked_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    closed_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()))


class AccountEvent(SQLModel, table=True):
    """Append-only history of an account's lifecycle: opened, bank linked, frozen, unfrozen, closed."""

    __tablename__ = "account_events"
    __table_args__ = (
        Index("ix_account_events_account", "tenant_id", "account_id", "at"),
        ForeignKeyConstraint(["tenant_id", "account_id"], ["accounts.tenant_id", "accounts.id"]),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenants.id", nullable=False)
    account_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False))
    kind: str = Field(sa_column=Column(Text, nullable=False))
    by_client: str = Field(sa_column=Column(Text, nullable=False))
    reason: str | None = Field(default=None, sa_column=Column(Text))
    at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()))


class Consent(SQLModel, table=True):
    """An account's authorisation of one data provider for some behaviour categories.

    At most one live (unrevoked) consent per account and provider; a new grant revokes the previous
    one and starts a new row, so the history of what was authorised when is kept.
    """

    __tablename__ = "consents"
    __table_args__ = (
        Index("uq_consents_live", "tenant_id", "account_id", "provider_issuer_id", unique=True,
              postgresql_where=text("revoked_at IS NULL")),
        Index("ix_consents_account", "tenant_id", "account_id", "granted_at"),
        CheckConstraint("cardinality(categories) > 0", name="categories_not_empty"),
        ForeignKeyConstraint(["tenant_id", "account_id"], ["accounts.tenant_id", "accounts.id"]),
        ForeignKeyConstraint(["tenant_id", "provider_issuer_id"], ["issuers.tenant_id", "issuers.id"]),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenants.id", nullable=False)
    account_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False))
    provider_issuer_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False))
    categories: list[str] = Field(sa_column=Column(ARRAY(Text), nullable=False))
    granted_by: str = Field(sa_column=Column(Text, nullable=False))
    granted_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    revoked_by: str | None = Field(default=None, sa_column=Column(Text))


class AccountDailyRollup(SQLModel, table=True):
    """Accounts' lifecycle events summed per city, local day and event (migration 0012; kept by a
    trigger on `account_events`, verified by `account_rollups_match_events`). Sum the shards to read."""

    __tablename__ = "account_daily_rollups"

    tenant_id: uuid.UUID = Field(foreign_key="tenants.id", primary_key=True)
    local_date: date = Field(primary_key=True)
    event: str = Field(sa_column_kwargs={"primary_key": True}, sa_type=Text)
    shard: int = Field(sa_column_kwargs={"primary_key": True}, sa_type=SmallInteger)
    events: int = Field(sa_column=Column(BigInteger, nullable=False))


class AccountActivityDay(SQLModel, table=True):
    """A local day on which an account earned or spent points (migration 0013; kept by a trigger on
    `ledger_transactions`, verified by `activity_days_match_ledger`). Personal: tenant-scoped only."""

    __tablename__ = "account_activity_days"

    tenant_id: uuid.UUID = Field(foreign_key="tenants.id", primary_key=True)
    account_id: uuid.UUID = Field(primary_key=True)
    local_date: date = Field(primary_key=True)


class ActiveAccountRollup(SQLModel, table=True):
    """Accounts active per city and local day (migration 0013). Sum the shards to read."""

    __tablename__ = "active_account_rollups"

    tenant_id: uuid.UUID = Field(foreign_key="tenants.id", primary_key=True)
    local_date: date = Field(primary_key=True)
    shard: int = Field(sa_column_kwargs={"primary_key": True}, sa_type=SmallInteger)
    accounts: int = Field(sa_column=Column(BigInteger, nullable=False))


class ActiveAccountLink(SQLModel, table=True):
    """Accounts whose active day `local_date` follows their previous active day `first_day` (at most 366
    days before), per city (migration 0013): what lets the dashboard count each account once. Sum the
    shards to read."""

    __tablename__ = "active_account_links"

    tenant_id: uuid.UUID = Field(foreign_key="tenants.id", primary_key=True)
    first_day: date = Field(primary_key=True)
    local_date: date = Field(primary_key=True)
    shard: int = Field(sa_column_kwargs={"primary_key": True}, sa_type=SmallInteger)
    accounts: int = Field(sa_column=Column(BigInteger, nullable=False))


class AccountEventTotal(SQLModel, table=True):
    """Accounts' lifecycle events per city and event, all time (migration 0014; kept by a trigger on
    `account_events`, verified by `account_totals_match_rollups`): accounts at the end of a day without
    reading the days before it. Sum the shards to read."""

    __tablename__ = "account_event_totals"

    tenant_id: uuid.UUID = Field(foreign_key="tenants.id", primary_key=True)
    event: str = Field(sa_column_kwargs={"primary_key": True}, sa_type=Text)
    shard: int = Field(sa_column_kwargs={"primary_key": True}, sa_type=SmallInteger)
    events: int = Field(sa_column=Column(BigInteger, nullable=False))
