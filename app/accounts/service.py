"""Account rules: opening (idempotent per holder), bank linking, freezing, closing, consents.

Each function validates before it writes, raises `AccountError` for business failures (the caller
turns them into `userErrors`), never commits, and locks the account row before changing it, so
concurrent calls for one account serialise. Lifecycle changes are recorded in `account_events`.

Frozen accounts keep earning (the behaviour happened) but cannot spend; closed accounts take no new
credits and keep their history.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import repository as repo
from app.accounts.errors import AccountError, AccountErrorCode as Code
from app.accounts.hashing import HolderHasher, mask_bank_ref, normalize_bank_ref
from app.accounts.models import Account, Consent
from app.ledger.service import lock_citizen_ledger_accounts, open_citizen_accounts
from app.tenants.config import BehaviorCategory

GUEST, BANK_LINKED = "GUEST", "BANK_LINKED"
ACTIVE, FROZEN, CLOSED = "ACTIVE", "FROZEN", "CLOSED"
MAX_HOLDER_REF = 256


@dataclass(frozen=True)
class OpenAccount:
    tenant_id: uuid.UUID
    holder_ref: str
    kind: str
    accepted_agreement: bool
    bank_account_ref: str | None
    by_client: str


@dataclass(frozen=True)
class Opened:
    account: Account
    created: bool


def _bank(bank_account_ref: str, field: str) -> str:
    normalized = normalize_bank_ref(bank_account_ref)
    if normalized is None:
        raise AccountError(Code.INVALID_BANK_ACCOUNT, ["input", field], "bankAccountRef must be 6 to 34 letters and digits")
    return normalized


async def open_account(session: AsyncSession, hasher: HolderHasher, command: OpenAccount, now: datetime) -> Opened:
    """Open an account, or return the holder's existing one in this tenant (never a second account)."""
    holder_ref = command.holder_ref.strip()
    if not holder_ref or len(holder_ref) > MAX_HOLDER_REF:
        raise AccountError(Code.INVALID_HOLDER_REF, ["input", "holderRef"],
                           f"holderRef must have 1 to {MAX_HOLDER_REF} characters")
    if not command.accepted_agreement:
        raise AccountError(Code.AGREEMENT_REQUIRED, ["input", "acceptedAgreement"],
                           "the citizen must accept the account agreement")
    bank_hash = bank_mask = None
    if command.kind == BANK_LINKED:
        if not command.bank_account_ref:
            raise AccountError(Code.BANK_ACCOUNT_REQUIRED, ["input", "bankAccountRef"],
                               "a BANK_LINKED account needs bankAccountRef")
        normalized = _bank(command.bank_account_ref, "bankAccountRef")
        bank_hash = hasher.bank_account_hash(command.tenant_id, normalized)
        bank_mask = mask_bank_ref(normalized)
    elif command.bank_account_ref:
        raise AccountError(Code.BANK_ACCOUNT_NOT_ALLOWED, ["input", "bankAccountRef"],
                           "a GUEST account has no bank account: open it as BANK_LINKED or link one later")

    holder_hash = hasher.holder_hash(command.tenant_id, holder_ref)
    new_id = await repo.insert_account_if_absent(session, {
        "id": uuid.uuid4(), "tenant_id": command.tenant_id, "holder_hash": holder_hash, "kind": command.kind,
        "bank_account_hash": bank_hash, "bank_account_mask": bank_mask, "opened_by": command.by_client,
        "now": now, "bank_linked_at": now if bank_hash else None,
    })
    if new_id is None:
        existing = await repo.account_by_holder(session, command.tenant_id, holder_hash)
        assert existing is not None
        # The same request again is answered with the account; a different one would be silently dropped.
        if existing.kind != command.kind:
            raise AccountError(Code.ACCOUNT_EXISTS, ["input", "kind"],
                               f"this holder already has a {existing.kind} account"
                               + (": link the bank account with linkBankAccount" if existing.kind == GUEST else ""))
        if bank_hash is not None and existing.bank_account_hash != bank_hash:
            raise AccountError(Code.ACCOUNT_EXISTS, ["input", "bankAccountRef"],
                               "this holder already has an account linked to another bank account")
        return Opened(account=existing, created=False)
    await open_citizen_accounts(session, command.tenant_id, new_id)
    await repo.add_event(session, command.tenant_id, new_id, "OPENED", command.by_client, now)
    if bank_hash:
        await repo.add_event(session, command.tenant_id, new_id, "BANK_LINKED", command.by_client, now)
    account = await repo.account_by_holder(session, command.tenant_id, holder_hash)
    assert account is not None
    return Opened(account=account, created=True)


async def _locked(session: AsyncSession, tenant_id: uuid.UUID, account_id: uuid.UUID | None) -> Account:
    account = await repo.lock_account(session, tenant_id, account_id) if account_id else None
    if account is None:
        raise AccountError(Code.ACCOUNT_NOT_FOUND, ["input", "accountId"], "no such account in this city")
    return account


