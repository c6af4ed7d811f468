"""Market lots: issue, list, sell, retire; what a reversal of a pooled record does (ADR 0011).

Units: one serial number is one kilogram CO2e (1,000,000 mg). A lot pools every verified reduction of
its period (local dates of the city) not yet in a lot, whole records at a time. Of the pooled
milligrams, a buffer of at least `BUFFER_PERCENT` (rounded up to the next whole kilogram of serials
withheld, so it also holds the sub-kilogram remainder) gets no serial: it answers for records reversed
after pooling. Buffer-pool policy on such a reversal: the lot's `reversed_mg` grows (the record leaves
the verified total, so pooled − reversed + unpooled = every verified reduction, exactly); while the
buffer covers it nothing else changes; beyond the buffer, unretired serials are cancelled from the top
of the range (whole kilograms, enough to cover); beyond what can still be cancelled (serials already
retired), the uncovered milligrams are recorded as the lot's `shortfall_mg`, for the city to make good.

Concurrency: issuing takes the city's lot lock and share-locks the records it pools, so a concurrent
reversal either comes first (the record is left out) or waits and then finds the record in its lot.
Every change of a lot's books locks the lot's row first.
"""

from __future__ import annotations

import enum
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.behaviors import repository as behaviors_repo
from app.behaviors.rules.calendar import local_date
from app.errors import UserError
from app.ledger import service as ledger
from app.ledger.models import POINTS
from app.ledger.signing import Signer
from app.tenants import repository as tenants_repo

# A lot as every reader shows it: its row and its city's slug (serial numbers carry the slug).
LOTS = "market_lots l JOIN tenants t ON t.id = l.tenant_id"
LOT_COLUMNS = "l.*, t.slug"
MG_PER_SERIAL = 1_000_000
# The earning lot of sale proceeds in `daily_behavior_totals` (no behaviour code can look like it).
PROCEEDS_CODE = "~market-proceeds"
BUFFER_PERCENT = 5
MAX_TEXT = 200
MAX_PRICE_YUAN = Decimal(10) ** 13
MAX_KILOGRAMS = 10**12


class MarketErrorCode(str, enum.Enum):
    LOT_NOT_FOUND = "LOT_NOT_FOUND"
    INVALID_PERIOD = "INVALID_PERIOD"
    NOTHING_TO_POOL = "NOTHING_TO_POOL"
    LOT_TOO_SMALL = "LOT_TOO_SMALL"
    WRONG_STATUS = "WRONG_STATUS"
    NOT_ENOUGH_CREDITS = "NOT_ENOUGH_CREDITS"
    INVALID_INPUT = "INVALID_INPUT"
    IDEMPOTENCY_CONFLICT = "IDEMPOTENCY_CONFLICT"


class MarketError(UserError):
    code: MarketErrorCode
    field: str


def serial_label(slug: str, vintage: int, serial: int) -> str:
    """E.g. WUHAN-2026-000000042: the city, the vintage, the city's running kilogram number."""
    return f"{slug.upper()}-{vintage}-{serial:09d}"


def serials_and_buffer(pooled_mg: int) -> tuple[int, int]:
    """(serial kilograms, buffer mg) for a pool: at least BUFFER_PERCENT withheld, whole serials only."""
    minimum_buffer = -(-pooled_mg * BUFFER_PERCENT // 100)
    serial_kg = (pooled_mg - minimum_buffer) // MG_PER_SERIAL
    return serial_kg, pooled_mg - serial_kg * MG_PER_SERIAL


async def _lock_lots(session: AsyncSession, tenant_id: uuid.UUID) -> None:
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended('carbon-market-lots:' || :t, 0))"),
                          {"t": str(tenant_id)})


