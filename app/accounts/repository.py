"""Every SQL statement of the accounts domain (accounts, events, consents, and the account read side)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Account, Consent


async def insert_account_if_absent(session: AsyncSession, values: dict[str, Any]) -> uuid.UUID | None:
    """Insert unless the holder already has an account in the tenant; returns the new id or None."""
    row = await session.execute(text("""
        INSERT INTO accounts (id, tenant_id, holder_hash, kind, status, bank_account_hash, bank_account_mask,
                              opened_by, agreement_accepted_at, opened_at, bank_linked_at, updated_at)
        VALUES (:id, :tenant_id, :holder_hash, :kind, 'ACTIVE', :bank_account_hash, :bank_account_mask,
                :opened_by, :now, :now, :bank_linked_at, :now)
        ON CONFLICT (tenant_id, holder_hash) DO NOTHING
        RETURNING id
    """), values)
    return row.scalar()


async def account_by_holder(session: AsyncSession, tenant_id: uuid.UUID, holder_hash: bytes) -> Account | None:
    row = (await session.execute(text("SELECT * FROM accounts WHERE tenant_id = :t AND holder_hash = :h"),
                                 {"t": tenant_id, "h": holder_hash})).mappings().first()
    return Account(**row) if row else None


async def lock_account(session: AsyncSession, tenant_id: uuid.UUID, account_id: uuid.UUID) -> Account | None:
    row = (await session.execute(text("SELECT * FROM accounts WHERE tenant_id = :t AND id = :id FOR UPDATE"),
                                 {"t": tenant_id, "id": account_id})).mappings().first()
    return Account(**row) if row else None


async def update_account(session: AsyncSession, account_id: uuid.UUID, values: dict[str, Any]) -> Account:
    assignments = ", ".join(f"{key} = :{key}" for key in values)
    row = (await session.execute(text(f"UPDATE accounts SET {assignments}, updated_at = now() WHERE id = :id "
                                      "RETURNING *"), {**values, "id": account_id})).mappings().one()
    return Account(**row)


async def add_event(session: AsyncSession, tenant_id: uuid.UUID, account_id: uuid.UUID, kind: str,
                    by_client: str, at: datetime, reason: str | None = None) -> None:
    await session.execute(text(
        "INSERT INTO account_events (id, tenant_id, account_id, kind, by_client, reason, at) "
        "VALUES (:id, :t, :a, :k, :c, :r, :at)"),
        {"id": uuid.uuid4(), "t": tenant_id, "a": account_id, "k": kind, "c": by_client, "r": reason, "at": at})


async def provider_id(session: AsyncSession, tenant_id: uuid.UUID, slug: str) -> uuid.UUID | None:
    return (await session.execute(text(
        "SELECT id FROM issuers WHERE tenant_id = :t AND slug = :s AND active"), {"t": tenant_id, "s": slug})).scalar()


async def live_consent(session: AsyncSession, tenant_id: uuid.UUID, account_id: uuid.UUID,
                       provider: uuid.UUID) -> Consent | None:
    row = (await session.execute(text(
        "SELECT * FROM consents WHERE tenant_id = :t AND account_id = :a AND provider_issuer_id = :p "
        "AND revoked_at IS NULL"), {"t": tenant_id, "a": account_id, "p": provider})).mappings().first()
    return Consent(**row) if row else None


async def revoke_consent(session: AsyncSession, consent_id: uuid.UUID, at: datetime, by_client: str) -> Consent:
    row = (await session.execute(text(
        "UPDATE consents SET revoked_at = :at, revoked_by = :by WHERE id = :id RETURNING *"),
        {"id": consent_id, "at": at, "by": by_client})).mappings().one()
    return Consent(**row)


async def insert_consent(session: AsyncSession, values: dict[str, Any]) -> Consent:
    row = (await session.execute(text(
        "INSERT INTO consents (id, tenant_id, account_id, provider_issuer_id, categories, granted_by, granted_at) "
        "VALUES (:id, :tenant_id, :account_id, :provider_issuer_id, :categories, :granted_by, :granted_at) "
        "RETURNING *"), values)).mappings().one()
    return Consent(**row)


# ------------------------------------------------------------------ read side (DataLoader batches)


async def accounts_by_id(session: AsyncSession, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Account]:
    rows = await session.execute(text("SELECT * FROM accounts WHERE id = ANY(:ids)"), {"ids": list(ids)})
    return {row["id"]: Account(**row) for row in rows.mappings()}


async def balances(session: AsyncSession, account_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, dict[str, int]]:
    rows = await session.execute(text(
        "SELECT account_id, asset, balance FROM ledger_accounts WHERE account_id = ANY(:ids)"),
        {"ids": list(account_ids)})
    found: dict[uuid.UUID, dict[str, int]] = defaultdict(dict)
    for account_id, asset, balance in rows.all():
        found[account_id][asset] = balance
    return found


async def consents_of(session: AsyncSession, account_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[Consent]]:
    rows = await session.execute(text(
        "SELECT * FROM consents WHERE account_id = ANY(:ids) ORDER BY account_id, granted_at DESC, id"),
        {"ids": list(account_ids)})
    found: dict[uuid.UUID, list[Consent]] = defaultdict(list)
    for row in rows.mappings():
        found[row["account_id"]].append(Consent(**row))
    return found


async def latest_consent_change(session: AsyncSession, tenant_id: uuid.UUID, account_id: uuid.UUID,
                                provider_id: uuid.UUID) -> datetime | None:
    """When this account's consents to the provider last changed (a grant or a revocation)."""
    return (await session.execute(text(
        "SELECT max(greatest(granted_at, coalesce(revoked_at, granted_at))) FROM consents "
        "WHERE tenant_id = :t AND account_id = :a AND provider_issuer_id = :p"),
        {"t": tenant_id, "a": account_id, "p": provider_id})).scalar()


