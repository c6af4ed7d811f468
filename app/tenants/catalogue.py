"""Catalogue administration by a city's operators (TENANT_ADMIN): add, edit, retire items, set stock.

Every change is validated (a refused change writes nothing), audited in the same transaction
(`admin_audit_events`: who, when, what, values before and after) and visible at once. Items created
here are ADMIN-managed and the city's file never touches them; edits of FILE items survive restarts
until the file changes that item (ADR 0007). Stock is `stock_total` over the monotonic `stock_taken`
(units handed out while the item had finite stock: giving an unlimited reward or financial service a
stock of N means N more units, since a redemption of an unlimited item writes nothing to the item's row,
so a popular item is no point of contention; a donation project counts every gift, its running total,
so a stock of N on a project means N gifts in all): the total can never go below what was already
handed out. Every change takes the item's advisory
lock exclusively, then its row FOR UPDATE; a redemption holds the advisory lock shared from before it
reads the item until it commits (migration 0010), so it sees an item either wholly before or wholly
after an administrator's change.
"""

from __future__ import annotations

import enum
import re
import uuid
from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import UserError
from app.ledger.service import ensure_donation_account
from app.tenants.config import SLUG_PATTERN
from app.tenants.models import Reward

MAX_TEXT = 200
MAX_STOCK = 10**12
KINDS = ("REWARD", "DONATION", "FINANCIAL_SERVICE")
PERIODS = ("DAY", "WEEK", "MONTH", "YEAR", "LIFETIME")


class CatalogueCode(str, enum.Enum):
    REWARD_NOT_FOUND = "REWARD_NOT_FOUND"
    CODE_TAKEN = "CODE_TAKEN"
    INVALID_CODE = "INVALID_CODE"
    INVALID_NAME = "INVALID_NAME"
    INVALID_COST = "INVALID_COST"
    INVALID_STOCK = "INVALID_STOCK"
    STOCK_BELOW_TAKEN = "STOCK_BELOW_TAKEN"
    INVALID_LIMIT = "INVALID_LIMIT"
    INVALID_VALIDITY = "INVALID_VALIDITY"
    INVALID_WINDOW = "INVALID_WINDOW"
    SPONSOR_NOT_FOUND = "SPONSOR_NOT_FOUND"
    ALREADY_RETIRED = "ALREADY_RETIRED"


class CatalogueError(UserError):
    """One refused part of a change. `field` is its path inside the mutation's `input`, e.g.
    ["fields", "name", "en"]."""

    code: CatalogueCode
    field: list[str]


class CatalogueRefused(Exception):
    """A refused change with everything wrong in it, in input order (nothing was written)."""

    def __init__(self, errors: list[CatalogueError]) -> None:
        super().__init__("; ".join(error.message for error in errors))
        self.errors = errors


def _refuse(errors: list[CatalogueError]) -> None:
    if errors:
        raise CatalogueRefused(errors)


@dataclass
class ItemChanges:
    """Fields of an item to set; None leaves a field as it is (use the `clear_*` flags to unset)."""

    name_en: str | None = None
    name_zh: str | None = None
    description_en: str | None = None
    description_zh: str | None = None
    cost_points: int | None = None
    per_account_limit: int | None = None
    clear_per_account_limit: bool = False
    limit_period: str | None = None
    valid_from: datetime | None = None
    clear_valid_from: bool = False
    valid_to: datetime | None = None
    clear_valid_to: bool = False
    sponsor: str | None = None  # issuer slug
    cancellation_window_hours: int | None = None
    bank_linked_only: bool | None = None
    min_contribution_mg: int | None = None
    # Parts of the input already refused while reading it (e.g. a cost that is not a number): reported
    # with the rest, and their fields are not checked again.
    refused: list[CatalogueError] = field(default_factory=list)


_AUDITED = ("code", "kind", "name_en", "name_zh", "description_en", "description_zh", "cost_points", "stock_total",
            "per_account_limit", "limit_period", "valid_from", "valid_to", "sponsor_issuer_id",
            "cancellation_window_hours", "bank_linked_only", "min_contribution_mg", "active")


def _snapshot(row: dict[str, Any]) -> dict[str, Any]:
    return {key: (str(row[key]) if isinstance(row[key], (uuid.UUID, datetime, Decimal)) else row[key])
            for key in _AUDITED}


