"""Every SQL statement of redemptions, donations and entitlements."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Account
from app.rewards.models import Entitlement, Redemption
from app.tenants.models import Reward


REDEEM_SQL = (
    "SELECT carbon_redeem_in_tenant(CAST(:tenant AS uuid), CAST(:account AS uuid), CAST(:reward AS uuid), "
    "CAST(:quantity AS int), CAST(:key AS text), CAST(:hash AS text), CAST(:client AS text), "
    "CAST(:now AS timestamptz), CAST(:voucher AS text), CAST(:redemption AS uuid), CAST(:transaction AS uuid))"
)


async def redeem_in_database(session: AsyncSession, params: dict[str, Any]) -> dict[str, Any] | None:
    """One round trip: `carbon_redeem_in_tenant()` (migration 0004) locks, checks and writes; returns its
    verdict (None: no configuration in force)."""
    return (await session.execute(text(REDEEM_SQL), params)).scalar_one()


async def redemption_by_key(session: AsyncSession, tenant_id: uuid.UUID, key: str) -> Redemption | None:
    row = (await session.execute(text("SELECT * FROM redemptions WHERE tenant_id = :t AND idempotency_key = :k"),
                                 {"t": tenant_id, "k": key})).mappings().first()
    return Redemption(**row) if row else None


async def redemption(session: AsyncSession, tenant_id: uuid.UUID, redemption_id: uuid.UUID) -> Redemption | None:
    row = (await session.execute(text("SELECT * FROM redemptions WHERE tenant_id = :t AND id = :id"),
                                 {"t": tenant_id, "id": redemption_id})).mappings().first()
    return Redemption(**row) if row else None


async def lock_redemption(session: AsyncSession, redemption_id: uuid.UUID) -> Redemption:
    row = (await session.execute(text("SELECT * FROM redemptions WHERE id = :id FOR UPDATE"),
                                 {"id": redemption_id})).mappings().one()
    return Redemption(**row)


async def spending_transaction(session: AsyncSession, tenant_id: uuid.UUID, redemption_id: uuid.UUID) -> uuid.UUID | None:
    """The ledger transaction that spent a redemption's points (none for an item costing 0)."""
    return (await session.execute(text(
        "SELECT id FROM ledger_transactions WHERE tenant_id = :t AND redemption_id = :r "
        "AND kind IN ('REDEMPTION', 'DONATION')"), {"t": tenant_id, "r": redemption_id})).scalar()


async def reward_with_counterparty(session: AsyncSession, tenant_id: uuid.UUID,
                                   reward_id: uuid.UUID) -> tuple[Reward, uuid.UUID | None] | None:
    """The item and, in the same statement, the ledger account its points go to (the project's account
    for donations, `redemptions` otherwise)."""
    row = (await session.execute(text("""
        SELECT r.*, la.id AS counterparty_ledger_id FROM rewards r
        LEFT JOIN ledger_accounts la ON la.tenant_id = r.tenant_id AND la.account_id IS NULL AND la.asset = 'POINTS'
             AND la.code = CASE WHEN r.kind = 'DONATION' THEN 'donation:' || r.code ELSE 'redemptions' END
        WHERE r.tenant_id = :t AND r.id = :id
    """), {"t": tenant_id, "id": reward_id})).mappings().first()
    if row is None:
        return None
    values = dict(row)
    counterparty = values.pop("counterparty_ledger_id")
    return Reward(**values), counterparty


async def account_and_taken(session: AsyncSession, tenant_id: uuid.UUID, account_id: uuid.UUID,
                            reward_id: uuid.UUID, since: datetime | None) -> tuple[Account, int] | None:
    """The account and the units of the item it holds (not cancelled) since `since`, in one statement."""
    row = (await session.execute(text("""
        SELECT a.*, (SELECT coalesce(sum(quantity), 0) FROM redemptions r WHERE r.tenant_id = a.tenant_id
                     AND r.account_id = a.id AND r.reward_id = :r AND r.status = 'FULFILLED'
                     AND (CAST(:since AS timestamptz) IS NULL OR r.created_at >= :since)) AS taken
        FROM accounts a WHERE a.tenant_id = :t AND a.id = :a
    """), {"t": tenant_id, "a": account_id, "r": reward_id, "since": since})).mappings().first()
    if row is None:
        return None
    values = dict(row)
    taken = int(values.pop("taken"))
    return Account(**values), taken


