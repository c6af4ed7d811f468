"""Behaviour ingestion: a partner's batch of records → outcomes, credits and ledger postings.

Promises (ADR 0004):

* Idempotent per provider and `externalId`: a record seen before (accepted) returns its first outcome
  as DUPLICATE and changes nothing, also within one batch and across concurrent requests.
* A bad record never spoils the good ones: each gets its own outcome; the batch is written in one
  transaction (all of it or none of it).
* Pricing uses the configuration version in force at `occurredAt`, caps per account, behaviour and
  local day / month in the tenant's time zone, applied in input order and exact under concurrency:
  every write for an account happens under that account's row lock, taken in id order.
* Contribution converts to points by floor-with-carry (`app.ledger.conversion`).
* One behaviour, one credit across providers: a record that its rule recognises as a behaviour already
  credited from another provider is REJECTED (`DUPLICATE_ACROSS_PROVIDERS`) with a link to that record
  (`app.behaviors.rules.same_behavior`); read under the accounts' locks, so exact under concurrency.
"""

from __future__ import annotations

import bisect
import json
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.behaviors import repository as repo
from app.behaviors.rules.base import InvalidQuantity, PricingRule
from app.behaviors.rules.calendar import local_date, month_of, timing_problem
from app.behaviors.rules.caps import capped_mg
from app.behaviors.rules.registry import requested_mg
from app.behaviors.rules.same_behavior import Report, is_same
from app.ledger import service as ledger
from app.ledger.conversion import convert, mg_per_minor_point
from app.ledger.models import CONTRIBUTION, POINTS

MAX_BATCH = 1000
MAX_EXTERNAL_ID = 128
RETRIES = 3

CREDITED, CAPPED, DUPLICATE, REJECTED = "CREDITED", "CAPPED", "DUPLICATE", "REJECTED"


class IngestionError(Exception):
    """The whole request is refused (nothing is written); `code` is machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class _ConcurrentDuplicate(Exception):
    """Another transaction inserted one of our external ids first; the batch is re-evaluated."""


@dataclass(frozen=True)
class RecordCommand:
    account_id: uuid.UUID | None  # None: the given id was not an account id
    behavior: str
    quantity: Decimal
    occurred_at: datetime
    external_id: str
    evidence: dict[str, str] | None = None


@dataclass(frozen=True)
class RecordOutcome:
    external_id: str
    status: str
    code: str | None = None
    reduction_mg: int = 0
    points: int = 0
    reason: str | None = None
    record_id: uuid.UUID | None = None
    duplicate_of: uuid.UUID | None = None  # DUPLICATE_ACROSS_PROVIDERS: the record credited first


def _rejected(command: RecordCommand, code: str, reason: str) -> RecordOutcome:
    return RecordOutcome(external_id=command.external_id, status=REJECTED, code=code, reason=reason)


class Versions:
    """The tenant's configuration versions, answering "which one was in force at t"."""

    def __init__(self, rows: list[repo.VersionRow]) -> None:
        self.rows = rows
        self.starts = [row.effective_from for row in rows]

    def at(self, moment: datetime) -> repo.VersionRow | None:
        index = bisect.bisect_right(self.starts, moment) - 1
        return self.rows[index] if index >= 0 else None


async def record_behaviors(session: AsyncSession, tenant_id: uuid.UUID, provider_slug: str,
                           commands: list[RecordCommand], *, now: datetime) -> list[RecordOutcome]:
    """Price and credit a partner's batch; outcomes in input order. Does not commit."""
    if len(commands) > MAX_BATCH:
        raise IngestionError("BATCH_TOO_LARGE", f"at most {MAX_BATCH} records per call; got {len(commands)}")
    provider_id = await repo.issuer_id(session, tenant_id, provider_slug)
    if provider_id is None:
        raise IngestionError("PROVIDER_UNKNOWN", f"the calling client's issuer {provider_slug!r} is not active")
    for attempt in range(RETRIES):
        try:
            async with session.begin_nested():
                return await _record(session, tenant_id, provider_id, commands, now)
        except (_ConcurrentDuplicate, IntegrityError):
            if attempt == RETRIES - 1:
                raise
    raise AssertionError("unreachable")


