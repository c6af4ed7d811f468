"""Point expiry by earning lots, oldest first (ADR 0005).

Points earned on local day d expire at the start of day d + N months (`point_expiry_months` of the
configuration version in force at the run). An account's lots are its days' earned points
(`daily_behavior_totals.credited_points`); spending and expiry consume the oldest lots first, so what
remains of the lots older than the cut-off is

    remaining_old = max(0, earned on days before the cut-off - points consumed so far)

and that (never more than the balance) is what expires. Each run adds only the days that matured since
the account's last cut-off (`earned_matured`, `matured_through`), so it never rescans history. Runs are
idempotent: a second run at the same cut-off finds nothing due.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.behaviors.rules.calendar import local_date
from app.db.session import Database, TenantScope
from app.ledger import service as ledger
from app.ledger.models import POINTS
from app.tenants import repository as tenants_repo

CHUNK = 1000
EXPIRY_LOCK = 0x65787069  # "expi": one expiry run at a time across server processes and commands


def add_months(day: date, months: int) -> date:
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    for candidate in (31, 30, 29, 28):
        try:
            return date(year, month, min(day.day, candidate))
        except ValueError:
            continue
    raise AssertionError("unreachable")


def cutoff(today: date, months: int) -> date:
    """The first earning day that has not expired by `today`: the smallest d with d + months > today.

    (Not simply today - months + 1 day: month ends clamp, e.g. points of Jan 31 with one month expire on
    Feb 29 in a leap year, and so must points of Jan 30.)"""
    day = add_months(today, -months) - timedelta(days=4)
    while add_months(day, months) <= today:
        day += timedelta(days=1)
    return day


@dataclass(frozen=True)
class ExpiryResult:
    tenant: str
    cutoff: date | None
    accounts: int
    points: int


async def expire_tenant(database: Database, tenant_id: uuid.UUID, slug: str, now: datetime) -> ExpiryResult:
    """Post expiry for one tenant, in chunks of accounts (one transaction each)."""
    async with database.transaction(TenantScope.for_tenant(tenant_id)) as session:
        policy = await tenants_repo.configuration_in_force(session, tenant_id, now)
    if policy is None or policy["point_expiry_months"] is None:
        return ExpiryResult(slug, None, 0, 0)
    day = cutoff(local_date(now, policy["timezone"]), policy["point_expiry_months"])
    total_accounts = total_points = 0
    while True:
        async with database.transaction(TenantScope.for_tenant(tenant_id)) as session:
            accounts, points = await _expire_chunk(session, tenant_id, day, now)
        total_accounts += accounts
        total_points += points
        if accounts < CHUNK:
            return ExpiryResult(slug, day, total_accounts, total_points)


async def _expire_chunk(session: AsyncSession, tenant_id: uuid.UUID, day: date, now: datetime) -> tuple[int, int]:
    # Also accounts whose matured lots hold unexpired points at an unchanged cut-off: none since every write
    # keeps consumed >= matured (ADR 0005), but the code before it could leave such accounts.
    candidates = [row[0] for row in (await session.execute(text(
        "SELECT account_id FROM ledger_accounts WHERE tenant_id = :t AND account_id IS NOT NULL AND asset = 'POINTS' "
        "AND (matured_through IS NULL OR matured_through < :day OR (points_consumed < earned_matured AND balance > 0)) "
        "ORDER BY id LIMIT :n"),
        {"t": tenant_id, "day": day, "n": CHUNK})).all()]
    if not candidates:
        return 0, 0
    ledgers = await ledger.lock_citizen_ledger_accounts(session, tenant_id, candidates)
    # Chosen before the lock: a concurrent run may have matured some further meanwhile. Never go back.
    candidates = [a for a in candidates
                  if ledgers[(a, POINTS)].matured_through is None or ledgers[(a, POINTS)].matured_through < day
                  or (ledgers[(a, POINTS)].points_consumed < ledgers[(a, POINTS)].earned_matured
                      and ledgers[(a, POINTS)].balance > 0)]  # (a balance of 0 has nothing to expire: no loop)
    if not candidates:
        return CHUNK, 0  # all taken by a concurrent run: look for more
    matured = dict((await session.execute(text("""
        SELECT la.account_id, coalesce(sum(d.credited_points), 0)::bigint
        FROM ledger_accounts la
        JOIN daily_behavior_totals d ON d.tenant_id = la.tenant_id AND d.account_id = la.account_id
         AND d.local_date < :day AND (la.matured_through IS NULL OR d.local_date >= la.matured_through)
        WHERE la.tenant_id = :t AND la.asset = 'POINTS' AND la.account_id = ANY(:ids)
        GROUP BY la.account_id
    """), {"t": tenant_id, "day": day, "ids": candidates})).all())
    system = await ledger.system_accounts(session, tenant_id)
    transactions, consumed, points_total = [], {}, 0
    for account_id in candidates:
        row = ledgers[(account_id, POINTS)]
        earned_old = row.earned_matured + matured.get(account_id, 0)
        due = min(row.balance, max(0, earned_old - row.points_consumed))
        if due:
            points_total += due
            consumed[row.id] = due
            transactions.append(ledger.expiry_transaction(
                tenant_id, account_id, row.id, system[(ledger.EXPIRED, POINTS)], due, now))
    await ledger.post(session, transactions, tracked={ledgers[(a, POINTS)].id for a in candidates}, consumed=consumed)
    await session.execute(text("""
        UPDATE ledger_accounts la SET earned_matured = la.earned_matured + coalesce(m.points, 0), matured_through = :day
        FROM unnest(CAST(:ids AS uuid[]), CAST(:points AS bigint[])) AS m(id, points)
        WHERE la.id = m.id AND (la.matured_through IS NULL OR la.matured_through < :day)
    """), {"day": day, "ids": [ledgers[(a, POINTS)].id for a in candidates],
           "points": [matured.get(a, 0) for a in candidates]})
    return len(candidates), points_total


async def expire_all(database: Database, now: datetime) -> list[ExpiryResult]:
    """Every tenant, under the expiry advisory lock (one run at a time across processes and commands)."""
    async with database.sessionmaker() as holder:
        # A session-level lock on a connection of its own, held for the whole run.
        await holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": EXPIRY_LOCK})
        await holder.commit()
        try:
            async with database.transaction(TenantScope.regulator()) as session:
                tenants = (await session.execute(text("SELECT id, slug FROM tenants ORDER BY slug"))).all()
            return [await expire_tenant(database, tenant_id, slug, now) for tenant_id, slug in tenants]
        finally:
            await holder.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": EXPIRY_LOCK})
            await holder.commit()


async def periodic_expiry(database: Database, interval_seconds: float) -> None:
    """Run `expire_all` every `interval_seconds` while the server runs (cancel the task to stop).

    Several server processes (and the `expire` command) may run it; the advisory lock in `expire_all`
    makes them take turns, and runs are idempotent. Failures are logged and retried next time."""
    import asyncio

    from app.logs import get_logger

    log = get_logger("app.expiry")
    while True:
        try:
            results = await expire_all(database, datetime.now(UTC))
            log.info("expiry_run", points=sum(r.points for r in results))
        except asyncio.CancelledError:
            raise
        except Exception as error:  # keep serving; try again next time
            log.error("expiry_failed", error=type(error).__name__)
        await asyncio.sleep(interval_seconds)
