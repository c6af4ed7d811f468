"""Reversing a credited behaviour record (e.g. found fraudulent), by a tenant admin.

The record's day must not have been matured by expiry in a way that loses track: its points are taken
out of the day's lot and, if that day is already matured, out of the matured earnings as well.

Policy (ADR 0005): the record is marked REVERSED (with who and why), never deleted or edited. One
BEHAVIOR_REVERSAL transaction takes back the contribution in full (contribution is never spent) and
as many of the record's points as the balance still holds; the balance floor stays 0 and what could not
be taken back is recorded on the transaction as `shortfall_points` (visible to admins, not recovered
from later credits). The day's totals and the day's earning lot shrink by what was credited, so the
cap frees up and expiry never expires reversed points. The record's grams that its credit did not
convert are taken out of the conversion carry too (recorded as the reversal's `converted_mg`, so
credited = converted + carry still holds): left there, they would earn a point later. Where later credits
have converted them already, the carry goes below zero, grams owed that the next credits repay before
they earn points (migration 0020). A record pooled into a market lot is answered for by the lot's buffer
(`app.market.service`, ADR 0011).

A record whose day has matured (expiry has passed over it) no longer has its points in its lot: they were
spent or expired. What expired because of the record — expiries since its day's points expired, up to
its points, less what reversals already gave back — is given back by the `expired` account to issuance:
without the record it would never have expired (expiries before that moment were of older lots, which the
record did not change). The rest is reversed like any record's: from the balance as far as it goes, the
remainder a shortfall, so the same facts give the same reversal whether or not an expiry run has passed.
Taking the expired part from the balance too would take the citizen's later, legitimate points for points
that were already gone.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.behaviors import repository as behaviors_repo
from app.errors import UserError
from app.ledger import service as ledger
from app.ledger.expiry import add_months
from app.ledger.models import CONTRIBUTION, POINTS
from app.market import service as market
from app.tenants import repository as tenants_repo


class ReversalErrorCode(str, enum.Enum):
    RECORD_NOT_FOUND = "RECORD_NOT_FOUND"
    ALREADY_REVERSED = "ALREADY_REVERSED"
    REASON_REQUIRED = "REASON_REQUIRED"


class ReversalError(UserError):
    code: ReversalErrorCode
    field: list[str]


@dataclass(frozen=True)
class Reversed:
    transaction_id: uuid.UUID
    record_id: uuid.UUID
    reduction_mg: int
    points: int
    shortfall_points: int
    expired_points: int = 0  # expired points of the record returned to issuance (not from the balance)


async def _expired_for(session: AsyncSession, tenant_id: uuid.UUID, account_id: uuid.UUID, day: date) -> int:
    """Of the account's expired points, those a reversal of a record of local `day` may give back: the
    expiries since `day`'s points became due (earlier ones were of older lots, which the record did not
    change), less what earlier reversals already gave back from them.

    Each earlier give-back is charged to the expiries of its own record's window, oldest first, in the
    order the reversals were posted, so reversing a city's fraudulent records oldest-first or
    youngest-first gives back the same (review: oldest-first used to count a younger record's expiry as
    already given back). The EXPIRY's own amount is its `points`; a reversal's give-back is its record's
    points less what it took (`points`) and the shortfall. Reads the account's history (rare: an
    administrator's reversal of a matured record)."""
    expiries = [[at, -points] for at, points in (await session.execute(text(
        "SELECT occurred_at, points FROM ledger_transactions WHERE tenant_id = :t AND account_id = :a "
        "AND kind = 'EXPIRY' ORDER BY occurred_at, id"), {"t": tenant_id, "a": account_id})).all()]
    versions = await tenants_repo.versions_of(session, tenant_id)
    given_back = (await session.execute(text(
        "SELECT b.local_date, b.points + t.points - t.shortfall_points FROM ledger_transactions t "
        "JOIN ledger_chain c ON c.tenant_id = t.tenant_id AND c.transaction_id = t.id "
        "JOIN behavior_records b ON b.tenant_id = t.tenant_id AND b.id = t.behavior_record_id "
        "WHERE t.tenant_id = :t AND t.account_id = :a AND t.kind = 'BEHAVIOR_REVERSAL' "
        "AND b.points + t.points - t.shortfall_points > 0 ORDER BY c.seq"),
        {"t": tenant_id, "a": account_id})).all()
    for earlier_day, amount in given_back:
        since = day_due_at(versions, earlier_day)
        for expiry in expiries:
            if since is not None and expiry[0] >= since and amount:
                charged = min(amount, expiry[1])
                expiry[1] -= charged
                amount -= charged
    since = day_due_at(versions, day)
    return 0 if since is None else sum(left for at, left in expiries if at >= since)


def day_due_at(versions: list, day: date) -> datetime | None:
    """When points earned on local `day` first became due to expire: under each configuration version
    while it was in force, local midnight of day + its `point_expiry_months` (no earlier than the version
    took effect, before the next one did); the earliest of those. None if no version ever expired them."""
    versions = sorted(versions, key=lambda version: (version.effective_from, version.version))
    found = None
    for index, version in enumerate(versions):
        if version.point_expiry_months is None:
            continue
        due = datetime.combine(add_months(day, version.point_expiry_months), time(0),
                               tzinfo=ZoneInfo(version.timezone))
        due = max(due, version.effective_from)
        following = versions[index + 1].effective_from if index + 1 < len(versions) else None
        if following is None or due < following:
            found = due if found is None else min(found, due)
    return found