@dataclass
class _Candidate:
    index: int
    command: RecordCommand
    rule: PricingRule
    version: repo.VersionRow
    local_date: date
    requested_mg: int
    converted_mg: int = 0


def _validate(command: RecordCommand, accounts: dict[uuid.UUID, str],
              consents: dict[uuid.UUID, frozenset[str]], versions: Versions,
              rules: dict[tuple[uuid.UUID, str], PricingRule], now: datetime,
              current: repo.VersionRow | None) -> RecordOutcome | tuple[PricingRule, repo.VersionRow, int]:
    status = accounts.get(command.account_id) if command.account_id else None
    if status is None:
        return _rejected(command, "ACCOUNT_NOT_FOUND", "no such account in this city")
    if not consents.get(command.account_id):
        # Before anything about the account: a provider without live consent (e.g. revoked) learns
        # nothing more of it, not even whether it was closed since.
        return _rejected(command, "CONSENT_MISSING", "no live consent from this account for this provider")
    if status == "CLOSED":
        return _rejected(command, "ACCOUNT_CLOSED", "the account is closed and takes no new credits")
    window = current.claim_window_days if current else 0
    problem = timing_problem(command.occurred_at, now, window)
    if problem == "FUTURE_TIMESTAMP":
        return _rejected(command, problem, "occurredAt is in the future")
    if problem == "OUTSIDE_CLAIM_WINDOW":
        return _rejected(command, problem, f"occurredAt is more than {window} days ago; the claim window has closed")
    version = versions.at(command.occurred_at)
    rule = rules.get((version.id, command.behavior)) if version else None
    if version is None or rule is None:
        return _rejected(command, "UNKNOWN_BEHAVIOR",
                         f"no behaviour {command.behavior!r} in the rules in force at occurredAt")
    if rule.category not in consents.get(command.account_id, frozenset()):
        return _rejected(command, "CONSENT_MISSING",
                         f"no live consent from this account for this provider and category {rule.category}")
    try:
        return rule, version, requested_mg(rule, command.quantity)
    except InvalidQuantity as error:
        return _rejected(command, "INVALID_QUANTITY", str(error))