async def issue_lot(session: AsyncSession, tenant_id: uuid.UUID, period_from: date, period_to: date, by: str,
                    now: datetime, today: date, idempotency_key: str | None = None) -> dict[str, Any]:
    """Pool the period into a new lot, or return the lot this key already issued (a replay)."""
    key = _key(idempotency_key)
    if period_to < period_from:
        raise MarketError(MarketErrorCode.INVALID_PERIOD, "periodTo", "`periodTo` is before `periodFrom`")
    if period_to >= today:
        raise MarketError(MarketErrorCode.INVALID_PERIOD, "periodTo",
                          "a lot pools finished days only: `periodTo` must be before today (the city's local date)")
    if period_from.year != period_to.year:
        raise MarketError(MarketErrorCode.INVALID_PERIOD, "periodTo", "a lot has one vintage: keep the period "
                                                                      "within one calendar year")
    await _lock_lots(session, tenant_id)
    replayed = (await session.execute(text(
        "SELECT id, period_from, period_to FROM market_lots WHERE tenant_id = :t AND idempotency_key = :k"),
        {"t": tenant_id, "k": key})).first() if key is not None else None
    if replayed is not None:
        if (replayed[1], replayed[2]) != (period_from, period_to):
            raise MarketError(MarketErrorCode.IDEMPOTENCY_CONFLICT, "idempotencyKey",
                              "this key issued a lot of another period")
        return await lot(session, tenant_id, replayed[0])
    lot_id = uuid.uuid4()
    last = (await session.execute(text(
        "SELECT coalesce(max(number), 0), coalesce(max(serial_start + serial_kg), 1) FROM market_lots "
        "WHERE tenant_id = :t"), {"t": tenant_id})).one()
    # The pool, in one statement: verified (credited, unreversed) records of the period in no lot yet,
    # share-locked so that a reversal cannot slip between the read and the insert (the lot row comes
    # next; the foreign key to it is deferred).
    pooled = (await session.execute(text("""
        WITH pooled AS (
            INSERT INTO market_lot_records (record_id, tenant_id, lot_id, reduction_mg)
            SELECT r.id, r.tenant_id, :lot, r.reduction_mg FROM behavior_records r
             WHERE r.tenant_id = :t AND r.local_date BETWEEN :f AND :to AND r.reversed_at IS NULL
               AND r.reduction_mg > 0 AND NOT EXISTS (SELECT 1 FROM market_lot_records m WHERE m.record_id = r.id)
             ORDER BY r.id FOR SHARE OF r
            RETURNING record_id, reduction_mg
        ), rows AS (
            SELECT b.behavior_code, b.config_version, b.account_id, p.reduction_mg
              FROM pooled p JOIN behavior_records b ON b.tenant_id = :t AND b.id = p.record_id
        ), parts AS (
            SELECT behavior_code, config_version, count(*) AS records, sum(reduction_mg) AS mg FROM rows GROUP BY 1, 2
        )
        SELECT coalesce(sum(records), 0), coalesce(sum(mg), 0),
               coalesce(jsonb_agg(jsonb_build_object('behavior', behavior_code, 'configVersion', config_version,
                                                     'records', records::text, 'mg', mg::text)
                                  ORDER BY behavior_code, config_version), '[]'::jsonb),
               (SELECT count(DISTINCT account_id) FROM rows)
          FROM parts
    """), {"t": tenant_id, "lot": lot_id, "f": period_from, "to": period_to})).one()
    records, pooled_mg, composition, contributors = int(pooled[0]), int(pooled[1]), pooled[2], int(pooled[3])
    if not records:
        raise MarketError(MarketErrorCode.NOTHING_TO_POOL, "periodFrom",
                          "no verified reduction of that period is left outside a lot")
    serial_kg, buffer_mg = serials_and_buffer(pooled_mg)
    if serial_kg <= 0:  # the caller's savepoint takes the pooled rows back
        raise MarketError(MarketErrorCode.LOT_TOO_SMALL, "periodFrom",
                          f"{Decimal(pooled_mg).scaleb(-3)} g pooled: less than one kilogram after the "
                          f"{BUFFER_PERCENT}% buffer")
    row = (await session.execute(text(f"""
        WITH l AS (
            INSERT INTO market_lots (id, tenant_id, number, period_from, period_to, vintage, status, records,
                                     contributors, pooled_mg, buffer_mg, serial_start, serial_kg, composition,
                                     issued_at, issued_by, idempotency_key)
            VALUES (:id, :t, :number, :f, :to, :vintage, 'ISSUED', :records, :contributors, :pooled, :buffer, :start,
                    :kg, CAST(:composition AS jsonb), :now, :by, :key)
            RETURNING *
        )
        SELECT {LOT_COLUMNS} FROM l JOIN tenants t ON t.id = l.tenant_id
    """), {"id": lot_id, "t": tenant_id, "number": last[0] + 1, "f": period_from, "to": period_to,
           "vintage": period_from.year, "records": records, "contributors": contributors, "pooled": pooled_mg,
           "buffer": buffer_mg, "start": last[1], "kg": serial_kg, "by": by, "key": key, "now": now,
           "composition": json.dumps(composition)})).mappings().one()
    return dict(row)