async def _audit(session: AsyncSession, tenant_id: uuid.UUID, by: str, action: str, reward_id: uuid.UUID,
                 before: dict[str, Any] | None, after: dict[str, Any]) -> None:
    await record_audit(session, tenant_id, by, action, "Reward", reward_id, before, after)


async def record_audit(session: AsyncSession, tenant_id: uuid.UUID, by: str, action: str, target_type: str,
                       target_id: uuid.UUID, before: dict[str, Any] | None, after: dict[str, Any]) -> None:
    """One audit event, in the caller's transaction: for every field the change altered, before and after."""
    import json

    changed = {key: {"from": (before or {}).get(key), "to": after[key]} for key in after
               if before is None or before.get(key) != after[key]}
    await session.execute(text(
        "INSERT INTO admin_audit_events (id, tenant_id, at, by_client, action, target_type, target_id, changes) "
        "VALUES (:id, :t, clock_timestamp(), :by, :action, :type, :target, CAST(:changes AS jsonb))"),
        {"id": uuid.uuid4(), "t": tenant_id, "by": by, "action": action, "type": target_type, "target": target_id,
         "changes": json.dumps(changed, default=str)})


async def lock_items(session: AsyncSession, reward_ids: list[uuid.UUID]) -> None:
    """The items' exclusive advisory locks (id order): redemptions hold them shared while they read and
    write an item (migration 0010), so a change is seen by each wholly or not at all. Taken before any
    row lock of the items."""
    if reward_ids:
        await session.execute(text(
            "SELECT pg_advisory_xact_lock(hashtextextended('carbon-item:' || id::text, 0)) "
            "FROM unnest(CAST(:ids AS uuid[])) AS x(id) ORDER BY id"), {"ids": sorted(set(reward_ids))})


async def _locked(session: AsyncSession, tenant_id: uuid.UUID, reward_id: uuid.UUID | None) -> dict[str, Any]:
    if reward_id is not None:
        await lock_items(session, [reward_id])
    row = None if reward_id is None else (await session.execute(text(
        "SELECT * FROM rewards WHERE tenant_id = :t AND id = :id FOR UPDATE"),
        {"t": tenant_id, "id": reward_id})).mappings().first()
    if row is None:
        raise CatalogueError(CatalogueCode.REWARD_NOT_FOUND, ["id"], "no such item in this city")
    return dict(row)


def _active(row: dict[str, Any]) -> None:
    if not row["active"]:
        raise CatalogueError(CatalogueCode.ALREADY_RETIRED, ["id"],
                             "the item is retired: it can no longer be changed (a file item comes back when "
                             "its file declares it again)")


def _problems(values: dict[str, Any], skip: set[str]) -> list[CatalogueError]:
    """Every rule an item breaks after a change (the database's CHECKs, with clear messages), in input
    order; fields in `skip` were refused already."""
    found = []

    def refuse(code: CatalogueCode, path: str, message: str) -> None:
        if path.split(".")[0] not in skip:
            found.append(CatalogueError(code, ["fields", *path.split(".")], message))

    for key, path in (("name_en", "name.en"), ("name_zh", "name.zh")):
        if not values[key] or len(values[key]) > MAX_TEXT or "\x00" in values[key]:
            refuse(CatalogueCode.INVALID_NAME, path, f"{path} must have 1 to {MAX_TEXT} characters, without NUL")
    for key, path in (("description_en", "description.en"), ("description_zh", "description.zh")):
        if values[key] is not None and (len(values[key]) > 4 * MAX_TEXT or "\x00" in values[key]):
            refuse(CatalogueCode.INVALID_NAME, path, f"{path} has at most {4 * MAX_TEXT} characters, without NUL")
    if values["cost_points"] is not None and not 0 <= values["cost_points"] <= MAX_STOCK:
        refuse(CatalogueCode.INVALID_COST, "cost", "cost must be 0 or more")
    if values["per_account_limit"] is not None and not 1 <= values["per_account_limit"] <= 10**6:
        refuse(CatalogueCode.INVALID_LIMIT, "perAccountLimit", "a limit must be 1 to 1,000,000")
    if values["limit_period"] not in PERIODS:
        refuse(CatalogueCode.INVALID_LIMIT, "limitPeriod", f"limit period must be one of {PERIODS}")
    aware = True
    for key, path in (("valid_from", "validFrom"), ("valid_to", "validTo")):
        if values[key] is not None and values[key].utcoffset() is None:
            aware = False
            refuse(CatalogueCode.INVALID_VALIDITY, path, "give a time with its UTC offset, e.g. 2026-12-01T00:00:00+08:00")
    if aware and values["valid_from"] and values["valid_to"] and values["valid_to"] <= values["valid_from"]:
        refuse(CatalogueCode.INVALID_VALIDITY, "validTo", "validTo must be after validFrom")
    if not 0 <= values["cancellation_window_hours"] <= 24 * 365:
        refuse(CatalogueCode.INVALID_WINDOW, "cancellationWindowHours",
               "the cancellation window is 0 to 8,760 hours (as in a city file)")
    if not 0 <= values["min_contribution_mg"] <= 10**15:
        refuse(CatalogueCode.INVALID_COST, "minContributionGrams", "must be 0 or more")
    return found