async def reward(session: AsyncSession, tenant_id: uuid.UUID, reward_id: uuid.UUID) -> Reward | None:
    row = (await session.execute(text("SELECT * FROM rewards WHERE tenant_id = :t AND id = :id"),
                                 {"t": tenant_id, "id": reward_id})).mappings().first()
    return Reward(**row) if row else None


async def points_balance(session: AsyncSession, account_id: uuid.UUID) -> int:
    return (await session.execute(text(
        "SELECT balance FROM ledger_accounts WHERE account_id = :a AND asset = 'POINTS'"), {"a": account_id})).scalar_one()


async def take_stock(session: AsyncSession, reward_id: uuid.UUID, quantity: int) -> bool:
    """Take `quantity` units if that many are left; False (nothing changed) otherwise. Locks the row."""
    row = await session.execute(text(
        "UPDATE rewards SET stock_taken = stock_taken + :q, updated_at = now() "
        "WHERE id = :id AND stock_total IS NOT NULL AND stock_taken + :q <= stock_total RETURNING id"),
        {"id": reward_id, "q": quantity})
    return row.first() is not None


async def count_donation(session: AsyncSession, reward_id: uuid.UUID, quantity: int) -> None:  # noqa: D401
    """Unlimited donation projects count their units in `stock_taken` too (their running total of gifts)."""
    await session.execute(text("UPDATE rewards SET stock_taken = stock_taken + :q WHERE id = :id"),
                          {"id": reward_id, "q": quantity})


async def return_stock(session: AsyncSession, reward_id: uuid.UUID, quantity: int) -> None:
    await session.execute(text("UPDATE rewards SET stock_taken = stock_taken - :q, updated_at = now() WHERE id = :id"),
                          {"id": reward_id, "q": quantity})


async def insert_redemption(session: AsyncSession, redemption: Redemption) -> None:
    await session.execute(text("""
        INSERT INTO redemptions (id, tenant_id, account_id, reward_id, kind, quantity, points, status, voucher_code,
                                 idempotency_key, request_hash, by_client, created_at, cancellable_until, stock_units,
                                 counterparty_ledger_id)
        VALUES (:id, :tenant_id, :account_id, :reward_id, :kind, :quantity, :points, :status, :voucher_code,
                :idempotency_key, :request_hash, :by_client, :created_at, :cancellable_until, :stock_units,
                :counterparty_ledger_id)
    """), redemption.model_dump(include={"id", "tenant_id", "account_id", "reward_id", "kind", "quantity", "points",
                                          "status", "voucher_code", "idempotency_key", "request_hash", "by_client",
                                          "created_at", "cancellable_until", "stock_units", "counterparty_ledger_id"}))


async def insert_entitlement(session: AsyncSession, redemption: Redemption, reward: Reward, now: datetime) -> None:
    await session.execute(text("""
        INSERT INTO entitlements (id, tenant_id, account_id, reward_id, sponsor_issuer_id, redemption_id, status,
                                  granted_at, valid_to)
        VALUES (:id, :t, :a, :r, :s, :red, 'ACTIVE', :now, :valid_to)
    """), {"id": uuid.uuid4(), "t": redemption.tenant_id, "a": redemption.account_id, "r": reward.id,
           "s": reward.sponsor_issuer_id, "red": redemption.id, "now": now, "valid_to": reward.valid_to})


async def mark_cancelled(session: AsyncSession, redemption_id: uuid.UUID, now: datetime, reason: str | None) -> Redemption:
    row = (await session.execute(text(
        "UPDATE redemptions SET status = 'CANCELLED', cancelled_at = :now, cancel_reason = :reason WHERE id = :id "
        "RETURNING *"), {"id": redemption_id, "now": now, "reason": reason})).mappings().one()
    return Redemption(**row)


async def cancel_entitlements(session: AsyncSession, redemption_id: uuid.UUID) -> None:
    await session.execute(text("UPDATE entitlements SET status = 'CANCELLED' WHERE redemption_id = :id"),
                          {"id": redemption_id})


# ------------------------------------------------------------------------------- read side


async def redemptions_by_id(session: AsyncSession, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Redemption]:
    rows = await session.execute(text("SELECT * FROM redemptions WHERE id = ANY(:ids)"), {"ids": list(ids)})
    return {row["id"]: Redemption(**row) for row in rows.mappings()}