async def _record(session: AsyncSession, tenant_id: uuid.UUID, provider_id: uuid.UUID,
                  commands: list[RecordCommand], now: datetime) -> list[RecordOutcome]:
    outcomes: list[RecordOutcome | None] = [None] * len(commands)
    first_of: dict[str, int] = {}
    pending: list[int] = []
    for index, command in enumerate(commands):
        if not 0 < len(command.external_id) <= MAX_EXTERNAL_ID:
            outcomes[index] = _rejected(command, "INVALID_EXTERNAL_ID",
                                        f"externalId must have 1 to {MAX_EXTERNAL_ID} characters")
        elif command.occurred_at.tzinfo is None:
            outcomes[index] = _rejected(command, "INVALID_TIMESTAMP", "occurredAt needs a UTC offset")
        elif command.external_id in first_of:
            continue  # a repeat inside the batch: resolved to the first one's outcome at the end
        else:
            first_of[command.external_id] = index
            pending.append(index)

    account_ids = sorted({commands[i].account_id for i in pending if commands[i].account_id}, key=lambda a: a.bytes)
    versions = Versions(await repo.config_versions(session, tenant_id))
    # The per-account lock first (ledger rows, id order); then every read below sees the latest commits.
    ledgers = await ledger.lock_citizen_ledger_accounts(session, tenant_id, account_ids)
    visible = await repo.statuses_and_consents(session, tenant_id, provider_id, account_ids)
    accounts = {account_id: status for account_id, (status, _) in visible.items()}
    consents = {account_id: categories for account_id, (_, categories) in visible.items()}
    existing = await repo.existing_records(session, tenant_id, provider_id,
                                           [commands[i].external_id for i in pending])
    needed_versions = {v.id for i in pending if (v := versions.at(commands[i].occurred_at))}
    version_numbers = {v.id: v.version for v in versions.rows}
    rules = {(row["config_version_id"], row["code"]): PricingRule.from_mapping(
                 row, version_numbers[row["config_version_id"]])
             for row in await repo.rules_of_versions(session, sorted(needed_versions))}
    current = versions.at(now)

    candidates: list[_Candidate] = []
    for index in pending:
        command = commands[index]
        seen = existing.get(command.external_id)
        if seen is not None:
            outcomes[index] = RecordOutcome(external_id=command.external_id, status=DUPLICATE,
                                            reduction_mg=seen.reduction_mg, points=seen.points,
                                            reason=f"already recorded as {seen.status}", record_id=seen.id)
            continue
        checked = _validate(command, accounts, consents, versions, rules, now, current)
        if isinstance(checked, RecordOutcome):
            outcomes[index] = checked
            continue
        rule, version, requested = checked
        candidates.append(_Candidate(index, command, rule, version,
                                     local_date(command.occurred_at, version.timezone), requested))

    candidates = await _not_credited_elsewhere(session, tenant_id, provider_id, candidates, outcomes)
    await _credit(session, tenant_id, provider_id, now, candidates, ledgers, outcomes)

    await repo.log_rejections(session, tenant_id, provider_id, now, [
        repo.Rejection(external_id=c.external_id[:MAX_EXTERNAL_ID],
                       account_id=c.account_id if c.account_id in accounts else None, behavior_code=c.behavior[:64],
                       code=o.code or "", duplicate_of_record_id=o.duplicate_of,
                       occurred_at=c.occurred_at if o.duplicate_of else None,
                       evidence=_json(c.evidence) if o.duplicate_of else None)
        for c, o in zip(commands, outcomes, strict=True) if o is not None and o.status == REJECTED])
    for index, command in enumerate(commands):
        if outcomes[index] is None:  # an in-batch repeat
            first = outcomes[first_of[command.external_id]]
            assert first is not None
            outcomes[index] = (first if first.status == REJECTED else RecordOutcome(
                external_id=first.external_id, status=DUPLICATE,
                reduction_mg=first.reduction_mg, points=first.points,
                reason=f"already recorded as {first.status}", record_id=first.record_id))
    return outcomes  # type: ignore[return-value]


def _json(evidence: dict[str, str] | None) -> str | None:
    return json.dumps(evidence, ensure_ascii=False, sort_keys=True) if evidence else None


