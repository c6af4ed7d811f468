"""The data set of `make bench-dashboard`: what it is made of and how it is written.

Each account's history (`bench/dashboard_history.py`) is written as the rows the platform itself would
have written for it:

* opening: `accounts`, `account_events` (OPENED; BANK_LINKED at opening or later for a share),
  the two citizen `ledger_accounts`, a `consents` row per data provider of the city;
* each behaviour record, priced by the rule in force (caps per record, local day and month; floor-with-
  carry conversion to points): `behavior_records`, its `BEHAVIOR_CREDIT` ledger transaction with two or
  four postings, the day's `daily_behavior_totals`;
* now and then a redemption of an affordable item the account is eligible for (bank link, per-account
  limit in its period, stock, validity): `redemptions`, the REDEMPTION or DONATION transaction and its
  postings, FIFO consumption, `entitlements` for financial services; a few are cancelled within the
  item's window (REDEMPTION_CANCELLED);
* the daily expiry run at 00:05 local time where the city's points expire: EXPIRY transactions of the
  oldest lots, `earned_matured` and `matured_through` as `app/ledger/expiry.py` leaves them;
* at the end, the ledger accounts' balances, carry and consumption.

Totals shared by accounts (items' `stock_taken`, donation projects' balances) are returned and applied
once at the end. What triggers keep (rollups, active days, hash chains) is not written here: the bench
rebuilds it with the migrations' backfills.

Ids are UUID version 4 in shape but ordered (worker, counter), so every index is built from ordered
input: the platform's ids are random, and nothing measured here reads by id.
"""

from __future__ import annotations

import random
import struct
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg

from app.ledger.conversion import mg_per_minor_point
from app.ledger.expiry import cutoff

SEED_VERSION = "dashboard-seed-2"
EXPIRY_RUN_SECOND = 5 * 60  # the expiry run of a local day, at 00:05
FIRST_SECOND, LAST_SECOND = 6 * 3600, 23 * 3600  # behaviours happen between 06:00 and 23:00 local time
TABLES: dict[str, list[str]] = {
    "accounts": ["id", "tenant_id", "holder_hash", "kind", "status", "bank_account_hash", "bank_account_mask",
                 "opened_by", "agreement_accepted_at", "opened_at", "bank_linked_at", "updated_at"],
    "account_events": ["id", "tenant_id", "account_id", "kind", "by_client", "at"],
    "consents": ["id", "tenant_id", "account_id", "provider_issuer_id", "categories", "granted_by", "granted_at"],
    "ledger_accounts": ["id", "tenant_id", "account_id", "code", "asset", "balance", "tracks_balance",
                        "unconverted_mg", "points_consumed", "earned_matured", "matured_through"],
    "behavior_records": ["id", "tenant_id", "account_id", "provider_issuer_id", "external_id", "behavior_code",
                         "rule_id", "config_version", "quantity", "occurred_at", "local_date", "received_at",
                         "status", "requested_mg", "reduction_mg", "points"],
    "daily_behavior_totals": ["tenant_id", "account_id", "behavior_code", "local_date", "credited_mg",
                              "credited_points"],
    "redemptions": ["id", "tenant_id", "account_id", "reward_id", "kind", "quantity", "points", "status",
                    "voucher_code", "idempotency_key", "request_hash", "by_client", "created_at", "cancellable_until",
                    "cancelled_at", "cancel_reason", "stock_units", "counterparty_ledger_id"],
    "entitlements": ["id", "tenant_id", "account_id", "reward_id", "sponsor_issuer_id", "redemption_id", "status",
                     "granted_at", "valid_to"],
    "ledger_transactions": ["id", "tenant_id", "account_id", "kind", "status", "occurred_at", "behavior_record_id",
                            "behavior_code", "reduction_mg", "points", "converted_mg", "redemption_id"],
    "ledger_postings": ["tenant_id", "transaction_id", "ledger_account_id", "asset", "amount"],
}


@dataclass(frozen=True)
class Rule:
    id: str
    code: str
    category: str
    method: str
    unit: str
    factor_mg: int
    cap_day: int | None
    cap_month: int | None
    cap_event: int | None


@dataclass(frozen=True)
class Item:
    id: str
    code: str
    kind: str
    cost: int
    stock_total: int | None
    per_account_limit: int | None
    limit_period: str
    valid_from: int | None  # epoch seconds
    valid_to: int | None
    bank_linked_only: bool
    min_contribution_mg: int
    cancellation_hours: int
    sponsor_id: str
    counterparty: str | None  # the ledger account the points go to


