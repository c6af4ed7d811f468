"""Double-entry, append-only ledger (ADR 0004).

* `ledger_accounts`: one per (citizen account, asset) and per (tenant system account, asset). Assets:
  `CONTRIBUTION_MG` (milligrams CO2e, not spendable) and `POINTS` (the tenant's currency, smallest unit).
  Citizen balances are kept here, updated in the same transaction as their postings, and can never be
  negative (a CHECK constraint). System accounts (e.g. `issuance`) are unbounded sources like
  Formance's `@world`: their balance is not maintained row by row, which would make every credit in a
  city contend on one hot row; it is derived from postings on demand.
* `ledger_transactions`: one per movement (e.g. one per credited behaviour record); also the account's
  activity journal, so it carries what the activity shows.
* `ledger_postings`: signed amounts; per transaction and asset they sum to zero. Never updated or
  deleted: the app role has SELECT and INSERT only.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKeyConstraint,
    Identity,
    Index,
    LargeBinary,
    SmallInteger,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    text,
)
from sqlmodel import Field, SQLModel

CONTRIBUTION = "CONTRIBUTION_MG"
POINTS = "POINTS"
ASSETS = (CONTRIBUTION, POINTS)


class LedgerAccount(SQLModel, table=True):
    __tablename__ = "ledger_accounts"
    __table_args__ = (
        Index("uq_ledger_accounts_citizen", "tenant_id", "account_id", "asset", unique=True,
              postgresql_where=text("account_id IS NOT NULL")),
        Index("uq_ledger_accounts_system", "tenant_id", "code", "asset", unique=True,
              postgresql_where=text("account_id IS NULL")),
        CheckConstraint("asset IN ('CONTRIBUTION_MG', 'POINTS')", name="asset_known"),
        # The database, not only the code, keeps citizens out of the red.
        CheckConstraint("account_id IS NULL OR balance >= 0", name="citizen_balance_non_negative"),
        CheckConstraint("tracks_balance OR balance = 0", name="untracked_balance_zero"),
        CheckConstraint("points_consumed >= 0 AND earned_matured >= 0 AND points_owed >= 0", name="lots_non_negative"),
        UniqueConstraint("tenant_id", "id"),
        ForeignKeyConstraint(["tenant_id", "account_id"], ["accounts.tenant_id", "accounts.id"]),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenants.id", nullable=False)
    account_id: uuid.UUID | None = Field(default=None, sa_column=Column(Uuid))
    code: str = Field(sa_column=Column(Text, nullable=False))
    asset: str = Field(sa_column=Column(Text, nullable=False))
    balance: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))
    tracks_balance: bool = Field(default=True, sa_column=Column(Boolean, nullable=False, server_default="true"))
    # On a citizen's POINTS account: contribution (mg) credited but not yet worth a whole smallest point
    # unit, carried to the next credit so no conversion remainder is ever lost (ADR 0004).
    unconverted_mg: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))
    # Earning lots, FIFO (ADR 0005), on a citizen's POINTS account: points consumed so far by spending and
    # expiry (oldest lots first; a cancelled redemption gives back), and the points earned on local days
    # before `matured_through` (the last expiry cut-off).
    points_consumed: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))
    earned_matured: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))
    matured_through: date | None = Field(default=None, sa_column=Column(Date))
    # Points a reversal could not take back because they were already spent (the balance floor stays 0);
    # a later cancellation of a redemption repays this first (ADR 0005).
    points_owed: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()))


class LedgerTransaction(SQLModel, table=True):
    __tablename__ = "ledger_transactions"
    __table_args__ = (
        Index("ix_ledger_transactions_activity", "account_id", "occurred_at", "id"),
        # A record is credited once and reversed at most once; a redemption is spent once and cancelled
        # at most once: the database refuses a second one, whatever the code does.
        Index("uq_ledger_transactions_record_kind", "tenant_id", "behavior_record_id", "kind", unique=True,
              postgresql_where=text("behavior_record_id IS NOT NULL")),
        Index("uq_ledger_transactions_redemption_kind", "tenant_id", "redemption_id", "kind", unique=True,
              postgresql_where=text("redemption_id IS NOT NULL")),
        CheckConstraint("kind IN ('BEHAVIOR_CREDIT', 'BEHAVIOR_REVERSAL', 'REDEMPTION', 'DONATION', "
                        "'REDEMPTION_CANCELLED', 'EXPIRY', 'LOT_PROCEEDS')", name="kind_known"),
        CheckConstraint("shortfall_points >= 0", name="shortfall_non_negative"),
        UniqueConstraint("tenant_id", "id"),
        ForeignKeyConstraint(["tenant_id", "account_id"], ["accounts.tenant_id", "accounts.id"]),
        ForeignKeyConstraint(["tenant_id", "behavior_record_id"], ["behavior_records.tenant_id", "behavior_records.id"]),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenants.id", nullable=False)
    account_id: uuid.UUID | None = Field(default=None, sa_column=Column(Uuid))
    kind: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(sa_column=Column(Text, nullable=False))
    occurred_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    posted_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()))
    behavior_record_id: uuid.UUID | None = Field(default=None, sa_column=Column(Uuid))
    behavior_code: str | None = Field(default=None, sa_column=Column(Text))
    # What the account's activity shows; equal to this transaction's postings on the citizen's accounts.
    reduction_mg: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))
    points: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))
    # Contribution this transaction converted into points (mg); with the carry (unconverted_mg) it proves
    # that no conversion remainder is lost.
    converted_mg: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))
    redemption_id: uuid.UUID | None = Field(default=None, sa_column=Column(Uuid))
    # Reversal of points already spent: what could not be taken back (the balance floor stays 0).
    shortfall_points: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))


class LedgerPosting(SQLModel, table=True):
    __tablename__ = "ledger_postings"
    __table_args__ = (
        Index("ix_ledger_postings_transaction", "transaction_id"),
        Index("ix_ledger_postings_account", "ledger_account_id"),
        CheckConstraint("amount <> 0", name="amount_not_zero"),
        CheckConstraint("asset IN ('CONTRIBUTION_MG', 'POINTS')", name="asset_known"),
        ForeignKeyConstraint(["tenant_id", "transaction_id"], ["ledger_transactions.tenant_id", "ledger_transactions.id"]),
        ForeignKeyConstraint(["tenant_id", "ledger_account_id"], ["ledger_accounts.tenant_id", "ledger_accounts.id"]),
    )

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(always=True), primary_key=True))
    tenant_id: uuid.UUID = Field(foreign_key="tenants.id", nullable=False)
    transaction_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False))
    ledger_account_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False))
    asset: str = Field(sa_column=Column(Text, nullable=False))
    amount: int = Field(sa_column=Column(BigInteger, nullable=False))
    posted_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()))


class LedgerDailyRollup(SQLModel, table=True):
    """The ledger summed per city, local day and dimension (migration 0011; kept by a trigger on
    `ledger_transactions`, verified by `rollups_match_ledger`). Sum the shards to read a figure."""

    __tablename__ = "ledger_daily_rollups"

    tenant_id: uuid.UUID = Field(foreign_key="tenants.id", primary_key=True)
    local_date: date = Field(primary_key=True)
    kind: str = Field(sa_column_kwargs={"primary_key": True}, sa_type=Text)
    behavior_code: str = Field(sa_column_kwargs={"primary_key": True}, sa_type=Text)
    provider: str = Field(sa_column_kwargs={"primary_key": True}, sa_type=Text)
    reward_code: str = Field(sa_column_kwargs={"primary_key": True}, sa_type=Text)
    shard: int = Field(sa_column_kwargs={"primary_key": True}, sa_type=SmallInteger)
    transactions: int = Field(sa_column=Column(BigInteger, nullable=False))
    reduction_mg: int = Field(sa_column=Column(BigInteger, nullable=False))
    points: int = Field(sa_column=Column(BigInteger, nullable=False))


class LedgerChainEntry(SQLModel, table=True):
    """A transaction's place in its account's hash chain (migration 0017, app/ledger/chain.py):
    `hash = sha256(prev_hash || content)`; sealed by the checkpoint `checkpoint_number` once taken."""

    __tablename__ = "ledger_chain"
    __table_args__ = (UniqueConstraint("tenant_id", "chain_key", "seq", name="uq_ledger_chain_seq"),)

    transaction_id: uuid.UUID = Field(primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenants.id", nullable=False)
    chain_key: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False))
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    prev_hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    checkpoint_number: int | None = Field(default=None, sa_column=Column(BigInteger))


class LedgerCheckpoint(SQLModel, table=True):
    """A city's signed seal over the chain entries added since its previous checkpoint (migration 0017)."""

    __tablename__ = "ledger_checkpoints"

    tenant_id: uuid.UUID = Field(foreign_key="tenants.id", primary_key=True)
    number: int = Field(sa_column_kwargs={"primary_key": True}, sa_type=BigInteger)
    at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    entries: int = Field(sa_column=Column(BigInteger, nullable=False))
    merkle_root: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    previous_root: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    root: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    key_id: str = Field(sa_column=Column(Text, nullable=False))
    signature: str = Field(sa_column=Column(Text, nullable=False))