async def link_bank_account(session: AsyncSession, hasher: HolderHasher, tenant_id: uuid.UUID,
                            account_id: uuid.UUID | None, bank_account_ref: str, by_client: str,
                            now: datetime) -> Account:
    """Turn a guest account into a bank-linked one; its history and balances stay as they are."""
    account = await _locked(session, tenant_id, account_id)
    if account.status == CLOSED:
        raise AccountError(Code.ACCOUNT_CLOSED, ["input", "accountId"], "the account is closed")
    normalized = _bank(bank_account_ref, "bankAccountRef")
    bank_hash = hasher.bank_account_hash(tenant_id, normalized)
    if account.kind == BANK_LINKED:
        if account.bank_account_hash == bank_hash:
            return account  # the same link again: nothing to do
        raise AccountError(Code.ALREADY_LINKED, ["input", "bankAccountRef"],
                           "the account is already linked to another bank account")
    updated = await repo.update_account(session, account.id, {
        "kind": BANK_LINKED, "bank_account_hash": bank_hash, "bank_account_mask": mask_bank_ref(normalized),
        "bank_linked_at": now})
    await repo.add_event(session, tenant_id, account.id, "BANK_LINKED", by_client, now)
    return updated


async def set_status(session: AsyncSession, tenant_id: uuid.UUID, account_id: uuid.UUID | None, status: str,
                     by_client: str, now: datetime, reason: str | None = None) -> Account:
    """FROZEN, ACTIVE (unfreeze) or CLOSED. Repeating the current status changes nothing.

    Takes the per-account ledger lock first (ADR 0004), so a status change is ordered with the credits
    and redemptions of the account, never in the middle of one."""
    if account_id is not None:
        await lock_citizen_ledger_accounts(session, tenant_id, [account_id])
    account = await _locked(session, tenant_id, account_id)
    if account.status == status:
        return account
    if account.status == CLOSED:
        raise AccountError(Code.ACCOUNT_CLOSED, ["input", "accountId"],
                           "the account is closed: it can no longer be frozen or unfrozen")
    values: dict[str, object] = {"status": status}
    if status == CLOSED:
        values["closed_at"] = now
    updated = await repo.update_account(session, account.id, values)
    event = {FROZEN: "FROZEN", ACTIVE: "UNFROZEN", CLOSED: "CLOSED"}[status]
    await repo.add_event(session, tenant_id, account.id, event, by_client, now, reason)
    return updated


async def grant_consent(session: AsyncSession, tenant_id: uuid.UUID, account_id: uuid.UUID | None,
                        provider_slug: str, categories: list[str], by_client: str, now: datetime) -> Consent:
    """Authorise `provider` for `categories`. A live consent with other categories is revoked and
    replaced (history kept); the same categories again return the live consent unchanged."""
    account = await _locked(session, tenant_id, account_id)
    if account.status == CLOSED:
        raise AccountError(Code.ACCOUNT_CLOSED, ["input", "accountId"], "the account is closed")
    wanted = [category.value for category in BehaviorCategory if category.value in set(categories)]
    if not wanted:
        raise AccountError(Code.INVALID_CATEGORIES, ["input", "categories"], "give at least one category")
    provider = await repo.provider_id(session, tenant_id, provider_slug)
    if provider is None:
        raise AccountError(Code.PROVIDER_NOT_FOUND, ["input", "provider"],
                           f"no data provider {provider_slug!r} in this city")
    live = await repo.live_consent(session, tenant_id, account.id, provider)
    if live is not None and list(live.categories) == wanted:
        return live
    # `now` is when the request began; a request that began earlier may have taken the lock later.
    # History stays in order: nothing is revoked before it was granted, nor granted before the last change.
    now = await _after_history(session, tenant_id, account.id, provider, now)
    if live is not None:
        await repo.revoke_consent(session, live.id, now, by_client)
    return await repo.insert_consent(session, {
        "id": uuid.uuid4(), "tenant_id": tenant_id, "account_id": account.id, "provider_issuer_id": provider,
        "categories": wanted, "granted_by": by_client, "granted_at": now})


async def revoke_consent(session: AsyncSession, tenant_id: uuid.UUID, account_id: uuid.UUID | None,
                         provider_slug: str, by_client: str, now: datetime) -> Consent:
    account = await _locked(session, tenant_id, account_id)
    provider = await repo.provider_id(session, tenant_id, provider_slug)
    live = await repo.live_consent(session, tenant_id, account.id, provider) if provider else None
    if live is None:
        raise AccountError(Code.CONSENT_NOT_FOUND, ["input", "provider"],
                           f"no live consent for provider {provider_slug!r} on this account")
    return await repo.revoke_consent(session, live.id, await _after_history(session, tenant_id, account.id, provider,
                                                                            now), by_client)


async def _after_history(session: AsyncSession, tenant_id: uuid.UUID, account_id: uuid.UUID, provider: uuid.UUID,
                         now: datetime) -> datetime:
    """`now`, or just after the last grant or revocation of this account's consents to `provider` if that
    is not earlier (read under the account's lock, which every consent change takes): strictly after, so
    the newest consent is first in a list ordered by time, never tied with the one it replaced."""
    latest = await repo.latest_consent_change(session, tenant_id, account_id, provider)
    return max(now, latest + timedelta(microseconds=1)) if latest is not None else now