def _key(idempotency_key: str | None) -> str | None:
    """A replay key, or None (no key: the write is not replay-safe)."""
    if idempotency_key is None:
        return None
    if not 1 <= len(idempotency_key) <= 128 or "\x00" in idempotency_key:
        raise MarketError(MarketErrorCode.INVALID_INPUT, "idempotencyKey", "give a key of 1 to 128 characters")
    return idempotency_key


async def lot(session: AsyncSession, tenant_id: uuid.UUID | None, lot_id: uuid.UUID | None,
              *, lock: bool = False) -> dict[str, Any]:
    row = (await session.execute(text(
        f"SELECT {LOT_COLUMNS} FROM {LOTS} "
        f"WHERE l.id = :id {'AND l.tenant_id = :t' if tenant_id else ''} {'FOR UPDATE OF l' if lock else ''}"),
        {"id": lot_id, "t": tenant_id})).mappings().first() if lot_id else None
    if row is None:
        raise MarketError(MarketErrorCode.LOT_NOT_FOUND, "lotId", "no such lot in this city")
    return dict(row)


def _text(value: str, field: str) -> str:
    value = value.strip()
    if not value or len(value) > MAX_TEXT or "\x00" in value:
        raise MarketError(MarketErrorCode.INVALID_INPUT, field, f"give 1 to {MAX_TEXT} characters")
    return value


def _require(found: dict[str, Any], status: str, action: str) -> None:
    if found["status"] != status:
        raise MarketError(MarketErrorCode.WRONG_STATUS, "lotId",
                          f"only a {status} lot can be {action}; this one is {found['status']}")


async def list_lot(session: AsyncSession, tenant_id: uuid.UUID, lot_id: uuid.UUID | None, venue: str,
                   now: datetime) -> dict[str, Any]:
    venue = _text(venue, "venue")
    found = await lot(session, tenant_id, lot_id, lock=True)
    _require(found, "ISSUED", "listed")
    return await _updated(session, "status = 'LISTED', listed_at = :now, venue = :venue",
                          {"id": found["id"], "now": now, "venue": venue})


async def sell_lot(session: AsyncSession, tenant_id: uuid.UUID, lot_id: uuid.UUID | None, buyer: str,
                   price_yuan: Decimal, now: datetime) -> dict[str, Any]:
    """LISTED → SOLD; where the city shares proceeds, the contributors' points are posted in the same
    transaction (`_pay_contributors`)."""
    buyer = _text(buyer, "buyer")
    if not price_yuan.is_finite() or not 0 <= price_yuan <= MAX_PRICE_YUAN \
            or price_yuan != price_yuan.quantize(Decimal("0.01")):  # in range first: quantize cannot overflow
        raise MarketError(MarketErrorCode.INVALID_INPUT, "priceYuan",
                          f"a price in yuan: from 0 to {MAX_PRICE_YUAN}, at most 2 decimals")
    # The platform's lock order: the contributors' ledger rows first (id order), then the lot's row.
    contributors = [row[0] for row in (await session.execute(text(
        "SELECT DISTINCT b.account_id FROM market_lot_records m JOIN behavior_records b ON b.id = m.record_id "
        "WHERE m.tenant_id = :t AND m.lot_id = :lot"), {"t": tenant_id, "lot": lot_id})).all()] if lot_id else []
    ledgers = await ledger.lock_citizen_ledger_accounts(session, tenant_id, sorted(contributors, key=lambda a: a.bytes))
    found = await lot(session, tenant_id, lot_id, lock=True)
    _require(found, "LISTED", "sold")
    price_fen = int(price_yuan * 100)
    proceeds = await _pay_contributors(session, tenant_id, found, price_fen, ledgers, now)
    return await _updated(session, "status = 'SOLD', sold_at = :now, buyer = :buyer, price_fen = :fen, "
                          "proceeds_points = :proceeds",
                          {"id": found["id"], "now": now, "buyer": buyer, "fen": price_fen, "proceeds": proceeds})