async def _not_credited_elsewhere(session: AsyncSession, tenant_id: uuid.UUID, provider_id: uuid.UUID,
                                  candidates: list[_Candidate], outcomes: list[RecordOutcome | None]) -> list[_Candidate]:
    """The candidates that are no behaviour already credited from another provider; the others are
    rejected with a link to the credited record. (One batch comes from one provider: its records are
    told apart by `externalId`, never by this.)"""
    probes = [(c.command.account_id, c.rule.code, c.command.occurred_at - c.rule.same_behavior.reach,
               c.command.occurred_at + c.rule.same_behavior.reach)
              for c in candidates if c.rule.same_behavior is not None and c.command.account_id is not None]
    credited: dict[tuple[uuid.UUID, str], list[tuple[uuid.UUID, Report, list[str]]]] = defaultdict(list)
    for row in await repo.credited_by_others(session, tenant_id, provider_id, probes):
        evidence = json.loads(row.evidence) if isinstance(row.evidence, str) else row.evidence
        credited[(row.account_id, row.behavior_code)].append(
            (row.id, Report(row.occurred_at, row.local_date, evidence), row.linked))
    if not credited:
        return candidates
    # A report rejected before (same externalId) keeps its link. A day, a bill or a receipt is one
    # behaviour however often a provider reports it: every report matching a credited one is its
    # duplicate. Trips are matched by a time window, so one credited trip answers for one report of this
    # provider (two real trips within the window are never one): pairs are taken nearest in time first
    # across the batch.
    links: dict[int, uuid.UUID] = {}
    pairs = []
    for candidate in candidates:
        rule, command = candidate.rule.same_behavior, candidate.command
        options = credited.get((command.account_id, candidate.rule.code), [])
        replayed = next((record_id for record_id, _, linked in options if command.external_id in linked), None)
        if replayed is not None:
            links[candidate.index] = replayed
        elif rule is not None:
            mine = Report(command.occurred_at, candidate.local_date, command.evidence)
            matches = [(abs(report.occurred_at - mine.occurred_at), candidate.index, record_id, linked)
                       for record_id, report, linked in options if is_same(rule, report, mine)]
            if rule.match != "TRIP" and matches:
                links[candidate.index] = min(matches)[2]
            pairs += [(gap, index, record_id) for gap, index, record_id, linked in matches
                      if rule.match == "TRIP" and not linked]
    taken = set(links.values())
    for _, index, record_id in sorted(pairs):
        if index not in links and record_id not in taken:
            links[index] = record_id
            taken.add(record_id)
    kept = []
    for candidate in candidates:
        if candidate.index not in links:
            kept.append(candidate)
            continue
        outcomes[candidate.index] = RecordOutcome(
            external_id=candidate.command.external_id, status=REJECTED, code="DUPLICATE_ACROSS_PROVIDERS",
            reason=f"this {candidate.rule.code} was already credited from another provider",
            duplicate_of=links[candidate.index])
    return kept


async def _credit(session: AsyncSession, tenant_id: uuid.UUID, provider_id: uuid.UUID, now: datetime,
                  candidates: list[_Candidate], ledgers: dict[tuple[uuid.UUID, str], ledger.CitizenLedger],
                  outcomes: list[RecordOutcome | None]) -> None:
    if not candidates:
        return
    day_keys = list({(c.command.account_id, c.rule.code, c.local_date) for c in candidates})
    month_keys = list({(c.command.account_id, c.rule.code, month_of(c.local_date)) for c in candidates
                       if c.rule.cap_mg_per_month is not None})
    day_totals = await repo.daily_totals(session, tenant_id, day_keys)
    month_totals = await repo.monthly_totals(session, tenant_id, month_keys)
    carries = {account_id: row.unconverted_mg for (account_id, asset), row in ledgers.items() if asset == POINTS}
    day_delta: dict[repo.TotalKey, int] = {}
    month_delta: dict[repo.TotalKey, int] = {}
    day_points: dict[repo.TotalKey, int] = {}

    records: list[repo.NewRecord] = []
    for candidate in candidates:  # input order: earlier records take the cap first
        account_id = candidate.command.account_id
        assert account_id is not None
        day_key = (account_id, candidate.rule.code, candidate.local_date)
        month_key = (account_id, candidate.rule.code, month_of(candidate.local_date))
        so_far_day = day_totals.get(day_key, 0) + day_delta.get(day_key, 0)
        so_far_month = month_totals.get(month_key, 0) + month_delta.get(month_key, 0)
        credit = capped_mg(candidate.rule, candidate.requested_mg, so_far_day, so_far_month)
        rate = mg_per_minor_point(candidate.version.grams_per_point, candidate.version.unit_decimals)
        conversion = convert(carries[account_id], credit, rate)
        carries[account_id] = conversion.carry_mg
        day_delta[day_key] = day_delta.get(day_key, 0) + credit
        day_points[day_key] = day_points.get(day_key, 0) + conversion.points
        month_delta[month_key] = month_delta.get(month_key, 0) + credit
        status = CREDITED if credit == candidate.requested_mg else CAPPED
        command = candidate.command
        records.append(repo.NewRecord(
            id=uuid.uuid4(), account_id=account_id, external_id=command.external_id, behavior_code=candidate.rule.code,
            rule_id=candidate.rule.id, config_version=candidate.version.version, quantity=command.quantity,
            occurred_at=command.occurred_at, local_date=candidate.local_date, status=status,
            requested_mg=candidate.requested_mg, reduction_mg=credit, points=conversion.points,
            evidence=_json(command.evidence),
        ))
        outcomes[candidate.index] = RecordOutcome(
            external_id=command.external_id, status=status, reduction_mg=credit, points=conversion.points,
            reason=None if status == CREDITED else "capped: the daily, monthly or per-record limit was reached",
            record_id=records[-1].id)
        candidate.converted_mg = conversion.converted_mg

    inserted = await repo.insert_records(session, tenant_id, provider_id, now, records)
    if inserted != len(records):
        raise _ConcurrentDuplicate()
    changed_carries = {ledgers[(account_id, POINTS)].id: carry for account_id, carry in carries.items()
                       if carry != ledgers[(account_id, POINTS)].unconverted_mg}
    # A late record for a day that expiry has already matured joins the matured earnings at once, or it
    # would never expire (ADR 0005).
    matured: dict[uuid.UUID, int] = {}
    for (account_id, _, day), points in day_points.items():
        row = ledgers[(account_id, POINTS)]
        if points and row.matured_through is not None and day < row.matured_through:
            matured[row.id] = matured.get(row.id, 0) + points
    await _post(session, tenant_id, candidates, records, ledgers, changed_carries, matured, now)
    # Keep a day whose credit is 0 mg when points came from the carry: they belong to that day's lot.
    await repo.add_to_daily_totals(session, tenant_id, {k: (v, day_points[k]) for k, v in day_delta.items()
                                                        if v or day_points[k]})


