"""Posting to the ledger: balanced transactions, set-based, in the caller's transaction.

`post` is the only writer of postings. It refuses an unbalanced transaction before touching the
database, inserts transactions and postings in two statements whatever their number, and moves the
balances of tracked (citizen) ledger accounts by the aggregated deltas in one statement, rows touched
in id order (a stable lock order across concurrent requests). A citizen balance that would go below
zero violates a CHECK constraint and aborts the whole unit of work.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.ledger.models import ASSETS, CONTRIBUTION, POINTS

ISSUANCE = "issuance"  # source of credited contribution and issued points
REDEMPTIONS = "redemptions"  # points spent on rewards and financial services
EXPIRED = "expired"  # points that expired
SYSTEM_ACCOUNTS = (ISSUANCE, REDEMPTIONS, EXPIRED)


def donation_account_code(reward_code: str) -> str:
    """The ledger account of a public-welfare project: donated points land here (a tracked balance:
    the project's running total)."""
    return f"donation:{reward_code}"


class UnbalancedTransaction(ValueError):
    """Postings of one transaction do not sum to zero for some asset (a bug, never user input)."""


@dataclass(frozen=True)
class Posting:
    ledger_account_id: uuid.UUID
    asset: str
    amount: int


@dataclass
class NewTransaction:
    tenant_id: uuid.UUID
    kind: str
    status: str
    occurred_at: datetime
    account_id: uuid.UUID | None = None
    behavior_record_id: uuid.UUID | None = None
    behavior_code: str | None = None
    reduction_mg: int = 0
    points: int = 0
    converted_mg: int = 0
    redemption_id: uuid.UUID | None = None
    shortfall_points: int = 0
    postings: list[Posting] = field(default_factory=list)
    id: uuid.UUID = field(default_factory=uuid.uuid4)

    def check_balanced(self) -> None:
        sums: dict[str, int] = defaultdict(int)
        for posting in self.postings:
            if posting.asset not in ASSETS or posting.amount == 0:
                raise UnbalancedTransaction(f"transaction {self.id}: invalid posting {posting}")
            sums[posting.asset] += posting.amount
        unbalanced = {asset: total for asset, total in sums.items() if total != 0}
        if unbalanced:
            raise UnbalancedTransaction(f"transaction {self.id} does not balance: {unbalanced}")


async def system_accounts(session: AsyncSession, tenant_id: uuid.UUID) -> dict[tuple[str, str], uuid.UUID]:
    """(code, asset) -> ledger account id of the tenant's system accounts."""
    rows = await session.execute(
        text("SELECT code, asset, id FROM ledger_accounts WHERE tenant_id = :t AND account_id IS NULL"),
        {"t": tenant_id})
    return {(code, asset): id_ for code, asset, id_ in rows.all()}


async def ensure_system_accounts(session: AsyncSession, tenant_id: uuid.UUID) -> None:
    """Create the tenant's untracked system accounts (idempotent)."""
    for code in SYSTEM_ACCOUNTS:
        for asset in ASSETS:
            await session.execute(text(
                "INSERT INTO ledger_accounts (id, tenant_id, account_id, code, asset, balance, tracks_balance) "
                "VALUES (:id, :t, NULL, :code, :asset, 0, false) "
                "ON CONFLICT (tenant_id, code, asset) WHERE account_id IS NULL DO NOTHING"),
                {"id": uuid.uuid4(), "t": tenant_id, "code": code, "asset": asset})


async def ensure_donation_account(session: AsyncSession, tenant_id: uuid.UUID, reward_code: str) -> None:
    await session.execute(text(
        "INSERT INTO ledger_accounts (id, tenant_id, account_id, code, asset, balance, tracks_balance) "
        "VALUES (:id, :t, NULL, :code, 'POINTS', 0, true) "
        "ON CONFLICT (tenant_id, code, asset) WHERE account_id IS NULL DO NOTHING"),
        {"id": uuid.uuid4(), "t": tenant_id, "code": donation_account_code(reward_code)})


async def open_citizen_accounts(session: AsyncSession, tenant_id: uuid.UUID, account_id: uuid.UUID) -> None:
    """The citizen's two tracked ledger accounts (contribution and points), created with the account."""
    for asset in (CONTRIBUTION, POINTS):
        await session.execute(text(
            "INSERT INTO ledger_accounts (id, tenant_id, account_id, code, asset, balance, tracks_balance) "
            "VALUES (:id, :t, :a, 'citizen', :asset, 0, true) "
            "ON CONFLICT (tenant_id, account_id, asset) WHERE account_id IS NOT NULL DO NOTHING"),
            {"id": uuid.uuid4(), "t": tenant_id, "a": account_id, "asset": asset})


async def citizen_ledger_accounts(session: AsyncSession, tenant_id: uuid.UUID,
                                  account_ids: list[uuid.UUID]) -> dict[tuple[uuid.UUID, str], uuid.UUID]:
    rows = await session.execute(text(
        "SELECT account_id, asset, id FROM ledger_accounts WHERE tenant_id = :t AND account_id = ANY(:ids)"),
        {"t": tenant_id, "ids": account_ids})
    return {(account_id, asset): id_ for account_id, asset, id_ in rows.all()}


async def balances_at(session: AsyncSession,
                      keys: Sequence[tuple[uuid.UUID, uuid.UUID, datetime]]) -> list[dict[str, int]]:
    """Citizens' balances per asset as they stood at a moment, for each (tenant, account, at) key, in one
    statement: the postings posted up to it (a posting's time is its writing transaction's start). One
    index range per key and asset."""
    rows = await session.execute(text("""
        SELECT k.i, la.asset, coalesce((SELECT sum(p.amount) FROM ledger_postings p
                                         WHERE p.ledger_account_id = la.id AND p.posted_at <= k.at), 0)
          FROM unnest(CAST(:t AS uuid[]), CAST(:a AS uuid[]), CAST(:at AS timestamptz[]))
               WITH ORDINALITY AS k(tenant_id, account_id, at, i)
          JOIN ledger_accounts la ON la.tenant_id = k.tenant_id AND la.account_id = k.account_id
    """), {"t": [key[0] for key in keys], "a": [key[1] for key in keys], "at": [key[2] for key in keys]})
    found: list[dict[str, int]] = [{} for _ in keys]
    for i, asset, total in rows.all():
        found[i - 1][asset] = int(total)
    return found


async def lock_citizen_ledger_accounts(session: AsyncSession, tenant_id: uuid.UUID,
                                      account_ids: list[uuid.UUID]) -> dict[tuple[uuid.UUID, str], CitizenLedger]:
    """Lock the citizens' ledger accounts (both assets) in ledger-account id order and return them.

    This is the platform's per-account lock: every write that moves an account's balances, totals or
    carry takes it first, in this one global order, so concurrent writers for one account serialise here
    and never deadlock on the rows behind it. Rows touched anyway by the balance update are locked, so
    the lock adds no write of its own.
    """
    rows = await session.execute(text(
        "SELECT id, account_id, asset, balance, unconverted_mg, points_consumed, earned_matured, matured_through, "
        "points_owed FROM ledger_accounts WHERE tenant_id = :t AND account_id = ANY(:ids) ORDER BY id FOR UPDATE"),
        {"t": tenant_id, "ids": account_ids})
    return {(row[1], row[2]): CitizenLedger(*row) for row in rows.all()}


def expiry_transaction(tenant_id: uuid.UUID, account_id: uuid.UUID, points_ledger: uuid.UUID,
                       expired_ledger: uuid.UUID, points: int, at: datetime) -> NewTransaction:
    """An EXPIRY of `points` from a citizen's POINTS ledger account to the city's `expired` account (post
    it with `consumed={points_ledger: points}`: expiry consumes the oldest lots, ADR 0005)."""
    return NewTransaction(
        tenant_id=tenant_id, kind="EXPIRY", status="EXPIRED", occurred_at=at, account_id=account_id, points=-points,
        postings=[Posting(points_ledger, POINTS, -points), Posting(expired_ledger, POINTS, points)])


# How each kind of transaction moved an account's FIFO consumption counter (`points_consumed`, ADR 0005):
# balance = lots - consumed, so consumed moves by what the lots moved less what the balance (the
# transaction's `points`) moved. Credits and proceeds add to a day's lot and to the balance alike; a
# reversal takes the record's points out of its lot. Every kind of `ledger_transactions.kind_known`.
_CONSUMPTION_DELTA = """
    CASE t.kind WHEN 'BEHAVIOR_CREDIT' THEN 0 WHEN 'LOT_PROCEEDS' THEN 0
                WHEN 'BEHAVIOR_REVERSAL' THEN -b.points - t.points
                WHEN 'REDEMPTION' THEN -t.points WHEN 'DONATION' THEN -t.points
                WHEN 'REDEMPTION_CANCELLED' THEN -t.points WHEN 'EXPIRY' THEN -t.points END"""


async def consumed_before(session: AsyncSession, tenant_id: uuid.UUID, account_id: uuid.UUID,
                          transaction_id: uuid.UUID, consumed_now: int) -> int | None:
    """The account's consumption counter just before `transaction_id` was posted: now, less what every
    transaction since (its own included) moved it, in the order of the account's hash chain (the order
    its locked writers posted them). None if the transaction is not in the account's chain. Call with
    the account's ledger rows locked."""
    moved = (await session.execute(text(f"""
        SELECT sum({_CONSUMPTION_DELTA}), count(*) FILTER (WHERE t.id = :tx)
          FROM ledger_chain c
          JOIN ledger_transactions t ON t.tenant_id = c.tenant_id AND t.id = c.transaction_id
          LEFT JOIN behavior_records b ON t.kind = 'BEHAVIOR_REVERSAL' AND b.tenant_id = t.tenant_id
               AND b.id = t.behavior_record_id
         WHERE c.tenant_id = :t AND c.chain_key = :a
           AND c.seq >= (SELECT seq FROM ledger_chain WHERE tenant_id = :t AND transaction_id = :tx)
    """), {"t": tenant_id, "a": account_id, "tx": transaction_id})).one()
    if not moved[1]:
        return None
    return consumed_now - int(moved[0])


@dataclass(frozen=True)
class CitizenLedger:
    id: uuid.UUID
    account_id: uuid.UUID
    asset: str
    balance: int
    unconverted_mg: int
    points_consumed: int = 0
    earned_matured: int = 0
    matured_through: object = None
    points_owed: int = 0


async def post(session: AsyncSession, transactions: list[NewTransaction], tracked: set[uuid.UUID],
               carries: dict[uuid.UUID, int] | None = None, consumed: dict[uuid.UUID, int] | None = None,
               owed: dict[uuid.UUID, int] | None = None, matured: dict[uuid.UUID, int] | None = None) -> None:
    """Append `transactions` and move the balances of the `tracked` ledger accounts they touch.

    In the same statement, on (locked) citizen POINTS ledger accounts: `carries` sets the conversion
    carry; `consumed`, `owed` and `matured` add to the FIFO consumption counter, the reversal debt and
    the matured earnings (ADR 0005)."""
    if not transactions:
        return
    for transaction in transactions:
        transaction.check_balanced()
    await session.execute(text("""
        INSERT INTO ledger_transactions (id, tenant_id, account_id, kind, status, occurred_at, behavior_record_id,
                                         behavior_code, reduction_mg, points, converted_mg, redemption_id,
                                         shortfall_points)
        SELECT * FROM unnest(CAST(:id AS uuid[]), CAST(:tenant AS uuid[]), CAST(:account AS uuid[]),
                             CAST(:kind AS text[]), CAST(:status AS text[]), CAST(:occurred AS timestamptz[]),
                             CAST(:record AS uuid[]), CAST(:code AS text[]), CAST(:reduction AS bigint[]),
                             CAST(:points AS bigint[]), CAST(:converted AS bigint[]), CAST(:redemption AS uuid[]),
                             CAST(:shortfall AS bigint[]))
    """), {
        "redemption": [t.redemption_id for t in transactions],
        "shortfall": [t.shortfall_points for t in transactions],
        "id": [t.id for t in transactions], "tenant": [t.tenant_id for t in transactions],
        "account": [t.account_id for t in transactions], "kind": [t.kind for t in transactions],
        "status": [t.status for t in transactions], "occurred": [t.occurred_at for t in transactions],
        "record": [t.behavior_record_id for t in transactions], "code": [t.behavior_code for t in transactions],
        "reduction": [t.reduction_mg for t in transactions], "points": [t.points for t in transactions],
        "converted": [t.converted_mg for t in transactions],
    })
    postings = [(t, p) for t in transactions for p in t.postings]
    if not postings:
        return
    await session.execute(text("""
        INSERT INTO ledger_postings (tenant_id, transaction_id, ledger_account_id, asset, amount)
        SELECT * FROM unnest(CAST(:tenant AS uuid[]), CAST(:transaction AS uuid[]), CAST(:ledger AS uuid[]),
                             CAST(:asset AS text[]), CAST(:amount AS bigint[]))
    """), {
        "tenant": [t.tenant_id for t, _ in postings], "transaction": [t.id for t, _ in postings],
        "ledger": [p.ledger_account_id for _, p in postings], "asset": [p.asset for _, p in postings],
        "amount": [p.amount for _, p in postings],
    })
    deltas: dict[uuid.UUID, int] = defaultdict(int)
    for _, posting in postings:
        if posting.ledger_account_id in tracked:
            deltas[posting.ledger_account_id] += posting.amount
    carries, consumed, owed, matured = carries or {}, consumed or {}, owed or {}, matured or {}
    changed = sorted({id_ for id_, delta in deltas.items() if delta} | set(carries) | set(consumed) | set(owed)
                     | set(matured), key=lambda id_: id_.bytes)
    if changed:
        await session.execute(text("""
            UPDATE ledger_accounts la
            SET balance = la.balance + d.delta, unconverted_mg = coalesce(d.carry, la.unconverted_mg),
                points_consumed = la.points_consumed + d.consumed, points_owed = la.points_owed + d.owed,
                earned_matured = la.earned_matured + d.matured
            FROM unnest(CAST(:ids AS uuid[]), CAST(:deltas AS bigint[]), CAST(:carries AS bigint[]),
                        CAST(:consumed AS bigint[]), CAST(:owed AS bigint[]), CAST(:matured AS bigint[]))
                 AS d(id, delta, carry, consumed, owed, matured)
            WHERE la.id = d.id AND la.tracks_balance
        """), {"ids": changed, "deltas": [deltas.get(id_, 0) for id_ in changed],
               "carries": [carries.get(id_) for id_ in changed],
               "consumed": [consumed.get(id_, 0) for id_ in changed], "owed": [owed.get(id_, 0) for id_ in changed],
               "matured": [matured.get(id_, 0) for id_ in changed]})
