"""Every SQL statement of behaviour ingestion. Set-based: one statement per step, whatever the batch size."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

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


async def statuses_and_consents(session: AsyncSession, tenant_id: uuid.UUID, provider_id: uuid.UUID,
                                account_ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[str, frozenset[str]]]:
    """Each visible account's status and the categories its live consent for `provider` covers.

    Read after the account lock, so a status change committed meanwhile is seen (another tenant's
    accounts are simply absent)."""
    rows = await session.execute(text("""
        SELECT a.id, a.status, c.categories FROM accounts a
        LEFT JOIN consents c ON c.tenant_id = a.tenant_id AND c.account_id = a.id AND c.provider_issuer_id = :p
             AND c.revoked_at IS NULL
        WHERE a.tenant_id = :t AND a.id = ANY(:ids)
    """), {"t": tenant_id, "p": provider_id, "ids": account_ids})
    return {account_id: (status, frozenset(categories or ())) for account_id, status, categories in rows.all()}


TotalKey = tuple[uuid.UUID, str, date]


async def daily_totals(session: AsyncSession, tenant_id: uuid.UUID, keys: list[TotalKey]) -> dict[TotalKey, int]:
    """Credited mg per (account, behaviour, local day)."""
    if not keys:
        return {}
    rows = await session.execute(text("""
        SELECT t.account_id, t.behavior_code, t.local_date, t.credited_mg
        FROM daily_behavior_totals t
        JOIN unnest(CAST(:a AS uuid[]), CAST(:c AS text[]), CAST(:d AS date[])) AS k(account_id, code, day)
          ON t.account_id = k.account_id AND t.behavior_code = k.code AND t.local_date = k.day
        WHERE t.tenant_id = :t
    """), {"t": tenant_id, "a": [k[0] for k in keys], "c": [k[1] for k in keys], "d": [k[2] for k in keys]})
    return {(a, c, d): mg for a, c, d, mg in rows.all()}


async def monthly_totals(session: AsyncSession, tenant_id: uuid.UUID, keys: list[TotalKey]) -> dict[TotalKey, int]:
    """Credited mg per (account, behaviour, local month starting at the key's date): the sum of that
    month's daily totals, one index range per key."""
    if not keys:
        return {}
    rows = await session.execute(text("""
        SELECT k.account_id, k.code, k.month, sum(t.credited_mg)::bigint
        FROM unnest(CAST(:a AS uuid[]), CAST(:c AS text[]), CAST(:d AS date[])) AS k(account_id, code, month)
        JOIN daily_behavior_totals t
          ON t.tenant_id = :t AND t.account_id = k.account_id AND t.behavior_code = k.code
         AND t.local_date >= k.month AND t.local_date < (k.month + interval '1 month')::date
        GROUP BY k.account_id, k.code, k.month
    """), {"t": tenant_id, "a": [k[0] for k in keys], "c": [k[1] for k in keys], "d": [k[2] for k in keys]})
    return {(a, c, m): mg for a, c, m, mg in rows.all()}


async def add_to_daily_totals(session: AsyncSession, tenant_id: uuid.UUID,
                              deltas: dict[TotalKey, tuple[int, int]]) -> None:
    """Add (mg, points) to each (account, behaviour, local day)."""
    items = sorted(deltas.items(), key=lambda item: (item[0][0].bytes, item[0][1], item[0][2]))
    if not items:
        return
    await session.execute(text("""
        INSERT INTO daily_behavior_totals AS t (tenant_id, account_id, behavior_code, local_date, credited_mg,
                                                credited_points)
        SELECT :t, * FROM unnest(CAST(:a AS uuid[]), CAST(:c AS text[]), CAST(:d AS date[]), CAST(:mg AS bigint[]),
                                 CAST(:pts AS bigint[]))
        ON CONFLICT (tenant_id, account_id, behavior_code, local_date)
        DO UPDATE SET credited_mg = t.credited_mg + excluded.credited_mg,
                      credited_points = t.credited_points + excluded.credited_points
    """), {"t": tenant_id, "a": [k[0] for k, _ in items], "c": [k[1] for k, _ in items],
           "d": [k[2] for k, _ in items], "mg": [v[0] for _, v in items], "pts": [v[1] for _, v in items]})


async def subtract_from_daily_total(session: AsyncSession, tenant_id: uuid.UUID, key: TotalKey, mg: int,
                                    points: int) -> None:
    """Take a reversed record's credit out of its day (the row exists: the credit put it there)."""
    await session.execute(text(
        "UPDATE daily_behavior_totals SET credited_mg = credited_mg - :mg, credited_points = credited_points - :p "
        "WHERE tenant_id = :t AND account_id = :a AND behavior_code = :c AND local_date = :d"),
        {"t": tenant_id, "a": key[0], "c": key[1], "d": key[2], "mg": mg, "p": points})


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
    # In external-id order: two batches sharing ids (for different accounts) then wait on each other's
    # index entries in one order, instead of deadlocking.
    records = sorted(records, key=lambda record: record.external_id)
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


@dataclass(frozen=True)
class Rejection:
    external_id: str
    account_id: uuid.UUID | None
    behavior_code: str | None
    code: str
    # DUPLICATE_ACROSS_PROVIDERS only: the record credited first, and what this report said.
    duplicate_of_record_id: uuid.UUID | None = None
    occurred_at: datetime | None = None
    evidence: str | None = None  # JSON text


async def log_rejections(session: AsyncSession, tenant_id: uuid.UUID, provider_id: uuid.UUID, received_at: datetime,
                         rejections: list[Rejection]) -> None:
    if rejections:
        await session.execute(text("""
            INSERT INTO behavior_rejections (id, tenant_id, provider_issuer_id, external_id, account_id, behavior_code,
                                             code, received_at, duplicate_of_record_id, occurred_at, evidence)
            SELECT gen_random_uuid(), :t, :p, r.external_id, r.account_id, r.behavior_code, r.code, :received,
                   r.duplicate_of, r.occurred_at, CAST(r.evidence AS jsonb)
            FROM unnest(CAST(:external AS text[]), CAST(:account AS uuid[]), CAST(:behavior AS text[]),
                        CAST(:code AS text[]), CAST(:duplicate_of AS uuid[]), CAST(:occurred AS timestamptz[]),
                        CAST(:evidence AS text[]))
                 AS r(external_id, account_id, behavior_code, code, duplicate_of, occurred_at, evidence)
        """), {"t": tenant_id, "p": provider_id, "received": received_at,
               "external": [r.external_id for r in rejections], "account": [r.account_id for r in rejections],
               "behavior": [r.behavior_code for r in rejections], "code": [r.code for r in rejections],
               "duplicate_of": [r.duplicate_of_record_id for r in rejections],
               "occurred": [r.occurred_at for r in rejections], "evidence": [r.evidence for r in rejections]})


@dataclass(frozen=True)
class CreditedReport:
    id: uuid.UUID
    account_id: uuid.UUID
    behavior_code: str
    occurred_at: datetime
    local_date: date
    evidence: dict[str, Any] | None
    linked: list[str]  # externalIds of the calling provider's reports already rejected as this record


async def credited_by_others(session: AsyncSession, tenant_id: uuid.UUID, provider_id: uuid.UUID,
                             probes: list[tuple[uuid.UUID, str, datetime, datetime]]) -> list[CreditedReport]:
    """Credited, unreversed records of other providers for (account, behaviour) that occurred between
    the two times; read under the accounts' locks, so every earlier commit is seen."""
    if not probes:
        return []
    rows = await session.execute(text("""
        SELECT r.id, r.account_id, r.behavior_code, r.occurred_at, r.local_date, r.evidence,
               ARRAY(SELECT j.external_id FROM behavior_rejections j
                      WHERE j.tenant_id = r.tenant_id AND j.duplicate_of_record_id = r.id
                        AND j.provider_issuer_id = :p) AS linked
          FROM (SELECT DISTINCT r.* FROM unnest(CAST(:accounts AS uuid[]), CAST(:codes AS text[]), CAST(:lo AS timestamptz[]),
                      CAST(:hi AS timestamptz[])) AS p(account_id, code, lo, hi)
          JOIN behavior_records r ON r.account_id = p.account_id AND r.occurred_at BETWEEN p.lo AND p.hi
         WHERE r.tenant_id = :t AND r.behavior_code = p.code AND r.provider_issuer_id <> :p
           AND r.reversed_at IS NULL) r
         ORDER BY r.occurred_at, r.id
    """), {"t": tenant_id, "p": provider_id, "accounts": [p[0] for p in probes], "codes": [p[1] for p in probes],
           "lo": [p[2] for p in probes], "hi": [p[3] for p in probes]})
    return [CreditedReport(*row) for row in rows.all()]


async def cross_provider_duplicates(session: AsyncSession, tenant_id: uuid.UUID, limit: int,
                                    after: tuple[datetime, uuid.UUID] | None) -> list[dict[str, Any]]:
    """Rejected cross-provider duplicates with the record each was recognised as, newest first."""
    condition = "AND (j.received_at, j.id) < (:after_at, :after_id)" if after is not None else ""
    rows = await session.execute(text(f"""
        SELECT j.id, j.received_at, j.account_id, j.behavior_code, j.external_id, j.occurred_at, j.evidence,
               rp.slug AS provider, r.id AS record_id, r.external_id AS record_external_id,
               r.occurred_at AS record_occurred_at, r.evidence AS record_evidence, r.received_at AS record_received_at,
               r.reduction_mg, r.points, cp.slug AS record_provider
          FROM behavior_rejections j
          JOIN issuers rp ON rp.tenant_id = j.tenant_id AND rp.id = j.provider_issuer_id
          JOIN behavior_records r ON r.tenant_id = j.tenant_id AND r.id = j.duplicate_of_record_id
          JOIN issuers cp ON cp.tenant_id = r.tenant_id AND cp.id = r.provider_issuer_id
         WHERE j.tenant_id = :t AND j.duplicate_of_record_id IS NOT NULL {condition}
         ORDER BY j.received_at DESC, j.id DESC LIMIT :limit
    """), {"t": tenant_id, "limit": limit, **({"after_at": after[0], "after_id": after[1]} if after else {})})
    return [dict(row) for row in rows.mappings()]


async def records_by_id(session: AsyncSession, provider_id: uuid.UUID, ids: list[uuid.UUID]) -> dict[uuid.UUID, dict]:
    """The provider's accepted records among `ids`, with what their outcome reports."""
    rows = await session.execute(text(
        "SELECT id, external_id, account_id, behavior_code, status, reduction_mg, points, occurred_at, received_at, "
        "reversed_at FROM behavior_records WHERE id = ANY(:ids) AND provider_issuer_id = :p"),
        {"ids": ids, "p": provider_id})
    return {row["id"]: dict(row) for row in rows.mappings()}


async def rejections_by_id(session: AsyncSession, provider_id: uuid.UUID,
                           ids: list[uuid.UUID]) -> dict[uuid.UUID, dict]:
    """The provider's rejected records among `ids`."""
    rows = await session.execute(text(
        "SELECT id, external_id, account_id, behavior_code, code, received_at FROM behavior_rejections "
        "WHERE id = ANY(:ids) AND provider_issuer_id = :p"), {"ids": ids, "p": provider_id})
    return {row["id"]: dict(row) for row in rows.mappings()}