@dataclass(frozen=True)
class City:
    slug: str
    tenant_id: str
    timezone: str
    effective_from: datetime
    config_version: int
    mg_per_point: int
    expiry_months: int | None
    app_client: str
    rules: tuple[Rule, ...]
    providers: dict[str, str]  # category -> provider issuer id
    items: tuple[Item, ...]
    system: dict[tuple[str, str], str]  # (code, asset) -> ledger account id


async def load_cities(connection: asyncpg.Connection, partners: dict[str, list[tuple[str, str]]],
                      app_clients: dict[str, str], at: datetime) -> list[City]:
    """The cities as configured in the database at `at` (configuration in force, rules, items, system
    ledger accounts); `partners`: slug -> [(issuer slug, issuer kind)] of the city's partner clients."""
    cities = []
    versions = await connection.fetch("""
        SELECT DISTINCT ON (v.tenant_id) t.slug, v.* FROM tenant_config_versions v JOIN tenants t ON t.id = v.tenant_id
         WHERE v.effective_from <= $1 ORDER BY v.tenant_id, v.effective_from DESC, v.version DESC""", at)
    for version in sorted(versions, key=lambda row: row["slug"]):
        tenant = version["tenant_id"]
        rules = tuple(Rule(str(r["id"]), r["code"], r["category"], r["method"], r["unit"], r["factor_mg"],
                           r["cap_mg_per_day"], r["cap_mg_per_month"], r["cap_mg_per_event"])
                      for r in await connection.fetch(
                          "SELECT * FROM behavior_rules WHERE config_version_id = $1 ORDER BY position", version["id"]))
        issuers = {row["slug"]: str(row["id"]) for row in await connection.fetch(
            "SELECT slug, id FROM issuers WHERE tenant_id = $1 AND active", tenant)}
        system = {(row["code"], row["asset"]): str(row["id"]) for row in await connection.fetch(
            "SELECT code, asset, id FROM ledger_accounts WHERE tenant_id = $1 AND account_id IS NULL", tenant)}
        items = tuple(Item(
            str(r["id"]), r["code"], r["kind"], r["cost_points"], r["stock_total"], r["per_account_limit"],
            r["limit_period"], _epoch(r["valid_from"]), _epoch(r["valid_to"]), r["bank_linked_only"],
            r["min_contribution_mg"],
            r["cancellation_window_hours"], str(r["sponsor_issuer_id"]),
            system.get((f"donation:{r['code']}" if r["kind"] == "DONATION" else "redemptions", "POINTS")))
            for r in await connection.fetch("SELECT * FROM rewards WHERE tenant_id = $1 AND active ORDER BY position",
                                            tenant))
        cities.append(City(
            slug=version["slug"], tenant_id=str(tenant), timezone=version["timezone"],
            effective_from=version["effective_from"], config_version=version["version"],
            mg_per_point=mg_per_minor_point(version["grams_per_point"], version["unit_decimals"]),
            expiry_months=version["point_expiry_months"], app_client=app_clients[version["slug"]], rules=rules,
            providers=_providers(rules, partners[version["slug"]], issuers), items=items, system=system))
    return cities


def _providers(rules: tuple[Rule, ...], partners: list[tuple[str, str]], issuers: dict[str, str]) -> dict[str, str]:
    """category -> provider: travel data from the city card or travel-data partner, everything else from a
    bank, where the city has such partners; otherwise from the partner it has."""
    travel = [slug for slug, kind in partners if kind in ("CITY_CARD", "DATA_PROVIDER")]
    banks = [slug for slug, kind in partners if kind == "BANK"]
    if not partners:
        raise ValueError("a city without partner clients has no behaviour records")

    def provider(category: str) -> str:
        preferred = travel if category == "TRAVEL" else banks
        return issuers[(preferred or travel or banks or [slug for slug, _ in partners])[0]]

    return {rule.category: provider(rule.category) for rule in rules}


