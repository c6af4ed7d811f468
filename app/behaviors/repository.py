"""Every SQL statement of behaviour ingestion. Set-based: one statement per step, whatever the batch size."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True)
class VersionRow:
    id: uuid.UUID
    version: int
    effective_from: datetime
    timezone: str
    claim_window_days: int
    grams_per_point: int
    unit_decimals: int


async def config_versions(session: AsyncSession, tenant_id: uuid.UUID) -> list[VersionRow]:
    """All versions of the tenant, in force order (effective_from, version). A handful of rows."""
    rows = await session.execute(text(
        "SELECT id, version, effective_from, timezone, claim_window_days, grams_per_point, unit_decimals "
        "FROM tenant_config_versions WHERE tenant_id = :t ORDER BY effective_from, version"), {"t": tenant_id})
    return [VersionRow(*row) for row in rows.all()]


async def rules_of_versions(session: AsyncSession, version_ids: list[uuid.UUID]):  # type: ignore[no-untyped-def]
    rows = await session.execute(text(
        "SELECT * FROM behavior_rules WHERE config_version_id = ANY(:ids)"), {"ids": version_ids})
    return rows.mappings().all()


async def issuer_id(session: AsyncSession, tenant_id: uuid.UUID, slug: str) -> uuid.UUID | None:
    return (await session.execute(text(
        "SELECT id FROM issuers WHERE tenant_id = :t AND slug = :s AND active"), {"t": tenant_id, "s": slug})).scalar()


@dataclass(frozen=True)
class LockedAccount:
    id: uuid.UUID
    status: str
    unconverted_mg: int


async def lock_accounts(session: AsyncSession, tenant_id: uuid.UUID,
                        account_ids: list[uuid.UUID]) -> dict[uuid.UUID, LockedAccount]:
    """Lock the accounts' rows in id order (the platform-wide lock order for per-account writes).

    Every write that touches an account's balances, totals or carry first takes this lock, so
    concurrent batches for one account serialise here and cannot deadlock on the rows behind it.
    """
    rows = await session.execute(text(
        "SELECT id, status, unconverted_mg FROM accounts WHERE tenant_id = :t AND id = ANY(:ids) "
        "ORDER BY id FOR UPDATE"), {"t": tenant_id, "ids": sorted(set(account_ids))})
    return {row[0]: LockedAccount(*row) for row in rows.all()}


@dataclass(frozen=True)
class ExistingRecord:
    id: uuid.UUID
    external_id: str
    status: str
    reduction_mg: int
    points: int


async def existing_records(session: AsyncSession, tenant_id: uuid.UUID, provider_id: uuid.UUID,
                           external_ids: list[str]) -> dict[str, ExistingRecord]:
    rows = await session.execute(text(
        "SELECT id, external_id, status, reduction_mg, points FROM behavior_records "
        "WHERE tenant_id = :t AND provider_issuer_id = :p AND external_id = ANY(:ids)"),
        {"t": tenant_id, "p": provider_id, "ids": external_ids})
    return {row[1]: ExistingRecord(*row) for row in rows.all()}


async def live_consents(session: AsyncSession, tenant_id: uuid.UUID, provider_id: uuid.UUID,
                        account_ids: list[uuid.UUID]) -> dict[uuid.UUID, frozenset[str]]:
    rows = await session.execute(text(
        "SELECT account_id, categories FROM consents WHERE tenant_id = :t AND provider_issuer_id = :p "
        "AND revoked_at IS NULL AND account_id = ANY(:ids)"), {"t": tenant_id, "p": provider_id, "ids": account_ids})
    return {account_id: frozenset(categories) for account_id, categories in rows.all()}


TotalKey = tuple[uuid.UUID, str, date]


async def daily_totals(session: AsyncSession, tenant_id: uuid.UUID, keys: list[TotalKey]) -> dict[TotalKey, int]:
    return await _totals(session, "daily_behavior_totals", "local_date", tenant_id, keys)


async def monthly_totals(session: AsyncSession, tenant_id: uuid.UUID, keys: list[TotalKey]) -> dict[TotalKey, int]:
    return await _totals(session, "monthly_behavior_totals", "month", tenant_id, keys)


async def _totals(session: AsyncSession, table: str, column: str, tenant_id: uuid.UUID,
                  keys: list[TotalKey]) -> dict[TotalKey, int]:
    if not keys:
        return {}
    rows = await session.execute(text(f"""
        SELECT t.account_id, t.behavior_code, t.{column}, t.credited_mg
        FROM {table} t
        JOIN unnest(CAST(:a AS uuid[]), CAST(:c AS text[]), CAST(:d AS date[])) AS k(account_id, code, day)
          ON t.account_id = k.account_id AND t.behavior_code = k.code AND t.{column} = k.day
        WHERE t.tenant_id = :t
    """), {"t": tenant_id, "a": [k[0] for k in keys], "c": [k[1] for k in keys], "d": [k[2] for k in keys]})
    return {(a, c, d): mg for a, c, d, mg in rows.all()}


async def add_to_totals(session: AsyncSession, tenant_id: uuid.UUID, daily: dict[TotalKey, int],
                        monthly: dict[TotalKey, int]) -> None:
    for table, column, deltas in (("daily_behavior_totals", "local_date", daily),
                                  ("monthly_behavior_totals", "month", monthly)):
        items = sorted(deltas.items())
        if not items:
            continue
        await session.execute(text(f"""
            INSERT INTO {table} AS t (tenant_id, account_id, behavior_code, {column}, credited_mg)
            SELECT :t, * FROM unnest(CAST(:a AS uuid[]), CAST(:c AS text[]), CAST(:d AS date[]), CAST(:mg AS bigint[]))
            ON CONFLICT (tenant_id, account_id, behavior_code, {column})
            DO UPDATE SET credited_mg = t.credited_mg + excluded.credited_mg
        """), {"t": tenant_id, "a": [k[0] for k, _ in items], "c": [k[1] for k, _ in items],
               "d": [k[2] for k, _ in items], "mg": [mg for _, mg in items]})


@dataclass(frozen=True)
class NewRecord:
    id: uuid.UUID
    account_id: uuid.UUID
    external_id: str
    behavior_code: str
    rule_id: uuid.UUID
    config_version: int
    quantity: Decimal
    occurred_at: datetime
    local_date: date
    status: str
    requested_mg: int
    reduction_mg: int
    points: int
    evidence: str | None  # JSON text


async def insert_records(session: AsyncSession, tenant_id: uuid.UUID, provider_id: uuid.UUID,
                         received_at: datetime, records: list[NewRecord]) -> int:
    """Insert accepted records; returns how many were inserted (fewer means a concurrent duplicate)."""
    if not records:
        return 0
    result = await session.execute(text("""
        INSERT INTO behavior_records (id, tenant_id, account_id, provider_issuer_id, external_id, behavior_code,
            rule_id, config_version, quantity, occurred_at, local_date, received_at, status, requested_mg,
            reduction_mg, points, evidence)
        SELECT r.id, :t, r.account_id, :p, r.external_id, r.code, r.rule_id, r.version, r.quantity, r.occurred_at,
               r.local_date, :received, r.status, r.requested, r.reduction, r.points, r.evidence::jsonb
        FROM unnest(CAST(:id AS uuid[]), CAST(:account AS uuid[]), CAST(:external AS text[]), CAST(:code AS text[]),
                    CAST(:rule AS uuid[]), CAST(:version AS int[]), CAST(:quantity AS numeric[]),
                    CAST(:occurred AS timestamptz[]), CAST(:local_date AS date[]), CAST(:status AS text[]),
                    CAST(:requested AS bigint[]), CAST(:reduction AS bigint[]), CAST(:points AS bigint[]),
                    CAST(:evidence AS text[]))
             AS r(id, account_id, external_id, code, rule_id, version, quantity, occurred_at, local_date, status,
                  requested, reduction, points, evidence)
        ON CONFLICT (tenant_id, provider_issuer_id, external_id) DO NOTHING
    """), {
        "t": tenant_id, "p": provider_id, "received": received_at,
        "id": [r.id for r in records], "account": [r.account_id for r in records],
        "external": [r.external_id for r in records], "code": [r.behavior_code for r in records],
        "rule": [r.rule_id for r in records], "version": [r.config_version for r in records],
        "quantity": [r.quantity for r in records], "occurred": [r.occurred_at for r in records],
        "local_date": [r.local_date for r in records], "status": [r.status for r in records],
        "requested": [r.requested_mg for r in records], "reduction": [r.reduction_mg for r in records],
        "points": [r.points for r in records], "evidence": [r.evidence for r in records],
    })
    return result.rowcount


async def set_carries(session: AsyncSession, carries: dict[uuid.UUID, int]) -> None:
    items = sorted(carries.items())
    if items:
        await session.execute(text("""
            UPDATE accounts a SET unconverted_mg = c.carry
            FROM unnest(CAST(:ids AS uuid[]), CAST(:carry AS bigint[])) AS c(id, carry)
            WHERE a.id = c.id
        """), {"ids": [i for i, _ in items], "carry": [c for _, c in items]})


async def log_rejections(session: AsyncSession, tenant_id: uuid.UUID, provider_id: uuid.UUID, received_at: datetime,
                         rejections: list[tuple[str, uuid.UUID | None, str | None, str]]) -> None:
    """(external_id, account_id or None, behaviour code or None, code)."""
    if rejections:
        await session.execute(text("""
            INSERT INTO behavior_rejections (id, tenant_id, provider_issuer_id, external_id, account_id, behavior_code,
                                             code, received_at)
            SELECT gen_random_uuid(), :t, :p, r.external_id, r.account_id, r.behavior_code, r.code, :received
            FROM unnest(CAST(:external AS text[]), CAST(:account AS uuid[]), CAST(:behavior AS text[]),
                        CAST(:code AS text[])) AS r(external_id, account_id, behavior_code, code)
        """), {"t": tenant_id, "p": provider_id, "received": received_at,
               "external": [r[0] for r in rejections], "account": [r[1] for r in rejections],
               "behavior": [r[2] for r in rejections], "code": [r[3] for r in rejections]})
