"""Tables of the tenants domain: cities, their versioned configuration, issuers, behaviour rules, catalogue.

Every table carries `tenant_id` (the `tenants` row is its own tenant) and is protected by row-level
security (see `app.db.rls`). Keys lead with `tenant_id` so the schema can be distributed by tenant or
account later without a redesign.

Versioning: a city's profile (names, time zone, point unit, conversion, claim window) and its behaviour
rules form one `TenantConfigVersion`, effective from a time. The version in force at an instant is the
one with the latest `effective_from` not after it (ties: the higher `version`). Issuers and catalogue
items are entities with identity and stock; they are updated in place and retired, never deleted.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

TENANT_NAMESPACE = uuid.UUID("9b0c1f7e-4c4e-4d8e-9a55-3c1c2b6a7d10")


def tenant_id_for(slug: str) -> uuid.UUID:
    """Tenant ids are derived from the slug, so configuration and tokens agree without a lookup."""
    return uuid.uuid5(TENANT_NAMESPACE, slug)


def _now_column() -> Any:
    return Column(DateTime(timezone=True), nullable=False, server_default=func.now())


class Tenant(SQLModel, table=True):
    __tablename__ = "tenants"

    id: uuid.UUID = Field(primary_key=True)
    slug: str = Field(sa_column=Column(Text, nullable=False, unique=True))
    created_at: datetime = Field(sa_column=_now_column())


class TenantConfigVersion(SQLModel, table=True):
    __tablename__ = "tenant_config_versions"
    __table_args__ = (
        UniqueConstraint("tenant_id", "version"),
        UniqueConstraint("tenant_id", "id"),
        Index("ix_tenant_config_versions_effective", "tenant_id", "effective_from", "version"),
        CheckConstraint("grams_per_point > 0", name="grams_per_point_positive"),
        CheckConstraint("unit_decimals BETWEEN 0 AND 4", name="unit_decimals_range"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenants.id", nullable=False)
    version: int = Field(nullable=False)
    effective_from: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    content_hash: str = Field(sa_column=Column(Text, nullable=False))
    name_en: str = Field(sa_column=Column(Text, nullable=False))
    name_zh: str = Field(sa_column=Column(Text, nullable=False))
    timezone: str = Field(sa_column=Column(Text, nullable=False))
    claim_window_days: int = Field(nullable=False)
    point_expiry_months: int | None = Field(default=None)
    unit_name_en: str = Field(sa_column=Column(Text, nullable=False))
    unit_name_zh: str = Field(sa_column=Column(Text, nullable=False))
    unit_singular_en: str = Field(sa_column=Column(Text, nullable=False))
    unit_singular_zh: str = Field(sa_column=Column(Text, nullable=False))
    unit_decimals: int = Field(nullable=False)
    grams_per_point: int = Field(nullable=False)
    source: str = Field(sa_column=Column(Text, nullable=False))
    document: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    created_at: datetime = Field(sa_column=_now_column())


class BehaviorRule(SQLModel, table=True):
    """One behaviour's pricing inside one configuration version. Milligrams CO2e throughout."""

    __tablename__ = "behavior_rules"
    __table_args__ = (
        UniqueConstraint("config_version_id", "code"),
        UniqueConstraint("tenant_id", "id"),
        ForeignKeyConstraint(["tenant_id", "config_version_id"],
                             ["tenant_config_versions.tenant_id", "tenant_config_versions.id"]),
        Index("ix_behavior_rules_tenant_version", "tenant_id", "config_version_id", "position"),
        CheckConstraint("factor_mg > 0", name="factor_positive"),
        CheckConstraint("category IN ('TRAVEL', 'CONSUMPTION', 'LIFE')", name="category_known"),
        CheckConstraint("method IN ('PER_UNIT', 'PER_EVENT', 'PER_DISTANCE')", name="method_known"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenants.id", nullable=False)
    config_version_id: uuid.UUID = Field(nullable=False)
    position: int = Field(nullable=False)
    code: str = Field(sa_column=Column(Text, nullable=False))
    name_en: str = Field(sa_column=Column(Text, nullable=False))
    name_zh: str = Field(sa_column=Column(Text, nullable=False))
    category: str = Field(sa_column=Column(Text, nullable=False))
    method: str = Field(sa_column=Column(Text, nullable=False))
    unit: str = Field(sa_column=Column(Text, nullable=False))
    factor_mg: int = Field(sa_column=Column(BigInteger, nullable=False))
    baseline_mg_per_km: int | None = Field(default=None, sa_column=Column(BigInteger))
    mode_mg_per_km: int | None = Field(default=None, sa_column=Column(BigInteger))
    cap_mg_per_day: int | None = Field(default=None, sa_column=Column(BigInteger))
    cap_mg_per_month: int | None = Field(default=None, sa_column=Column(BigInteger))
    cap_mg_per_event: int | None = Field(default=None, sa_column=Column(BigInteger))
    source: str = Field(sa_column=Column(Text, nullable=False))
    # {"match": TRIP|BILL|DAY|REFERENCE|NONE, "window_minutes": n}; null in versions published before it
    # existed (migration 0016): no recognition across providers.
    same_behavior: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB))