class LedgerDayFlow(SQLModel, table=True):
    """The ledger's flows per city and local day, as the dashboard shows them: reduction, points issued,
    redeemed and expired (migration 0014; kept by a trigger, verified by `flows_match_rollups`). Sum the
    shards to read a figure."""

    __tablename__ = "ledger_day_flows"

    tenant_id: uuid.UUID = Field(foreign_key="tenants.id", primary_key=True)
    local_date: date = Field(primary_key=True)
    shard: int = Field(sa_column_kwargs={"primary_key": True}, sa_type=SmallInteger)
    transactions: int = Field(sa_column=Column(BigInteger, nullable=False))
    reduction_mg: int = Field(sa_column=Column(BigInteger, nullable=False))
    issued: int = Field(sa_column=Column(BigInteger, nullable=False))
    redeemed: int = Field(sa_column=Column(BigInteger, nullable=False))
    expired: int = Field(sa_column=Column(BigInteger, nullable=False))


class LedgerFlowTotal(SQLModel, table=True):
    """`ledger_day_flows` summed over all days, per city (migration 0014): points outstanding at the end
    of a day without reading the days before it."""

    __tablename__ = "ledger_flow_totals"

    tenant_id: uuid.UUID = Field(foreign_key="tenants.id", primary_key=True)
    shard: int = Field(sa_column_kwargs={"primary_key": True}, sa_type=SmallInteger)
    transactions: int = Field(sa_column=Column(BigInteger, nullable=False))
    reduction_mg: int = Field(sa_column=Column(BigInteger, nullable=False))
    issued: int = Field(sa_column=Column(BigInteger, nullable=False))
    redeemed: int = Field(sa_column=Column(BigInteger, nullable=False))
    expired: int = Field(sa_column=Column(BigInteger, nullable=False))