async def _apply(session: AsyncSession, tenant_id: uuid.UUID, values: dict[str, Any], changes: ItemChanges,
                 errors: list[CatalogueError]) -> dict[str, Any]:
    """`values` with `changes` applied; every problem found (with `errors`, found before) is refused
    together."""
    for item in fields(changes):
        value = getattr(changes, item.name)
        if item.name.startswith("clear_") or item.name in ("sponsor", "refused") or value is None:
            continue
        values[item.name] = value
    for name in ("per_account_limit", "valid_from", "valid_to"):
        if getattr(changes, f"clear_{name}"):
            values[name] = None
    if changes.sponsor is not None:
        sponsor = (await session.execute(text("SELECT id FROM issuers WHERE tenant_id = :t AND slug = :s AND active"),
                                         {"t": tenant_id, "s": changes.sponsor})).scalar()
        if sponsor is None:
            errors.append(CatalogueError(CatalogueCode.SPONSOR_NOT_FOUND, ["fields", "sponsor"],
                                         f"no issuer {changes.sponsor!r} in this city"))
        values["sponsor_issuer_id"] = sponsor
    errors = [*errors, *changes.refused]
    errors += _problems(values, {error.field[1] for error in errors if error.field[:1] == ["fields"]})
    _refuse(errors)
    return values


async def create_item(session: AsyncSession, tenant_id: uuid.UUID, by: str, *, code: str, kind: str,
                      stock_total: int | None, changes: ItemChanges) -> Reward:
    errors = []
    if not re.fullmatch(SLUG_PATTERN, code) or len(code) > 63:
        errors.append(CatalogueError(CatalogueCode.INVALID_CODE, ["code"], "code: 1 to 63 lowercase letters, "
                                     "digits and '-', starting with a letter (as in a file)"))
    elif (await session.execute(text("SELECT 1 FROM rewards WHERE tenant_id = :t AND code = :c"),
                                {"t": tenant_id, "c": code})).first() is not None:
        # Reported with the rest; the insert below still refuses a code taken meanwhile.
        errors.append(CatalogueError(CatalogueCode.CODE_TAKEN, ["code"], f"the city already has an item {code!r}"))
    if kind not in KINDS:
        errors.append(CatalogueError(CatalogueCode.INVALID_CODE, ["kind"], f"kind must be one of {KINDS}"))
    if stock_total is not None and not 0 <= stock_total <= MAX_STOCK:
        errors.append(CatalogueError(CatalogueCode.INVALID_STOCK, ["totalStock"],
                                     "stock must be 0 or more (null: unlimited)"))
    refused = {error.field[1] for error in changes.refused}
    if changes.cost_points is None and "cost" not in refused:
        errors.append(CatalogueError(CatalogueCode.INVALID_COST, ["fields", "cost"], "an item needs a cost"))
    if changes.sponsor is None:
        errors.append(CatalogueError(CatalogueCode.SPONSOR_NOT_FOUND, ["fields", "sponsor"],
                                     "name the sponsoring issuer"))
    values: dict[str, Any] = {
        "code": code, "kind": kind, "name_en": None, "name_zh": None, "description_en": None, "description_zh": None,
        "cost_points": None, "stock_total": stock_total, "per_account_limit": None, "limit_period": "LIFETIME",
        "valid_from": None, "valid_to": None, "sponsor_issuer_id": None, "cancellation_window_hours": 0,
        "bank_linked_only": False, "min_contribution_mg": 0, "active": True,
    }
    values = await _apply(session, tenant_id, values, changes, errors)
    reward_id = uuid.uuid4()
    position = (await session.execute(text("SELECT coalesce(max(position), 0) + 1 FROM rewards WHERE tenant_id = :t"),
                                      {"t": tenant_id})).scalar()
    inserted = (await session.execute(text("""
        INSERT INTO rewards (id, tenant_id, position, managed_by, stock_taken, code, kind, name_en, name_zh,
            description_en, description_zh, cost_points, stock_total, per_account_limit, limit_period, valid_from,
            valid_to, sponsor_issuer_id, cancellation_window_hours, bank_linked_only, min_contribution_mg, active)
        VALUES (:id, :t, :position, 'ADMIN', 0, :code, :kind, :name_en, :name_zh, :description_en, :description_zh,
            :cost_points, :stock_total, :per_account_limit, :limit_period, :valid_from, :valid_to,
            :sponsor_issuer_id, :cancellation_window_hours, :bank_linked_only, :min_contribution_mg, true)
        ON CONFLICT (tenant_id, code) DO NOTHING RETURNING *"""),
        {"id": reward_id, "t": tenant_id, "position": position, **values})).mappings().first()
    if inserted is None:
        raise CatalogueError(CatalogueCode.CODE_TAKEN, ["code"], f"the city already has an item {code!r}")
    if kind == "DONATION":
        await ensure_donation_account(session, tenant_id, code)
    await _audit(session, tenant_id, by, "CREATE", reward_id, None, _snapshot(dict(inserted)))
    return Reward(**inserted)