class Issuer(SQLModel, table=True):
    __tablename__ = "issuers"
    __table_args__ = (UniqueConstraint("tenant_id", "slug"), UniqueConstraint("tenant_id", "id"))

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenants.id", nullable=False)
    slug: str = Field(sa_column=Column(Text, nullable=False))
    kind: str = Field(sa_column=Column(Text, nullable=False))
    name_en: str = Field(sa_column=Column(Text, nullable=False))
    name_zh: str = Field(sa_column=Column(Text, nullable=False))
    description: str | None = Field(default=None, sa_column=Column(Text))
    position: int = Field(nullable=False)
    active: bool = Field(default=True, nullable=False)
    created_at: datetime = Field(sa_column=_now_column())
    updated_at: datetime = Field(sa_column=_now_column())


class Reward(SQLModel, table=True):
    """A catalogue item. `cost_points` is in the currency's smallest unit; NULL `stock_total` is unlimited.

    Remaining stock is `stock_total - stock_taken` (never below zero). `stock_taken` is monotonic
    bookkeeping of units handed out, so editing the total never re-issues units already taken."""

    __tablename__ = "rewards"
    __table_args__ = (
        UniqueConstraint("tenant_id", "code"),
        UniqueConstraint("tenant_id", "id"),
        ForeignKeyConstraint(["tenant_id", "sponsor_issuer_id"], ["issuers.tenant_id", "issuers.id"]),
        Index("ix_rewards_page", "tenant_id", "position", "id"),
        CheckConstraint("cost_points >= 0", name="cost_non_negative"),
        CheckConstraint("stock_total >= 0", name="stock_total_non_negative"),
        # Units taken only ever grow (redemptions; cancellations give back through their own rows), so a
        # stock edit can never re-issue units already taken.
        CheckConstraint("stock_taken >= 0", name="stock_taken_non_negative"),
        CheckConstraint("kind IN ('REWARD', 'DONATION', 'FINANCIAL_SERVICE')", name="kind_known"),
        CheckConstraint("managed_by IN ('FILE', 'ADMIN')", name="managed_by_known"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenants.id", nullable=False)
    code: str = Field(sa_column=Column(Text, nullable=False))
    kind: str = Field(sa_column=Column(Text, nullable=False))
    position: int = Field(nullable=False)
    name_en: str = Field(sa_column=Column(Text, nullable=False))
    name_zh: str = Field(sa_column=Column(Text, nullable=False))
    description_en: str | None = Field(default=None, sa_column=Column(Text))
    description_zh: str | None = Field(default=None, sa_column=Column(Text))
    cost_points: int = Field(sa_column=Column(BigInteger, nullable=False))
    stock_total: int | None = Field(default=None, sa_column=Column(BigInteger))
    stock_taken: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))
    per_account_limit: int | None = Field(default=None)
    limit_period: str = Field(sa_column=Column(Text, nullable=False))
    valid_from: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    valid_to: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    sponsor_issuer_id: uuid.UUID = Field(nullable=False)

    @property
    def stock_remaining(self) -> int | None:
        return None if self.stock_total is None else max(self.stock_total - self.stock_taken, 0)
    cancellation_window_hours: int = Field(nullable=False, default=0)
    bank_linked_only: bool = Field(nullable=False, default=False)
    min_contribution_mg: int = Field(sa_column=Column(BigInteger, nullable=False, server_default="0"))
    active: bool = Field(default=True, nullable=False)
    # FILE: declared in the city's file (`file_hash`: that declaration as last applied); ADMIN: made
    # through the API. See docs/adr/0007-catalogue-administration.md.
    managed_by: str = Field(default="FILE", sa_column=Column(Text, nullable=False, server_default="FILE"))
    file_hash: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(sa_column=_now_column())
    updated_at: datetime = Field(sa_column=_now_column())


class AdminAuditEvent(SQLModel, table=True):
    """One change an administrator made through the API: who, when, what, before and after.
    Append-only (the app role may read and insert only)."""

    __tablename__ = "admin_audit_events"
    __table_args__ = (Index("ix_admin_audit_events_at", "tenant_id", "at", "id"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenants.id", nullable=False)
    at: datetime = Field(sa_column=_now_column())
    by_client: str = Field(sa_column=Column(Text, nullable=False))
    action: str = Field(sa_column=Column(Text, nullable=False))
    target_type: str = Field(sa_column=Column(Text, nullable=False))
    target_id: uuid.UUID = Field(nullable=False)
    changes: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
