"""Redemption of the three kinds of rights: rewards, public-welfare donations, financial services.

`redeem` promises (ADR 0005):

* Idempotent per tenant and `idempotency_key`: a replay of the same request returns the first result;
  the same key with a different request is IDEMPOTENCY_CONFLICT. Racing replays serialise on the
  account lock (same account) or on the key's unique index (then the loser re-reads in a savepoint).
* No overspend: the account's ledger rows are locked (the platform's per-account lock, id order) before
  the balance is read, and the balance CHECK backs the code.
* No oversell: finite stock is taken with one guarded UPDATE (`stock_taken + q <= stock_total`); the
  item row is locked after the account rows, always in that order.
* Everything (stock, postings, balance, FIFO consumption, redemption, entitlement) in the caller's
  transaction, in one statement: `carbon_redeem_in_tenant()` (migrations 0002, 0004) is the write path, so a trusted
  document can run it in one round trip too; business failures write nothing.

`cancel` reverses a redemption within the item's cancellation window with reversing postings; the
redemption row is marked CANCELLED, nothing is deleted or edited in the ledger.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.ledger import service as ledger
from app.ledger.models import POINTS
from app.rewards import repository as repo
from app.rewards.errors import RewardError, RewardErrorCode as Code
from app.rewards.models import Redemption
from app.tenants.models import Reward

MAX_QUANTITY = 100
MAX_KEY = 128
_VOUCHER_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


@dataclass(frozen=True)
class Redeem:
    tenant_id: uuid.UUID
    account_id: uuid.UUID | None
    reward_id: uuid.UUID | None
    quantity: int
    idempotency_key: str
    by_client: str


@dataclass(frozen=True)
class Redeemed:
    redemption: Redemption
    balance_points: int
    replayed: bool


def request_hash(command: Redeem) -> str:
    return hashlib.sha256(f"{command.account_id}|{command.reward_id}|{command.quantity}".encode()).hexdigest()


def voucher_code() -> str:
    """12 random characters of a 32-letter alphabet (60 bits; `& 31` of a random byte is unbiased)."""
    letters = "".join(_VOUCHER_ALPHABET[byte & 31] for byte in secrets.token_bytes(12))
    return f"{letters[:4]}-{letters[4:8]}-{letters[8:]}"


def period_start(period: str, today: date) -> date | None:
    """First local day of the limit period containing `today`; None for LIFETIME."""
    if period == "DAY":
        return today
    if period == "WEEK":
        return today - timedelta(days=today.weekday())
    if period == "MONTH":
        return today.replace(day=1)
    if period == "YEAR":
        return today.replace(month=1, day=1)
    return None


def check_eligibility(reward: Reward, *, kind: str, status: str, contribution_mg: int, balance: int,
                      already_taken: int, quantity: int, now: datetime) -> list[Code]:
    """Every reason the account cannot take `quantity` of `reward` now (empty: it can). Pure."""
    reasons: list[Code] = []
    if status == "FROZEN":
        reasons.append(Code.ACCOUNT_FROZEN)
    elif status == "CLOSED":
        reasons.append(Code.ACCOUNT_CLOSED)
    if not reward.active or (reward.valid_from and now < reward.valid_from) or (reward.valid_to and now >= reward.valid_to):
        reasons.append(Code.REWARD_UNAVAILABLE)
    if (reward.bank_linked_only and kind != "BANK_LINKED") or contribution_mg < reward.min_contribution_mg:
        reasons.append(Code.NOT_ELIGIBLE)
    if reward.per_account_limit is not None and already_taken + quantity > reward.per_account_limit:
        reasons.append(Code.LIMIT_REACHED)
    if reward.stock_total is not None and reward.stock_taken + quantity > reward.stock_total:
        reasons.append(Code.OUT_OF_STOCK)
    if balance < reward.cost_points * quantity:
        reasons.append(Code.INSUFFICIENT_POINTS)
    return reasons


_MESSAGES = {
    Code.ACCOUNT_FROZEN: "the account is frozen and cannot spend",
    Code.ACCOUNT_CLOSED: "the account is closed",
    Code.REWARD_UNAVAILABLE: "the item is not available now",
    Code.NOT_ELIGIBLE: "the account does not meet the item's eligibility (bank link or contribution)",
    Code.LIMIT_REACHED: "the account reached the item's limit for this period",
    Code.OUT_OF_STOCK: "not enough stock left",
    Code.INSUFFICIENT_POINTS: "not enough points",
    Code.ACCOUNT_NOT_FOUND: "no such account in this city",
    Code.IDEMPOTENCY_CONFLICT: "this idempotencyKey was used for a different request",
}


def redeem_params(command: Redeem, now: datetime) -> dict[str, object]:
    """The arguments of `carbon_redeem_in_tenant()` for a validated command (fresh ids and voucher each call)."""
    return {"tenant": command.tenant_id, "account": command.account_id, "reward": command.reward_id,
            "quantity": command.quantity, "key": command.idempotency_key, "hash": request_hash(command),
            "client": command.by_client, "now": now, "voucher": voucher_code(),
            "redemption": uuid.uuid4(), "transaction": uuid.uuid4()}


def validate(command: Redeem) -> None:
    if not 0 < command.quantity <= MAX_QUANTITY:
        raise RewardError(Code.INVALID_QUANTITY, ["input", "quantity"], f"quantity must be 1 to {MAX_QUANTITY}")
    if not 0 < len(command.idempotency_key) <= MAX_KEY or "\x00" in command.idempotency_key:
        raise RewardError(Code.INVALID_IDEMPOTENCY_KEY, ["input", "idempotencyKey"],
                          f"idempotencyKey must have 1 to {MAX_KEY} characters (no NUL)")
    if command.account_id is None:
        raise RewardError(Code.ACCOUNT_NOT_FOUND, ["input", "accountId"], "no such account in this city")
    if command.reward_id is None:
        raise RewardError(Code.REWARD_UNAVAILABLE, ["input", "rewardId"], "no such item in this city")


_FIELDS = {Code.ACCOUNT_NOT_FOUND: "accountId", Code.ACCOUNT_FROZEN: "accountId", Code.ACCOUNT_CLOSED: "accountId",
           Code.IDEMPOTENCY_CONFLICT: "idempotencyKey", Code.LIMIT_REACHED: "quantity", Code.OUT_OF_STOCK: "quantity"}


def verdict_error(verdict: dict[str, object]) -> RewardError | None:
    """The RewardError a `carbon_redeem_in_tenant()` verdict stands for, or None for a fulfilled redemption."""
    if "error" not in verdict:
        return None
    code = Code(verdict["error"])
    message = "no such item in this city" if verdict.get("reason") == "NOT_FOUND" else _MESSAGES[code]
    return RewardError(code, ["input", _FIELDS.get(code, "rewardId")], message)


async def redeem(session: AsyncSession, command: Redeem, now: datetime) -> Redeemed:
    """Redeem, or replay the first result of this idempotency key. One statement does the work
    (`carbon_redeem_in_tenant()`, migration 0004; limit periods in the tenant's local calendar of the
    configuration in force at `now`); it writes nothing when it returns an error. A race on the key with another account fails the unique index and is
    retried in a savepoint, which then sees the winner. Does not commit."""
    validate(command)
    for attempt in range(3):
        try:
            async with session.begin_nested():
                verdict = await repo.redeem_in_database(session, redeem_params(command, now))
            break
        except IntegrityError:
            if attempt == 2:  # pragma: no cover - three concurrent losers in a row
                raise
    if verdict is None:
        raise RuntimeError(f"tenant {command.tenant_id} has no configuration in force at {now}")
    error = verdict_error(verdict)
    if error is not None:
        raise error
    redemption = await repo.redemption(session, command.tenant_id, uuid.UUID(str(verdict["redemption_id"])))
    assert redemption is not None
    return Redeemed(redemption=redemption, balance_points=int(verdict["balance"]), replayed=bool(verdict["replayed"]))


async def cancel(session: AsyncSession, tenant_id: uuid.UUID, redemption_id: uuid.UUID | None, by_client: str,
                 now: datetime, reason: str | None = None) -> Redeemed:
    """Cancel within the item's window: points and stock back, reversing postings. Repeating a
    cancellation returns the cancelled redemption unchanged. Writes nothing when it raises."""
    async with session.begin_nested():
        return await _cancel(session, tenant_id, redemption_id, by_client, now, reason)


async def _expired_by_refund(session: AsyncSession, tenant_id: uuid.UUID, redemption: Redemption,
                             points_row: ledger.CitizenLedger, to_citizen: int) -> int:
    """What of a refund expires at once: the points it gives back to lots that have matured since.

    The redemption consumed the FIFO positions [c0, c0 + cost) of the account's lots, c0 being the
    consumption counter just before it (`ledger.consumed_before`); lots before `earned_matured` have
    matured, so the part of that range below it is past its expiry. Without this, a refund after the
    lot's expiry would be re-attributed by the single counter to younger lots and live on until they
    expire (a QA pass parked points in a cancellable item the evening before they expired, spent younger
    points, cancelled: the 80 coins survived). At least what keeps consumed >= matured (the counter's
    own view), never more than the refund."""
    if not to_citizen or not points_row.earned_matured:  # nothing has matured: no history to read
        return 0
    keep_invariant = max(0, points_row.earned_matured - (points_row.points_consumed - to_citizen))
    if keep_invariant >= to_citizen:
        return to_citizen
    transaction_id = await repo.spending_transaction(session, tenant_id, redemption.id)
    start = None if transaction_id is None else await ledger.consumed_before(
        session, tenant_id, redemption.account_id, transaction_id, points_row.points_consumed)
    in_matured = 0 if start is None else max(0, min(start + redemption.points, points_row.earned_matured) - start)
    return min(to_citizen, max(keep_invariant, in_matured))


async def _cancel(session: AsyncSession, tenant_id: uuid.UUID, redemption_id: uuid.UUID | None, by_client: str,
                  now: datetime, reason: str | None) -> Redeemed:
    found = await repo.redemption(session, tenant_id, redemption_id) if redemption_id else None
    if found is None:
        raise RewardError(Code.REDEMPTION_NOT_FOUND, ["input", "redemptionId"], "no such redemption in this city")
    ledgers = await ledger.lock_citizen_ledger_accounts(session, tenant_id, [found.account_id])
    redemption = await repo.lock_redemption(session, found.id)
    points_row = ledgers[(redemption.account_id, POINTS)]
    if redemption.status == "CANCELLED":
        return Redeemed(redemption=redemption, balance_points=points_row.balance, replayed=True)
    if redemption.cancellable_until is None:
        raise RewardError(Code.NOT_CANCELLABLE, ["input", "redemptionId"],
                          "this item cannot be cancelled (its cancellation window is 0 hours)")
    if now > redemption.cancellable_until:
        raise RewardError(Code.CANCELLATION_WINDOW_CLOSED, ["input", "redemptionId"],
                          "this redemption can no longer be cancelled")
    # Undo exactly what the redemption did, whatever the item has become since.
    if redemption.stock_units:
        await repo.return_stock(session, redemption.reward_id, redemption.stock_units)
    cancelled = await repo.mark_cancelled(session, redemption.id, now, reason)
    await repo.cancel_entitlements(session, redemption.id)
    refund = redemption.points
    repay = min(points_row.points_owed, refund)  # a reversal's unpaid shortfall is settled first
    to_citizen = refund - repay
    expired = await _expired_by_refund(session, tenant_id, redemption, points_row, to_citizen)
    if refund:
        system = await ledger.system_accounts(session, tenant_id)
        postings = [ledger.Posting(redemption.counterparty_ledger_id, POINTS, -refund)]
        if to_citizen:
            postings.append(ledger.Posting(points_row.id, POINTS, to_citizen))
        if repay:
            postings.append(ledger.Posting(system[(ledger.ISSUANCE, POINTS)], POINTS, repay))
        transactions = [ledger.NewTransaction(
            tenant_id=tenant_id, kind="REDEMPTION_CANCELLED", status="CANCELLED", occurred_at=now,
            account_id=redemption.account_id, points=to_citizen, redemption_id=redemption.id, postings=postings)]
        if expired:  # right after the refund, in the same transaction
            transactions.append(ledger.expiry_transaction(
                tenant_id, redemption.account_id, points_row.id, system[(ledger.EXPIRED, POINTS)], expired,
                now + timedelta(microseconds=1)))
        await ledger.post(session, transactions, tracked={points_row.id, redemption.counterparty_ledger_id},
                          consumed={points_row.id: expired - to_citizen} if to_citizen else None,
                          owed={points_row.id: -repay} if repay else None)
    return Redeemed(redemption=cancelled, balance_points=points_row.balance + to_citizen - expired, replayed=False)