async def reverse_record(session: AsyncSession, tenant_id: uuid.UUID, record_id: uuid.UUID | None, reason: str,
                         by_client: str, now: datetime) -> Reversed:
    if not reason or not reason.strip():
        raise ReversalError(ReversalErrorCode.REASON_REQUIRED, ["input", "reason"], "give the reason for the reversal")
    record = (await session.execute(text(
        "SELECT id, account_id, behavior_code, local_date, reduction_mg, points, reversed_at FROM behavior_records "
        "WHERE tenant_id = :t AND id = :id"), {"t": tenant_id, "id": record_id})).mappings().first() if record_id else None
    if record is None:
        raise ReversalError(ReversalErrorCode.RECORD_NOT_FOUND, ["input", "recordId"], "no such record in this city")
    ledgers = await ledger.lock_citizen_ledger_accounts(session, tenant_id, [record["account_id"]])
    marked = (await session.execute(text(
        "UPDATE behavior_records SET reversed_at = :now, reversal_reason = :reason WHERE id = :id AND reversed_at IS NULL "
        "RETURNING id"), {"id": record["id"], "now": now, "reason": f"{reason.strip()} (by {by_client})"})).first()
    if marked is None:
        raise ReversalError(ReversalErrorCode.ALREADY_REVERSED, ["input", "recordId"], "the record is already reversed")
    await market.on_record_reversed(session, tenant_id, record["id"])  # a pooled record: the buffer answers
    points_row = ledgers[(record["account_id"], POINTS)]
    contribution_row = ledgers[(record["account_id"], CONTRIBUTION)]
    system = await ledger.system_accounts(session, tenant_id)
    matured = points_row.matured_through is not None and record["local_date"] < points_row.matured_through
    given_back = 0
    if matured:
        # Its lot was spent or expired. What expired because of it (expiries since its day expired, up to its
        # points) is given back by the expired account: without the record it would never have expired.
        given_back = min(record["points"], await _expired_for(session, tenant_id, record["account_id"],
                                                              record["local_date"]))
    # The rest as for any reversal: from the balance as far as it goes, the remainder a shortfall.
    taken_points = min(record["points"] - given_back, points_row.balance)
    shortfall = record["points"] - taken_points - given_back
    # Out of the carry: its grams less those its credit converted. Negative when its points also converted
    # earlier carried grams: those go back to the carry, but only with every point taken back; a point
    # not taken back (the shortfall, owed) stays converted, and so do the grams behind it.
    credit_converted = (await session.execute(text(
        "SELECT coalesce(sum(converted_mg), 0) FROM ledger_transactions WHERE tenant_id = :t "
        "AND behavior_record_id = :r AND kind = 'BEHAVIOR_CREDIT'"), {"t": tenant_id, "r": record["id"]})).scalar()
    uncarried = record["reduction_mg"] - int(credit_converted)
    if shortfall:
        uncarried = max(0, uncarried)
    postings = []
    if record["reduction_mg"]:
        postings += [ledger.Posting(contribution_row.id, CONTRIBUTION, -record["reduction_mg"]),
                     ledger.Posting(system[(ledger.ISSUANCE, CONTRIBUTION)], CONTRIBUTION, record["reduction_mg"])]
    if taken_points:
        postings += [ledger.Posting(points_row.id, POINTS, -taken_points),
                     ledger.Posting(system[(ledger.ISSUANCE, POINTS)], POINTS, taken_points)]
    if given_back:
        postings += [ledger.Posting(system[(ledger.EXPIRED, POINTS)], POINTS, -given_back),
                     ledger.Posting(system[(ledger.ISSUANCE, POINTS)], POINTS, given_back)]
    transaction = ledger.NewTransaction(
        tenant_id=tenant_id, kind="BEHAVIOR_REVERSAL", status="REVERSED", occurred_at=now,
        account_id=record["account_id"], behavior_record_id=record["id"], behavior_code=record["behavior_code"],
        reduction_mg=-record["reduction_mg"], points=-taken_points, converted_mg=uncarried,
        shortfall_points=shortfall, postings=postings)
    # The lot shrinks by all the record's points but the balance only by what was taken: the untaken rest
    # was consumed (spent or expired), so consumption shrinks by it too (lots - consumed = balance). What
    # was spent is owed until a cancelled redemption gives points back; what expired is returned above.
    untaken = shortfall + given_back
    await ledger.post(session, [transaction], tracked={points_row.id, contribution_row.id},
                      carries={points_row.id: points_row.unconverted_mg - uncarried} if uncarried else None,
                      consumed={points_row.id: -untaken} if untaken else None,
                      owed={points_row.id: shortfall} if shortfall else None)
    key = (record["account_id"], record["behavior_code"], record["local_date"])
    await behaviors_repo.subtract_from_daily_total(session, tenant_id, key, record["reduction_mg"], record["points"])
    if matured:
        await session.execute(text(
            "UPDATE ledger_accounts SET earned_matured = GREATEST(earned_matured - :p, 0) WHERE id = :id"),
            {"p": record["points"], "id": points_row.id})
    return Reversed(transaction_id=transaction.id, record_id=record["id"], reduction_mg=record["reduction_mg"],
                    points=taken_points, shortfall_points=shortfall, expired_points=given_back)