async def taken_since(session: AsyncSession, keys: Sequence[tuple[uuid.UUID, uuid.UUID, datetime | None]]
                      ) -> dict[tuple[uuid.UUID, uuid.UUID, datetime | None], int]:
    """Units held per (account, reward, since) in one statement (eligibility over a catalogue page)."""
    rows = await session.execute(text("""
        SELECT k.account_id, k.reward_id, k.since, coalesce(sum(r.quantity), 0)
        FROM unnest(CAST(:a AS uuid[]), CAST(:r AS uuid[]), CAST(:s AS timestamptz[])) AS k(account_id, reward_id, since)
        LEFT JOIN redemptions r ON r.account_id = k.account_id AND r.reward_id = k.reward_id
             AND r.status = 'FULFILLED' AND (k.since IS NULL OR r.created_at >= k.since)
        GROUP BY k.account_id, k.reward_id, k.since
    """), {"a": [k[0] for k in keys], "r": [k[1] for k in keys], "s": [k[2] for k in keys]})
    return {(a, r, s): int(n) for a, r, s, n in rows.all()}


async def redemption_pages(session: AsyncSession, tenant_id: uuid.UUID, account_ids: Sequence[uuid.UUID], *,
                           after: Any, limit: int) -> dict[uuid.UUID, list[Redemption]]:
    """Newest first by (created_at, id); up to `limit` per account, one statement, an index range each."""
    condition = "AND (r.created_at, r.id) < (:after_at, :after_id)" if after is not None else ""
    params: dict[str, Any] = {"t": tenant_id, "ids": list(account_ids), "limit": limit}
    if after is not None:
        params["after_at"], params["after_id"] = after
    rows = await session.execute(text(f"""
        SELECT r.* FROM unnest(CAST(:ids AS uuid[])) AS k(id)
        CROSS JOIN LATERAL (
            SELECT * FROM redemptions r WHERE r.tenant_id = :t AND r.account_id = k.id {condition}
            ORDER BY r.created_at DESC, r.id DESC LIMIT :limit
        ) r
    """), params)
    found: dict[uuid.UUID, list[Redemption]] = defaultdict(list)
    for row in rows.mappings():
        found[row["account_id"]].append(Redemption(**row))
    for items in found.values():
        items.sort(key=lambda item: (item.created_at, item.id.bytes), reverse=True)
    return found


async def donation_totals(session: AsyncSession, codes: Sequence[tuple[uuid.UUID, str]]) -> dict[tuple[uuid.UUID, str], int]:
    """Points received per (tenant, donation ledger code)."""
    rows = await session.execute(text(
        "SELECT tenant_id, code, balance FROM ledger_accounts WHERE account_id IS NULL AND asset = 'POINTS' "
        "AND code = ANY(:codes)"), {"codes": [code for _, code in codes]})
    return {(t, code): balance for t, code, balance in rows.all()}


async def entitlement_page(session: AsyncSession, tenant_id: uuid.UUID, sponsor_id: uuid.UUID, *,
                           account_ids: list[uuid.UUID] | None, status: str | None, after: Any,
                           limit: int) -> list[dict[str, Any]]:
    conditions = ["e.tenant_id = :t", "e.sponsor_issuer_id = :s"]
    params: dict[str, Any] = {"t": tenant_id, "s": sponsor_id, "limit": limit}
    if account_ids is not None:
        conditions.append("e.account_id = ANY(:accounts)")
        params["accounts"] = account_ids
    if status is not None:
        conditions.append("e.status = :status")
        params["status"] = status
    if after is not None:
        conditions.append("(e.granted_at, e.id) > (:after_at, :after_id)")
        params["after_at"], params["after_id"] = after
    rows = await session.execute(text(
        f"SELECT e.* FROM entitlements e WHERE {' AND '.join(conditions)} ORDER BY e.granted_at, e.id LIMIT :limit"),
        params)
    return [dict(row) for row in rows.mappings()]


async def accounts_by_bank_hash(session: AsyncSession, tenant_id: uuid.UUID, bank_hash: bytes) -> list[uuid.UUID]:
    rows = await session.execute(text("SELECT id FROM accounts WHERE tenant_id = :t AND bank_account_hash = :h"),
                                 {"t": tenant_id, "h": bank_hash})
    return [row[0] for row in rows.all()]


async def entitlements_by_id(session: AsyncSession, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Entitlement]:
    rows = await session.execute(text("SELECT * FROM entitlements WHERE id = ANY(:ids)"), {"ids": list(ids)})
    return {row["id"]: Entitlement(**row) for row in rows.mappings()}


def group(rows: list[dict[str, Any]], key: str) -> dict[Any, list[dict[str, Any]]]:
    grouped: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        grouped[row[key]].append(row)
    return grouped