async def _updated(session: AsyncSession, assignments: str, params: dict[str, Any]) -> dict[str, Any]:
    """The lot `params["id"]` (locked by the caller) after `SET assignments`, as `lot()` reads it."""
    row = (await session.execute(text(
        f"UPDATE market_lots l SET {assignments} FROM tenants t WHERE t.id = l.tenant_id AND l.id = :id "
        f"RETURNING {LOT_COLUMNS}"), params)).mappings().one()
    return dict(row)


def shares(total: int, weights: dict[uuid.UUID, int]) -> dict[uuid.UUID, int]:
    """`total` split pro rata to `weights` in whole units, largest remainder first (ties by id): the
    shares add up to `total` exactly."""
    weight = sum(weights.values())
    if total <= 0 or weight <= 0:
        return {}
    base = {key: total * w // weight for key, w in weights.items()}
    left = total - sum(base.values())
    by_remainder = sorted(weights, key=lambda key: (-(total * weights[key] % weight), key.bytes))
    for key in by_remainder[:left]:
        base[key] += 1
    return {key: value for key, value in base.items() if value > 0}


async def _pay_contributors(session: AsyncSession, tenant_id: uuid.UUID, found: dict[str, Any], price_fen: int,
                            ledgers: dict, now: datetime) -> int:
    """The city's share of the sale, as points to the lot's contributors (their unreversed pooled
    reduction decides; closed accounts take nothing), each a LOT_PROCEEDS transaction and a day's earning
    (it expires like one)."""
    city = await tenants_repo.configuration_in_force(session, tenant_id, now)
    assert city is not None, "a city with a lot has a configuration"
    market = city["document"].get("market")  # jsonb arrives decoded (SQLAlchemy's asyncpg codecs)
    if not market or not market.get("proceeds_share_percent"):
        return 0
    total = int(Decimal(price_fen) / 100 * market["proceeds_share_percent"] / 100
                * Decimal(str(market["points_per_yuan"])) * 10 ** city["unit_decimals"])
    # Read again under the contributors' locks (sell_lot's first read only chose whom to lock): a reversal
    # or a closure takes the same lock, so what decides the shares cannot change before the commit.
    weights = {row[0]: int(row[1]) for row in (await session.execute(text("""
        SELECT b.account_id, sum(m.reduction_mg) FROM market_lot_records m JOIN behavior_records b ON b.id = m.record_id
          JOIN accounts a ON a.tenant_id = b.tenant_id AND a.id = b.account_id AND a.status <> 'CLOSED'
         WHERE m.tenant_id = :t AND m.lot_id = :lot AND b.reversed_at IS NULL GROUP BY b.account_id
    """), {"t": tenant_id, "lot": found["id"]})).all()}
    paid = shares(total, weights)
    if not paid:
        return 0
    system = await ledger.system_accounts(session, tenant_id)
    transactions = [ledger.NewTransaction(
        tenant_id=tenant_id, kind="LOT_PROCEEDS", status="CREDITED", occurred_at=now, account_id=account_id,
        points=points, postings=[ledger.Posting(system[(ledger.ISSUANCE, POINTS)], POINTS, -points),
                                 ledger.Posting(ledgers[(account_id, POINTS)].id, POINTS, points)])
        for account_id, points in sorted(paid.items(), key=lambda item: item[0].bytes)]
    await ledger.post(session, transactions, tracked={ledgers[(a, POINTS)].id for a in paid})
    day = local_date(now, city["timezone"])
    await behaviors_repo.add_to_daily_totals(session, tenant_id, {(a, PROCEEDS_CODE, day): (0, p) for a, p in paid.items()})
    await session.execute(text("""
        INSERT INTO market_lot_payouts (transaction_id, tenant_id, lot_id, account_id, points)
        SELECT * FROM unnest(CAST(:tx AS uuid[]), CAST(:t AS uuid[]), CAST(:lot AS uuid[]), CAST(:a AS uuid[]),
                             CAST(:p AS bigint[]))
    """), {"tx": [t.id for t in transactions], "t": [tenant_id] * len(transactions),
           "lot": [found["id"]] * len(transactions), "a": [t.account_id for t in transactions],
           "p": [t.points for t in transactions]})
    return sum(paid.values())


def available_kg(found: dict[str, Any]) -> int:
    return found["serial_kg"] - found["retired_kg"] - found["cancelled_kg"]


def certificate_document(found: dict[str, Any], certificate_id: uuid.UUID, kilograms: int, serial_from: int,
                         beneficiary: str, reason: str, now: datetime, key_id: str) -> dict[str, Any]:
    """The signed retirement certificate: self-describing JSON, verifiable offline with the public key."""
    slug, vintage = found["slug"], found["vintage"]
    return {"type": "carbon-inclusive/retirement-certificate", "certificate": str(certificate_id),
            "city": slug, "lot": found["number"], "vintage": vintage, "unit": "kg CO2e",
            "kilograms": kilograms, "serialFrom": serial_label(slug, vintage, serial_from),
            "serialTo": serial_label(slug, vintage, serial_from + kilograms - 1),
            "period": {"from": found["period_from"].isoformat(), "to": found["period_to"].isoformat()},
            "composition": found["composition"], "beneficiary": beneficiary, "reason": reason,
            "retiredAt": now.isoformat(), "keyId": key_id}


@dataclass(frozen=True)
class Retirement:
    id: uuid.UUID
    document: dict[str, Any]
    signature: str


async def retire(session: AsyncSession, tenant_id: uuid.UUID, lot_id: uuid.UUID | None, kilograms: int,
                 beneficiary: str, reason: str, by: str, now: datetime, signer: Signer,
                 idempotency_key: str | None = None) -> Retirement:
    """Retire kilograms of a sold lot; the same key replayed returns the first certificate."""
    key = _key(idempotency_key)
    beneficiary, reason = _text(beneficiary, "beneficiary"), _text(reason, "reason")
    if not 0 < kilograms <= MAX_KILOGRAMS:
        raise MarketError(MarketErrorCode.INVALID_INPUT, "kilograms", f"retire 1 to {MAX_KILOGRAMS} kilograms")
    found = await lot(session, tenant_id, lot_id, lock=True)
    request = hashlib.sha256(json.dumps([str(found["id"]), kilograms, beneficiary, reason]).encode()).hexdigest()
    replayed = (await session.execute(text(
        "SELECT id, document, signature, request_hash FROM market_retirements WHERE tenant_id = :t AND "
        "idempotency_key = :k"), {"t": tenant_id, "k": key})).first() if key is not None else None
    if replayed is not None:
        if replayed[3] != request:
            raise MarketError(MarketErrorCode.IDEMPOTENCY_CONFLICT, "idempotencyKey",
                              "this key retired other credits: use a new key for a new retirement")
        return Retirement(id=replayed[0], document=replayed[1], signature=replayed[2])
    if found["status"] != "RETIRED":  # a RETIRED lot has nothing left: NOT_ENOUGH_CREDITS below
        _require(found, "SOLD", "retired from")
    if kilograms > available_kg(found):
        raise MarketError(MarketErrorCode.NOT_ENOUGH_CREDITS, "kilograms",
                          f"{available_kg(found)} kg of this lot can still be retired")
    certificate_id = uuid.uuid4()
    serial_from = found["serial_start"] + found["retired_kg"]  # retired from the bottom, cancelled from the top
    # `now` is when the request began; one that began earlier may have taken the lot's lock later. The
    # certificates of a lot stay in serial order in time too (strictly: never tied).
    latest = (await session.execute(text(
        "SELECT max(retired_at) FROM market_retirements WHERE tenant_id = :t AND lot_id = :lot"),
        {"t": tenant_id, "lot": found["id"]})).scalar()
    now = max(now, latest + timedelta(microseconds=1)) if latest is not None else now
    document = certificate_document(found, certificate_id, kilograms, serial_from, beneficiary, reason, now,
                                    signer.key_id)
    signature = signer.sign(document)
    # The key is the city's, the lock this lot's: a retirement of another lot with the same key may be
    # committing now. The insert waits for it and then skips: that key retired other credits.
    inserted = (await session.execute(text("""
        INSERT INTO market_retirements (id, tenant_id, lot_id, kilograms, serial_from, beneficiary, reason, retired_at,
                                        by_client, document, signature, idempotency_key, request_hash)
        VALUES (:id, :t, :lot, :kg, :serial, :beneficiary, :reason, :now, :by, CAST(:document AS jsonb), :signature,
                :key, :request)
        ON CONFLICT (tenant_id, idempotency_key) DO NOTHING RETURNING id
    """), {"id": certificate_id, "t": tenant_id, "lot": found["id"], "kg": kilograms, "serial": serial_from,
           "beneficiary": beneficiary, "reason": reason, "now": now, "by": by, "document": json.dumps(document),
           "signature": signature, "key": key, "request": request})).first()
    if inserted is None:
        raise MarketError(MarketErrorCode.IDEMPOTENCY_CONFLICT, "idempotencyKey",
                          "this key retired other credits: use a new key for a new retirement")
    await session.execute(text("""
        UPDATE market_lots SET retired_kg = retired_kg + :kg,
               status = CASE WHEN retired_kg + :kg + cancelled_kg = serial_kg THEN 'RETIRED' ELSE status END
         WHERE id = :id
    """), {"id": found["id"], "kg": kilograms})
    return Retirement(id=certificate_id, document=document, signature=signature)


async def on_record_reversed(session: AsyncSession, tenant_id: uuid.UUID, record_id: uuid.UUID) -> None:
    """The buffer-pool policy (module docstring), for a record just marked reversed (its row is locked)."""
    pooled = (await session.execute(text(
        "SELECT lot_id, reduction_mg FROM market_lot_records WHERE tenant_id = :t AND record_id = :r"),
        {"t": tenant_id, "r": record_id})).first()
    if pooled is None:
        return
    found = await lot(session, tenant_id, pooled[0], lock=True)
    reversed_mg = found["reversed_mg"] + pooled[1]
    uncovered = max(0, reversed_mg - found["buffer_mg"])
    needed_kg = -(-uncovered // MG_PER_SERIAL)
    cancelled_kg = max(found["cancelled_kg"], min(needed_kg, found["serial_kg"] - found["retired_kg"]))
    backing = found["pooled_mg"] - reversed_mg
    shortfall = max(0, (found["serial_kg"] - cancelled_kg) * MG_PER_SERIAL - backing)
    await session.execute(text("""
        UPDATE market_lots SET reversed_mg = :reversed, cancelled_kg = :cancelled, shortfall_mg = :shortfall,
               status = CASE WHEN status = 'SOLD' AND retired_kg + :cancelled = serial_kg THEN 'RETIRED' ELSE status END
         WHERE id = :id
    """), {"id": found["id"], "reversed": reversed_mg, "cancelled": cancelled_kg, "shortfall": shortfall})