async def _post(session: AsyncSession, tenant_id: uuid.UUID, candidates: list[_Candidate],
                records: list[repo.NewRecord], ledgers: dict[tuple[uuid.UUID, str], ledger.CitizenLedger],
                carries: dict[uuid.UUID, int], matured: dict[uuid.UUID, int], now: datetime) -> None:
    system = await ledger.system_accounts(session, tenant_id)
    citizen = {key: row.id for key, row in ledgers.items()}
    transactions = []
    for candidate, record in zip(candidates, records, strict=True):
        postings = []
        if record.reduction_mg:
            postings += [
                ledger.Posting(system[(ledger.ISSUANCE, CONTRIBUTION)], CONTRIBUTION, -record.reduction_mg),
                ledger.Posting(citizen[(record.account_id, CONTRIBUTION)], CONTRIBUTION, record.reduction_mg),
            ]
        if record.points:
            postings += [
                ledger.Posting(system[(ledger.ISSUANCE, POINTS)], POINTS, -record.points),
                ledger.Posting(citizen[(record.account_id, POINTS)], POINTS, record.points),
            ]
        transactions.append(ledger.NewTransaction(
            tenant_id=tenant_id, kind="BEHAVIOR_CREDIT", status=record.status, occurred_at=record.occurred_at,
            account_id=record.account_id, behavior_record_id=record.id, behavior_code=record.behavior_code,
            reduction_mg=record.reduction_mg, points=record.points,
            converted_mg=candidate.converted_mg,
            postings=postings,
        ))
    # Points of a day that has matured are past their expiry when they arrive: they expire at once, as the
    # last expiry run would have expired them (matured lots never hold unexpired points: consumed >=
    # matured earnings, an invariant `verify-ledger` checks). The credit and its expiry both show.
    consumed: dict[uuid.UUID, int] = {}
    rows = {row.id: row for row in ledgers.values()}
    for ledger_id, points in matured.items():
        row = rows[ledger_id]
        due = min(points, max(0, row.earned_matured + points - row.points_consumed))
        if due:
            consumed[ledger_id] = due
            transactions.append(ledger.expiry_transaction(
                tenant_id, row.account_id, ledger_id, system[(ledger.EXPIRED, POINTS)], due, now))
    await ledger.post(session, transactions, tracked=set(citizen.values()), carries=carries, matured=matured,
                      consumed=consumed or None)