async def daily_totals_on(session: AsyncSession,
                          keys: Sequence[tuple[uuid.UUID, date]]) -> dict[tuple[uuid.UUID, date], dict[str, int]]:
    rows = await session.execute(text("""
        SELECT t.account_id, t.local_date, t.behavior_code, t.credited_mg
        FROM daily_behavior_totals t
        JOIN unnest(CAST(:a AS uuid[]), CAST(:d AS date[])) AS k(account_id, day)
          ON t.account_id = k.account_id AND t.local_date = k.day
    """), {"a": [k[0] for k in keys], "d": [k[1] for k in keys]})
    found: dict[tuple[uuid.UUID, date], dict[str, int]] = defaultdict(dict)
    for account_id, day, code, mg in rows.all():
        found[(account_id, day)][code] = mg
    return found


async def activity_pages(session: AsyncSession, tenant_id: uuid.UUID, account_ids: Sequence[uuid.UUID], *,
                         after: Any, before: Any, limit: int, backwards: bool) -> dict[uuid.UUID, list[dict[str, Any]]]:
    """Newest first by (occurred_at, id); up to `limit` rows per account, one statement, each account an
    index range scan (LATERAL ... LIMIT), never a scan of its whole history."""
    conditions = ["t.tenant_id = :tenant", "t.account_id = k.id"]
    params: dict[str, Any] = {"tenant": tenant_id, "ids": list(account_ids), "limit": limit}
    if after is not None:
        conditions.append("(t.occurred_at, t.id) < (:after_at, :after_id)")
        params["after_at"], params["after_id"] = after
    if before is not None:
        conditions.append("(t.occurred_at, t.id) > (:before_at, :before_id)")
        params["before_at"], params["before_id"] = before
    direction = "ASC" if backwards else "DESC"
    rows = await session.execute(text(f"""
        SELECT t.* FROM unnest(CAST(:ids AS uuid[])) AS k(id)
        CROSS JOIN LATERAL (
            SELECT * FROM ledger_transactions t WHERE {' AND '.join(conditions)}
            ORDER BY t.occurred_at {direction}, t.id {direction} LIMIT :limit
        ) t
    """), params)
    found: dict[uuid.UUID, list[dict[str, Any]]] = defaultdict(list)
    for row in rows.mappings():
        found[row["account_id"]].append(dict(row))
    return found


async def activity_entries(session: AsyncSession, account_id: uuid.UUID,
                           ids: Sequence[uuid.UUID]) -> list[dict[str, Any]]:
    """The account's activity entries (ledger transactions) among `ids`, oldest first."""
    rows = await session.execute(text(
        "SELECT * FROM ledger_transactions WHERE id = ANY(:ids) AND account_id = :a ORDER BY occurred_at, id"),
        {"ids": list(ids), "a": account_id})
    return [dict(row) for row in rows.mappings()]