@dataclass
class Calendar:
    """A city's local days of the seed's history: dates, UTC midnights, expiry runs."""
    days: list[date]
    midnights: list[int]  # epoch seconds of each local day's 00:00
    last_hi: int  # last second of the last day (local seconds) at which something may happen
    expiry_run_for_lot: list[int | None]  # day index -> the run (day index) at which that day's lot expires
    expiry_cutoff_of_run: dict[int, int]  # run day index -> cutoff day index (may be negative)
    final_cutoff: date | None  # matured_through after the last run

    @classmethod
    def build(cls, city: City, start: datetime, end: datetime) -> Calendar:
        zone = ZoneInfo(city.timezone)
        first = max(start, city.effective_from).astimezone(zone).date()
        last = end.astimezone(zone).date()
        days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
        midnights = [int(datetime(d.year, d.month, d.day, tzinfo=zone).timestamp()) for d in days]
        last_hi = min(LAST_SECOND, int(end.timestamp()) - midnights[-1] - 60)
        if last_hi < FIRST_SECOND + 3 * 3600:  # too early in the day: the history ends yesterday
            days, midnights = days[:-1], midnights[:-1]
            last_hi = LAST_SECOND
        runs, cutoffs, final = [None] * len(days), {}, None
        if city.expiry_months is not None:
            for run, day in enumerate(days):
                cutoffs[run] = (cutoff(day, city.expiry_months) - days[0]).days
            final = days[0] + timedelta(days=cutoffs[len(days) - 1])
            run = 0
            for lot in range(len(days)):  # the first run whose cutoff is past the lot's day
                while run < len(days) and cutoffs[run] <= lot:
                    run += 1
                runs[lot] = run if run < len(days) else None
        return cls(days, midnights, last_hi, runs, cutoffs, final)


@dataclass
class Rows:
    """Rows of one chunk, per table."""
    tables: dict[str, list[tuple]] = field(default_factory=lambda: {name: [] for name in TABLES})
    records: int = 0


@dataclass
class Shared:
    """What many accounts add to one row: items' stock taken, donation projects' balances."""
    stock_taken: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # item id -> units
    project_points: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # ledger account id -> points


class Ids:
    """Ordered UUID-4-shaped ids: (worker, counter) in front, the version and variant nibbles in place."""

    def __init__(self, worker: int, rng: random.Random) -> None:
        self.prefix = f"{worker + 1:04x}"
        self.tail = f"4{rng.getrandbits(12):03x}{8 + rng.getrandbits(2):x}{rng.getrandbits(60):015x}"
        self.count = 0

    def __call__(self) -> str:
        self.count += 1
        return f"{self.prefix}{self.count:08x}{self.tail}"

    def external(self) -> str:
        """A partner's external id (unique per worker: the worker in front, zero-padded, so ordered)."""
        self.count += 1
        return f"{self.prefix}-{self.count:010d}"


PG_EPOCH, MICROS = 946_684_800, 1_000_000  # 2000-01-01 in Unix seconds: timestamps go as µs since then


def pg_time(epoch_seconds: int | None) -> int | None:
    return None if epoch_seconds is None else (epoch_seconds - PG_EPOCH) * MICROS


def _epoch(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp())


def numeric_bytes(thousandths: int) -> bytes:
    """PostgreSQL's binary `numeric` of thousandths / 1000 (non-negative): base-10000 digits, weight of the
    first, sign, display scale 3."""
    whole, fraction = divmod(thousandths, 1000)
    digits = []
    while whole:
        whole, digit = divmod(whole, 10000)
        digits.insert(0, digit)
    weight = len(digits) - 1 if digits else -1
    if fraction:
        digits.append(fraction * 10)
    elif not digits:
        weight = 0
    return struct.pack(f">hhhh{len(digits)}h", len(digits), weight, 0, 3, *digits)


async def use_bulk_codecs(connection: asyncpg.Connection) -> None:
    """Make `connection` take the generator's values as they are: timestamps as µs since 2000-01-01 UTC
    (no datetime objects), quantities as `numeric_bytes` (no Decimal). For a connection that only copies."""
    await connection.set_type_codec("timestamptz", schema="pg_catalog", encoder=lambda micros: (micros,),
                                    decoder=lambda value: value[0], format="tuple")
    await connection.set_type_codec("numeric", schema="pg_catalog", encoder=bytes, decoder=bytes, format="binary")


async def copy_rows(connection: asyncpg.Connection, rows: Rows) -> None:
    """COPY one chunk (binary), table by table, in the caller's transaction; `connection` must use the bulk
    codecs (`use_bulk_codecs`)."""
    for table, columns in TABLES.items():
        if rows.tables[table]:
            await connection.copy_records_to_table(table, records=rows.tables[table], columns=columns)


async def apply_shared(connection: asyncpg.Connection, shared: list[Shared]) -> None:
    """Add the workers' stock taken and donation totals to the items and projects."""
    stock: dict[str, int] = defaultdict(int)
    projects: dict[str, int] = defaultdict(int)
    for part in shared:
        for key, value in part.stock_taken.items():
            stock[key] += value
        for key, value in part.project_points.items():
            projects[key] += value
    await connection.executemany("UPDATE rewards SET stock_taken = stock_taken + $2 WHERE id = $1::uuid",
                                 sorted(stock.items()))
    await connection.executemany("UPDATE ledger_accounts SET balance = balance + $2 WHERE id = $1::uuid",
                                 sorted(projects.items()))