async def update_item(session: AsyncSession, tenant_id: uuid.UUID, by: str, reward_id: uuid.UUID | None,
                      changes: ItemChanges) -> Reward:
    row = await _locked(session, tenant_id, reward_id)
    _active(row)
    before = _snapshot(row)
    values = await _apply(session, tenant_id, dict(row), changes, [])
    updated = (await session.execute(text("""
        UPDATE rewards SET name_en = :name_en, name_zh = :name_zh, description_en = :description_en,
            description_zh = :description_zh, cost_points = :cost_points, per_account_limit = :per_account_limit,
            limit_period = :limit_period, valid_from = :valid_from, valid_to = :valid_to,
            sponsor_issuer_id = :sponsor_issuer_id, cancellation_window_hours = :cancellation_window_hours,
            bank_linked_only = :bank_linked_only, min_contribution_mg = :min_contribution_mg, updated_at = now()
        WHERE id = :id RETURNING *"""), values)).mappings().one()
    after = _snapshot(dict(updated))
    if after != before:
        await _audit(session, tenant_id, by, "UPDATE", row["id"], before, after)
    return Reward(**updated)


async def set_stock(session: AsyncSession, tenant_id: uuid.UUID, by: str, reward_id: uuid.UUID | None,
                    stock_total: int | None) -> Reward:
    row = await _locked(session, tenant_id, reward_id)
    _active(row)
    if stock_total is not None and not 0 <= stock_total <= MAX_STOCK:
        raise CatalogueError(CatalogueCode.INVALID_STOCK, ["totalStock"], "stock must be 0 or more (null: unlimited)")
    if stock_total is not None and stock_total < row["stock_taken"]:
        raise CatalogueError(CatalogueCode.STOCK_BELOW_TAKEN, ["totalStock"],
                             f"{row['stock_taken']} units are already handed out; the total cannot be less")
    updated = (await session.execute(text(
        "UPDATE rewards SET stock_total = :s, updated_at = now() WHERE id = :id RETURNING *"),
        {"s": stock_total, "id": row["id"]})).mappings().one()
    if stock_total != row["stock_total"]:
        await _audit(session, tenant_id, by, "SET_STOCK", row["id"], _snapshot(row), _snapshot(dict(updated)))
    return Reward(**updated)


async def retire_item(session: AsyncSession, tenant_id: uuid.UUID, by: str, reward_id: uuid.UUID | None) -> Reward:
    row = await _locked(session, tenant_id, reward_id)
    if not row["active"]:
        raise CatalogueError(CatalogueCode.ALREADY_RETIRED, ["id"], "the item is already retired")
    updated = (await session.execute(text(
        "UPDATE rewards SET active = false, updated_at = now() WHERE id = :id RETURNING *"),
        {"id": row["id"]})).mappings().one()
    await _audit(session, tenant_id, by, "RETIRE", row["id"], _snapshot(row), _snapshot(dict(updated)))
    return Reward(**updated)
